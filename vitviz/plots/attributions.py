"""Figures of the Attributions view: every method's map on one scale, and how faithful each is.

Maps come scaled to [-1, 1] (``vitviz.attributions.AttributionMaps.scaled``) and are drawn on one
diverging scale whose zero is transparent, over the image at a chosen opacity and, beside it, alone on
white (blue evidence against the class vanishes on a blue sky); curves are ``vitviz.faithfulness.Curve``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from ._common import _OUTLINE, _cells, _image_panel, _image_source, _to_uint8

__all__ = ["attribution_panels", "faithfulness_curves"]

# Zero is transparent so the image shows through; evidence for the class is red, against it blue.
_DIVERGING = [[0.0, "rgba(33,102,172,0.9)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(178,24,43,0.9)"]]


# Each panel is ~300 screen pixels wide: pixel-resolution maps are averaged down to this many cells a side,
# and the photo under them to at most twice that, so a 518 px model with a dozen methods stays a few MB.
_MAX_MAP_SIDE = 160


def _at_most(map_: torch.Tensor, side: int) -> torch.Tensor:
    """``[h, w]`` averaged over blocks down to at most ``side`` cells a side (unchanged if already smaller)."""
    h, w = map_.shape
    if h <= side and w <= side:
        return map_
    return torch.nn.functional.adaptive_avg_pool2d(map_[None, None], (min(h, side), min(w, side)))[0, 0]


def attribution_panels(
    image: torch.Tensor | np.ndarray,
    maps: dict[str, torch.Tensor],
    mask: Optional[torch.Tensor] = None,
    title: str = "",
    per_row: int = 3,
    height_per_row: int = 320,
    opacity: float = 0.9,
    alone: bool = False,
) -> go.Figure:
    """Each method's map over the image, side by side on ONE colour scale [-1, 1].

    Args:
        image: ``[3, H, W]`` in [0, 1], the image as the model sees it.
        maps: method name -> ``[h, w]`` map scaled to [-1, 1] (``AttributionMaps.scaled``), at patch
            or pixel resolution (h and w divide H and W); a map over 224 cells a side is shown averaged
            down to 160, which keeps the figure a few MB at 518 px with a dozen methods.
        mask: ``[H, W]`` bool, the true object, outlined on every panel.
        per_row: methods per row.
        opacity: of each map over the image, in (0, 1]; the colours themselves fade to transparent at 0.
        alone: also draw each map alone on white, to the right of its overlay ("NAME: map alone").
    """
    from plotly.subplots import make_subplots

    if not 0 < opacity <= 1:
        raise ValueError(f"opacity must be in (0, 1], not {opacity}")
    pixels = _to_uint8(image)
    size_h, size_w = pixels.shape[:2]
    names = list(maps)
    panels = [(name, view) for name in names for view in (("over", "alone") if alone else ("over",))]
    per_row = max(1, min(per_row, len(names))) * (2 if alone else 1)
    cols = max(1, min(per_row, len(panels)))
    rows = max(1, (len(panels) + cols - 1) // cols)
    titles = [name if view == "over" else f"{name}: map alone" for name, view in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08)
    outline = None if mask is None else mask.detach().float().cpu().numpy()
    scale = max(1.0, max(size_h, size_w) / (2 * _MAX_MAP_SIDE))
    small = Image.fromarray(pixels).resize((round(size_w / scale), round(size_h / scale)), Image.Resampling.BILINEAR)
    background = _image_source(np.asarray(small))  # one compressed copy per panel, not a raw array
    placement = _cells(size_h / small.height, size_w / small.width)
    for index, (name, view) in enumerate(panels):
        row, col = divmod(index, cols)
        z = _at_most(maps[name].detach().float().cpu(), _MAX_MAP_SIDE).numpy()
        dy, dx = size_h / z.shape[0], size_w / z.shape[1]  # pixels per map cell
        if view == "over":
            fig.add_trace(go.Image(source=background, hoverinfo="skip", **placement), row=row + 1, col=col + 1)
        fig.add_trace(go.Heatmap(z=z, **_cells(dy, dx), coloraxis="coloraxis", opacity=opacity if view == "over" else 1.0,
                                 name=titles[index],
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

    The two baselines are marked where the curves meet them, and named in the title: at 100% deleted the model
    sees the plain fill image, at 0% revealed the blurred copy (``vitviz.faithfulness.baseline_images``), and it
    gives each some probability, so neither curve ends at 0.

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
        deletion, insertion = curves[name]
        ends = [(float(deletion.fractions[-1]), float(deletion.probabilities[item, -1]), "deletion",
                 "100% deleted: the plain fill image"),
                (float(insertion.fractions[0]), float(insertion.probabilities[item, 0]), "insertion",
                 "0% revealed: the blurred copy")]
        for x, y, kind, what in ends:
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name=f"{kind} baseline", showlegend=False,
                                     marker=dict(color=colours[kind], size=9, symbol="circle-open", line=dict(width=2)),
                                     hovertemplate=f"{what}<br>p = %{{y:.3f}}<extra></extra>"),
                          row=row + 1, col=col + 1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(title_text="patches deleted / revealed", row=rows)
    fig.update_yaxes(title_text="target probability", col=1)
    # The colours are named in the title: a legend would sit on the subplot titles.
    title = ("Target probability as patches are <span style='color:#d62728'>deleted</span> or "
             "<span style='color:#1f77b4'>revealed</span>, most relevant first<br><sup>Open circles: the baselines. "
             "All deleted, the model sees the plain fill image; nothing revealed, the blurred copy. It gives each "
             "some probability, so neither end is 0.</sup>")
    fig.update_layout(title=title, height=120 + rows * height_per_row, margin=dict(l=0, r=0, t=120, b=0))
    return fig
