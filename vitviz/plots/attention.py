"""Plotly figures for every view. Each function takes tensors or arrays and returns a ``go.Figure``;
nothing here computes a map or touches a model."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

__all__ = [
    "PLOTLY_CONFIG",
    "attention_comparison",
    "attention_distance",
    "attention_overlay",
    "attribution_panels",
    "head_grid",
    "mask_overlay",
    "predictions",
    "confidence_overlay",
    "jigsaw_scores",
    "patch_panels",
    "reassembly_animation",
    "image_with_grid",
    "embedding_filters",
    "faithfulness_curves",
    "patch_vector",
    "similarity_grid",
    "similarity_map",
    "token_sequence",
    "training_curves",
]

# Every chart's camera button saves a PNG at twice the screen resolution.
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
_CHANNEL_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")


def _to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] (or ``[H, W, 3]`` uint8) to ``[H, W, 3]`` uint8."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        return np.rint(image * 255).astype(np.uint8)
    return np.asarray(image, dtype=np.uint8)


def _square_axes(fig: go.Figure, height: int) -> go.Figure:
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", autorange="reversed", constrain="domain")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), plot_bgcolor="white")
    return fig


def _image_panel(fig: go.Figure, row: int, col: int, height_px: int, width_px: int) -> None:
    """Show one subplot as an image ``height_px`` by ``width_px``: no axes, square pixels, row 0 on top.

    ``_square_axes`` does the same for a figure of one panel.
    """
    fig.update_xaxes(visible=False, range=[-0.5, width_px - 0.5], constrain="domain", row=row, col=col)
    # a subplot's y axis is anchored to its own x axis ("x2" for the second): lock the two scales
    fig.update_yaxes(visible=False, range=[height_px - 0.5, -0.5], scaleanchor=fig.get_subplot(row, col).yaxis.anchor,
                     constrain="domain", row=row, col=col)


def _cells(dy: float, dx: float) -> dict[str, float]:
    """Heatmap placement over an image: each cell covers ``dy`` by ``dx`` pixels, cell (0, 0) at the top left.

    Pixel (i, j) is centred at (i, j), so a cell's centre sits half a cell in, less half a pixel.
    """
    return dict(x0=(dx - 1) / 2, dx=dx, y0=(dy - 1) / 2, dy=dy)


def image_with_grid(
    image: torch.Tensor | np.ndarray,
    patch_size: int,
    selected: Optional[int] = None,
    title: str = "",
    height: int = 480,
) -> go.Figure:
    """The image with its patch grid drawn over it; hovering names each patch; a click selects one.

    Invisible markers sit at patch centres so a click on the chart reports a patch index.
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
    """One patch flattened into its vector (channel-first: all red, then green, then blue values)."""
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


def similarity_grid(similarity: torch.Tensor, grid_size: tuple[int, int], title: str = "", height: int = 560) -> go.Figure:
    """A grid of small heatmaps: tile (r, c) is the similarity of position (r, c) with every position.

    Args:
        similarity: ``[N, N]`` with N = gh*gw, raster order.
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
    """One position's similarity with every other, enlarged, the position itself marked."""
    gh, gw = grid_size
    z = row.detach().float().cpu().numpy().reshape(gh, gw)
    fig = go.Figure(go.Heatmap(z=z, zmin=-1, zmax=1, colorscale="RdBu_r", colorbar=dict(title="cosine"),
                               hovertemplate="(%{y}, %{x}): %{z:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[query[1]], y=[query[0]], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(symbol="x", size=12, color="black")))
    fig.update_layout(title=title or f"Similarity of position {query} with every position")
    return _square_axes(fig, height)


# --- Attention ------------------------------------------------------------------------------------

_HEAT_SCALE = "Inferno"
# Cyan stands out on every heat scale here: it outlines the query patch, the patch a jigsaw step
# moved, and the true object under an attribution map.
_OUTLINE = "#00e5ff"
_WRONG = "#ff1744"  # outline of a misplaced patch


def _patch_markers(
    rows: int,
    cols: int,
    patch_size: int,
    hover: Optional[Sequence[str]] = None,
    span: int = 360,
    colour: Optional[str] = "white",
    xaxis: Optional[str] = None,
    yaxis: Optional[str] = None,
) -> go.Scatter:
    """Invisible markers at the patch centres, one per patch in raster order, carrying its hover text.

    A click on the chart reports the patch as the marker's point index.

    Args:
        rows, cols: the patch grid, ``gh`` by ``gw``.
        patch_size: the side of a patch in image pixels.
        hover: one text per patch; None names each patch "patch i<br>row r, col c" from
            ``customdata`` ``[N, 3]`` (index, row, col).
        span: about the chart's width in screen pixels; a marker is ``span / max(rows, cols)`` wide
            (4 at least), so that it covers its patch.
        colour: the markers' colour, which is also their hover label's background; None leaves
            plotly's colour for the trace.
        xaxis, yaxis: the panel's axes (e.g. "x2", "y2") in a figure of several; None for the only ones.
    """
    centre_r, centre_c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # (gh, gw) each
    if hover is None:
        labels = dict(customdata=np.stack([np.arange(rows * cols), centre_r.ravel(), centre_c.ravel()], axis=1),
                      hovertemplate="patch %{customdata[0]}<br>row %{customdata[1]}, col %{customdata[2]}<extra></extra>")
    else:
        labels = dict(text=list(hover), hovertemplate="%{text}<extra></extra>")
    return go.Scatter(
        x=(centre_c.ravel() + 0.5) * patch_size - 0.5,
        y=(centre_r.ravel() + 0.5) * patch_size - 0.5,
        mode="markers",
        marker=dict(size=max(4, span // max(rows, cols)), opacity=0.01, color=colour, symbol="square"),
        **labels,
        name="patches",
        showlegend=False,
        xaxis=xaxis,
        yaxis=yaxis,
    )


def _patch_rect(index: int, cols: int, patch_size: int, colour: str, width: int = 3,
                xref: Optional[str] = None, yref: Optional[str] = None) -> dict:
    """The outline of one patch as a plotly shape, for ``fig.add_shape(**rect)`` or a layout's ``shapes``.

    Args:
        index: the patch, in raster order on a grid ``cols`` patches wide.
        patch_size: the side of a patch in image pixels; the rectangle runs along the pixel edges.
        colour, width: the outline's line.
        xref, yref: the panel's axes (e.g. "x2", "y2") in a figure of several; None for the only ones.
    """
    r, c = divmod(int(index), cols)
    rect = dict(type="rect", x0=c * patch_size - 0.5, x1=(c + 1) * patch_size - 0.5,
                y0=r * patch_size - 0.5, y1=(r + 1) * patch_size - 0.5, line=dict(color=colour, width=width))
    if xref is not None:
        rect.update(xref=xref, yref=yref)
    return rect


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
    """The image with the patches outside a mask ``[gh, gw]`` (bool) darkened."""
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

    ``reference`` (same shape), when given, is drawn beside it, e.g. the mean over a dataset.
    """
    fig = go.Figure()
    series = [("this image", distance, "#1f77b4", -0.12)]
    if reference is not None:
        series.append((reference_label, reference, "#ff7f0e", 0.12))
    for label, values, colour, shift in series:
        v = values.detach().float().cpu().numpy()
        layers, heads = v.shape
        layer_index = np.repeat(np.arange(1, layers + 1), heads)
        head_index = np.tile(np.arange(1, heads + 1), layers)
        fig.add_trace(go.Scatter(
            x=layer_index + shift, y=v.ravel(), mode="markers", name=label, marker=dict(color=colour, size=7, opacity=0.8),
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
    """Horizontal bars of class probabilities ``[k]``, most probable on top."""
    p = probabilities.detach().float().cpu().numpy()
    fig = go.Figure(go.Bar(x=p, y=list(labels), orientation="h", marker_color="#1f77b4",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=40, b=0), xaxis=dict(title="probability",
                      tickformat=".2~%", rangemode="tozero"), yaxis=dict(autorange="reversed"))
    return fig


# --- Jigsaw ---------------------------------------------------------------------------------------



def patch_panels(
    images: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str],
    patch_size: int,
    outlines: Optional[Sequence[Sequence[int]]] = None,
    hover: Optional[Sequence[Sequence[str]]] = None,
    outline_colour: str = _WRONG,
    title: str = "",
    height: int = 340,
) -> go.Figure:
    """Images side by side (e.g. original, shuffled, reassembled), patches outlined per panel.

    Args:
        images: each ``[3, H, W]`` in [0, 1], all the same size.
        titles: one per image.
        outlines: per image, the patch indices (raster order) to outline, e.g. the misplaced ones.
        hover: per image, one text per patch.
    """
    from plotly.subplots import make_subplots

    count = len(images)
    fig = make_subplots(rows=1, cols=count, subplot_titles=list(titles), horizontal_spacing=0.02)
    shapes: list[dict] = []  # set at once: add_shape re-validates the layout each call, slow for hundreds
    for col, image in enumerate(images, start=1):
        pixels = _to_uint8(image)
        rows, cols = pixels.shape[0] // patch_size, pixels.shape[1] // patch_size
        fig.add_trace(go.Image(z=pixels, hoverinfo="skip"), row=1, col=col)
        suffix = "" if col == 1 else str(col)
        if hover is not None:
            fig.add_trace(_patch_markers(rows, cols, patch_size, hover[col - 1], span=240, colour=None,
                                        xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        shapes.extend(_patch_rect(index, cols, patch_size, outline_colour, 2, xref=f"x{suffix}", yref=f"y{suffix}")
                      for index in (outlines[col - 1] if outlines is not None else ()))
        _image_panel(fig, 1, col, *pixels.shape[:2])
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=60, b=0), plot_bgcolor="white",
                      shapes=shapes)
    return fig


def confidence_overlay(
    image: torch.Tensor | np.ndarray,
    confidence: torch.Tensor,
    patch_size: int,
    wrong: Sequence[int] = (),
    hover: Optional[Sequence[str]] = None,
    title: str = "",
    height: int = 420,
) -> go.Figure:
    """Per-patch confidence ``[gh, gw]`` (a probability) over the image, misplaced patches outlined."""
    pixels = _to_uint8(image)
    z = confidence.detach().float().cpu().numpy()
    rows, cols = z.shape
    fig = go.Figure(go.Image(z=pixels, hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=z, **_cells(patch_size, patch_size),
                             zmin=0, zmax=1, colorscale="Viridis", opacity=0.55, hoverinfo="skip",
                             colorbar=dict(title="confidence")))
    text = hover if hover is not None else [f"patch {i}: {v:.3f}" for i, v in enumerate(z.ravel())]
    fig.add_trace(_patch_markers(rows, cols, patch_size, text, span=240, colour=None))
    fig.update_layout(title=title, shapes=[_patch_rect(index, cols, patch_size, _WRONG, 2) for index in wrong])
    return _square_axes(fig, height)


def jigsaw_scores(scores: dict[str, dict[str, float]], title: str = "", height: int = 320) -> go.Figure:
    """Per-patch accuracy and exact puzzle (left, fractions) and mean displacement (right, in
    patches) for each decoder; ``scores`` maps a decoder's name to ``vitviz.jigsaw.placement_metrics``."""
    from plotly.subplots import make_subplots

    names = list(scores)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
                        subplot_titles=["Placed right", "Mean displacement"])
    for key, label, colour in (("patch_acc", "per-patch accuracy", "#1f77b4"), ("puzzle_acc", "exact puzzle", "#2ca02c")):
        values = [scores[n][key] for n in names]
        fig.add_trace(go.Bar(x=names, y=values, name=label, marker_color=colour, text=[f"{v:.0%}" for v in values],
                             hovertemplate=f"{label}, " + "%{x}: %{y:.3f}<extra></extra>"), row=1, col=1)
    values = [scores[n]["displacement"] for n in names]
    fig.add_trace(go.Bar(x=names, y=values, name="displacement", marker_color="#ff7f0e", showlegend=False,
                         text=[f"{v:.2f}" for v in values],
                         hovertemplate="mean displacement, %{x}: %{y:.3f} patches<extra></extra>"), row=1, col=2)
    fig.update_yaxes(title_text="share (higher is better)", range=[0, 1.05], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title_text="patches (lower is better)", rangemode="tozero", row=1, col=2)
    fig.update_layout(title=title, height=height, barmode="group", margin=dict(l=0, r=0, t=70, b=0),
                      legend=dict(orientation="h", y=-0.15))
    return fig


def reassembly_animation(
    frames: torch.Tensor,
    moved: Sequence[int],
    patch_size: int,
    title: str = "",
    height: int = 420,
) -> go.Figure:
    """The step-through as a plotly animation: frame 0 the shuffled image, frame s the image after
    step s (``frames [S+1, 3, H, W]`` in [0, 1]), the patch each step placed outlined."""
    cols = frames.shape[-1] // patch_size
    images = [_to_uint8(frame) for frame in frames]

    def shapes(step: int) -> list[dict]:
        if step == 0:
            return []
        return [_patch_rect(moved[step - 1], cols, patch_size, _OUTLINE)]

    fig = go.Figure(go.Image(z=images[0], hoverinfo="skip"),
                    frames=[go.Frame(data=[go.Image(z=z, hoverinfo="skip")], layout=dict(shapes=shapes(s)), name=str(s))
                            for s, z in enumerate(images)])
    play = dict(frame=dict(duration=350, redraw=True), transition=dict(duration=0), fromcurrent=True)
    fig.update_layout(
        title=title,
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.02, xanchor="left", yanchor="top",
                          buttons=[dict(label="Play", method="animate", args=[None, play])])],
        sliders=[dict(active=0, x=0.12, len=0.88, y=-0.02, currentvalue=dict(prefix="step "),
                      steps=[dict(label=str(s), method="animate",
                                  args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                             for s in range(len(images))])],
    )
    fig = _square_axes(fig, height)
    fig.update_layout(margin=dict(l=0, r=0, t=30, b=70))
    return fig


# --- Train: curves of a run, and two models' attention side by side -------------------------------


def training_curves(rows: Sequence[dict], accuracy_key: str = "accuracy", title: str = "", height: int = 340) -> go.Figure:
    """Loss and accuracy against step from a run's metrics rows (``split`` "train" or "val").

    Args:
        rows: the training log's rows: train rows carry ``loss`` and the batch ``accuracy``; val rows
            carry ``loss``, ``accuracy_key`` and ``chance``.
        accuracy_key: the validation metric drawn as accuracy ("accuracy", or "patch_acc_hungarian" for jigsaw).
    """
    from plotly.subplots import make_subplots

    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val" and accuracy_key in r]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    colours = {"train": "#1f77b4", "val": "#ff7f0e"}
    for split, split_rows, mode in (("train", train, "lines"), ("val", val, "lines+markers")):
        steps = [r["step"] for r in split_rows]
        key = "accuracy" if split == "train" else accuracy_key
        fig.add_trace(go.Scatter(x=steps, y=[r["loss"] for r in split_rows], mode=mode, name=f"{split} loss",
                                 line=dict(color=colours[split]), legendgroup=split,
                                 hovertemplate=f"{split} step " + "%{x}: loss %{y:.4f}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=[r[key] for r in split_rows], mode=mode, name=f"{split} {key}",
                                 line=dict(color=colours[split], dash="dot" if split == "train" else "solid"),
                                 legendgroup=split,
                                 hovertemplate=f"{split} step " + "%{x}: " + key + " %{y:.3f}<extra></extra>"),
                      row=1, col=2)
    if val and "chance" in val[-1]:
        fig.add_hline(y=val[-1]["chance"], line=dict(color="grey", dash="dash"), annotation_text="chance",
                      row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=60, b=0),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def attention_comparison(
    image: torch.Tensor | np.ndarray,
    left: torch.Tensor,
    right: torch.Tensor,
    names: tuple[str, str],
    title: str = "",
    height: int = 380,
) -> go.Figure:
    """Two maps on the same grid over the same image, and their difference (left minus right).

    Args:
        image: ``[3, S, S]`` in [0, 1] (or ``[S, S, 3]`` uint8), the image both models saw.
        left, right: ``[gh, gw]`` maps on one grid, e.g. relative to uniform (1 = every patch alike).
        names: the two models' names, for the panel titles.
    """
    from plotly.subplots import make_subplots

    pixels = _to_uint8(image)
    size_h, size_w = pixels.shape[:2]
    a = left.detach().float().cpu().numpy()
    b = right.detach().float().cpu().numpy()
    gh, gw = a.shape
    dy, dx = size_h / gh, size_w / gw  # pixels per map cell
    diff = a - b
    top = float(max(a.max(), b.max()))
    spread = float(np.abs(diff).max()) or 1.0
    # the gap after the second panel holds the shared colour bar of the first two
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.1,
                        subplot_titles=(names[0], names[1], f"{names[0]} minus {names[1]}"))
    heat = _cells(dy, dx)
    for col, (z, name) in enumerate(((a, names[0]), (b, names[1])), start=1):
        fig.add_trace(go.Image(z=pixels, hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Heatmap(z=z, zmin=0, zmax=top, colorscale=_HEAT_SCALE, opacity=0.6, showscale=col == 2,
                                 colorbar=dict(title="x uniform", x=0.64, thickness=12, len=0.8), **heat,
                                 hovertemplate=f"{name}<br>" + "cell (%{y:.0f}, %{x:.0f}) px: %{z:.2f}<extra></extra>"),
                      row=1, col=col)
    fig.add_trace(go.Heatmap(z=diff, zmin=-spread, zmax=spread, colorscale="RdBu_r", zmid=0, **heat,
                             colorbar=dict(title="difference", x=1.01, thickness=12, len=0.8),
                             hovertemplate="cell (%{y:.0f}, %{x:.0f}) px: %{z:+.2f}<extra></extra>"), row=1, col=3)
    for col in (1, 2, 3):
        _image_panel(fig, 1, col, size_h, size_w)
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=60, b=0), plot_bgcolor="white")
    return fig


# --- Attributions ---------------------------------------------------------------------------------

# Zero is transparent so the image shows through; evidence for the class is red, against it blue.
_DIVERGING = [[0.0, "rgba(33,102,172,0.9)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(178,24,43,0.9)"]]


def attribution_panels(
    image: torch.Tensor | np.ndarray,
    maps: dict[str, torch.Tensor],
    mask: Optional[torch.Tensor] = None,
    title: str = "",
    per_row: int = 3,
    height_per_row: int = 320,
) -> go.Figure:
    """Each method's map over the image, side by side on ONE colour scale [-1, 1].

    Args:
        image: ``[3, H, W]`` in [0, 1], the image as the model sees it.
        maps: method name -> ``[h, w]`` map scaled to [-1, 1] (``AttributionMaps.scaled``), at patch
            or pixel resolution (h and w divide H and W).
        mask: ``[H, W]`` bool, the true object, outlined on every panel.
    """
    from plotly.subplots import make_subplots

    pixels = _to_uint8(image)
    size_h, size_w = pixels.shape[:2]
    names = list(maps)
    cols = max(1, min(per_row, len(names)))
    rows = max(1, (len(names) + cols - 1) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.02, vertical_spacing=0.08)
    outline = None if mask is None else mask.detach().float().cpu().numpy()
    for index, name in enumerate(names):
        row, col = divmod(index, cols)
        z = maps[name].detach().float().cpu().numpy()
        dy, dx = size_h / z.shape[0], size_w / z.shape[1]  # pixels per map cell
        fig.add_trace(go.Image(z=pixels, hoverinfo="skip"), row=row + 1, col=col + 1)
        fig.add_trace(go.Heatmap(z=z, **_cells(dy, dx), coloraxis="coloraxis",
                                 hovertemplate=f"{name}<br>" + "(%{y:.0f}, %{x:.0f}) px: %{z:+.3f} of the max<extra></extra>"),
                      row=row + 1, col=col + 1)
        if outline is not None:
            fig.add_trace(go.Contour(z=outline, contours=dict(start=0.5, end=0.5, size=1, coloring="lines"),
                                     line=dict(color=_OUTLINE, width=2), showscale=False, hoverinfo="skip",
                                     name="object mask"), row=row + 1, col=col + 1)
        _image_panel(fig, row + 1, col + 1, size_h, size_w)
    fig.update_layout(title=title, height=60 + rows * height_per_row, margin=dict(l=0, r=0, t=60, b=0),
                      plot_bgcolor="white",
                      coloraxis=dict(colorscale=_DIVERGING, cmin=-1, cmax=1,
                                     colorbar=dict(title="share of<br>the map's<br>max |value|")))
    return fig


def faithfulness_curves(curves: dict[str, tuple], item: int = 0, per_row: int = 3,
                        height_per_row: int = 260) -> go.Figure:
    """Per method, its deletion and insertion curves (target probability against the fraction of patches), AUCs in the titles.

    Args:
        curves: method name -> (deletion, insertion), each a ``vitviz.faithfulness.Curve``.
        item: which image of the curves' batch to draw.
    """
    from plotly.subplots import make_subplots

    names = list(curves)
    cols = max(1, min(per_row, len(names)))
    rows = max(1, (len(names) + cols - 1) // cols)
    titles = [f"{name}<br>deletion AUC {curves[name][0].auc[item]:.3f} · insertion AUC {curves[name][1].auc[item]:.3f}"
              for name in names]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.16,
                        shared_yaxes=True)
    colours = {"deletion": "#d62728", "insertion": "#1f77b4"}
    for index, name in enumerate(names):
        row, col = divmod(index, cols)
        for curve in curves[name]:
            fig.add_trace(go.Scatter(
                x=curve.fractions.cpu().numpy(), y=curve.probabilities[item].float().cpu().numpy(), mode="lines",
                name=curve.kind, showlegend=False, line=dict(color=colours[curve.kind]),
                hovertemplate=f"{name}, {curve.kind}<br>" + "%{x:.0%} of the patches: p = %{y:.3f}<extra></extra>"),
                row=row + 1, col=col + 1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(title_text="patches deleted / revealed", row=rows)
    fig.update_yaxes(title_text="target probability", col=1)
    # The colours are named in the title: a legend would sit on the subplot titles.
    title = ("Target probability as patches are <span style='color:#d62728'>deleted</span> or "
             "<span style='color:#1f77b4'>revealed</span>, most relevant first")
    fig.update_layout(title=title, height=100 + rows * height_per_row, margin=dict(l=0, r=0, t=100, b=0))
    return fig
