"""Attention: where each layer and head looks, rollout, gradient rollout and relevance, attention distance."""

from __future__ import annotations

import streamlit as st
import torch

import ui
from vitviz import attention, plots
from vitviz.attention import Query
from vitviz.inputs import model_input
from vitviz.models import ModelCard
from vitviz.samples import PHOTO_NAMES, load_sample

PATCH = "A patch (click the image)"
ATTENTION_UNIT = "share of the query token's attention (its row of the attention matrix sums to 1 over all tokens)"


# One forward pass per (model, image); every slider and click below reuses it.
@ui.cache.bounded(spinner="Running the model…")  # bounded in bytes: 0.5 GB an image at 37x37 patches
def cached_capture(_model: torch.nn.Module, model_key: str, image_key: str,
                   _inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    logits, attentions = attention.capture(_model, _inputs)
    return logits.cpu(), [a.cpu() for a in attentions]  # (1, C), L x (1, H, N, N)


# Each layer's matrix as rollout multiplies it, once per (model, image, fusion, discard ratio): a start layer or a
# query then takes L vector-matrix products (rollout_row), never the N x N x N products of the whole rollout.
@ui.cache.bounded()  # L x N x N floats: 90 MB at 37x37 patches
def cached_rollout_layers(model_key: str, image_key: str, head_fusion: str, discard_ratio: float,
                          _attentions: list[torch.Tensor]) -> torch.Tensor:
    return attention.rollout_layers(_attentions, head_fusion, discard_ratio)  # (L, 1, N, N)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_distance(model_key: str, image_key: str, _attentions: list[torch.Tensor], grid_size: tuple[int, int],
                    patch_size: int, num_prefix_tokens: int) -> torch.Tensor:
    return attention.mean_attention_distance(_attentions, grid_size, patch_size, num_prefix_tokens)  # (L, H)


# One backward pass per (model, image, class, discard ratio); relevance and gradient rollout share it.
@st.cache_data(max_entries=32, show_spinner="One backward pass for this class…")
def cached_gradient_maps(_model: torch.nn.Module, model_key: str, image_key: str, target: int, discard_ratio: float,
                         _inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rolled, relevant = attention.gradient_maps(_model, _inputs, target, discard_ratio)
    return rolled[0].cpu(), relevant[0].cpu()  # (gh, gw) each


@st.cache_data(max_entries=4, show_spinner=f"Running the model on the {len(PHOTO_NAMES)} sample photos…")
def cached_sample_distance(_model: torch.nn.Module, model_key: str) -> torch.Tensor:
    batches = (model_input(load_sample(name), _model) for name in PHOTO_NAMES)
    return attention.mean_attention_distance_over(_model, batches).cpu()  # (L, H)


def attention_controls(ctx: ui.Context) -> tuple[int, int, Query]:
    """Layer (0-based), head (0 for the mean of heads, else 1-based) and query token for the maps below.

    A new model or image starts the query again from the whole image (the class token, or the mean of the patch
    queries); every value is settled before the widgets are drawn, so the widgets and the maps show the same query.
    """
    card = ctx.card
    gh, gw = card.grid_size
    whole = "Class token" if card.has_class_token else "Mean of the patch queries"
    # Another model may have fewer layers or heads than the values kept from the last one.
    for key, largest in (("att_layer", card.depth), ("att_head", card.num_heads)):
        if st.session_state.get(key, 0) > largest:
            st.session_state[key] = largest
    ui.context.hold({"att_layer": card.depth, "att_head": 0})
    ui.context.reset_on_new_input(ctx, {"att_query_kind": whole, "att_patch": (gh // 2) * gw + gw // 2},
                                  forget=["att_clicked"], group="att_query")
    if "att_pending_patch" in st.session_state:  # a click on the image, applied before the widgets exist
        st.session_state.att_patch = st.session_state.pop("att_pending_patch")
        st.session_state.att_query_kind = PATCH
    layer = st.slider("Layer", 1, card.depth, key="att_layer") - 1
    head = st.selectbox("Head", range(card.num_heads + 1), key="att_head",
                        format_func=lambda h: "mean of all heads" if h == 0 else f"head {h}")
    kind = st.radio("Query", [whole, PATCH], key="att_query_kind", horizontal=True,
                    help="Whose attention is shown: each row of an attention matrix is one query token's.")
    patch = st.number_input("Query patch (raster order)", 0, gh * gw - 1, key="att_patch", disabled=kind != PATCH)
    if kind == PATCH:
        return layer, head, card.num_prefix_tokens + int(patch)
    return layer, head, attention.class_query(card.has_class_token)


def query_name(query: Query, card: ModelCard) -> str:
    if query == "patches":
        return "the patch queries (mean)"
    if query == 0 and card.has_class_token:
        return "the class token"
    return f"patch {query - card.num_prefix_tokens}"


st.title("Attention")
ctx = ui.current()
card, model = ctx.card, ctx.model
gh, gw = card.grid_size
prefix = card.num_prefix_tokens
image = ctx.pixels[0]
logits, attentions = cached_capture(model, ctx.model_key, ctx.image_key, ctx.inputs)
st.caption(f"{ctx.image_label}: {card.depth} layers x {card.num_heads} heads, each a {prefix + gh * gw}x{prefix + gh * gw} "
           f"matrix over {prefix} prefix token(s) and {gh}x{gw} patches. Maps show a query's attention to the patches; "
           "its attention to the prefix tokens is left out, not renormalised away.")

left, right = st.columns([3, 2])
with right:
    layer, head, query = attention_controls(ctx)
    if card.num_classes:
        probabilities, classes = attention.top_predictions(logits, k=5)
        labels = [f"{card.class_names[c].split(',')[0][:32]} ({c})" for c in classes[0].tolist()]  # short: long names squash the bars
        ui.show_figure(plots.predictions(probabilities[0], labels), "top-predictions",
                       {"class": classes[0], "class_name": [card.class_names[c] for c in classes[0].tolist()],
                        "probability": probabilities[0]}, settings=ctx.about,
                       units={"class": "class index of the model's head", "probability": "softmax probability"})
        if ui.context.known_classes_note(ctx):
            st.caption(ui.context.known_classes_note(ctx))
    else:
        st.info(f"**{card.name}** has no classification head: no predictions, and no class to explain below.")
with left:
    head_index = None if head == 0 else head - 1  # None: the mean of the heads
    per_head = attention.query_map(attentions[layer][0], query, (gh, gw), prefix)  # (H, gh, gw)
    shown = attention.pick_head(per_head, head_index)  # (gh, gw)
    head_text = "mean of heads" if head == 0 else f"head {head}"
    shown_as = {**ctx.about, "layer": layer + 1, "head": head_text, "query": query_name(query, card)}
    selected = query - prefix if query != "patches" and query >= prefix else None  # the query patch, outlined
    event = ui.show_figure(
        plots.attention_overlay(image, shown, card.patch_size, selected=selected,
                                title=f"Layer {layer + 1}, {head_text}: attention of {query_name(query, card)}"),
        "attention-query", {"attention": shown}, key=f"att-map-{ctx.input_id}", on_select="rerun", settings=shown_as,
        units={"attention": f"{ATTENTION_UNIT}; rows and columns: the patch grid"})
    clicked = ui.new_click(event, "att_clicked")  # the markers are laid out in patch order
    if clicked is not None:
        st.session_state.att_pending_patch = clicked
        st.rerun()
    if prefix:
        on_prefix = attention.pick_head(attention.prefix_share(attentions[layer][0], query, (gh, gw), prefix), head_index)
        st.caption(f"Share of this attention on the prefix token(s), left out of the map: {on_prefix:.1%}.")

st.subheader(f"All heads of layer {layer + 1}")
ui.show_figure(plots.head_grid(per_head, title=f"Attention of {query_name(query, card)}, one panel per head"),
               f"attention-heads-layer{layer + 1}", {"attention": per_head}, settings={**shown_as, "head": "every head"},
               units={"attention": f"{ATTENTION_UNIT}; one grid per head (head 1 first)"})

st.subheader("Attention rollout")
st.caption("Abnar & Zuidema (2020): follow attention through the layers, adding the identity for the residual "
           "connection and renormalising each row, then multiply the layers' matrices.")
if ui.context.class_row_note(card):
    st.caption(ui.context.class_row_note(card))
c1, c2, c3 = st.columns(3)
if st.session_state.get("att_start", 1) > card.depth:  # kept from a deeper model
    st.session_state.att_start = card.depth
ui.context.hold({"att_fusion": "mean", "att_discard": 0.0, "att_start": 1, "att_grad_discard": 0.0, "att_mask_t": 0.6,
                 "att_distance_samples": False})
fusion = c1.selectbox("Head fusion", ["mean", "max", "min"], key="att_fusion")
discard = c2.slider("Discard ratio", 0.0, 0.95, step=0.05, key="att_discard",
                    help="Zero this fraction of the smallest entries of each fused matrix (never entry [0, 0]: the class "
                         "token on itself, or patch 0 on itself in a model with no class token).")
start = c3.slider("Start layer", 1, card.depth, key="att_start") - 1
rolled = cached_rollout_layers(ctx.model_key, ctx.image_key, fusion, discard, attentions)  # (L, 1, N, N)
rollout_map = attention.rollout_row(rolled[start:], query, (gh, gw), prefix)[0]  # (gh, gw)
ui.show_figure(plots.attention_overlay(image, rollout_map, card.patch_size, selected=selected, colorbar_title="rollout",
                                       title=f"Rollout of {query_name(query, card)}, layers {start + 1}-{card.depth}, "
                                             f"{fusion} of heads, discard {discard:.0%}"),
               "attention-rollout", {"rollout": rollout_map},
               settings={**ctx.about, "query": query_name(query, card), "head_fusion": fusion, "discard_ratio": discard,
                         "layers": f"{start + 1}-{card.depth}"},
               units={"rollout": "rolled-out attention of the query (its row of the rolled-out matrix, which sums to 1 "
                                 "over all tokens); rows and columns: the patch grid"})

grad_map = relevance_map = None
st.subheader("For one class: gradient rollout and relevance")
if card.num_classes:
    st.caption("Both weight each head's attention by the gradient of the class score, so they show evidence for "
               "this class rather than attention in general. Gradient rollout (Gildenblat) rolls out the positive part "
               "of the gradient-weighted attention; relevance (Chefer et al. 2021) accumulates it along the residual stream.")
    probability = logits[0].softmax(dim=-1)  # (C,)
    ranked = probability.argsort(descending=True).tolist()
    ui.context.reset_on_new_input(ctx, {"att_class": ranked[0]})  # a new image explains its own top class
    target = st.selectbox("Class", ranked, key="att_class",
                          format_func=lambda c: f"{card.class_names[c]} ({c}), p = {probability[c]:.1%}")
    grad_discard = st.slider("Gradient rollout discard ratio", 0.0, 0.95, step=0.05, key="att_grad_discard")
    grad_map, relevance_map = cached_gradient_maps(model, ctx.model_key, ctx.image_key, int(target), grad_discard,
                                                   ctx.inputs)
    for_class = {**ctx.about, "class": int(target), "class_name": card.class_names[target],
                 "discard_ratio": grad_discard}
    g1, g2 = st.columns(2)
    with g1:
        ui.show_figure(plots.attention_overlay(image, grad_map, card.patch_size, colorbar_title="grad. rollout",
                                               title=f"Gradient rollout: {card.class_names[target]}", height=400),
                       "gradient-rollout", {"gradient_rollout": grad_map}, settings=for_class,
                       units={"gradient_rollout": "gradient-weighted attention, rolled out (relative units)"})
    with g2:
        ui.show_figure(plots.attention_overlay(image, relevance_map, card.patch_size, colorbar_title="relevance",
                                               title=f"Relevance: {card.class_names[target]}", height=400),
                       "relevance", {"relevance": relevance_map}, settings=for_class,
                       units={"relevance": "relevance of each patch to the class score (relative units)"})
else:
    st.info("This model has no classification head, so there is no class score to take gradients of.")

st.subheader("Mass threshold")
st.caption("As DINO's visualize_attention.py: keep the smallest set of patches that holds a fraction t of a map's mass.")
maps = {f"Attention (layer {layer + 1}, {head_text})": shown, "Rollout": rollout_map}
if grad_map is not None:
    maps.update({"Gradient rollout": grad_map, "Relevance": relevance_map})
m1, m2 = st.columns(2)
source = m1.selectbox("Map", list(maps), key="att_mask_source")
fraction = m2.slider("t (fraction of the mass kept)", 0.05, 1.0, step=0.05, key="att_mask_t")
keep = attention.mass_mask(maps[source], fraction)  # (gh, gw) bool
ui.show_figure(plots.mask_overlay(image, keep, card.patch_size,
                                  title=f"{source}: {int(keep.sum())} of {gh * gw} patches hold {fraction:.0%} of the mass"),
               "mass-mask", {"kept": keep.int(), "map": maps[source]},
               settings={**ctx.about, "map": source, "t": fraction},
               units={"kept": "1 for a kept patch, 0 for a dropped one", "map": "the map's own values"})

st.subheader("How far each head looks")
st.caption("Dosovitskiy et al. (2020, Fig. 7 right): in the lowest layers some heads already attend across most of the "
           "image while others stay local, and the distance grows with depth, which a convolution's receptive field "
           "cannot do in its early layers.")
distance = cached_distance(ctx.model_key, ctx.image_key, attentions, (gh, gw), card.patch_size, prefix)  # (L, H)
data = {"this_image_px": distance}
reference = None
if st.checkbox(f"Also average over the {len(PHOTO_NAMES)} bundled sample photos "
               f"({len(PHOTO_NAMES)} forward passes, once per model)", key="att_distance_samples"):
    reference = cached_sample_distance(model, ctx.model_key)
    data["sample_photos_px"] = reference
ui.show_figure(plots.attention_distance(distance, reference, reference_label="sample photos (mean)"),
               "attention-distance", data, settings=ctx.about,
               units={name: "mean attention distance in pixels; rows: layers (1 first), columns: heads (1 first)"
                      for name in data})
