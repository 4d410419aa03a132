"""Figures of the Positions view: how alike the learned position embeddings are.

Similarities are cosines in [-1, 1] (``vitviz.positions.position_similarity``), drawn on one
diverging scale; positions are numbered in raster order on a ``gh`` x ``gw`` grid.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from ._common import _square_axes

__all__ = ["similarity_grid", "similarity_map"]


def similarity_grid(similarity: torch.Tensor, grid_size: tuple[int, int], title: str = "", height: int = 560) -> go.Figure:
    """A grid of small heatmaps: tile (r, c) is the similarity of position (r, c) with every position.

    Args:
        similarity: ``[N, N]`` with N = gh*gw, raster order.
        grid_size: (gh, gw).
    """
    gh, gw = grid_size
    sim = similarity.detach().float().cpu().numpy().reshape(gh, gw, gh, gw)  # (query r, query c, key r, key c)
    gap = 1
    canvas = np.full((gh * (gh + gap) - gap, gw * (gw + gap) - gap), np.nan)
    hover = np.full(canvas.shape, "", dtype=object)
    for qr in range(gh):
        for qc in range(gw):
            top, left = qr * (gh + gap), qc * (gw + gap)
            canvas[top:top + gh, left:left + gw] = sim[qr, qc]
            for kr in range(gh):
                for kc in range(gw):
                    hover[top + kr, left + kc] = (f"position ({qr}, {qc}) vs ({kr}, {kc}): {sim[qr, qc, kr, kc]:.3f}")
    fig = go.Figure(go.Heatmap(z=canvas, zmin=-1, zmax=1, colorscale="RdBu_r", text=hover,
                               hovertemplate="%{text}<extra></extra>", colorbar=dict(title="cosine")))
    fig.update_layout(title=title)
    return _square_axes(fig, height)


def similarity_map(row: torch.Tensor, grid_size: tuple[int, int], query: tuple[int, int], title: str = "", height: int = 360) -> go.Figure:
    """One position's similarity with every other, enlarged, the position itself marked.

    Args:
        row: ``[N]`` the position's similarity with each, N = gh*gw in raster order.
        grid_size: (gh, gw).
        query: (row, col) of the position, marked with a cross.
    """
    gh, gw = grid_size
    z = row.detach().float().cpu().numpy().reshape(gh, gw)
    fig = go.Figure(go.Heatmap(z=z, zmin=-1, zmax=1, colorscale="RdBu_r", colorbar=dict(title="cosine"),
                               hovertemplate="(%{y}, %{x}): %{z:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[query[1]], y=[query[0]], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(symbol="x", size=12, color="black")))
    fig.update_layout(title=title or f"Similarity of position {query} with every position")
    return _square_axes(fig, height)
