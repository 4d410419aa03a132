"""Plotly figures for every view, re-exported flat: ``from vitviz import plots; plots.image_with_grid(...)``."""

from .attention import (PLOTLY_CONFIG, attention_comparison, attention_distance, attention_overlay,
                        attribution_panels, confidence_overlay, embedding_filters, faithfulness_curves, head_grid,
                        image_with_grid, jigsaw_scores, mask_overlay, patch_panels, patch_vector, predictions,
                        reassembly_animation, similarity_grid, similarity_map, token_sequence, training_curves)
from .attention import __all__
