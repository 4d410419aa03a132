"""Jigsaw: shuffle the image's patches, let a jigsaw model say where each belongs, put them back."""

from __future__ import annotations

from typing import Optional

import streamlit as st
import torch

import ui
from vitviz import jigsaw, plots
from vitviz.models import ModelCard
from vitviz.patches import a_grid
from vitviz.registry import list_models

ALL, SOME, REGION = "All patches", "k random patches", "A region"
ANIMATION_BUDGET = 2_000_000  # pixel values (frames x 3 x H x W) an animation may send to the browser


# One forward pass per puzzle; the decoders, figures and steps below reuse it.
@st.cache_data(max_entries=32, show_spinner="The jigsaw model places the patches…")
def cached_logits(_model: torch.nn.Module, model_key: str, image_key: str, seed: int, k: int,
                  region: Optional[tuple[int, ...]], drop: float, _pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gh, gw = _model.card.grid_size
    generator = torch.Generator().manual_seed(seed)  # the shuffle, then the dropped keys
    permutation = jigsaw.shuffle_permutation(gh * gw, generator, positions=region, num_shuffled=k, derange=True)
    with torch.inference_mode():
        logits = jigsaw.position_logits(_model, _pixels, permutation, drop_fraction=drop, generator=generator)
    return permutation, logits.float().cpu()  # (1, N), (1, N, N)


def jigsaw_controls(card: ModelCard) -> tuple[int, int, Optional[tuple[int, ...]], float, bool]:
    """Seed, how many patches move, the region they move in (None: anywhere), key drop, pinning."""
    gh, gw = card.grid_size
    left, middle, right = st.columns(3)
    seed = int(left.number_input("Seed", 0, 2**31 - 1, value=0, key="jig_seed"))
    mode = middle.radio("Shuffle", [ALL, SOME, REGION], key="jig_mode", horizontal=True)
    drop = right.slider("Fraction dropped from the keys", 0.0, 0.9, value=0.0, step=0.05, key="jig_drop",
                        help="Hidden patches still get a prediction, but no other token can attend to them.")
    region = None
    if mode == SOME:
        k = int(middle.slider("Patches shuffled", 2, gh * gw, value=min(4, gh * gw), key="jig_k"))
    elif mode == REGION:
        rows = middle.slider("Region rows", 0, gh - 1, value=(0, max(0, gh // 2 - 1)), key="jig_rows")
        cols = middle.slider("Region columns", 0, gw - 1, value=(0, gw - 1), key="jig_cols")
        region = tuple(jigsaw.region_positions((gh, gw), rows[0], cols[0], rows[1] - rows[0] + 1, cols[1] - cols[0] + 1))
        if len(region) < 2:
            st.info("A region needs at least two patches to shuffle.")
            st.stop()
        k = len(region)
    else:
        k = gh * gw
    pin = st.checkbox("Tell the decoders which patches stayed in place", key="jig_pin", disabled=mode == ALL,
                      help="The model never sees this; only the decoders are restricted to the shuffled patches' places.")
    return seed, k, region, drop, pin and mode != ALL


def hover_text(shown: torch.Tensor, permutation: torch.Tensor, confidence: torch.Tensor, cols: int) -> list[str]:
    """Per grid position: which patch the reassembly put there, how sure the model was, right or wrong."""
    text = []
    for position, token in enumerate(shown.tolist()):
        if token < 0:
            text.append(f"({position // cols}, {position % cols}): empty, no patch was placed here")
            continue
        source = int(permutation[token])
        verdict = "right" if source == position else f"wrong: belongs at ({source // cols}, {source % cols})"
        text.append(f"({position // cols}, {position % cols}): confidence {float(confidence[token]):.3f}, {verdict}")
    return text


def switch_model(label: str, ref: str) -> None:
    """Pick ``label`` (the model ``ref``) in the sidebar's model picker; a callback, so it runs before the rerun
    draws the picker."""
    st.session_state["model_choice"] = label
    st.session_state[ui.context.MODEL_REF] = ref


def offer_best_jigsaw(card: ModelCard) -> None:
    """Without a jigsaw head: say so and offer the picker's best jigsaw model in one click. With one that is not the
    best the picker has: a one-click switch to it, under the title."""
    jigsaws = [entry for entry in list_models() if entry.kind == "jigsaw"]  # one listing: this runs on every rerun
    best = jigsaw.best_jigsaw_checkpoint(jigsaws)
    placed = jigsaw.patches_placed(best) if best is not None else 0.0
    if card.has_jigsaw_head:
        if best is not None and best.ref != card.name and placed > 0:
            st.button(f"Switch to {best.ref}, which puts back about {placed:.0f} patches of a photo it never saw",
                      key="jig_switch", on_click=switch_model, args=(best.label, best.ref))
        return
    why = (f"**{card.name}** has no jigsaw head, so it cannot say where a patch belongs. This view needs a model "
           "pretrained on the jigsaw task: ")
    if best is None:
        st.info(why + "train one on the Train view, or with `python -m training pretrain` (the starters are "
                "`starter-jigsaw` and `starter-jigsaw-16`).")
    else:
        others = [f"**{entry.ref}**" for entry in jigsaws if entry.ref != best.ref]
        st.info(why + f"**{best.ref}** puts back the most patches of photos it never saw"
                + (f" (also in the picker: {', '.join(others)})." if others else "."))
        st.button(f"Switch to {best.ref}", key="jig_switch", type="primary", on_click=switch_model, args=(best.label, best.ref))
    st.stop()


st.title("Jigsaw")
ref, model = ui.context.current_model()
card = model.card
offer_best_jigsaw(card)
ctx = ui.current()
gh, gw = card.grid_size
p = card.patch_size
seed, k, region, drop, pin = jigsaw_controls(card)
try:
    permutation, logits = cached_logits(model, ctx.model_key, ctx.image_key, seed, k, region, drop, ctx.pixels)
except ValueError as e:  # a jigsaw head on a model that cannot play (positional embeddings, another grid)
    st.error(f"**{card.name}** cannot place patches: {e}")
    st.stop()
pixels = ctx.pixels.cpu()
st.caption(f"{ctx.image_label} at {card.image_size[0]}x{card.image_size[1]} px: {a_grid((gh, gw))}; {k} of {gh * gw} "
           f"patches moved, {drop:.0%} hidden from the attention keys. The model has no positional embeddings, so the "
           "order it reads the patches in tells it nothing: it places each one by what it shows.")

puzzle = {**ctx.about, "seed": seed, "patches_shuffled": k, "region": list(region) if region else "anywhere",
          "fraction_dropped_from_keys": drop, "decoders_told_the_fixed_patches": pin}

# Decode both ways, then reassemble and score.
scored = jigsaw.pin_unmoved(logits, permutation) if pin else logits
placements = {"argmax": jigsaw.decode_argmax(scored), "Hungarian": jigsaw.solve_batch(scored)}  # (1, N) each
scores = {"as shuffled": jigsaw.placement_metrics(torch.arange(gh * gw)[None], permutation, (gh, gw))}
panels, shown, confidence = {}, {}, {}
for name, placement in placements.items():
    confidence[name] = jigsaw.placement_confidence(logits, placement)  # (1, N)
    panels[name], shown[name] = jigsaw.reassemble(pixels, permutation, placement, p, confidence[name])
    scores[name] = jigsaw.placement_metrics(placement, permutation, (gh, gw))
wrong = {name: (~jigsaw.placed_correctly(shown[name], permutation))[0].nonzero().flatten().tolist() for name in shown}
out_of_place = (permutation[0] != torch.arange(gh * gw)).nonzero().flatten().tolist()

ui.show_figure(
    plots.patch_panels([pixels[0], jigsaw.arrange_patches(pixels, permutation, p)[0], panels["argmax"][0],
                        panels["Hungarian"][0]],
                       ["Original", "Shuffled", *(f"{n}: {scores[n]['patch_acc']:.0%} right" for n in placements)],
                       p, outlines=[[], out_of_place if k < gh * gw else [], wrong["argmax"], wrong["Hungarian"]],
                       title="Shuffled, then put back by the model (wrong or empty places outlined)"),
    "jigsaw-reassembly",
    {"permutation": permutation[0], "argmax_placement": placements["argmax"][0],
     "hungarian_placement": placements["Hungarian"][0], "position_logits": logits[0]},
    settings=puzzle,
    units={"permutation": "grid position (raster order) of the patch each shuffled token carries",
           "argmax_placement": "grid position each shuffled token is put at, by argmax",
           "hungarian_placement": "grid position each shuffled token is put at, by Hungarian assignment",
           "position_logits": "logits; rows: shuffled tokens, columns: grid positions (raster order)"},
)

left, right = st.columns([2, 3])
with left:
    decoder = st.radio("Confidence of", list(placements), index=1, key="jig_decoder", horizontal=True)
    by_position = torch.full((gh * gw,), float("nan"))  # the confidence of the patch shown at each place
    placed = shown[decoder][0] >= 0
    by_position[placed] = confidence[decoder][0, shown[decoder][0, placed]]
    ui.show_figure(plots.confidence_overlay(panels[decoder][0], by_position.reshape(gh, gw), p, wrong[decoder],
                                            hover_text(shown[decoder][0], permutation[0], confidence[decoder][0], gw),
                                            title=f"How sure the model is ({decoder})"),
                   "jigsaw-confidence", {"confidence_by_position": by_position.reshape(gh, gw)},
                   settings={**puzzle, "decoder": decoder},
                   units={"confidence_by_position": "softmax probability the model gave the patch placed here for this "
                                                    "place (empty: NaN); rows and columns: the grid"})
with right:
    ui.show_figure(plots.jigsaw_scores(scores, title="This puzzle"), "jigsaw-scores",
                   {name: torch.tensor([s["patch_acc"], s["puzzle_acc"], s["displacement"]]) for name, s in scores.items()},
                   settings=puzzle, units={name: "per-patch accuracy, exact puzzle (0 or 1), mean displacement in "
                                                 "patches" for name in scores})
    st.caption("Per-patch accuracy: the share of patches put where they belong. Exact puzzle: every patch right. "
               "Displacement: mean distance, in patches, between where a patch was put and where it belongs. "
               "Argmax gives each patch its likeliest place, so two may collide; Hungarian finds the one-to-one "
               "placement with the highest total log-probability.")

st.subheader("Step through the Hungarian reassembly")
frames, moved = jigsaw.reassembly_steps(placements["Hungarian"][0], confidence["Hungarian"][0])
steps = len(moved)
if steps == 0:
    st.caption("Every patch is already where the model places it: nothing to move.")
else:
    st.session_state.jig_step = min(st.session_state.get("jig_step", 0), steps)  # a new puzzle may have fewer steps
    step = st.slider("Step (the most confident patches move first)", 0, steps, key="jig_step")
    sources = permutation[0][frames]  # (S+1, N): the grid position whose patch each place shows
    ui.show_figure(plots.patch_panels([jigsaw.arrange_patches(pixels, sources[step:step + 1], p)[0]],
                                      [f"step {step} of {steps}"], p, outlines=[[int(moved[step - 1])] if step else []],
                                      outline_colour="#00e5ff", height=420),
                   "jigsaw-step", {"frames": frames, "moved": moved}, settings=puzzle,
                   units={"frames": "per step (rows), the shuffled token shown at each grid position (columns)",
                          "moved": "the grid position filled at each step"})
    if (steps + 1) * pixels[0].numel() <= ANIMATION_BUDGET:
        with st.expander("Play it as an animation"):
            ui.show_figure(plots.reassembly_animation(jigsaw.arrange_patches(pixels.expand(steps + 1, -1, -1, -1),
                                                                             sources, p), moved.tolist(), p),
                           "jigsaw-animation")
