"""Plotly figures for every view. Each function takes tensors or arrays and returns a ``go.Figure``;
nothing here computes a map or touches a model, and nothing imports streamlit.

One module per view of the app, every public name re-exported here
(``from vitviz import plots; plots.image_with_grid(...)``):

    patches       the image and its patch grid, the token sequence, a patch as a vector, embedding filters
    positions     how alike the position embeddings are
    attention     a map over the image, one per head, a patch mask, attention distance, top predictions
    jigsaw        puzzle panels, placement confidence, the decoders' scores, the reassembly animation
    train         a run's curves, two models' attention side by side
    finetune      a fine-tune's accuracy per class and its confusion matrix
    attributions  every method's map on one scale, deletion and insertion curves
    trust         model randomisation, scores beside the baselines, ROAD curves, the agreement matrix
    layers        the logit lens, patch tokens as colour, token norms, flow against rollout, head knock-outs
    _common       the chart config and what the figures share: patch markers, outlines, image axes
"""

from ._common import PLOTLY_CONFIG
from .attention import attention_distance, attention_overlay, head_grid, mask_overlay, predictions
from .attributions import attribution_panels, faithfulness_curves
from .jigsaw import confidence_overlay, jigsaw_scores, patch_panels, reassembly_animation
from .layers import (flow_against_rollout, knockout_map, lens_curves, norm_map, norm_profile, norms_by_depth,
                     patch_classes, settling_map, token_colours)
from .patches import embedding_filters, image_with_grid, patch_vector, token_sequence
from .positions import similarity_grid, similarity_map
from .train import attention_comparison, training_curves
from .finetune import class_accuracy
from .trust import agreement_matrix, baseline_comparison, randomisation_curves, removal_curves

__all__ = [
    "PLOTLY_CONFIG",
    # patches
    "image_with_grid", "token_sequence", "patch_vector", "embedding_filters",
    # positions
    "similarity_grid", "similarity_map",
    # attention
    "attention_overlay", "head_grid", "mask_overlay", "attention_distance", "predictions",
    # jigsaw
    "patch_panels", "confidence_overlay", "jigsaw_scores", "reassembly_animation",
    # train
    "training_curves", "attention_comparison",
    # finetune
    "class_accuracy",
    # attributions
    "attribution_panels", "faithfulness_curves",
    # trust
    "randomisation_curves", "baseline_comparison", "removal_curves", "agreement_matrix",
    # layers
    "lens_curves", "patch_classes", "settling_map", "token_colours", "norms_by_depth", "norm_map", "norm_profile",
    "flow_against_rollout", "knockout_map",
]
