"""Accuracy of a model on a fixed evaluation set: jigsaw (both decoders) or classification.

Behind the ``evaluate`` command and training's validation; the explanation benchmark is ``vitviz.explanation_benchmark``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vitviz.data import build_data, fixed_set
from vitviz.jigsaw import jigsaw_metrics, shuffle_permutation
from vitviz.models import ModelCard, load_model

from .config import ConfigError, EvaluateConfig, resolve_device

__all__ = [
    "class_report",
    "classifier_logits",
    "classifier_scores",
    "evaluate_checkpoint",
    "evaluate_classifier",
    "evaluate_jigsaw",
    "eval_permutations",
    "normalize_images",
]


def normalize_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(images - mean) / std`` per channel; images ``[B, 3, H, W]`` in [0, 1]."""
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def eval_permutations(num_images: int, num_positions: int, seed: int) -> torch.Tensor:
    """The fixed shuffles ``[num_images, N]`` an evaluation set is scored on; the same for every model."""
    generator = torch.Generator().manual_seed(seed)
    return shuffle_permutation(num_positions, generator, batch_size=num_images)


@torch.no_grad()
def evaluate_jigsaw(
    model: nn.Module,
    images: torch.Tensor,
    permutations: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
) -> dict[str, float]:
    """Per-patch accuracy and exact-puzzle rate (argmax and Hungarian) and the loss, over ``images``."""
    logits_all = _batched_logits(model, images, mean, std, batch_size,
                                 lambda batch, start: model(batch, permutations[start:start + len(batch)]
                                                            .to(batch.device)))  # (n, N, N)
    metrics = jigsaw_metrics(logits_all, permutations)
    metrics["loss"] = F.cross_entropy(logits_all.flatten(0, 1), permutations.flatten()).item()
    return metrics


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
) -> dict[str, float]:
    """Top-1 accuracy and the loss over ``images``, with chance (1 / number of classes)."""
    return classifier_scores(classifier_logits(model, images, mean, std, batch_size), labels)


@torch.no_grad()
def classifier_logits(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                      batch_size: int = 256) -> torch.Tensor:
    """The model's logits ``[n, C]`` (float, on the CPU) for images ``[n, 3, S, S]`` in [0, 1], in eval mode."""
    return _batched_logits(model, images, mean, std, batch_size, lambda batch, start: model(batch))


def classifier_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy and the loss of logits ``[n, C]`` against labels ``[n]``, with chance (1 / C)."""
    return {
        "accuracy": (logits.argmax(dim=1) == labels).float().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "chance": 1.0 / logits.shape[1],
    }


def class_report(logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> dict:
    """Per-class accuracy and the confusion matrix of logits ``[n, C]`` against labels ``[n]``, as plain values.

    Returns:
        ``class_names``; ``confusion`` ``[C][C]`` counts (row: true class, column: predicted class);
        ``support`` ``[C]`` (items of each class); ``per_class_accuracy`` ``[C]`` (the diagonal over the
        support, None for a class without items).
    """
    num_classes = len(class_names)
    assert logits.shape[1] == num_classes, (logits.shape, num_classes)
    pairs = labels.long() * num_classes + logits.argmax(dim=1).long()  # (n,) true * C + predicted
    confusion = torch.bincount(pairs, minlength=num_classes ** 2).view(num_classes, num_classes)  # (C, C)
    support = confusion.sum(dim=1)  # (C,)
    return {
        "class_names": list(class_names),
        "confusion": confusion.tolist(),
        "support": support.tolist(),
        "per_class_accuracy": [confusion[c, c].item() / n if n else None for c, n in enumerate(support.tolist())],
    }


def evaluate_checkpoint(config: EvaluateConfig) -> tuple[ModelCard, str, dict[str, float]]:
    """Load a vitviz checkpoint and score it on ``config.split`` of its (or the given) dataset.

    Returns the model card, the dataset spec used and the metrics.
    """
    if config.split not in ("train", "val", "test"):
        raise ConfigError(f"--split {config.split!r} is not one of train, val, test")
    if config.images <= 0 or config.batch_size <= 0:
        raise ConfigError(f"--images and --batch-size must be positive, got {config.images} and {config.batch_size}")
    model = load_model(config.checkpoint, device=resolve_device(config.device))
    card = model.card
    kind = card.sidecar.get("kind")
    if kind not in ("jigsaw", "classifier"):
        raise ConfigError(f"{config.checkpoint} is not a vitviz jigsaw or classifier checkpoint (kind: {kind or 'none'})")
    training = card.sidecar.get("training", {})
    spec = config.data or training.get("eval_dataset") or training.get("dataset")
    if not spec:
        raise ConfigError(f"{card.name} does not record its dataset; pass --data")
    seed = config.seed if config.seed >= 0 else int(training.get("seed", 0))
    images, labels, _ = fixed_set(spec, config.split, card.image_size[0], config.images, seed=seed)
    if kind == "jigsaw":
        permutations = eval_permutations(len(images), card.grid_size[0] * card.grid_size[1], seed)
        return card, spec, evaluate_jigsaw(model, images, permutations, card.mean, card.std, config.batch_size)
    class_names = build_data(spec, config.split, card.image_size[0], seed=seed).class_names
    if tuple(class_names) != tuple(card.class_names):
        raise ConfigError(f"{card.name} predicts {len(card.class_names)} classes ({', '.join(card.class_names[:5])}...) "
                          f"but --data {spec} has {len(class_names)} ({', '.join(class_names[:5])}...)")
    return card, spec, evaluate_classifier(model, images, labels, card.mean, card.std, config.batch_size)


def _batched_logits(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                    batch_size: int, forward: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """``forward(normalized batch, index of its first image)`` over ``images`` in eval mode, on the CPU in float."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = []
    for start in range(0, len(images), batch_size):
        batch = normalize_images(images[start:start + batch_size].to(device), mean, std)
        logits.append(forward(batch, start).float().cpu())
    model.train(was_training)
    return torch.cat(logits)
