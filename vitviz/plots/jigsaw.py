"""Figures of the Jigsaw view: a shuffled image, the model's reassembly, and how sure and how right it is.

Images are ``[3, H, W]`` float in [0, 1]; patches are numbered in raster order on the grid of
``patch_size`` px patches, and outlined by index (misplaced ones in red).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ._common import _OUTLINE, _cells, _image_panel, _patch_markers, _patch_rect, _square_axes, _to_uint8

__all__ = ["confidence_overlay", "jigsaw_scores", "patch_panels", "reassembly_animation"]

_WRONG = "#ff1744"  # outline of a misplaced patch


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
    """Per-patch confidence over the image, misplaced patches outlined.

    Args:
        image: ``[3, H, W]`` in [0, 1], e.g. the reassembled image.
        confidence: ``[gh, gw]`` probabilities in [0, 1] (NaN for an empty place).
        wrong: patch indices (raster order) to outline in red.
        hover: one text per patch; defaults to its index and confidence.
    """
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
    patches) for each decoder, as grouped bars.

    Args:
        scores: a decoder's name -> ``vitviz.jigsaw.placement_metrics`` with the grid given (keys
            ``patch_acc``, ``puzzle_acc``, ``displacement``).
    """
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
    """The step-through as a plotly animation with a play button and a slider.

    Args:
        frames: ``[S+1, 3, H, W]`` in [0, 1]: frame 0 the shuffled image, frame s the image after step s.
        moved: S patch indices (raster order), the place each step filled, outlined in its frame.
    """
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
