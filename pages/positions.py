"""Positions: how similar each learned positional embedding is to every other; sin-cos for contrast."""

import streamlit as st

import ui
from vitviz import plots
from vitviz.positions import patch_pos_embed, position_similarity, resample_patch_pos_embed, sincos_table

st.title("Positions")
ref, model = ui.context.current_model()
card = model.card
gh, gw = card.grid_size
about = ui.context.about_model(ref, card)
st.caption("Attention ignores order, so a ViT adds a learned vector to each patch token. If it learned where "
           "patches are, nearby positions get similar vectors (Dosovitskiy et al., Fig. 7 centre).")

learned = patch_pos_embed(model)
if learned is None:
    st.info(f"**{card.name}** has no learned positional embeddings"
            f"{' (a jigsaw model must find positions from content alone)' if card.has_jigsaw_head else ''}. "
            "The sin-cos table below shows what a fixed 2D embedding looks like.")

if "pos_row" not in st.session_state:
    st.session_state.pos_row, st.session_state.pos_col = gh // 2, gw // 2
c1, c2 = st.columns(2)
row = c1.number_input("Enlarge position: row", 0, gh - 1, key="pos_row")
col = c2.number_input("column", 0, gw - 1, key="pos_col")
query = int(row) * gw + int(col)

tables = {}
if learned is not None:
    tables["learned"] = ("Learned positional embeddings", learned)
tables["sincos"] = ("2D sin-cos table (fixed, not learned)", sincos_table((gh, gw), card.embed_dim - card.embed_dim % 4))
for name, (title, table) in tables.items():
    st.subheader(title)
    similarity = position_similarity(table)
    zrange = (float(similarity.min()), 1.0)  # each table on its own range: the sin-cos one never goes below 0.7
    st.caption(f"Colours span this table's cosines, {zrange[0]:.2f} (blue) to 1 (red): a fixed -1..1 scale would "
               "paint a table whose cosines are all high in one colour.")
    left, right = st.columns([3, 2])
    with left:
        ui.show_figure(plots.similarity_grid(similarity, (gh, gw), title="Each tile: one position vs all", zrange=zrange),
                       f"position-similarity-{name}", {"similarity": similarity}, settings={**about, "table": title},
                       units={"similarity": "cosine similarity; rows and columns: the positions in raster order "
                                            f"({gh}x{gw} grid, row by row)"})
    with right:
        ui.show_figure(plots.similarity_map(similarity[query], (gh, gw), (int(row), int(col)), zrange=zrange),
                       f"position-similarity-{name}-{query}", {"similarity": similarity[query].reshape(gh, gw)},
                       settings={**about, "table": title, "position": [int(row), int(col)]},
                       units={"similarity": "cosine similarity of this position with each position; rows and "
                                            "columns: the grid"})

if learned is not None:
    st.subheader("At another resolution")
    st.caption("Fine-tuning at a new image size resamples the embedding grid: timm's `resample_abs_pos_embed` "
               "interpolates it bicubically. The structure survives; the fine detail is interpolated.")
    new_rows = st.slider("New grid rows (the columns keep the grid's shape)", 2, max(16, 2 * gh),
                         value=min(2 * gh, 32), key="pos_new_rows")
    new_grid = (new_rows, max(1, round(new_rows * gw / gh)))
    resampled = resample_patch_pos_embed(learned, (gh, gw), new_grid)
    similarity = position_similarity(resampled)
    ui.show_figure(plots.similarity_grid(similarity, new_grid, title=f"{gh}x{gw} resampled to {new_grid[0]}x{new_grid[1]}",
                                         zrange=(float(similarity.min()), 1.0)),
                   "position-similarity-resampled", {"resampled_pos_embed": resampled},
                   settings={**about, "from_grid": [gh, gw], "to_grid": list(new_grid)},
                   units={"resampled_pos_embed": "the resampled positional embeddings; rows: positions of the new "
                                                 "grid in raster order, columns: embedding dimensions"})
