"""Figures of the Layers view: the prediction block by block, patch tokens as colour, token norms,
attention flow against rollout, and the head knock-out map.

Grids are ``[gh, gw]`` over the patches in raster order, drawn on the image ``[3, H, W]`` in [0, 1]
as in ``vitviz.plots.attention``; layers are numbered from 1 on every axis (block 1 is the first).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ._common import _OUTLINE, _cells, _patch_markers, _patch_rect, _square_axes, _to_uint8
from .attention import attention_overlay

__all__ = ["flow_against_rollout", "knockout_map", "lens_curves", "norm_map", "norm_profile", "norms_by_depth",
           "patch_classes", "settling_map", "token_colours"]

# Categorical colours for the classes a patch is read as (plotly's "Plotly" qualitative set); the
# image's own class always takes the first, the classes beyond the palette share grey.
_CLASS_COLOURS = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#fecb52"]
_OTHER = "#9e9e9e"
_DIVERGING = "RdBu"  # knock-out changes: red where knocking the head out lowers the class, blue where it raises it
_LAYER_SCALE = "Viridis"


def lens_curves(probabilities: torch.Tensor, class_names: Sequence[str], classes: Sequence[int],
                settled: Optional[int] = None, height: int = 380) -> go.Figure:
    """Probability of a few classes after each block (the logit lens), one line per class.

    Args:
        probabilities: ``[L, C]`` (``vitviz.inside.logit_lens`` of one image).
        class_names: C names.
        classes: the classes drawn, e.g. the final top 5, the prediction first.
        settled: the 0-based block from which the prediction stays the top-1, marked; None for no mark.
    """
    p = probabilities.detach().float().cpu().numpy()
    layers = np.arange(1, p.shape[0] + 1)
    fig = go.Figure()
    for rank, c in enumerate(classes):
        name = class_names[c].split(",")[0][:32]
        fig.add_trace(go.Scatter(x=layers, y=p[:, c], mode="lines+markers", name=f"{name} ({c})",
                                 line=dict(width=3 if rank == 0 else 1.5),
                                 hovertemplate=f"{name}<br>" + "after block %{x}: %{y:.2%}<extra></extra>"))
    if settled is not None and settled >= 0:
        fig.add_vline(x=settled + 1, line=dict(color="#444", dash="dash"),
                      annotation_text=f"top-1 from block {settled + 1} on", annotation_position="top left")
    fig.update_layout(title="Logit lens: the class probabilities read after each block", height=height,
                      xaxis_title="after block", yaxis=dict(title="probability", tickformat=".0%", range=[0, 1.05]),
                      margin=dict(l=0, r=0, t=40, b=0), legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(dtick=1)
    return fig


def patch_classes(image: torch.Tensor | np.ndarray, classes: torch.Tensor, probabilities: torch.Tensor,
                  patch_size: int, class_names: Sequence[str], first: Optional[int] = None, title: str = "",
                  opacity: float = 0.65, height: int = 480) -> go.Figure:
    """Each patch coloured by the class it is read as (``vitviz.inside.patch_lens`` at one block).

    Args:
        image: ``[3, H, W]`` in [0, 1].
        classes: ``[gh, gw]`` class indices.
        probabilities: ``[gh, gw]`` the probability of each patch's class.
        class_names: every class's name.
        first: a class given the first colour (the image's prediction), whether or not it is on the map.
    """
    z = classes.detach().cpu().numpy()
    p = probabilities.detach().float().cpu().numpy()
    rows, cols = z.shape
    present = [c for c, _ in sorted(zip(*np.unique(z, return_counts=True)), key=lambda item: -item[1])]
    order = ([first] if first is not None else []) + [int(c) for c in present if c != first]
    colour_of = {c: _CLASS_COLOURS[i] if i < len(_CLASS_COLOURS) else _OTHER for i, c in enumerate(order)}
    palette = list(dict.fromkeys(colour_of.values()))
    code = np.vectorize(lambda c: palette.index(colour_of[int(c)]))(z).astype(float)  # (gh, gw) colour index
    steps = max(len(palette) - 1, 1)
    scale = [[i / steps, colour] for i, colour in enumerate(palette)] if len(palette) > 1 else [[0, palette[0]], [1, palette[0]]]
    fig = go.Figure(go.Image(z=_to_uint8(image), hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=code, **_cells(patch_size, patch_size), zmin=0, zmax=steps, colorscale=scale,
                             opacity=opacity, showscale=False, hoverinfo="skip"))
    hover = [f"patch {i} (row {i // cols}, col {i % cols}): {class_names[c]} ({c}), p = {q:.1%}"
             for i, (c, q) in enumerate(zip(z.ravel().tolist(), p.ravel()))]
    fig.add_trace(_patch_markers(rows, cols, patch_size, hover))
    counts = dict(zip(*np.unique(z, return_counts=True)))
    for c in order[:len(_CLASS_COLOURS)]:  # legend entries, the most frequent classes
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(size=12, color=colour_of[c], symbol="square"),
                                 name=f"{class_names[c].split(',')[0][:28]}: {_patches(counts.get(c, 0))}"))
    if len(order) > len(_CLASS_COLOURS):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(size=12, color=_OTHER, symbol="square"),
                                 name=f"{len(order) - len(_CLASS_COLOURS)} other classes"))
    fig.update_layout(title=title, dragmode=False, showlegend=True, legend=dict(orientation="h", y=-0.02, yanchor="top"))
    fig = _square_axes(fig, height)
    fig.update_layout(margin=dict(l=0, r=0, t=30, b=60))
    return fig


def settling_map(image: torch.Tensor | np.ndarray, settled: torch.Tensor, depth: int, patch_size: int,
                 class_name: str, title: str = "", opacity: float = 0.7, height: int = 480) -> go.Figure:
    """For each patch, the block from which it is read as ``class_name`` at every later block.

    Args:
        settled: ``[gh, gw]`` 0-based blocks, -1 where the patch is not read as the class after the last
            block (left uncoloured); ``vitviz.inside.settling_layer`` of ``patch_lens``.
        depth: L, the colour scale's top.
    """
    s = settled.detach().cpu().numpy()
    rows, cols = s.shape
    z = np.where(s >= 0, s + 1, np.nan).astype(float)
    fig = go.Figure(go.Image(z=_to_uint8(image), hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=z, **_cells(patch_size, patch_size), zmin=1, zmax=max(depth, 2), colorscale=_LAYER_SCALE,
                             reversescale=True, opacity=opacity, hoverinfo="skip",
                             colorbar=dict(title="from block", dtick=1 if depth <= 16 else None)))
    hover = [f"patch {i} (row {i // cols}, col {i % cols}): " + (f"{class_name} from block {v + 1} on" if v >= 0 else
                                                                  f"not {class_name} after the last block")
             for i, v in enumerate(s.ravel().tolist())]
    fig.add_trace(_patch_markers(rows, cols, patch_size, hover))
    fig.update_layout(title=title, dragmode=False)
    return _square_axes(fig, height)


def token_colours(colours: torch.Tensor, patch_size: int, title: str = "", height: int = 480) -> go.Figure:
    """Patch tokens as colour: the first three principal components ``[gh, gw, 3]`` in [0, 1] as RGB,
    one square of ``patch_size`` pixels per patch (so it lines up with the image)."""
    c = colours.detach().float().cpu().numpy()
    rows, cols, k = c.shape
    rgb = np.zeros((rows, cols, 3), dtype=np.float32)
    rgb[..., :k] = c
    pixels = np.rint(rgb.repeat(patch_size, axis=0).repeat(patch_size, axis=1) * 255).astype(np.uint8)
    fig = go.Figure(go.Image(z=pixels, hoverinfo="skip"))
    hover = [f"patch {i} (row {i // cols}, col {i % cols}): " + ", ".join(f"PC{j + 1} {v:.2f}" for j, v in enumerate(values))
             for i, values in enumerate(c.reshape(-1, k))]
    fig.add_trace(_patch_markers(rows, cols, patch_size, hover))
    fig.update_layout(title=title, dragmode=False)
    return _square_axes(fig, height)


def norms_by_depth(norms: torch.Tensor, outliers: torch.Tensor, prefix_labels: Sequence[str],
                   title: str = "Token norms after every block", height: int = 420) -> go.Figure:
    """The norm of every token after every block as a depth x token heatmap, outliers marked with a cross.

    Args:
        norms: ``[L, N]`` (``vitviz.inside.token_norms`` of one image).
        outliers: bool ``[L, N]``.
        prefix_labels: the P prefix tokens' names (CLS, REG1, ...), ticked on the token axis.
    """
    z = norms.detach().float().cpu().numpy()
    flagged = outliers.detach().cpu().numpy().astype(bool)
    depth, num_tokens = z.shape
    prefix = len(prefix_labels)
    names = list(prefix_labels) + [f"patch {i}" for i in range(num_tokens - prefix)]
    hover = np.array([[f"{names[t]} after block {l + 1}: norm {z[l, t]:.4g}" + (" (outlier)" if flagged[l, t] else "")
                       for t in range(num_tokens)] for l in range(depth)], dtype=object)
    fig = go.Figure(go.Heatmap(z=z, x=np.arange(num_tokens), y=np.arange(1, depth + 1), colorscale="Inferno", text=hover,
                               hovertemplate="%{text}<extra></extra>", colorbar=dict(title="norm")))
    layer, token = np.nonzero(flagged)
    fig.add_trace(go.Scatter(x=token, y=layer + 1, mode="markers", name="outlier",
                             marker=dict(symbol="x-thin", size=9, line=dict(width=2, color=_OUTLINE)),
                             text=[hover[l, t] for l, t in zip(layer, token)], hovertemplate="%{text}<extra></extra>"))
    step = max(1, (num_tokens - prefix) // 8)
    ticks = list(range(prefix)) + list(range(prefix + step, num_tokens, step))  # patch 0 would sit on the last prefix label
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=40, b=0), showlegend=False,
                      xaxis=dict(title="token", tickvals=ticks, ticktext=[names[t] if t < prefix else str(t - prefix)
                                                                          for t in ticks]),
                      yaxis=dict(title="after block", autorange="reversed", dtick=1))
    return fig


def norm_map(image: torch.Tensor | np.ndarray, norms: torch.Tensor, outliers: torch.Tensor, patch_size: int,
             title: str = "", height: int = 480) -> go.Figure:
    """The norms of the patch tokens after one block ``[gh, gw]`` over the image, outlier patches outlined."""
    fig = attention_overlay(image, norms, patch_size, title=title, colorbar_title="norm", height=height)
    cols = norms.shape[1]
    for index in np.flatnonzero(outliers.detach().cpu().numpy()):
        fig.add_shape(**_patch_rect(int(index), cols, patch_size, _OUTLINE, width=2))
    return fig


def norm_profile(counts: torch.Tensor, share: torch.Tensor, height: int = 320) -> go.Figure:
    """Per block: how many tokens are outliers (bars), and the share of the class token's attention that the
    next block gives them (line; none after the last block).

    Args:
        counts: ``[L]`` outliers after each block.
        share: ``[L-1]`` in [0, 1] (``vitviz.inside.outlier_attention_share`` of one image).
    """
    n = counts.detach().cpu().numpy()
    s = share.detach().float().cpu().numpy()
    layers = np.arange(1, len(n) + 1)
    fig = go.Figure(go.Bar(x=layers, y=n, name="outlier tokens", marker_color="#9e9e9e",
                           hovertemplate="after block %{x}: %{y} outlier tokens<extra></extra>"))
    fig.add_trace(go.Scatter(x=layers[:-1], y=s, yaxis="y2", mode="lines+markers", name="their share of the next "
                             "block's class-token attention", line=dict(color="#d62728"),
                             hovertemplate="block %{x} outliers get %{y:.1%} of block %{x}+1's class attention<extra></extra>"))
    fig.update_layout(title="Outliers per block, and the attention they draw", height=height,
                      margin=dict(l=0, r=0, t=40, b=0), xaxis=dict(title="after block", dtick=1),
                      yaxis=dict(title="outlier tokens", rangemode="tozero"),
                      yaxis2=dict(title="share of attention", overlaying="y", side="right", range=[0, 1], dtick=0.25,
                                  tickformat=".0%", showgrid=False),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def flow_against_rollout(flow: torch.Tensor, rollout: torch.Tensor, correlation: float, height: int = 380) -> go.Figure:
    """Each patch's attention flow against its rollout ``[gh, gw]`` each, titled with their rank correlation."""
    f = flow.detach().double().cpu().numpy().ravel()
    r = rollout.detach().double().cpu().numpy().ravel()
    cols = flow.shape[1]
    text = [f"patch {i} (row {i // cols}, col {i % cols})" for i in range(len(f))]
    fig = go.Figure(go.Scatter(x=r, y=f, mode="markers", text=text, marker=dict(size=7, opacity=0.7),
                               hovertemplate="%{text}<br>rollout %{x:.4g}, flow %{y:.4g}<extra></extra>"))
    fig.update_layout(title=f"Flow against rollout, one dot per patch: Spearman ρ = {correlation:.3f}", height=height,
                      xaxis_title="rollout", yaxis_title="attention flow", margin=dict(l=0, r=0, t=40, b=0))
    return fig


def knockout_map(change: torch.Tensor, title: str = "", selected: Optional[tuple[int, int]] = None,
                 colorbar_title: str = "Δ probability", height: int = 420) -> go.Figure:
    """Block x head heatmap of what knocking out each head does to the target class, on a scale centred on 0.

    A click on a cell reports the point index ``layer * H + head`` (0-based; invisible markers sit on
    the cells).

    Args:
        change: ``[L, H]`` knocked-out minus intact (``vitviz.inside.head_knockout``).
        selected: a (layer, head) cell to outline, 0-based.
        colorbar_title: what the values are.
    """
    z = change.detach().float().cpu().numpy()
    depth, heads = z.shape
    reach = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=np.arange(1, heads + 1), y=np.arange(1, depth + 1), zmin=-reach, zmax=reach,
                               zmid=0, colorscale=_DIVERGING, hoverinfo="skip", colorbar=dict(title=colorbar_title)))
    layer, head = np.meshgrid(np.arange(depth), np.arange(heads), indexing="ij")
    fig.add_trace(go.Scatter(
        x=head.ravel() + 1, y=layer.ravel() + 1, mode="markers", showlegend=False, name="heads",
        marker=dict(size=max(6, 300 // max(depth, heads)), opacity=0.01, symbol="square", color="white"),
        customdata=np.stack([layer.ravel() + 1, head.ravel() + 1, z.ravel()], axis=1),
        hovertemplate="block %{customdata[0]}, head %{customdata[1]}: %{customdata[2]:+.4g}<extra></extra>"))
    if selected is not None:
        l, h = selected
        fig.add_shape(type="rect", x0=h + 0.5, x1=h + 1.5, y0=l + 0.5, y1=l + 1.5, line=dict(color=_OUTLINE, width=3))
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=40, b=0), clickmode="event+select",
                      dragmode=False, xaxis=dict(title="head", dtick=1, range=[0.5, heads + 0.5]),
                      yaxis=dict(title="block", dtick=1, range=[depth + 0.5, 0.5]))
    return fig


def _patches(count: int) -> str:
    return f"{count} patch" if count == 1 else f"{count} patches"
