"""Every figure is shown with its numbers downloadable (PNG comes from the chart's camera button)."""

from __future__ import annotations

import io
import json
from typing import Any, Optional

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from vitviz.plots import PLOTLY_CONFIG


def show_figure(fig: go.Figure, name: str, data: Optional[dict[str, Any]] = None, key: Optional[str] = None,
                on_select: str = "ignore") -> Any:
    """Draw ``fig``; offer ``data`` (name -> tensor/array/scalar) as CSV and JSON downloads.

    Returns the chart's selection state when ``on_select="rerun"``.
    """
    config = {**PLOTLY_CONFIG, "toImageButtonOptions": {**PLOTLY_CONFIG["toImageButtonOptions"], "filename": name}}
    kwargs: dict[str, Any] = dict(config=config, key=key or f"fig-{name}", width="stretch")
    if on_select != "ignore":
        kwargs.update(on_select=on_select, selection_mode="points")
    event = st.plotly_chart(fig, **kwargs)
    if data:
        arrays = {k: _as_array(v) for k, v in data.items()}
        left, right = st.columns(2)
        # Written when clicked, not on every rerun: a 37x37 grid's similarities are 1.9 M numbers.
        left.download_button("Numbers (CSV)", lambda: _csv(arrays), file_name=f"{name}.csv", mime="text/csv",
                             key=f"csv-{key or name}", on_click="ignore")
        right.download_button("Numbers (JSON)", lambda: json.dumps({k: v.tolist() for k, v in arrays.items()}),
                              file_name=f"{name}.json", mime="application/json", key=f"json-{key or name}",
                              on_click="ignore")
    return event


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def _csv(arrays: dict[str, np.ndarray]) -> str:
    """One block per array: a header line naming it, then its rows (2-D views of any shape)."""
    out = io.StringIO()
    for name, array in arrays.items():
        matrix = np.atleast_2d(array.reshape(array.shape[0], -1) if array.ndim > 1 else array)
        out.write(f"# {name} shape={list(array.shape)}\n")
        np.savetxt(out, matrix, delimiter=",", fmt="%.6g")
    return out.getvalue()


def new_click(event: Any, seen_key: str) -> Optional[int]:
    """The point index of a click on a chart drawn with ``on_select="rerun"``, when it is a new click.

    A chart's selection outlives the click, so without this, every later rerun would replay it and
    override whatever the user set since (e.g. with a number input). ``seen_key`` remembers the last.
    """
    points = event.selection.points if event and event.selection else []
    if not points or "point_index" not in points[0]:
        return None
    clicked = int(points[0]["point_index"])
    if clicked == st.session_state.get(seen_key):
        return None
    st.session_state[seen_key] = clicked
    return clicked
