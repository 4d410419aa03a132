"""Two models' attention on one image, on a common grid: where training (or any change) moved it.

Each model sees the image at its own input size (resized and centre-cropped, as it always does);
its class-token map (or the patch mean, for a model without a class token) is taken from the
rollout and from one layer's head. Two maps are made comparable by block-upsampling both to the
least common multiple of their grids and scaling each to mean 1: a value is "times the uniform
share", whatever the grid.
"""

from __future__ import annotations

import math

import torch
from PIL import Image
from torch import nn

from .attention import capture, class_map, class_query, rollout_layers, rollout_row
from .card import model_card
from .inputs import model_input

__all__ = ["class_attention", "common_grid"]


def class_attention(model: nn.Module, image: Image.Image, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rollout map and the map of ``head`` in ``layer`` for the class token of ``model`` on ``image``.

    Args:
        model: from ``vitviz.models.load_model`` (eval mode).
        image: any RGB image; fitted to the model's input size here.
        layer, head: 0-based, within the model's depth and heads.

    Returns:
        Two ``[gh, gw]`` maps on the model's patch grid (rows of attention, prefix tokens dropped).
    """
    card = model_card(model)
    if not 0 <= layer < card.depth:
        raise ValueError(f"layer {layer} is out of range for {card.name}'s {card.depth} layers")
    if not 0 <= head < card.num_heads:
        raise ValueError(f"head {head} is out of range for {card.name}'s {card.num_heads} heads")
    _, attentions = capture(model, model_input(image, model))  # L x (1, H, N, N)
    grid, prefix = card.grid_size, card.num_prefix_tokens
    rolled = rollout_row(rollout_layers(attentions), class_query(card.has_class_token), grid, prefix)[0]  # (gh, gw)
    one_head = class_map(attentions[layer][:, head], grid, prefix, card.has_class_token)[0]  # (gh, gw)
    return rolled.cpu(), one_head.cpu()


def common_grid(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both maps ``[gh, gw]`` block-upsampled to the least common multiple of their grids, each scaled to mean 1."""
    rows = math.lcm(left.shape[0], right.shape[0])
    cols = math.lcm(left.shape[1], right.shape[1])

    def scaled(m: torch.Tensor) -> torch.Tensor:
        up = m.float().repeat_interleave(rows // m.shape[0], 0).repeat_interleave(cols // m.shape[1], 1)
        return up / up.mean().clamp_min(torch.finfo(torch.float32).tiny)

    return scaled(left), scaled(right)
