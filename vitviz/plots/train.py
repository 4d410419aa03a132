"""Figures of the Train view: a run's loss and accuracy, and two trained models' attention side by side."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ._common import _HEAT_SCALE, _cells, _image_panel, _to_uint8

__all__ = ["attention_comparison", "training_curves"]


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
