"""Patches: the image as the model sees it, cut into tokens; one patch as a vector; the embedding filters."""

import streamlit as st

import ui
from vitviz import plots
from vitviz.patches import a_grid, embedding_filter_components, patchify

st.title("Patches")
ctx = ui.current()
card = ctx.card
p = card.patch_size
gh, gw = card.grid_size
st.caption(f"{ctx.image_label}, resized and centre-cropped to {card.image_size[0]}x{card.image_size[1]} px: "
           f"{a_grid((gh, gw))} of {p}x{p} patches, {gh * gw} tokens.")

tokens = patchify(ctx.pixels.cpu(), p)[0]  # (N, 3*p*p), pixel values in [0, 1]
# A new model or image starts again from the centre patch, in the figure and the number box alike.
ui.context.reset_on_new_input(ctx, {"patch_index": (gh // 2) * gw + gw // 2}, forget=["patch_clicked"], group="patch")

left, right = st.columns([3, 2])
with left:
    event = ui.show_figure(plots.image_with_grid(ctx.pixels[0], p, selected=st.session_state.patch_index,
                                                 title="Click a patch"),
                           "patch-grid", key=f"patch-grid-{ctx.input_id}", on_select="rerun")
    clicked = ui.new_click(event, "patch_clicked")  # the markers are laid out in patch order
    if clicked is not None:
        st.session_state.patch_index = clicked
        st.rerun()
with right:
    index = st.number_input("Patch index (raster order)", 0, gh * gw - 1, key="patch_index")
    row, col = divmod(int(index), gw)
    st.markdown(f"Patch **{index}** sits at row {row}, column {col}; it is token **{index + card.num_prefix_tokens}** "
                f"of the sequence ({card.num_prefix_tokens} prefix token(s) come first).")
    st.image(tokens[index].reshape(3, p, p).permute(1, 2, 0).numpy(), width=160, clamp=True,
             caption=f"patch {index}, enlarged")
PIXEL_UNIT = "pixel value in [0, 1] as the model reads it (before normalisation)"
ui.show_figure(plots.patch_vector(tokens[index], p), "patch-vector", {"patch": tokens[index].reshape(3, p, p)},
               settings={**ctx.about, "patch": int(index), "row": row, "column": col},
               units={"patch": f"{PIXEL_UNIT}; one {p}x{p} grid per channel (red, green, blue); the vector is these "
                               "grids flattened channel by channel, row by row"})

prefix = list(card.prefix_labels)
st.subheader("The sequence the transformer reads")
ui.show_figure(plots.token_sequence(tokens.reshape(-1, 3, p, p), per_row=min(2 * gw, 32), prefix_labels=prefix),
               "token-sequence", {"tokens": tokens}, settings=ctx.about,
               units={"tokens": f"{PIXEL_UNIT}; rows: the patches in raster order (prefix tokens not included), "
                                f"columns: each patch's {3 * p * p} values, channel by channel, row by row"})

st.subheader("What the patch embedding looks for")
st.caption("Each patch is multiplied by a learned matrix. Its filters' principal components (Dosovitskiy et al., "
           "Fig. 7 left) resemble basis functions for the structure inside a patch; a model with random weights shows noise.")
components, explained = embedding_filter_components(ctx.model.patch_embed.proj.weight)
ui.show_figure(plots.embedding_filters(components, explained), "embedding-filters",
               {"components": components, "explained_variance": explained}, settings=ctx.about,
               units={"components": f"each principal component of the filters as a 3x{p}x{p} image, min-max scaled to "
                                    "[0, 1] for display (first component first)",
                      "explained_variance": "share of the filters' variance each component explains"})
