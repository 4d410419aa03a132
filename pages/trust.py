"""Trust: does each map change when the model's weights are re-initialised (Adebayo et al. 2018), does it beat a
random and a centre-biased map, ROAD beside deletion and insertion, and how far the methods agree."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st
import torch

import ui
from vitviz import faithfulness, plots, sanity
from vitviz.attributions import METHODS, AttributionMaps
from vitviz.data import SHAPES_CLASSES
from vitviz.faithfulness import CURVE_KINDS, Curve

DEFAULT_METHODS = ["Saliency", "Attention rollout", "Relevance", "Grad-CAM", "EigenCAM"]
MODES = {"Cascading: head, then blocks from the top, then embeddings": "cascading",
         "Independent: one part at a time": "independent"}
RANDOMISE = {"cascading": sanity.cascading_randomisation, "independent": sanity.independent_randomisation}
SCORES = {"deletion": "deletion AUC (lower is better)", "insertion": "insertion AUC (higher is better)",
          "road-morf": "ROAD MoRF (lower is better)", "road-lerf": "ROAD LeRF (higher is better)"}
LOCALIZATION = {"mass in mask": "mass in mask (higher is better)", "pointing game": "pointing game (higher is better)"}


@st.cache_data(max_entries=8, show_spinner="Running the model…")
def cached_probabilities(_model: torch.nn.Module, model_key: str, image_key: str, _inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _model(_inputs)[0].float().softmax(dim=-1).cpu()  # (C,)


# Each cached function makes its progress bar inside, so a cache hit replays it to its end, where it is emptied.
@st.cache_data(max_entries=64, show_spinner=False)
def cached_maps(_model: torch.nn.Module, model_key: str, image_key: str, method: str, target: int,
                _inputs: torch.Tensor) -> AttributionMaps:
    bar = st.progress(0.0, text=f"{method}…")
    maps = METHODS[method](_model).attribute(_inputs, target, progress=lambda done: bar.progress(done, text=method))
    bar.empty()
    return replace(maps, target=maps.target.cpu(), patch=maps.patch.cpu(), pixel=maps.pixel.cpu())


@st.cache_data(max_entries=64, show_spinner=False)
def cached_randomisation(_model: torch.nn.Module, model_key: str, image_key: str, method: str, target: int, mode: str,
                         _inputs: torch.Tensor) -> list[tuple[str, float]]:
    bar = st.progress(0.0, text=f"Re-initialising the model step by step for {method}…")
    steps = RANDOMISE[mode](_model, _inputs, sanity.method_explainer(METHODS[method], target),
                            progress=lambda done: bar.progress(done, text=f"{method}: {done:.0%} of the maps"))
    bar.empty()
    return steps


@st.cache_data(max_entries=64, show_spinner=False)
def cached_curves(_model: torch.nn.Module, model_key: str, image_key: str, name: str, target: int,
                  fill: tuple[float, ...], _inputs: torch.Tensor, _patch: torch.Tensor) -> dict[str, Curve]:
    bar = st.progress(0.0, text=f"Deleting, revealing and imputing patches for {name}…")
    curves = faithfulness.all_curves(_model, _inputs, _patch[None], target, fill=torch.tensor(fill),
                                     progress=lambda done: bar.progress(done, text=f"{name}: {done:.0%}"))
    bar.empty()
    return curves


@st.cache_data(max_entries=4, show_spinner="Averaging 256 shapes training items: the colour deletion fills with…")
def cached_deletion_fill(image_size: int) -> list[float]:
    from vitviz.explanation_benchmark import shapes_pixel_mean

    return shapes_pixel_mean(image_size)


def trust_controls(ctx: ui.Context) -> tuple[list[str], int, str]:
    """Methods, the class they explain (the top prediction first), and the randomisation test's variant."""
    names = ctx.card.class_names
    probability = cached_probabilities(ctx.model, ctx.model_key, ctx.image_key, ctx.inputs)
    ui.context.forget_on_new_input(ctx, "trust_class")
    st.session_state.setdefault("trust_methods", DEFAULT_METHODS)
    if st.session_state.get("trust_class", 0) >= len(names):  # a class kept from a model with more classes
        del st.session_state["trust_class"]
    left, middle, right = st.columns([3, 2, 2])
    methods = left.multiselect("Methods", list(METHODS), key="trust_methods",
                               help="Each method's map is computed once per step of the test, on a copy of the model.")
    target = middle.selectbox("Class to explain", probability.argsort(descending=True).tolist(), key="trust_class",
                              format_func=lambda c: f"{names[c]} ({c}), p = {probability[c]:.1%}")
    mode = right.radio("Randomisation", list(MODES), key="trust_mode")
    return methods, int(target), MODES[mode]


st.title("Trust")
ctx = ui.current()
if not ctx.card.num_classes:
    st.info(f"**{ctx.card.name}** has no classification head: there is no class score to explain.")
    st.stop()
methods, target, mode = trust_controls(ctx)
card, model = ctx.card, ctx.model
st.caption(f"{ctx.image_label}. Each map explains **{card.class_names[target]}**. Two maps that never look at the "
           "model stand beside the methods: a seeded random map (chance) and a centre-biased map (objects are "
           "often in the middle).")
if not methods:
    st.info("Pick at least one method.")
    st.stop()

st.subheader("Does the map change when the model does?")
st.caption("Adebayo et al. (2018): re-initialise the model's weights (timm's initialisation) and recompute the map. "
           "A map that explains the model must change: its rank correlation with the trained model's map should "
           "fall towards 0. One that stays near 1 shows the image, not what the model does with it. Rollout and "
           "EigenCAM ignore the class, so re-initialising the head alone cannot move them.")
randomised = {name: cached_randomisation(model, ctx.model_key, ctx.image_key, name, target, mode, ctx.inputs)
              for name in methods}
title = f"{'Cascading' if mode == 'cascading' else 'Independent'} model randomisation: rank correlation with the trained map"
ui.show_figure(plots.randomisation_curves(randomised, title=title), "randomisation",
               {"step": list(range(len(next(iter(randomised.values()))) + 1)),
                **{name.replace(" ", "_"): [1.0, *(rho for _, rho in steps)] for name, steps in randomised.items()}})

results = {name: cached_maps(model, ctx.model_key, ctx.image_key, name, target, ctx.inputs) for name in methods}
baselines = sanity.baseline_maps(1, card.grid_size)
patches = {**{name: maps.patch[0] for name, maps in results.items()}, **{name: m[0] for name, m in baselines.items()}}
pixels = {**{name: maps.pixel[0] for name, maps in results.items()},
          **{name: m[0].repeat_interleave(card.patch_size, 0).repeat_interleave(card.patch_size, 1)
             for name, m in baselines.items()}}

st.subheader("Better than a map that knows nothing?")
shapes_model = card.class_names == SHAPES_CLASSES and card.image_size[0] == card.image_size[1]
fill = tuple(faithfulness.mean_fill(model, cached_deletion_fill(card.image_size[0]) if shapes_model else None).tolist())
curves = {name: cached_curves(model, ctx.model_key, ctx.image_key, name, target, fill, ctx.inputs, patch)
          for name, patch in patches.items()}
scores = {name: {kind: curve.auc[0].item() for kind, curve in curves[name].items()} for name in patches}
columns = dict(SCORES)
if ctx.mask is not None:
    masks = ctx.mask.cpu()[None]  # (1, H, W)
    for name in patches:
        scores[name]["mass in mask"] = faithfulness.mass_in_mask(pixels[name][None], masks).item()
        scores[name]["pointing game"] = float(faithfulness.pointing_game(patches[name][None], masks).item())
    columns.update(LOCALIZATION)
st.caption("Each score on this image, the random map's and the centre map's as grey bars and dashed lines. Deletion "
           "fills patches with the dataset mean, insertion reveals them on a blurred copy, ROAD (Rong et al. 2022) "
           "removes them and fills them from their neighbours (noisy linear imputation), 10% at a time up to 90%, "
           "so the outline of the removed patches tells the model nothing."
           + (" On a shapes item: the share of the map's positive mass on the object, and whether its largest patch "
              "is on it." if ctx.mask is not None else ""))
ui.show_figure(plots.baseline_comparison(scores, sanity.BASELINES, columns), "scores-beside-baselines",
               {name.replace(" ", "_"): [values.get(key, float("nan")) for key in columns]
                for name, values in scores.items()})
table = pd.DataFrame([{"map": name, **{columns[key]: values.get(key) for key in columns}}
                      for name, values in scores.items()])
st.dataframe(table, hide_index=True,
             column_config={column: st.column_config.NumberColumn(format="%.3f") for column in table.columns[1:]})

st.subheader("ROAD beside deletion and insertion")
st.caption(" · ".join(f"**{kind}**: patches {what}, {better} is better" for kind, (what, better) in CURVE_KINDS.items())
           + ". ROAD's scores are the mean height of its curve.")
curve_data = {}
for name, kinds in curves.items():
    for kind, curve in kinds.items():
        curve_data[f"{name} {kind} fraction".replace(" ", "_")] = curve.fractions
        curve_data[f"{name} {kind}".replace(" ", "_")] = curve.probabilities[0]
ui.show_figure(plots.removal_curves(curves), "removal-curves", curve_data)

st.subheader("Do the methods agree?")
st.caption("Spearman's rank correlation between every pair of maps on this image: 1, the same ranking of the patches; "
           "0, none in common; -1, reversed.")
matrix = sanity.agreement({name: patch[None] for name, patch in patches.items()})
ui.show_figure(plots.agreement_matrix(list(patches), matrix, title="Rank correlation between the maps"),
               "agreement", {"matrix": matrix})
