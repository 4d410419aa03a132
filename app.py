"""vitviz: open a Vision Transformer up. Router and frame: navigation, the shared sidebar, the page."""

import streamlit as st

from ui import draw_sidebar

st.set_page_config(page_title="vitviz", page_icon=":material/visibility:", layout="wide")

page = st.navigation([
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/patches.py", title="Patches", icon=":material/grid_on:"),
    st.Page("pages/positions.py", title="Positions", icon=":material/place:"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("pages/attributions.py", title="Attributions", icon=":material/insights:"),
    st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
    st.Page("pages/jigsaw.py", title="Jigsaw", icon=":material/extension:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
])
# The sidebar is drawn after navigation is built: widgets made before it miss browser uploads.
draw_sidebar()
page.run()
