"""Streamlit glue shared by the pages: the sidebar, cached loaders, the current model and image,
figure display with downloads. Pages import from here and from ``vitviz``; ``vitviz`` never imports this."""

from . import cache
from .context import Context, current
from .figures import new_click, show_figure
from .sidebar import draw_sidebar

__all__ = ["Context", "current", "draw_sidebar", "new_click", "show_figure"]
