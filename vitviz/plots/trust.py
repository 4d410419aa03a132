"""Figures of the Trust view: model randomisation, every score beside the maps that know nothing, ROAD beside
deletion and insertion, and how far the methods agree.

Inputs are what ``vitviz.sanity`` and ``vitviz.faithfulness`` return: lists of (what was randomised,
Spearman rho), ``Curve`` objects, an ``[M, M]`` agreement matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

if TYPE_CHECKING:
    from ..faithfulness import Curve

__all__ = ["agreement_matrix", "baseline_comparison", "randomisation_curves", "removal_curves"]

# One colour per method, in order; the baselines in greys so that they read as reference lines.
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#7f7f7f"]
_BASELINE_COLOURS = ("#555555", "#aaaaaa")
_KIND_COLOURS = {"deletion": "#d62728", "insertion": "#1f77b4", "road-morf": "#ff7f0e", "road-lerf": "#2ca02c"}
_CORRELATION_SCALE = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]


def randomisation_curves(curves: Mapping[str, Sequence[tuple[str, float]]], title: str = "",
                         height: int = 420) -> go.Figure:
    """Each method's rank correlation with the trained model's map, step by step as the model is randomised.

    Args:
        curves: method name -> ``vitviz.sanity.cascading_randomisation`` (or ``independent_randomisation``)
            entries, all over the same steps. A point at "trained" (rho = 1) starts every line.
        title: the figure's title.

    The x axis counts the steps (its labels say what is random); y is Spearman's rho in [-1, 1],
    with 0 (no agreement left) marked. A NaN (a constant map) leaves a gap.
    """
    fig = go.Figure()
    for index, (name, steps) in enumerate(curves.items()):
        labels = ["trained", *(label for label, _ in steps)]
        values = [1.0, *(rho for _, rho in steps)]
        fig.add_trace(go.Scatter(
            x=list(range(len(labels))), y=values, mode="lines+markers", name=name, customdata=labels,
            line=dict(color=_PALETTE[index % len(_PALETTE)]),
            hovertemplate=f"{name}<br>" + "%{customdata}: rho = %{y:.3f}<extra></extra>"))
    labels = ["trained", *(label for label, _ in next(iter(curves.values()), []))]
    fig.add_hline(y=0, line=dict(color="#888888", dash="dot", width=1))
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(labels))), ticktext=[_wrap(t) for t in labels],
                     title_text="re-initialised so far")
    fig.update_yaxes(range=[-1.05, 1.05], title_text="Spearman rho with the trained map")
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=60, b=0), legend=dict(title="method"))
    return fig


def baseline_comparison(scores: Mapping[str, Mapping[str, float]], baselines: Sequence[str],
                        columns: Mapping[str, str], height_per_row: int = 300, per_row: int = 3) -> go.Figure:
    """Every score of every method as a bar, with the maps that know nothing of the model as grey bars and lines.

    Args:
        scores: method (and baseline) name -> column -> value; NaN where a method has no value.
        baselines: the names in ``scores`` that are baselines (e.g. ``vitviz.sanity.BASELINES``), drawn in grey
            and as dashed lines across their panel.
        columns: column -> its label (e.g. ``"deletion AUC (lower is better)"``), one panel each, in order.
    """
    from plotly.subplots import make_subplots

    keys = list(columns)
    cols = max(1, min(per_row, len(keys)))
    rows = max(1, (len(keys) + cols - 1) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[columns[k] for k in keys], horizontal_spacing=0.08,
                        vertical_spacing=0.22)
    names = list(scores)
    methods = [n for n in names if n not in baselines]
    for index, key in enumerate(keys):
        row, col = divmod(index, cols)
        colours = [_PALETTE[methods.index(n) % len(_PALETTE)] if n in methods
                   else _BASELINE_COLOURS[list(baselines).index(n) % 2] for n in names]
        values = [scores[n].get(key, float("nan")) for n in names]
        fig.add_trace(go.Bar(x=names, y=values, marker_color=colours, showlegend=False,
                             hovertemplate="%{x}: %{y:.3f}<extra>" + columns[key] + "</extra>"),
                      row=row + 1, col=col + 1)
        for baseline, colour in zip(baselines, _BASELINE_COLOURS):
            value = scores.get(baseline, {}).get(key, float("nan"))
            if not np.isnan(value):
                fig.add_hline(y=value, line=dict(color=colour, dash="dash", width=1), row=row + 1, col=col + 1)
        fig.update_xaxes(showticklabels=row == rows - 1 or index + cols >= len(keys), tickangle=-45,
                         row=row + 1, col=col + 1)
    fig.update_layout(height=120 + rows * height_per_row, margin=dict(l=0, r=0, t=40, b=0), bargap=0.25)
    return fig


def removal_curves(curves: Mapping[str, Mapping[str, Curve]], item: int = 0, per_row: int = 3,
                   height_per_row: int = 260, kinds: Optional[Mapping[str, tuple[str, str]]] = None) -> go.Figure:
    """Per method, its deletion, insertion and ROAD curves on one panel: the target probability against the
    share of the patches changed, each curve's score in the legend entry of its first panel.

    Args:
        curves: method name -> ``vitviz.faithfulness.all_curves`` (kind -> ``Curve``).
        item: which image of the curves' batch to draw.
        kinds: kind -> (what it does, "lower"/"higher"); None is ``vitviz.faithfulness.CURVE_KINDS``.
    """
    from plotly.subplots import make_subplots

    from ..faithfulness import CURVE_KINDS

    kinds = CURVE_KINDS if kinds is None else kinds
    names = list(curves)
    cols = max(1, min(per_row, len(names)))
    rows = max(1, (len(names) + cols - 1) // cols)
    titles = [name + "<br>" + " · ".join(f"{_short(kind)} {curve.auc[item]:.2f}" for kind, curve in curves[name].items())
              for name in names]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.18,
                        shared_yaxes=True)
    for index, name in enumerate(names):
        for kind, curve in curves[name].items():
            trace = go.Scatter(x=curve.fractions.cpu().numpy(), y=curve.probabilities[item].float().cpu().numpy(),
                               mode="lines", legendgroup=kind, showlegend=index == 0,
                               name="patches {}: {} is better".format(*kinds[kind]),
                               line=dict(color=_KIND_COLOURS.get(kind, "#333333")),
                               hovertemplate=f"{name}, {kind}<br>%{{x:.0%}} of the patches: p = %{{y:.3f}}<extra></extra>")
            fig.add_trace(trace, row=index // cols + 1, col=index % cols + 1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title_text="patches changed", showticklabels=True)
    fig.update_yaxes(range=[0, 1.02], title_text="target probability")
    fig.update_layout(title="Target probability as patches are deleted, revealed, or removed and imputed (ROAD)",
                      height=140 + rows * height_per_row, margin=dict(l=0, r=0, t=110, b=0),
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left", yref="container"))
    return fig


def agreement_matrix(names: Sequence[str], matrix: torch.Tensor | np.ndarray, title: str = "",
                     height: Optional[int] = None) -> go.Figure:
    """The methods' rank correlations as a heatmap on [-1, 1] (red: the same ranking, blue: reversed), values written
    in the cells.

    Args:
        names: the methods, in the matrix's order.
        matrix: ``[M, M]`` from ``vitviz.sanity.agreement`` (NaN cells left blank).
    """
    values = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(z=values, x=list(names), y=list(names), zmin=-1, zmax=1,
                               colorscale=_CORRELATION_SCALE, text=text, texttemplate="%{text}",
                               colorbar=dict(title="rho"),
                               hovertemplate="%{y} vs %{x}: rho = %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    size = height or 160 + 36 * len(names)
    fig.update_layout(title=title, height=size, margin=dict(l=0, r=0, t=60, b=0))
    return fig


def _short(kind: str) -> str:
    return {"deletion": "del", "insertion": "ins", "road-morf": "MoRF", "road-lerf": "LeRF"}.get(kind, kind)


def _wrap(label: str) -> str:
    """Break a long step label ("head + blocks 11-0 + embeddings") over lines for the axis."""
    return label.replace(" + ", "<br>+ ")
