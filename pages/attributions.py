"""Attributions: captum's methods beside rollout and relevance on one colour scale; how faithful each map is
on this image (deletion and insertion); on a shapes item, how much of each map falls on the object."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

import pandas as pd
import streamlit as st
import torch

import ui
from vitviz import faithfulness, plots
from vitviz.attributions import METHODS, SETTINGS, AttributionMaps, setting_users
from vitviz.data import SHAPES_CLASSES
from vitviz.faithfulness import Curve

DEFAULT_METHODS = ["Integrated Gradients", "Saliency", "Occlusion", "Attention rollout", "Relevance"]
STEPS = {"10% of the patches": "decile", "One patch": "patch"}
Options = tuple[tuple[str, int], ...]


@st.cache_data(max_entries=8, show_spinner="Running the model…")
def cached_probabilities(_model: torch.nn.Module, model_key: str, image_key: str,
                         _inputs: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The class probabilities, and the seconds their forward pass took on this machine: the unit of every
    method's cost estimate (no pass of its own; on a model's first pass it errs long, by its warm-up)."""
    with torch.no_grad():
        start = time.perf_counter()
        logits = _model(_inputs)
        seconds = time.perf_counter() - start
    return logits[0].float().softmax(dim=-1).cpu(), seconds  # (C,), s


# Once per (model, image, method, class, options). The progress bar is made inside, so a cache hit
# replays it to its end, where it is emptied.
@st.cache_data(max_entries=64, show_spinner=False)
def cached_maps(_model: torch.nn.Module, model_key: str, image_key: str, method: str, target: int, options: Options,
                _inputs: torch.Tensor) -> AttributionMaps:
    bar = st.progress(0.0, text=f"{method}…")
    maps = METHODS[method](_model).attribute(
        _inputs, target, progress=lambda done: bar.progress(done, text=f"{method}: {done:.0%}"), **dict(options))
    bar.empty()
    return replace(maps, target=maps.target.cpu(), patch=maps.patch.cpu(), pixel=maps.pixel.cpu())


@st.cache_data(max_entries=64, show_spinner=False)
def cached_curves(_model: torch.nn.Module, model_key: str, image_key: str, method: str, target: int, options: Options,
                  steps: str, fill: tuple[float, ...], _inputs: torch.Tensor, _patch: torch.Tensor) -> tuple[Curve, Curve]:
    bar = st.progress(0.0, text=f"Deleting and revealing patches for {method}…")
    maps = _patch[None]  # (1, gh, gw)
    deletion = faithfulness.deletion_curve(_model, _inputs, maps, target, steps=steps, fill=torch.tensor(fill),
                                           progress=lambda done: bar.progress(done / 2, text=f"{method}: deletion"))
    insertion = faithfulness.insertion_curve(_model, _inputs, maps, target, steps=steps,
                                             progress=lambda done: bar.progress(0.5 + done / 2, text=f"{method}: insertion"))
    bar.empty()
    return deletion, insertion


@st.cache_data(max_entries=4, show_spinner="Averaging 256 shapes training items: the colour deletion fills with…")
def cached_shapes_mean(image_size: int) -> list[float]:
    from vitviz.explanation_benchmark import shapes_pixel_mean

    return shapes_pixel_mean(image_size)


def setting_input(column, setting: str, key: str) -> int:
    """A number input for a setting several methods share, labelled and bounded by the options they declare."""
    users = setting_users(setting)
    option = users[0][1]
    label = f"{', '.join(cls.name for cls, _ in users)}: {SETTINGS[setting]}"
    return int(column.number_input(label, option.low, option.high, option.default, key=key))


def attribution_controls(ctx: ui.Context, probability: torch.Tensor) -> tuple[list[str], int, dict[str, int], str, str]:
    """Methods, target class, the settings methods share (path points, draws), curve steps and map resolution."""
    class_names = ctx.card.class_names
    ui.context.hold({"attr_methods": DEFAULT_METHODS})
    order = probability.argsort(descending=True).tolist()
    ui.context.reset_on_new_input(ctx, {"attr_class": order[0]})  # a new image explains its own top class
    left, right = st.columns([3, 2])
    methods = left.multiselect("Methods", list(METHODS), key="attr_methods", wrap=True,
                               help="Slow ones (many forward passes) show their progress; each map is computed once.")
    target = right.selectbox("Class to explain", order, key="attr_class",
                             format_func=lambda c: f"{class_names[c]} ({c}), p = {probability[c]:.1%}")
    with st.expander("Settings"):
        s1, s2, s3, s4 = st.columns(4)
        settings = {"path_points": setting_input(s1, "path_points", "attr_ig_steps"),
                    "draws": setting_input(s2, "draws", "attr_samples")}
        steps = s3.radio("Deletion / insertion steps", list(STEPS), key="attr_steps")
        resolution = s4.radio("Maps at", ["patches", "pixels"], key="attr_resolution")
    return methods, int(target), settings, STEPS[steps], resolution


def method_options(name: str, settings: dict[str, int]) -> Options:
    """The method's own keywords for the shared settings, hashable for the caches."""
    return tuple(METHODS[name].options_for(**settings).items())


def localization(maps: AttributionMaps, mask: Optional[torch.Tensor]) -> dict[str, float]:
    if mask is None:
        return {}
    masks = mask.cpu()[None]  # (1, H, W)
    return {"mass in mask": faithfulness.mass_in_mask(maps.pixel, masks).item(),
            "pointing game": float(faithfulness.pointing_game(maps.patch, masks).item())}


st.title("Attributions")
ctx = ui.current()
card, model = ctx.card, ctx.model
if not card.num_classes:
    st.info(f"**{card.name}** has no classification head: there is no class score to attribute.")
    st.stop()
probability, seconds_per_pass = cached_probabilities(model, ctx.model_key, ctx.image_key, ctx.inputs)
methods, target, settings, steps, resolution = attribution_controls(ctx, probability)
truth = f"; the true class is **{ctx.true_label}**" if ctx.true_label else ""
st.caption(f"{ctx.image_label}{truth}. Each map explains the score of **{card.class_names[target]}**. Units differ "
           "between methods (gradient x input, drops of the class score, attention flow), so every map is divided "
           "by its largest absolute value: one colour scale, red for evidence for the class, blue against. "
           "Attention rollout is the same for every class.")
if ui.context.class_row_note(card):
    st.caption(ui.context.class_row_note(card))
if ui.context.known_classes_note(ctx):
    st.caption(ui.context.known_classes_note(ctx))
if not methods:
    st.info("Pick at least one method.")
    st.stop()

explained = {**ctx.about, "class": target, "class_name": card.class_names[target], "methods": methods,
             **{f"{setting} ({', '.join(cls.name for cls, _ in setting_users(setting))})": value
                for setting, value in settings.items()}}
ui.context.hold({"attr_opacity": 0.8, "attr_alone": True})
o1, o2 = st.columns(2)
opacity = o1.slider("Map opacity over the image", 0.1, 1.0, step=0.05, key="attr_opacity",
                    help="Lower it to see the image under the map; zero is always transparent.")
alone = o2.checkbox("Each map alone beside it", key="attr_alone",
                    help="On white: blue evidence against the class can vanish over a blue sky.")
# Cheapest first, each drawn as soon as it is done: rollout, saliency and relevance show in a second or two,
# then each many-pass method with its progress bar and the time it is expected to take.
costs = {name: METHODS[name].passes(card, **dict(method_options(name, settings))) for name in methods}
slot, note = st.empty(), st.empty()
results: dict[str, AttributionMaps] = {}
for name in sorted(methods, key=costs.get):
    estimate = costs[name] * seconds_per_pass
    if estimate > 1.0:
        note.caption(f"**{name}**: about {costs[name]:.0f} forward passes, {estimate:.0f} s here "
                     "(fewer path points or draws in Settings make it faster).")
    results[name] = cached_maps(model, ctx.model_key, ctx.image_key, name, target, method_options(name, settings),
                                ctx.inputs)
    shown = {n: (results[n].scaled().patch if resolution == "patches" else results[n].scaled().pixel)[0]
             for n in methods if n in results}  # in the order picked
    pending = [n for n in methods if n not in results]
    with slot.container():
        ui.show_figure(plots.attribution_panels(ctx.pixels[0], shown, mask=ctx.mask, opacity=opacity, alone=alone,
                                                per_row=2 if alone else 3,
                                                title=f"Evidence for {card.class_names[target]}, each map over its "
                                                      f"largest |value|" + (f" (still to come: {', '.join(pending)})"
                                                                            if pending else "")),
                       "attribution-maps", {n.replace(" ", "_"): value for n, value in shown.items()},
                       key=f"attribution-maps-{len(results)}",
                       settings={**explained, "resolution": resolution},
                       units={n.replace(" ", "_"): f"share of the map's largest absolute value, signed (+ for the "
                                                   f"class); rows and columns: the {resolution} of the image"
                              for n in shown})
note.empty()
results = {name: results[name] for name in methods}

st.subheader("Deletion and insertion on this image")
shapes_model = card.class_names == SHAPES_CLASSES
pixel_mean = cached_shapes_mean(card.image_size[0]) if shapes_model and card.image_size[0] == card.image_size[1] else None
fill = tuple(faithfulness.mean_fill(model, pixel_mean).tolist())
st.caption("Patches in the order of each map, most relevant first. Deletion replaces them with the per-channel "
           f"dataset mean ({'of the shapes training items' if pixel_mean else 'the data the model normalises with'}); "
           f"insertion reveals them on a copy blurred by half a patch ({card.patch_size / 2:g} px). A faithful map makes "
           "the class probability fall fast (low deletion AUC) and rise fast (high insertion AUC). Patches of exactly "
           f"equal value in a map (occlusion's zeros where one patch changes nothing) follow one fixed random order "
           f"(seed {faithfulness.TIE_SEED}), never the raster order: a flat map scores like a random one, not like a "
           "perfect one; the pointing game breaks a tied maximum the same way.")
curves = {name: cached_curves(model, ctx.model_key, ctx.image_key, name, target, method_options(name, settings),
                              steps, fill, ctx.inputs, maps.patch[0]) for name, maps in results.items()}
deletion, insertion = next(iter(curves.values()))  # every method's curves share their ends
deleted, blurred = faithfulness.baseline_images(model, ctx.pixels, fill=torch.tensor(pixel_mean or card.mean),
                                                blur_sigma=card.patch_size / 2)  # in pixels, to show
ends = {"the image": deletion.probabilities[0, 0].item(), "100% deleted": deletion.probabilities[0, -1].item(),
        "0% revealed": insertion.probabilities[0, 0].item()}
ui.show_figure(plots.patch_panels([ctx.pixels[0], deleted[0], blurred[0]],
                                  [f"{what}: p = {p:.3f}" for what, p in ends.items()], card.patch_size, height=260,
                                  title=f"Where the curves start and end: the probability of {card.class_names[target]}"),
               "faithfulness-baselines", {"probability": torch.tensor(list(ends.values()))},
               settings={**explained, "fill_rgb_pixels": [round(v, 4) for v in (pixel_mean or card.mean)],
                         "blur_sigma_px": card.patch_size / 2},
               units={"probability": "probability of the class for: the image, all patches deleted, none revealed"})
curve_data = {"fraction": next(iter(curves.values()))[0].fractions}
for name, (deletion, insertion) in curves.items():
    curve_data[f"{name} deletion".replace(" ", "_")] = deletion.probabilities[0]
    curve_data[f"{name} insertion".replace(" ", "_")] = insertion.probabilities[0]
ui.show_figure(plots.faithfulness_curves(curves), "deletion-insertion", curve_data,
               settings={**explained, "steps": steps, "fill_rgb_pixels": [round(v, 4) for v in (pixel_mean or card.mean)],
                         "blur_sigma_px": card.patch_size / 2, "ties": f"seeded random order, seed {faithfulness.TIE_SEED}"},
               units={name: "share of the patches deleted or revealed" if name == "fraction" else
                      "probability of the class" for name in curve_data})

rows = [{"method": name, "deletion AUC (lower)": curves[name][0].auc[0].item(),
         "insertion AUC (higher)": curves[name][1].auc[0].item(), **localization(maps, ctx.mask)}
        for name, maps in results.items()]
if ctx.mask is not None:
    st.subheader("On the object?")
    st.caption("The share of each map's positive mass inside the true object mask (outlined above; the object covers "
               f"{ctx.mask.float().mean().item():.0%} of the image, so a map blind to it scores about that), and the "
               "pointing game: 1 when the map's largest patch lies at least half inside the mask.")
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True,
             column_config={column: st.column_config.NumberColumn(format="%.3f") for column in table.columns[1:]})
