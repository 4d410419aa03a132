"""Home: the ViT recipe in a few lines, and the loaded model's card."""

import pandas as pd
import streamlit as st

import ui

st.title("vitviz: open a Vision Transformer up")
st.markdown(
    """
A Vision Transformer (Dosovitskiy et al., 2020) reads an image the way a language model reads a sentence:

1. **Patches.** The image is cut into a grid of square patches (say 16x16 pixels); each is flattened
   and projected linearly to a vector: a *token*.
2. **Positions.** A learned positional embedding is added to each token, since attention alone ignores order.
   A class token (and sometimes register tokens) is put in front of the sequence.
3. **Attention.** A stack of transformer blocks lets every token attend to every other one.
4. **Prediction.** The class token's final vector (or the mean of the patch tokens) goes to a linear head.

Pick a model and an image in the sidebar, then open a view: **Patches** (step 1), **Positions** (step 2),
**Attention** (step 3: where each layer and head looks), **Attributions** (which pixels the prediction rests on,
and which explanation to trust), **Jigsaw** (a model trained to put shuffled patches back), **Train** (make a
model of your own and compare it with another).
"""
)

ref, model = ui.context.current_model()
card = model.card
ui.context.offer_imagenet_model(card)
st.subheader(f"Model: {card.name}")
for note in card.notes:
    st.warning(note)
names = card.class_names
classes = (f"{len(names)}: {', '.join(names[:8])}{', …' if len(names) > 8 else ''}" if names else
           str(card.num_classes) if card.num_classes else "none (no classification head)")
left, middle, right = st.columns(3)
left.metric("Parameters", f"{card.num_parameters / 1e6:.2f} M")
middle.metric("Patch grid", f"{card.grid_size[0]} x {card.grid_size[1]}", help=f"{card.patch_size} px patches")
right.metric("Input", f"{card.image_size[0]} x {card.image_size[1]} px")
st.markdown(
    f"""
| About | {card.name} |
|---|---|
| Where it came from | {card.provenance} |
| Depth x width x heads | {card.depth} blocks x {card.embed_dim} x {card.num_heads} heads |
| Prefix tokens | {card.num_prefix_tokens} ({', '.join(card.prefix_names) or 'no class token: the patch tokens are averaged'}) |
| Classes | {classes}{f" ({card.label_set})" if card.label_set else ""} |
| Jigsaw head | {f'yes, {card.jigsaw_grid[0]}x{card.jigsaw_grid[1]} positions' if card.has_jigsaw_head else 'no'} |
| Normalisation | mean {tuple(round(m, 3) for m in card.mean)}, std {tuple(round(s, 3) for s in card.std)} |
"""
)
metrics = card.sidecar.get("metrics")
if metrics:
    st.markdown("**Recorded metrics** (from its training run)")
    try:
        st.table(pd.DataFrame(metrics).T.astype(float).style.format("{:.3f}"))  # split x metric
    except (ValueError, TypeError):  # a sidecar written by other code: show it as it is
        st.json(metrics, expanded=False)
