"""vitviz: open a Vision Transformer up and see how it works.

The library behind the app: models, images, patches, positions, attention,
attributions, jigsaw, plots and jobs. Nothing here imports streamlit.
"""

__version__ = "0.1.0"
