"""Figures of the Patches view: how an image becomes a sequence of patch tokens.

Images are ``[3, H, W]`` float in [0, 1] (or ``[H, W, 3]`` uint8); patches ``[N, 3, p, p]`` in
raster order, N = gh*gw for a ``gh`` x ``gw`` grid of ``p`` px patches.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ._common import _patch_markers, _patch_rect, _square_axes, _to_uint8

__all__ = ["embedding_filters", "image_with_grid", "patch_vector", "token_sequence"]

_CHANNEL_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")  # red, green, blue


def image_with_grid(
    image: torch.Tensor | np.ndarray,
    patch_size: int,
    selected: Optional[int] = None,
    title: str = "",
    height: int = 480,
) -> go.Figure:
    """The image with its patch grid drawn over it; hovering names each patch; a click selects one.

    Invisible markers sit at patch centres so a click on the chart reports a patch index.

    Args:
        image: ``[3, H, W]`` in [0, 1] (or ``[H, W, 3]`` uint8).
        patch_size: the side of a patch in pixels; whole patches only are gridded.
        selected: a patch index (raster order) to outline in yellow.
        height: the chart's height in screen pixels.
    """
    pixels = _to_uint8(image)
    height_px, width_px = pixels.shape[:2]
    rows, cols = height_px // patch_size, width_px // patch_size
    fig = go.Figure(go.Image(z=pixels, hoverinfo="skip"))
    for r in range(rows + 1):
        fig.add_shape(type="line", x0=-0.5, x1=width_px - 0.5, y0=r * patch_size - 0.5, y1=r * patch_size - 0.5,
                      line=dict(color="rgba(255,255,255,0.85)", width=1))
    for c in range(cols + 1):
        fig.add_shape(type="line", y0=-0.5, y1=height_px - 0.5, x0=c * patch_size - 0.5, x1=c * patch_size - 0.5,
                      line=dict(color="rgba(255,255,255,0.85)", width=1))
    fig.add_trace(_patch_markers(rows, cols, patch_size))
    if selected is not None:
        fig.add_shape(**_patch_rect(selected, cols, patch_size, "#ffdd00"))
    fig.update_layout(title=title, clickmode="event+select", dragmode=False)
    return _square_axes(fig, height)


def token_sequence(patches: torch.Tensor, per_row: int, prefix_labels: Sequence[str] = ("CLS",), height: int = 300) -> go.Figure:
    """The sequence the transformer reads: prefix tokens first, then the patches in raster order.

    Args:
        patches: ``[N, 3, p, p]`` patch pixels in [0, 1], raster order.
        per_row: tokens drawn per row of the strip (the sequence wraps, it does not restart).
        prefix_labels: one label per prefix token (class token, registers); drawn as grey tiles.
        height: the chart's height in screen pixels.
    """
    num_patches, _, p, _ = patches.shape
    gap = max(1, p // 8)
    tokens = [None] * len(prefix_labels) + list(range(num_patches))
    rows = (len(tokens) + per_row - 1) // per_row
    canvas = np.full((rows * (p + gap), per_row * (p + gap), 3), 255, dtype=np.uint8)
    xs, ys, text = [], [], []
    for position, token in enumerate(tokens):
        r, c = divmod(position, per_row)
        top, left = r * (p + gap), c * (p + gap)
        if token is None:
            canvas[top:top + p, left:left + p] = 110
            text.append(f"token {position}: {prefix_labels[position]} (no pixels)")
        else:
            canvas[top:top + p, left:left + p] = _to_uint8(patches[token])
            text.append(f"token {position}: patch {token}")
        xs.append(left + p / 2)
        ys.append(top + p / 2)
    fig = go.Figure(go.Image(z=canvas, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(opacity=0.01, size=6), text=text,
                             hovertemplate="%{text}<extra></extra>", showlegend=False))
    for position, label in enumerate(prefix_labels):
        r, c = divmod(position, per_row)
        fig.add_annotation(x=c * (p + gap) + p / 2, y=r * (p + gap) + p / 2, text=label[:3], showarrow=False,
                           font=dict(color="white", size=9))
    fig.update_layout(title=f"The token sequence: {len(prefix_labels)} prefix + {num_patches} patch tokens")
    return _square_axes(fig, height)


def patch_vector(vector: torch.Tensor, patch_size: int, title: str = "") -> go.Figure:
    """One patch flattened into its vector (channel-first: all red, then green, then blue values).

    Args:
        vector: ``[3 * p * p]`` the patch's values, channel-first.
        patch_size: p, the side of the patch in pixels.
        title: defaults to naming the vector's length.
    """
    values = vector.detach().float().cpu().numpy()
    area = patch_size * patch_size
    fig = go.Figure()
    for channel, (name, colour) in enumerate(zip("RGB", _CHANNEL_COLOURS)):
        index = np.arange(channel * area, (channel + 1) * area)
        fig.add_trace(go.Bar(x=index, y=values[index], name=name, marker_color=colour,
                             hovertemplate=f"{name} " + "element %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"The patch as a vector of {values.size} numbers", bargap=0, height=260,
                      margin=dict(l=0, r=0, t=40, b=0), xaxis_title="element", yaxis_title="value")
    return fig


def embedding_filters(components: torch.Tensor, explained: torch.Tensor, per_row: int = 7, height: int = 420) -> go.Figure:
    """Principal components of the patch-embedding filters as RGB tiles (Dosovitskiy et al. Fig. 7, left).

    Args:
        components: ``[K, 3, p, p]`` components, each scaled to [0, 1] for display.
        explained: ``[K]`` fraction of the filters' variance each explains.
        per_row: tiles per row; each tile is enlarged to about 32 px.
    """
    k, _, p, _ = components.shape
    upscale = max(1, 32 // p)
    tile = p * upscale
    gap = 2
    rows = (k + per_row - 1) // per_row
    canvas = np.full((rows * (tile + gap), per_row * (tile + gap), 3), 255, dtype=np.uint8)
    xs, ys, text = [], [], []
    for i in range(k):
        r, c = divmod(i, per_row)
        pixels = _to_uint8(components[i]).repeat(upscale, axis=0).repeat(upscale, axis=1)
        canvas[r * (tile + gap):r * (tile + gap) + tile, c * (tile + gap):c * (tile + gap) + tile] = pixels
        xs.append(c * (tile + gap) + tile / 2)
        ys.append(r * (tile + gap) + tile / 2)
        text.append(f"component {i + 1}: {100 * float(explained[i]):.1f}% of variance")
    fig = go.Figure(go.Image(z=canvas, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(opacity=0.01, size=12), text=text,
                             hovertemplate="%{text}<extra></extra>", showlegend=False))
    fig.update_layout(title=f"Top {k} principal components of the patch-embedding filters")
    return _square_axes(fig, height)
