"""Layers: inside the blocks. The logit lens, patch tokens as colour, token norms and registers, attention flow
beside rollout, and which heads the prediction needs."""

from __future__ import annotations

from typing import Callable

import streamlit as st
import torch

import ui
from vitviz import attention, inside, plots
from vitviz.inputs import model_input
from vitviz.models import ModelCard
from vitviz.samples import PHOTO_NAMES, load_sample

# Computed without asking below these sizes (vit_base_patch16_224: flow 9e7, a few seconds; 144 heads, ~15 s).
FLOW_AUTO = 2e8  # attention_flow_size: maximum-flow problems x edges
KNOCKOUT_AUTO = 64  # blocks x heads
FLOW_RATE = 3e7  # attention_flow_size solved per second on this project's 2-core CPU, for the estimate shown
THIS_IMAGE, WITH_SAMPLES = "This image", f"This image and the {len(PHOTO_NAMES)} sample photos"
MODES = {"zero": "Zero its output", "mean": "Replace it by its mean over the patches"}


# One forward pass per (model, image) feeds the lens, the colours, the norms and the head attention shown.
@st.cache_data(max_entries=8, show_spinner="Running the model once, keeping every block's tokens and attention…")
def cached_record(_model: torch.nn.Module, model_key: str, image_key: str, _inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    card = _model.card
    record = inside.record_blocks(_model, _inputs)
    out = dict(
        tokens=record.tokens[0].cpu(),  # (L, N, D)
        norms=record.norms[0].cpu(),  # (L, N)
        class_rows=inside.class_attention(record.attentions, card.num_prefix_tokens, card.has_class_token)[0].cpu(),  # (L, H, N)
        rollout=attention.rollout_row(attention.rollout_layers(record.attentions), attention.class_query(card.has_class_token),
                                      card.grid_size, card.num_prefix_tokens)[0].cpu(),  # (gh, gw)
    )
    if card.num_classes:
        out["lens"] = inside.pooled_lens(_model, record.tokens)[0].cpu()  # (L, C)
        classes, probabilities = inside.patch_lens(_model, record.tokens)
        out["patch_classes"], out["patch_probabilities"] = classes[0].cpu(), probabilities[0].cpu()  # (L, gh*gw)
    return out


@st.cache_data(max_entries=2, show_spinner=False)
def cached_sample_stats(_model: torch.nn.Module, model_key: str) -> list[inside.TokenStats]:
    bar = st.progress(0.0, text=f"Running the model on the {len(PHOTO_NAMES)} sample photos…")
    prefix, stats = _model.card.num_prefix_tokens, None
    for done, name in enumerate(PHOTO_NAMES, start=1):
        tokens = inside.record_blocks(_model, model_input(load_sample(name), _model), attention=False).tokens[0]
        per_block = [inside.TokenStats.of(block[prefix:]) for block in tokens]  # patch tokens of each block
        stats = per_block if stats is None else [a + b for a, b in zip(stats, per_block)]
        bar.progress(done / len(PHOTO_NAMES), text=f"Sample photos: {done} of {len(PHOTO_NAMES)}")
    bar.empty()
    return stats


@st.cache_data(max_entries=8, show_spinner=False)
def cached_flow(_model: torch.nn.Module, model_key: str, image_key: str, _inputs: torch.Tensor) -> torch.Tensor:
    card = _model.card
    bar = st.progress(0.0, text="Attention flow: one maximum flow per patch…")
    _, attentions = attention.capture(_model, _inputs)
    flow = attention.attention_flow(attentions, card.grid_size, card.num_prefix_tokens, card.has_class_token,
                                    progress=_every_percent(bar, "Attention flow"))
    bar.empty()
    return flow[0].float()  # (gh, gw)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_knockout(_model: torch.nn.Module, model_key: str, image_key: str, target: int, mode: str,
                    _inputs: torch.Tensor) -> inside.Knockout:
    bar = st.progress(0.0, text="Knocking out every head…")
    result = inside.head_knockout_effects(_model, _inputs, target, mode, progress=_every_percent(bar, "Head knock-out"))
    bar.empty()
    return result


def _every_percent(bar, what: str) -> Callable[[float], None]:
    """A progress callback that redraws the bar once per percent (a flow can report thousands of steps)."""
    shown = [-1]

    def update(done: float) -> None:
        if int(done * 100) > shown[0]:
            shown[0] = int(done * 100)
            bar.progress(min(done, 1.0), text=f"{what}: {done:.0%}")
    return update


def layer_controls(card: ModelCard, head_key: str) -> int:
    """The block (0-based) every per-block figure reads; a click on the knock-out map moves it there and picks
    the head (1-based) kept under ``head_key``."""
    if "lay_layer" not in st.session_state or st.session_state.lay_layer > card.depth:
        st.session_state.lay_layer = card.depth
    if "lay_pending" in st.session_state:  # a click on the knock-out map, applied before the widgets exist
        layer, head = st.session_state.pop("lay_pending")
        st.session_state.lay_layer, st.session_state[head_key] = layer + 1, head + 1
    return st.slider("Block", 1, card.depth, key="lay_layer",
                     help="Every map below that shows one depth reads the tokens after this block.") - 1


def token_name(index: int, card: ModelCard) -> str:
    return card.prefix_labels[index] if index < card.num_prefix_tokens else f"patch {index - card.num_prefix_tokens}"


def short(name: str) -> str:
    return name.split(",")[0][:40]


st.title("Layers")
ctx = ui.current()
card, model = ctx.card, ctx.model
gh, gw = card.grid_size
prefix, depth, heads = card.num_prefix_tokens, card.depth, card.num_heads
image = ctx.pixels[0]
record = cached_record(model, ctx.model_key, ctx.image_key, ctx.inputs)
st.caption(f"{ctx.image_label}: {depth} blocks of {heads} heads over {prefix} prefix token(s) "
           f"({', '.join(card.prefix_labels) or 'none'}) and {gh}x{gw} patches. One forward pass keeps the "
           "residual stream after every block; each section reads it at the block chosen here.")
head_key = f"lay_head_{ctx.model_key}"  # one head box per model: its options are that model's heads
layer = layer_controls(card, head_key)

# --- logit lens ----------------------------------------------------------------------------------------------
st.subheader("Logit lens: the prediction, block by block")
if card.num_classes:
    st.caption("nostalgebraist (2020): the model's own final norm and head read the residual stream after each block, "
               "pooled as the model pools it. The last block's reading is the prediction; where a line crosses above "
               "the others is where that class took the lead. Per patch: each patch token read by the head on its own.")
    lens = record["lens"]  # (L, C)
    final = int(lens[-1].argmax())
    settled = int(inside.settling_layer(lens.argmax(dim=-1), final))
    shown_classes = lens[-1].argsort(descending=True)[:5].tolist()
    ui.show_figure(plots.lens_curves(lens, card.class_names, shown_classes, settled), "logit-lens",
                   {"probability": lens, "classes": torch.tensor(shown_classes)})
    st.markdown(f"The prediction, **{short(card.class_names[final])}** ({lens[-1, final]:.1%}), is the top-1 class "
                f"from block **{settled + 1}** of {depth} on.")
    patch_classes = record["patch_classes"]  # (L, gh*gw)
    settled_patches = inside.settling_layer(patch_classes.T, final).reshape(gh, gw)  # (gh, gw)
    at_layer = patch_classes[layer].reshape(gh, gw)
    p1, p2 = st.columns(2)
    with p1:
        ui.show_figure(plots.patch_classes(image, at_layer, record["patch_probabilities"][layer].reshape(gh, gw),
                                           card.patch_size, card.class_names, first=final,
                                           title=f"After block {layer + 1}: the class each patch is read as"),
                       f"patch-lens-block{layer + 1}", {"class": at_layer,
                                                        "probability": record["patch_probabilities"][layer].reshape(gh, gw)})
    with p2:
        ui.show_figure(plots.settling_map(image, settled_patches, depth, card.patch_size, short(card.class_names[final]),
                                          title=f"From which block each patch reads as {short(card.class_names[final])}"),
                       "patch-settling", {"block": settled_patches + 1})
        st.caption(f"{int((settled_patches >= 0).sum())} of {gh * gw} patches read as the prediction after the last "
                   "block; uncoloured ones do not.")
else:
    st.info(f"**{card.name}** has no classification head: there are no classes to read after each block.")

# --- token features as colour ------------------------------------------------------------------------------------
st.subheader(f"Patch tokens as colour, after block {layer + 1}")
st.caption("As in the DINO and DINOv2 papers: the patch tokens' first three principal components as red, green and "
           "blue, each scaled to [0, 1]. Patches of a colour hold alike features; the first component, thresholded, "
           "often separates the object from the background (the side touching less of the border is called foreground).")
c1, c2 = st.columns(2)
fit_choice = c1.radio("Fit the components on", [THIS_IMAGE, WITH_SAMPLES], key="lay_pca_fit", horizontal=True,
                      help="Fitted on several images, a colour means the same feature in each of them.")
threshold = c2.slider("Foreground threshold on the first component", 0.0, 1.0, 0.5, 0.05, key="lay_pca_threshold")
patch_tokens = record["tokens"][layer, prefix:]  # (gh*gw, D)
fit_on = None
if fit_choice == WITH_SAMPLES:
    fit_on = cached_sample_stats(model, ctx.model_key)[layer] + inside.TokenStats.of(patch_tokens)
colours = inside.token_pca(patch_tokens, 3, fit_on=fit_on).reshape(gh, gw, 3)
foreground = inside.foreground_mask(colours[..., 0], threshold)
with c1:
    ui.show_figure(plots.token_colours(colours, card.patch_size,
                                       title=f"Block {layer + 1}: principal components 1-3 as RGB ({fit_choice.lower()})"),
                   f"token-colours-block{layer + 1}", {"components": colours})
with c2:
    ui.show_figure(plots.mask_overlay(image, foreground, card.patch_size,
                                      title=f"First component split at {threshold:.2f}: "
                                            f"{int(foreground.sum())} of {gh * gw} patches in front"),
                   f"foreground-block{layer + 1}", {"foreground": foreground.int(), "component_1": colours[..., 0]})

# --- token norms and registers -----------------------------------------------------------------------------------
st.subheader("Token norms and registers")
st.caption("Darcet et al. (2024), \"Vision Transformers Need Registers\": large ViTs park global information in a few "
           "tokens whose norm grows far above the rest (on low-information background patches, or on registers "
           "when the model has them), and the class token attends to them. A token is flagged when its norm after a "
           "block is above the median of that block's norms plus k robust standard deviations (1.4826 x the median "
           "absolute deviation).")
k = st.number_input("k (robust standard deviations above the median)", 1.0, 50.0, 4.0, 0.5, key="lay_norm_k")
norms = record["norms"]  # (L, N)
outliers = inside.norm_outliers(norms, k)  # (L, N)
class_rows = record["class_rows"]  # (L, H, N)
share = inside.outlier_attention_share(class_rows.mean(dim=1)[None], outliers[None])[0]  # (L-1,)
ui.show_figure(plots.norms_by_depth(norms, outliers, card.prefix_labels), "token-norms",
               {"norm": norms, "outlier": outliers.int()})
n1, n2 = st.columns(2)
with n1:
    ui.show_figure(plots.norm_map(image, norms[layer, prefix:].reshape(gh, gw), outliers[layer, prefix:].reshape(gh, gw),
                                  card.patch_size, title=f"Patch token norms after block {layer + 1}, outliers outlined"),
                   f"token-norms-block{layer + 1}", {"norm": norms[layer, prefix:].reshape(gh, gw)})
with n2:
    ui.show_figure(plots.norm_profile(outliers.sum(dim=-1), share), "norm-outliers",
                   {"outliers": outliers.sum(dim=-1), "class_attention_share": share})
flagged = [token_name(int(i), card) for i in outliers[layer].nonzero().flatten()]
named = ", ".join(f"{label} {norms[layer, i]:.3g}" for i, label in enumerate(card.prefix_labels))
lines = [f"After block {layer + 1}: the patch tokens' median norm is {norms[layer, prefix:].median():.3g}"
         + (f"; the prefix tokens' norms are {named}." if prefix else ".")]
if flagged:
    more = f" and {len(flagged) - 12} more" if len(flagged) > 12 else ""
    lines.append(f"{len(flagged)} outlier token(s): {', '.join(flagged[:12])}{more}.")
    if layer < depth - 1:
        lines.append(f"Block {layer + 2}'s class token gives them **{share[layer]:.1%}** of its attention "
                     f"(they are {len(flagged) / norms.shape[1]:.1%} of the tokens).")
    else:
        lines.append("No block reads the tokens after the last one; the line on the right shows the earlier blocks.")
else:
    lines.append(f"No token is an outlier at k = {k:g}.")
st.markdown(" ".join(lines))

# --- attention flow beside rollout ---------------------------------------------------------------------------------
st.subheader("Attention flow beside rollout")
st.caption("Abnar & Zuidema (2020). Both treat the layers as a graph whose edges are the attention mixed half and half "
           "with the residual connection. Rollout multiplies the layers' matrices (it sums every path's product); flow "
           "is the maximum flow from each patch at the input to the class token at the output, limited by each "
           "edge's capacity. Flow is exact and slower; the two usually rank patches alike.")
if ui.context.class_row_note(card):
    st.caption(ui.context.class_row_note(card))
size = attention.attention_flow_size(depth, (gh, gw), prefix, card.has_class_token)
problems = gh * gw if card.has_class_token else (gh * gw) ** 2
run_flow = size <= FLOW_AUTO or st.toggle(
    f"Compute the attention flow: {problems:,} maximum-flow problems on graphs of {depth * (prefix + gh * gw) ** 2:,} "
    f"edges, roughly {size / FLOW_RATE / 60:,.0f} minutes on a 2-core CPU", key=f"lay_flow_{ctx.model_key}")
rollout_map = record["rollout"]  # (gh, gw)
f1, f2 = st.columns(2)
with f2:
    ui.show_figure(plots.attention_overlay(image, rollout_map, card.patch_size, colorbar_title="rollout",
                                           title="Rollout of the class token" if card.has_class_token
                                           else "Rollout, mean of the patch queries"),
                   "layers-rollout", {"rollout": rollout_map})
if run_flow:
    flow = cached_flow(model, ctx.model_key, ctx.image_key, ctx.inputs)
    correlation = inside.rank_correlation(flow, rollout_map)
    with f1:
        title = "Attention flow to the class token" if card.has_class_token else "Attention flow to the patch tokens (mean)"
        ui.show_figure(plots.attention_overlay(image, flow, card.patch_size, colorbar_title="flow",
                                               title=f"{title}: from {flow.min():.2f} to {flow.max():.2f}"),
                       "attention-flow", {"flow": flow})
    ui.show_figure(plots.flow_against_rollout(flow, rollout_map, correlation), "flow-against-rollout",
                   {"flow": flow, "rollout": rollout_map, "spearman": correlation})
else:
    f1.info(f"Attention flow on this {gh}x{gw} grid is slow to compute exactly; switch it on above to run it "
            "(with a progress bar, once per model and image).")

# --- head knock-out ---------------------------------------------------------------------------------------------
st.subheader("Which heads the prediction needs")
if card.num_classes:
    st.caption("Each head of each block is knocked out in turn (its share of the attention output set to zero, or to "
               "its mean over the patches) and the rest of the network run on: red cells lower the class's probability "
               "when removed (the head supports it), blue ones raise it. Click a cell to see that head's attention.")
    probability = record["lens"][-1]  # (C,): the model's own prediction
    k1, k2 = st.columns(2)
    # keyed by the input: a new model or image starts again from its top prediction (and the browser redraws the
    # box, which a reused key with new options would leave showing the old choice)
    target = k1.selectbox("Class", probability.argsort(descending=True).tolist(),
                          key=f"lay_class_{ctx.model_key}_{ctx.image_key}",
                          format_func=lambda c: f"{short(card.class_names[c])} ({c}), p = {probability[c]:.1%}")
    mode = k2.radio("Knock a head out by", list(MODES), format_func=MODES.get, key="lay_mode", horizontal=True)
    run_knockout = depth * heads <= KNOCKOUT_AUTO or st.toggle(
        f"Knock out all {depth * heads} heads (about {heads * (depth + 1) / 2:.0f} forward passes' work, "
        "once per model, image, class and mode)", key=f"lay_knockout_{ctx.model_key}")
    if run_knockout:
        knockout = cached_knockout(model, ctx.model_key, ctx.image_key, int(target), mode, ctx.inputs)
        head = st.session_state.get(head_key, 1) - 1
        g1, g2 = st.columns(2)
        with g1:
            event = ui.show_figure(
                plots.knockout_map(knockout.probability, selected=(layer, head),
                                   title=f"Change in p({short(card.class_names[target])}), "
                                         f"intact {knockout.intact_probability:.1%}"),
                "head-knockout", {"probability_change": knockout.probability, "logit_change": knockout.logit},
                key="lay-knockout", on_select="rerun")
            clicked = ui.new_click(event, "lay_clicked")  # the markers are laid out block by block
            if clicked is not None:
                st.session_state.lay_pending = divmod(clicked, heads)
                st.rerun()
        with g2:
            st.selectbox("Head", range(1, heads + 1), key=head_key, format_func=lambda h: f"head {h}")
            head_map = class_rows[layer, head, prefix:].reshape(gh, gw)
            query = "the class token" if card.has_class_token else "the patch queries (mean)"
            ui.show_figure(plots.attention_overlay(image, head_map, card.patch_size, height=400,
                                                   title=f"Block {layer + 1}, head {head + 1}: attention of {query}"),
                           f"head-attention-block{layer + 1}-head{head + 1}", {"attention": head_map})
            st.caption(f"Knocking out block {layer + 1}, head {head + 1} changes p({short(card.class_names[target])}) by "
                       f"{knockout.probability[layer, head]:+.2%} and its logit by {knockout.logit[layer, head]:+.3g}. "
                       f"This head gives {class_rows[layer, head, :prefix].sum():.1%} of its attention to the prefix "
                       "token(s), left out of the map.")
else:
    st.info(f"**{card.name}** has no classification head, so there is no class whose probability a head could change.")
