"""vitviz: open a Vision Transformer up. Router and frame: navigation, the shared sidebar, the page."""

# Imported before any page: plotly reads pandas from sys.modules without importing it, so a figure built while
# another session's first run is still importing pandas (Home and Attributions import it) would find it half made.
import pandas  # noqa: F401
import streamlit as st

from ui import draw_sidebar
from ui.sidebar import SIDEBAR_WIDTH, page_icon

# The icon is an image made here: a ":material/...:" icon would be fetched from fonts.gstatic.com.
st.set_page_config(page_title="vitviz", page_icon=page_icon(), layout="wide", initial_sidebar_state=SIDEBAR_WIDTH)

# .streamlit/config.toml turns the sidebar navigation off, so that a fresh server's first run (which Streamlit
# makes from the pages/ folder before this script's st.navigation takes over) never lists those files; it is turned
# back on here, before the real menu is built.
st.set_option("client.showSidebarNavigation", True)
page = st.navigation([
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/patches.py", title="Patches", icon=":material/grid_on:"),
    st.Page("pages/positions.py", title="Positions", icon=":material/place:"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("pages/attributions.py", title="Attributions", icon=":material/insights:"),
    st.Page("pages/trust.py", title="Trust", icon=":material/verified:"),
    st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
    st.Page("pages/jigsaw.py", title="Jigsaw", icon=":material/extension:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
])
# The sidebar is drawn after navigation is built: widgets made before it miss browser uploads.
draw_sidebar()
page.run()
