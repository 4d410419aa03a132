"""Figures of a finished fine-tune: each class's validation accuracy beside the confusion matrix."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = ["class_accuracy"]


def class_accuracy(confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str = "",
                   height: Optional[int] = None) -> go.Figure:
    """Per-class accuracy bars and the confusion matrix they come from.

    Args:
        confusion: ``[C][C]`` counts, row = true class, column = predicted class.
        class_names: the C class names, in label order.

    Each class's accuracy is its diagonal count over its row's sum (its items); a class without items has no bar.
    """
    from plotly.subplots import make_subplots

    counts = np.asarray(confusion, dtype=np.int64)  # (C, C)
    names = list(class_names)
    if counts.shape != (len(names), len(names)):
        raise ValueError(f"the confusion matrix is {counts.shape}, but there are {len(names)} class names")
    support = counts.sum(axis=1)  # (C,)
    accuracy = np.where(support > 0, np.diag(counts) / np.maximum(support, 1), np.nan)  # (C,)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.18,
                        subplot_titles=("Accuracy per class", "Confusion matrix (row: true, column: predicted)"))
    fig.add_trace(go.Bar(x=accuracy, y=names, orientation="h", marker_color="#1f77b4", customdata=support,
                         name="accuracy", hovertemplate="%{y}: %{x:.1%} of %{customdata} items<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Heatmap(z=counts, x=names, y=names, colorscale="Blues", showscale=False, name="confusion",
                             texttemplate="%{z}", hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"),
                  row=1, col=2)
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(autorange="reversed", title_text="true", row=1, col=2)
    fig.update_xaxes(title_text="predicted", row=1, col=2)
    fig.update_layout(title=title, height=height or 200 + 28 * len(names), margin=dict(l=0, r=0, t=60, b=0),
                      showlegend=False)
    return fig
