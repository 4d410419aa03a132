"""What every figure shares: the chart config, the colours, and the helpers that put pixels, patches
and maps in one coordinate system.

Coordinates: an image ``[H, W, 3]`` is drawn with pixel (i, j) centred at x = j, y = i, row 0 on
top, so pixel edges fall on half-integers. With patch size p, patch k of a grid ``gw`` patches wide
(raster order, ``r, c = divmod(k, gw)``) covers x in [c*p - 0.5, (c+1)*p - 0.5] and y in
[r*p - 0.5, (r+1)*p - 0.5]. ``_patch_markers`` (hover and click targets), ``_patch_rect`` (outlines)
and ``_cells`` (a map's cells over the image) all keep to this.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import hex_to_rgb, sequential

__all__ = ["PLOTLY_CONFIG"]

# Every chart's camera button saves a PNG at twice the screen resolution.
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
# Attention and other non-negative maps over the image: Inferno, perceptually uniform and sequential, black for 0
# and pale yellow for the maximum, so an empty area reads as empty. Written as rgb() strings, never as hex:
# Streamlit's chart theme replaces the colours "#000001" to "#000040" in every figure with its own palette, and
# plotly's Inferno starts at "#000004", which it drew pink, between purple and orange.
_HEAT_SCALE = [[i / (len(sequential.Inferno) - 1), "rgb({}, {}, {})".format(*hex_to_rgb(colour))]
               for i, colour in enumerate(sequential.Inferno)]
# Cyan stands out on every heat scale here: it outlines the query patch, the patch a jigsaw step
# moved, and the true object under an attribution map.
_OUTLINE = "#00e5ff"


def _to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] (or ``[H, W, 3]`` uint8) to ``[H, W, 3]`` uint8."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        return np.rint(image * 255).astype(np.uint8)
    return np.asarray(image, dtype=np.uint8)


def _image_source(pixels: np.ndarray, quality: int = 90) -> str:
    """``[H, W, 3]`` uint8 as a JPEG data URI for ``go.Image(source=...)``: a 518x518 photo is ~60 kB
    this way and ~1 MB as a ``z`` array, which counts when a figure shows it in several panels."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _square_axes(fig: go.Figure, height: int) -> go.Figure:
    """Show a figure of one panel as an image ``height`` screen pixels tall: no axes, square pixels, row 0 on top."""
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
                      hovertemplate="patch %{customdata[0]}<br>"
                                    "row %{customdata[1]}, col %{customdata[2]}<extra></extra>")
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
