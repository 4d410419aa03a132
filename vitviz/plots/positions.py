"""Figures of the Positions view: how alike the learned position embeddings are.

Similarities are cosines in [-1, 1] (``vitviz.positions.position_similarity``), drawn on one
diverging scale; positions are numbered in raster order on a ``gh`` x ``gw`` grid.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Optional

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from ._common import _square_axes

__all__ = ["similarity_grid", "similarity_map"]

_DIVERGING_SCALE, _DIVERGING_CMAP = "RdBu_r", "RdBu_r"  # the same scale in plotly and matplotlib
_MAX_CANVAS_SIDE = 480  # cells along a side of the grid of maps: a 21x21 grid whole, larger ones strided
_MAX_HOVER_CELLS = 5_000  # up to here every cell carries its own hover sentence (an 8x8 grid)
_MAX_HEATMAP_CELLS = 60_000  # up to here a heatmap of numbers (a 14x14 grid), past it one PNG image


def similarity_grid(similarity: torch.Tensor, grid_size: tuple[int, int], title: str = "", height: int = 560,
                    zrange: Optional[tuple[float, float]] = None, max_side: int = _MAX_CANVAS_SIDE) -> go.Figure:
    """A grid of small heatmaps: tile (r, c) is the similarity of position (r, c) with every position.

    The figure's size is bounded whatever the grid: there are ``(gh*gw)**2`` similarities, so past
    ``max_side`` canvas pixels only every k-th query position gets a tile (the title says which), and a
    canvas of more than ``_MAX_HEATMAP_CELLS`` cells is sent as one PNG image instead of a heatmap of
    numbers (hover the enlarged position beside it for values). Per-cell hover text is kept for small grids.

    Args:
        similarity: ``[N, N]`` with N = gh*gw, raster order.
        grid_size: (gh, gw).
        zrange: the colour scale's (low, high); the cosine's full range (-1, 1) when omitted.
        max_side: the most canvas cells along either side.
    """
    gh, gw = grid_size
    low, high = zrange or (-1.0, 1.0)
    sim = similarity.detach().float().cpu().numpy().reshape(gh, gw, gh, gw)  # (query r, query c, key r, key c)
    stride = max(1, math.ceil(gh * (gh + 1) / max_side), math.ceil(gw * (gw + 1) / max_side))
    query_rows, query_cols = range(0, gh, stride), range(0, gw, stride)
    gap = 1
    canvas = np.full((len(query_rows) * (gh + gap) - gap, len(query_cols) * (gw + gap) - gap), np.nan)
    for i, qr in enumerate(query_rows):
        for j, qc in enumerate(query_cols):
            top, left = i * (gh + gap), j * (gw + gap)
            canvas[top:top + gh, left:left + gw] = sim[qr, qc]
    if stride > 1:
        title = f"{title} (one tile per {stride}x{stride} block of the {gh}x{gw} positions)".strip()
    if canvas.size > _MAX_HEATMAP_CELLS:
        fig = go.Figure(go.Image(source=_png_uri(canvas, low, high), hoverinfo="skip"))
        fig.add_trace(_colour_bar(low, high))
    elif canvas.size > _MAX_HOVER_CELLS:
        fig = go.Figure(go.Heatmap(z=np.round(canvas, 3), zmin=low, zmax=high, colorscale=_DIVERGING_SCALE,
                                   hovertemplate="cosine %{z:.3f}<extra></extra>", colorbar=dict(title="cosine")))
    else:
        hover = np.full(canvas.shape, "", dtype=object)
        for i, qr in enumerate(query_rows):
            for j, qc in enumerate(query_cols):
                for kr in range(gh):
                    for kc in range(gw):
                        hover[i * (gh + gap) + kr, j * (gw + gap) + kc] = (
                            f"position ({qr}, {qc}) vs ({kr}, {kc}): {sim[qr, qc, kr, kc]:.3f}")
        fig = go.Figure(go.Heatmap(z=canvas, zmin=low, zmax=high, colorscale=_DIVERGING_SCALE, text=hover,
                                   hovertemplate="%{text}<extra></extra>", colorbar=dict(title="cosine")))
    fig.update_layout(title=title)
    return _square_axes(fig, height)


def _png_uri(canvas: np.ndarray, low: float, high: float) -> str:
    """A float canvas (NaN = white gap) coloured on the diverging scale, as a PNG data URI."""
    from matplotlib import colormaps

    scaled = np.clip((canvas - low) / max(high - low, 1e-12), 0.0, 1.0)
    rgb = (colormaps[_DIVERGING_CMAP](np.nan_to_num(scaled))[..., :3] * 255).round().astype(np.uint8)
    rgb[np.isnan(canvas)] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _colour_bar(low: float, high: float) -> go.Scatter:
    """A colour bar for a figure drawn as an image: one invisible point carrying the scale."""
    return go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                      marker=dict(color=[low], cmin=low, cmax=high, colorscale=_DIVERGING_SCALE, showscale=True,
                                  colorbar=dict(title="cosine")))


def similarity_map(row: torch.Tensor, grid_size: tuple[int, int], query: tuple[int, int], title: str = "", height: int = 360,
                   zrange: Optional[tuple[float, float]] = None) -> go.Figure:
    """One position's similarity with every other, enlarged, the position itself marked.

    Args:
        row: ``[N]`` the position's similarity with each, N = gh*gw in raster order.
        grid_size: (gh, gw).
        query: (row, col) of the position, marked with a cross.
        zrange: the colour scale's (low, high); (-1, 1) when omitted.
    """
    gh, gw = grid_size
    z = row.detach().float().cpu().numpy().reshape(gh, gw)
    low, high = zrange or (-1.0, 1.0)
    fig = go.Figure(go.Heatmap(z=z, zmin=low, zmax=high, colorscale=_DIVERGING_SCALE, colorbar=dict(title="cosine"),
                               hovertemplate="(%{y}, %{x}): %{z:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[query[1]], y=[query[0]], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(symbol="x", size=12, color="black")))
    fig.update_layout(title=title or f"Similarity of position {query} with every position")
    return _square_axes(fig, height)
