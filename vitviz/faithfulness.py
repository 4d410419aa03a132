"""Is a map faithful, and does it find the object? Deletion, insertion, mass in mask, pointing game.

Faithfulness (Petsiuk et al. 2018, RISE): order the patches by a map's relevance, most relevant
first (``patch_ranks``: exact ties in a seeded random order, never in raster order). Deletion
replaces them in that order with the per-channel dataset mean; insertion reveals them in that order
on a blurred copy of the image. At each step, of one patch or of 10% of the patches, the target
class's softmax probability is recorded; the area under the curve over the fraction of patches
changed, [0, 1], is taken by the trapezoid rule. A faithful map makes deletion fall fast (low AUC)
and insertion rise fast (high AUC).

The end points are the baselines (``baseline_images``), not zero: with every patch deleted the
model sees a plain image of the fill colour, and with none revealed the blurred copy, and it gives
each of them some probability for the target (a four-class model at least about a quarter).

Localization (for images with a ground-truth object mask): the share of a map's positive mass
inside the mask, and the pointing game (is the arg-max patch inside the mask).

``images`` are model-ready (normalised, ``[B, 3, H, W]``) and ``maps`` are patch maps ``[B, gh, gw]``
(``AttributionMaps.patch``); the model is what ``vitviz.models.load_model`` returns, in eval mode.
Images and targets are checked by ``vitviz.inputs`` (``check_images``, ``resolve_targets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .card import model_card
from .inputs import TargetLike, check_images, resolve_targets
from .patches import a_grid, grid_shape

__all__ = [
    "Curve",
    "Steps",
    "TIE_SEED",
    "baseline_images",
    "blur",
    "deletion_curve",
    "insertion_curve",
    "mask_fractions",
    "mass_in_mask",
    "mean_fill",
    "patch_ranks",
    "pointing_game",
    "step_counts",
    "trapezoid_auc",
]

Steps = Literal["patch", "decile"]  # one patch at a time, or 10% of the patches at a time
TIE_SEED = 0  # the seed of the random order that breaks ties in a map's ranking


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve per image."""

    kind: Literal["deletion", "insertion"]
    fractions: torch.Tensor  # (T,) share of the patches deleted or revealed at each step, 0 to 1
    probabilities: torch.Tensor  # (B, T) the target class's probability at each step

    @property
    def auc(self) -> torch.Tensor:
        """``[B]`` area under each image's curve over the fraction [0, 1] (trapezoid rule)."""
        return trapezoid_auc(self.fractions, self.probabilities)


def step_counts(num_patches: int, steps: Steps = "patch") -> torch.Tensor:
    """How many patches are changed at each step, ``[T]`` from 0 to ``num_patches``.

    ``"patch"``: 0, 1, ..., K. ``"decile"``: ``round(f * K)`` for f = 0, 0.1, ..., 1 (a coarse
    grid may repeat a count; the trapezoid then adds nothing for that step).
    """
    if num_patches < 1:
        raise ValueError(f"num_patches must be at least 1, not {num_patches}")
    if steps == "patch":
        return torch.arange(num_patches + 1)
    if steps == "decile":
        return torch.tensor([round(num_patches * k / 10) for k in range(11)])
    raise ValueError(f"steps must be 'patch' or 'decile', not {steps!r}")


def patch_ranks(maps: torch.Tensor, seed: int = TIE_SEED) -> torch.Tensor:
    """Each patch's place in relevance order, ``[B, gh, gw]`` long: 0 for the most relevant.

    Ties: patches of exactly equal value keep the order of one random permutation of the grid, drawn
    from ``seed`` (the same permutation for every map of that grid, so an image gets the same order
    in a batch or alone, and every curve is reproducible). A map with large flat areas (occlusion's
    zeros where one patch changes nothing, a saturated score) is thereby ranked like a random map
    inside those areas, and an all-equal map scores like a random map, never like a perfect one: in
    raster order it would delete the top rows first and look perfect whenever the evidence sat there.
    """
    _check_maps(maps)
    flat = maps.flatten(1)  # (B, K)
    count = flat.shape[1]
    shuffle = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).to(maps.device)  # (K,)
    # A stable sort of the shuffled values keeps tied patches in the shuffled order.
    by_value = flat[:, shuffle].sort(dim=1, descending=True, stable=True).indices  # (B, K) places in the shuffle
    order = shuffle[by_value]  # (B, K): patch indices, most relevant first
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(count, device=maps.device).expand_as(order))
    return ranks.view(maps.shape)


def trapezoid_auc(fractions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Area under ``values [..., T]`` over ``fractions [T]`` by the trapezoid rule: ``[...]``."""
    return torch.trapezoid(values, fractions.to(values), dim=-1)


def mean_fill(model: nn.Module, pixel_mean: Optional[Sequence[float]] = None) -> torch.Tensor:
    """The per-channel dataset mean in model-input space ``[3]``, what deletion fills patches with.

    Args:
        pixel_mean: the data set's per-channel mean in [0, 1] pixels; None takes the model's
            normalisation mean (the mean of the data its normalisation was fitted on), which is 0
            after normalisation.
    """
    card = model_card(model)
    mean = torch.tensor(card.mean, dtype=torch.float32)
    given = mean if pixel_mean is None else torch.tensor(pixel_mean, dtype=torch.float32)
    if given.shape != (3,):
        raise ValueError(f"pixel_mean must hold 3 channel values, not {pixel_mean!r}")
    return (given - mean) / torch.tensor(card.std, dtype=torch.float32)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of ``[B, C, H, W]`` (standard deviation ``sigma`` pixels, kernel to +-2 sigma,
    reflected edges): the copy insertion starts from."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, not {sigma}")
    # Reflection needs the half-kernel to be smaller than the image.
    size = min(2 * math.ceil(2 * sigma) + 1, 2 * min(images.shape[-2:]) - 1)
    return gaussian_blur(images, [size, size], [sigma, sigma])


def baseline_images(model: nn.Module, images: torch.Tensor, fill: Optional[torch.Tensor] = None,
                    blur_sigma: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The curves' baselines, each ``[B, 3, H, W]`` in model-input space: every patch deleted (the image all
    ``fill``: where deletion ends) and the blurred copy (where insertion starts). Given pixels and a fill in
    pixels, the same images in pixels, to show: blurring commutes with the per-channel normalisation.

    Args:
        images: model-ready ``[B, 3, H, W]``.
        fill: ``[3]`` per-channel values in model-input space (``mean_fill``); None is ``mean_fill(model)``.
        blur_sigma: of the Gaussian blur in pixels; None is half a patch (detail within a patch is
            gone, the colour layout stays).
    """
    original = check_images(model, images)
    fill = mean_fill(model) if fill is None else fill
    if fill.shape != (3,):
        raise ValueError(f"fill must hold 3 channel values, got shape {tuple(fill.shape)}")
    sigma = model_card(model).patch_size / 2 if blur_sigma is None else blur_sigma
    return fill.to(original).view(1, 3, 1, 1).expand_as(original), blur(original, sigma)


def deletion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: TargetLike, *,
                   steps: Steps = "patch", fill: Optional[torch.Tensor] = None, batch_size: int = 64,
                   progress: Optional[Callable[[float], None]] = None) -> Curve:
    """Replace the most relevant patches first with ``fill``; the target probability at each step.

    Args:
        images: model-ready ``[B, 3, H, W]``.
        maps: patch maps ``[B, gh, gw]``, larger = more relevant.
        target: one class, or one per image.
        steps: ``"patch"`` (K + 1 points) or ``"decile"`` (11 points).
        fill: ``[3]`` per-channel values in model-input space (``mean_fill``); None is ``mean_fill(model)``.
        batch_size: images per forward pass.
        progress: called with the fraction of forward passes done.

    Raises:
        ValueError: images as ``vitviz.inputs.check_images``, targets as ``vitviz.inputs.resolve_targets``;
            maps that are not ``[B, gh, gw]`` on the images' grid or hold NaN; a fill that is not 3 values.
    """
    deleted, _ = baseline_images(model, images, fill=fill)
    # Deleted patches show the fill; the rest the original.
    return _curve("deletion", model, check_images(model, images), deleted, maps, target, steps, batch_size, progress)


def insertion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: TargetLike, *,
                    steps: Steps = "patch", blur_sigma: Optional[float] = None, batch_size: int = 64,
                    progress: Optional[Callable[[float], None]] = None) -> Curve:
    """Reveal the most relevant patches first on a blurred copy; the target probability at each step.

    Args:
        blur_sigma: of the Gaussian blur in pixels; None is half a patch (detail within a patch is
            gone, the colour layout stays).
        Others as ``deletion_curve``.
    """
    _, blurred = baseline_images(model, images, blur_sigma=blur_sigma)
    # Revealed patches show the original; the rest the blurred copy.
    return _curve("insertion", model, blurred, check_images(model, images), maps, target, steps, batch_size, progress)


def mask_fractions(masks: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """The share of each grid cell's pixels inside the mask: bool ``[B, H, W]`` to ``[B, gh, gw]``."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks [B, H, W], got shape {tuple(masks.shape)}")
    height, width = masks.shape[-2:]
    gh, gw = grid_size
    if gh < 1 or gw < 1 or height % gh or width % gw:
        raise ValueError(f"{a_grid((gh, gw))} does not tile {height}x{width} masks")
    return F.avg_pool2d(masks[:, None].float(), (height // gh, width // gw))[:, 0]  # (B, gh, gw)


def mass_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of each map's positive mass inside its mask, ``[B]`` in [0, 1].

    Only the positive part counts (evidence for the class; negative evidence is not "where the
    object is"). ``maps`` are ``[B, h, w]`` at pixel resolution or on a grid that tiles the masks
    ``[B, H, W]`` (each cell weighted by its share inside). A map with no positive mass gives NaN.
    """
    _check_maps(maps)
    _check_pair(maps, masks)
    positive = maps.float().clamp(min=0)
    inside = (positive * mask_fractions(masks, tuple(maps.shape[-2:])).to(positive)).sum(dim=(1, 2))
    total = positive.sum(dim=(1, 2))
    return torch.where(total > 0, inside / total, torch.full_like(total, math.nan))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, min_overlap: float = 0.5) -> torch.Tensor:
    """Is each map's arg-max patch inside its mask? ``[B]`` bool.

    Args:
        maps: patch maps ``[B, gh, gw]``; the arg-max is the patch ``patch_ranks`` puts first, so tied
            maxima are broken by the same seeded random order as the curves (a flat map points at a random
            patch, not at the top-left one).
        masks: bool ``[B, H, W]``.
        min_overlap: the share of the patch's pixels that must lie in the mask, in (0, 1].
    """
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap {min_overlap} must be in (0, 1]")
    _check_maps(maps)
    _check_pair(maps, masks)
    fractions = mask_fractions(masks, tuple(maps.shape[-2:])).flatten(1).to(maps.device)  # (B, gh*gw)
    best = patch_ranks(maps).flatten(1).argmin(dim=1)  # (B,): the patch ranked first
    return fractions.gather(1, best[:, None])[:, 0] >= min_overlap


def _curve(kind: Literal["deletion", "insertion"], model: nn.Module, start: torch.Tensor, end: torch.Tensor,
           maps: torch.Tensor, target: TargetLike, steps: Steps, batch_size: int,
           progress: Optional[Callable[[float], None]]) -> Curve:
    """Probabilities of ``target`` as patches go from ``start`` to ``end`` in relevance order.

    ``start`` and ``end`` are ``[B, 3, H, W]``; at step t the ``counts[t]`` most relevant patches show ``end``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, not {batch_size!r}")
    batch = len(start)
    patch_size = model_card(model).patch_size
    grid = grid_shape(tuple(start.shape[-2:]), patch_size)
    _check_maps(maps)
    if tuple(maps.shape) != (batch, *grid):
        raise ValueError(f"maps of shape {tuple(maps.shape)} do not match {batch} images on {a_grid(grid)}")
    targets = resolve_targets(target, batch, model_card(model).num_classes, device=start.device)
    ranks = patch_ranks(maps.to(start.device))  # (B, gh, gw)
    counts = step_counts(grid[0] * grid[1], steps).to(start.device)  # (T,)
    # Every (image, step) pair is one forward row, run batch_size at a time.
    pairs = torch.cartesian_prod(torch.arange(batch, device=start.device), torch.arange(len(counts), device=start.device))
    probabilities = torch.empty(batch, len(counts), device=start.device)
    with torch.no_grad():
        for first in range(0, len(pairs), batch_size):
            item, step = pairs[first:first + batch_size].unbind(dim=1)  # (b,), (b,)
            changed = ranks[item] < counts[step].view(-1, 1, 1)  # (b, gh, gw)
            changed = changed.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)  # (b, H, W)
            inputs = torch.where(changed[:, None], end[item], start[item])  # (b, 3, H, W)
            logits = model(inputs).float()  # (b, C)
            probabilities[item, step] = logits.softmax(dim=-1).gather(1, targets[item, None])[:, 0]
            if progress is not None:
                progress(min(first + batch_size, len(pairs)) / len(pairs))
    fractions = counts.float().cpu() / (grid[0] * grid[1])
    return Curve(kind, fractions, probabilities.to(maps.device))


def _check_maps(maps: torch.Tensor) -> None:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(f"expected maps [B, gh, gw], got {getattr(maps, 'shape', type(maps).__name__)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps hold NaN or infinite values")


def _check_pair(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if masks.ndim != 3 or len(masks) != len(maps):
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not pair with maps of shape {tuple(maps.shape)}")
