"""Where an image enters a model: the shared checks on inputs and the image-to-model-input step."""

from __future__ import annotations

import torch
from torch import nn

from .card import model_card

__all__ = ["normalize"]


def normalize(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in [0, 1] to the model's input: ``(x - mean) / std`` from its card."""
    card = model_card(model)
    mean = torch.tensor(card.mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(card.std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std
