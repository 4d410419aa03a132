"""Every figure is shown with its numbers downloadable (PNG comes from the chart's camera button), each download
saying what it holds: the model, the image, the view's settings, units and shapes (``vitviz.export``)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import plotly.graph_objects as go
import streamlit as st

from vitviz.export import figure_csv, figure_json
from vitviz.plots import PLOTLY_CONFIG


def show_figure(fig: go.Figure, name: str, data: Optional[dict[str, Any]] = None, key: Optional[str] = None,
                on_select: str = "ignore", settings: Optional[Mapping[str, Any]] = None,
                units: Optional[Mapping[str, str]] = None) -> Any:
    """Draw ``fig``; offer ``data`` (name -> tensor/array/list/scalar, each shaped as the figure shows it: an 8x8
    map as 8x8) as CSV and JSON downloads.

    Args:
        settings: what the figure was drawn from, as a plain dict: the model and the image
            (``Context.about``) and the view's settings (layer, head, query, method, ...). Both files open with it.
        units: per name of ``data``, what its numbers are ("probability", "pixels", ...).

    Returns the chart's selection state when ``on_select="rerun"``.
    """
    config = {**PLOTLY_CONFIG, "toImageButtonOptions": {**PLOTLY_CONFIG["toImageButtonOptions"], "filename": name}}
    kwargs: dict[str, Any] = dict(config=config, key=key or f"fig-{name}", width="stretch")
    if on_select != "ignore":
        kwargs.update(on_select=on_select, selection_mode="points")
    event = st.plotly_chart(fig, **kwargs)
    if data:
        about, units = dict(settings or {}), dict(units or {})
        left, right = st.columns(2)
        # Written when clicked, not on every rerun: a 37x37 grid's similarities are 1.9 M numbers.
        left.download_button("Numbers (CSV)", lambda: figure_csv(name, data, about, units), file_name=f"{name}.csv",
                             mime="text/csv", key=f"csv-{key or name}", on_click="ignore")
        right.download_button("Numbers (JSON)", lambda: figure_json(name, data, about, units),
                              file_name=f"{name}.json", mime="application/json", key=f"json-{key or name}",
                              on_click="ignore")
    return event


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
