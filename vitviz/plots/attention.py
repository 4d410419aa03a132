"""Figures of the Attention view: where the model looks, per map, per head, and how far.

Maps are ``[gh, gw]`` non-negative values over the patch grid (``vitviz.attention``), drawn on the
image ``[3, H, W]`` in [0, 1] on one heat scale from 0 to the map's maximum; patches are numbered in
raster order, and a click on an overlay reports the patch index.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ._common import _HEAT_SCALE, _OUTLINE, _cells, _patch_markers, _patch_rect, _square_axes, _to_uint8

__all__ = ["attention_distance", "attention_overlay", "head_grid", "mask_overlay", "predictions"]


def attention_overlay(
    image: torch.Tensor | np.ndarray,
    heat: torch.Tensor,
    patch_size: int,
    title: str = "",
    selected: Optional[int] = None,
    colorbar_title: str = "attention",
    opacity: float = 0.6,
    height: int = 480,
) -> go.Figure:
    """A map over the patch grid drawn on the image, with its colour scale; a click selects a patch.

    Args:
        image: ``[3, H, W]`` in [0, 1], the image as the model sees it.
        heat: ``[gh, gw]`` non-negative values, one per patch; the scale runs from 0 to its maximum.
        selected: a patch index (raster order) to outline, e.g. the query.
        colorbar_title: what the values are ("attention", "rollout", ...).
        opacity: of the map over the image, 0 to 1.
    """
    pixels = _to_uint8(image)
    z = heat.detach().float().cpu().numpy()
    rows, cols = z.shape
    top = float(z.max()) if z.size and float(z.max()) > 0 else 1.0
    fig = go.Figure(go.Image(z=pixels, hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=z, **_cells(patch_size, patch_size),
                             zmin=0, zmax=top, colorscale=_HEAT_SCALE, opacity=opacity, hoverinfo="skip",
                             colorbar=dict(title=colorbar_title)))
    hover = [f"patch {i} (row {i // cols}, col {i % cols}): {v:.4g}" for i, v in enumerate(z.ravel())]
    fig.add_trace(_patch_markers(rows, cols, patch_size, hover))
    if selected is not None:
        fig.add_shape(**_patch_rect(selected, cols, patch_size, _OUTLINE))
    fig.update_layout(title=title, clickmode="event+select", dragmode=False)
    return _square_axes(fig, height)


def head_grid(maps: torch.Tensor, title: str = "", per_row: int = 6, height_per_row: int = 170) -> go.Figure:
    """Every head's map ``[H, gh, gw]`` as small panels sharing one colour scale (0 to the largest value).

    One heatmap with blank gaps between the panels: a figure of one trace draws far faster than subplots.

    Args:
        maps: ``[H, gh, gw]`` one map per head.
        per_row: panels per row.
        height_per_row: screen pixels per row of panels.
    """
    z = maps.detach().float().cpu().numpy()
    heads, gh, gw = z.shape
    cols = min(per_row, heads)
    rows = (heads + cols - 1) // cols
    gap = max(1, gw // 4)
    canvas = np.full((rows * (gh + gap) - gap, cols * (gw + gap) - gap), np.nan)
    hover = np.full(canvas.shape, "", dtype=object)
    r_index, c_index = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    for h in range(heads):
        top, left = (h // cols) * (gh + gap), (h % cols) * (gw + gap)
        canvas[top:top + gh, left:left + gw] = z[h]
        hover[top:top + gh, left:left + gw] = np.array(
            [f"head {h + 1}, patch {r * gw + c} (row {r}, col {c}): {v:.4g}"
             for r, c, v in zip(r_index.ravel(), c_index.ravel(), z[h].ravel())], dtype=object).reshape(gh, gw)
    top_value = float(np.nanmax(canvas)) if float(np.nanmax(canvas)) > 0 else 1.0
    fig = go.Figure(go.Heatmap(z=canvas, zmin=0, zmax=top_value, colorscale=_HEAT_SCALE, text=hover,
                               hovertemplate="%{text}<extra></extra>", colorbar=dict(title="attention")))
    labels = [dict(x=(h % cols) * (gw + gap) + (gw - 1) / 2, y=(h // cols) * (gh + gap) - 0.5, text=f"head {h + 1}",
                   showarrow=False, yanchor="bottom", font=dict(size=11)) for h in range(heads)]
    fig.update_layout(title=title, annotations=labels)
    fig = _square_axes(fig, 80 + rows * height_per_row)
    fig.update_layout(margin=dict(t=60))  # room for the first row's labels
    return fig


def mask_overlay(image: torch.Tensor | np.ndarray, keep: torch.Tensor, patch_size: int, title: str = "",
                 height: int = 480) -> go.Figure:
    """The image with the patches outside a mask darkened; hovering names each patch kept or dropped.

    Args:
        image: ``[3, H, W]`` in [0, 1] (or ``[H, W, 3]`` uint8).
        keep: ``[gh, gw]`` bool, True for the patches shown at full brightness.
    """
    pixels = _to_uint8(image).astype(np.float32)
    mask = keep.detach().cpu().numpy().astype(bool)
    rows, cols = mask.shape
    full = mask.repeat(patch_size, axis=0).repeat(patch_size, axis=1)[: pixels.shape[0], : pixels.shape[1]]
    pixels[~full] *= 0.2
    fig = go.Figure(go.Image(z=np.rint(pixels).astype(np.uint8), hoverinfo="skip"))
    hover = [f"patch {i} (row {i // cols}, col {i % cols}): {'kept' if k else 'dropped'}" for i, k in enumerate(mask.ravel())]
    fig.add_trace(_patch_markers(rows, cols, patch_size, hover))
    fig.update_layout(title=title, dragmode=False)
    return _square_axes(fig, height)


def attention_distance(distance: torch.Tensor, reference: Optional[torch.Tensor] = None,
                       reference_label: str = "dataset mean", height: int = 380) -> go.Figure:
    """Mean attention distance ``[L, H]`` in pixels, one dot per head against depth (Dosovitskiy et al. Fig. 7 right).

    Args:
        distance: ``[L, H]`` mean attention distance in pixels (``vitviz.attention.mean_attention_distance``).
        reference: ``[L, H]``, when given, drawn beside it, e.g. the mean over a dataset.
        reference_label: the reference's legend entry.
    """
    fig = go.Figure()
    # Every dot on its layer's tick; the reference as open diamonds, so a dot beneath one still shows.
    series = [("this image", distance, dict(color="#1f77b4", size=7, opacity=0.8))]
    if reference is not None:
        series.append((reference_label, reference, dict(color="#ff7f0e", size=11, symbol="diamond-open",
                                                        line=dict(width=2))))
    for label, values, marker in series:
        v = values.detach().float().cpu().numpy()
        layers, heads = v.shape
        layer_index = np.repeat(np.arange(1, layers + 1), heads)
        head_index = np.tile(np.arange(1, heads + 1), layers)
        fig.add_trace(go.Scatter(
            x=layer_index, y=v.ravel(), mode="markers", name=label, marker=marker,
            customdata=np.stack([layer_index, head_index], axis=1),
            hovertemplate=f"{label}<br>" + "layer %{customdata[0]}, head %{customdata[1]}: %{y:.1f} px<extra></extra>",
        ))
    fig.update_layout(title="Mean attention distance per head", xaxis_title="layer (network depth)",
                      yaxis_title="mean attention distance (pixels)", height=height, margin=dict(l=0, r=0, t=40, b=0),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(rangemode="tozero")
    return fig


def predictions(probabilities: torch.Tensor, labels: Sequence[str], title: str = "Top predictions",
                height: int = 260) -> go.Figure:
    """Horizontal bars of class probabilities, the first on top.

    Args:
        probabilities: ``[k]`` in [0, 1], e.g. the top k, most probable first.
        labels: k class names, in the same order.
    """
    p = probabilities.detach().float().cpu().numpy()
    fig = go.Figure(go.Bar(x=p, y=list(labels), orientation="h", marker_color="#1f77b4",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=40, b=0), xaxis=dict(title="probability",
                      tickformat=".2~%", rangemode="tozero"), yaxis=dict(autorange="reversed"))
    return fig
