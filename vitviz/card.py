"""A loaded model's card: what the views need to know about it, kept at ``model.card``
(the way timm keeps ``model.pretrained_cfg`` on the module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from torch import nn

__all__ = ["ModelCard", "Source", "model_card"]

Source = Literal["checkpoint", "timm", "file"]


@dataclass(frozen=True)
class ModelCard:
    """What the views need to know about a loaded model."""

    name: str
    source: Source
    provenance: str  # where the weights came from, in one sentence
    image_size: tuple[int, int]
    patch_size: int
    grid_size: tuple[int, int]
    num_prefix_tokens: int
    has_class_token: bool
    embed_dim: int
    depth: int
    num_heads: int
    num_parameters: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = ()
    label_set: str = ""  # what the class names are, e.g. "ImageNet-1k"; "" for a checkpoint's own classes
    jigsaw_grid: Optional[tuple[int, int]] = None  # grid of the jigsaw head, when there is one
    path: Optional[str] = None
    sidecar: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # What each prefix token is, in sequence order: "class token", "distillation token", "register 1", ...
    prefix_names: tuple[str, ...] = ()

    @property
    def prefix_labels(self) -> tuple[str, ...]:
        """Short labels for the prefix tokens: CLS, DIST, REG1, ..."""
        short = {"class token": "CLS", "distillation token": "DIST"}
        return tuple(short.get(n, n.replace("register ", "REG")) for n in self.prefix_names)

    @property
    def has_distillation_token(self) -> bool:
        return "distillation token" in self.prefix_names

    @property
    def has_jigsaw_head(self) -> bool:
        return self.jigsaw_grid is not None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def model_card(model: nn.Module) -> ModelCard:
    """The card of a model from ``load_model``; an error naming the problem for any other module."""
    card = getattr(model, "card", None)
    if not isinstance(card, ModelCard):
        raise ValueError(f"{type(model).__name__} has no vitviz ModelCard; load it with vitviz.models.load_model")
    return card
