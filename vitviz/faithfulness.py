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

ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
Methods"): remove the patches in relevance order, most relevant first (MoRF) or least relevant
first (LeRF), but fill them by noisy linear imputation (each removed pixel the weighted mean of its
8 neighbours, solved jointly, plus a little noise) instead of a constant, so that the shape of the
removed region, which a constant fill draws, tells the model nothing of what was there. The curve
stops before every patch is removed (nothing is left to impute from); its score is the mean
target probability over the removal steps. MoRF low and LeRF high are better.

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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .card import model_card
from .inputs import TargetLike, check_images, resolve_targets
from .patches import a_grid, grid_shape

__all__ = [
    "CURVE_KINDS",
    "Curve",
    "Steps",
    "all_curves",
    "TIE_SEED",
    "baseline_images",
    "blur",
    "deletion_curve",
    "insertion_curve",
    "noisy_linear_imputation",
    "mask_fractions",
    "mass_in_mask",
    "mean_fill",
    "patch_ranks",
    "pointing_game",
    "road_curve",
    "step_counts",
    "trapezoid_auc",
]

Steps = Literal["patch", "decile"]  # one patch at a time, or 10% of the patches at a time
TIE_SEED = 0  # the seed of the random order that breaks ties in a map's ranking
Order = Literal["morf", "lerf"]  # ROAD: most relevant first removed, or least relevant first
CurveKind = Literal["deletion", "insertion", "road-morf", "road-lerf"]
# Each curve kind: what it does to the patches, and whether a faithful map makes its score low or high.
CURVE_KINDS: dict[str, tuple[str, Literal["lower", "higher"]]] = {
    "deletion": ("deleted (dataset mean)", "lower"),
    "insertion": ("revealed on a blurred copy", "higher"),
    "road-morf": ("removed most relevant first (ROAD MoRF)", "lower"),
    "road-lerf": ("removed least relevant first (ROAD LeRF)", "higher"),
}

# Noisy linear imputation's neighbour weights (Rong et al. 2022, and grad-cam's copy of their code):
# (row offset, column offset) -> weight; the four sharing an edge weigh twice the four diagonal ones.
_NEIGHBOURS = {(0, 1): 1 / 6, (0, -1): 1 / 6, (1, 0): 1 / 6, (-1, 0): 1 / 6,
               (1, 1): 1 / 12, (1, -1): 1 / 12, (-1, 1): 1 / 12, (-1, -1): 1 / 12}


@dataclass(frozen=True)
class Curve:
    """A deletion, insertion or ROAD curve per image."""

    kind: CurveKind
    fractions: torch.Tensor  # (T,) share of the patches deleted, revealed or removed at each step, from 0
    probabilities: torch.Tensor  # (B, T) the target class's probability at each step

    @property
    def auc(self) -> torch.Tensor:
        """``[B]`` area under each image's curve (trapezoid rule) per unit of fraction: divided by the span of
        ``fractions``, which is 1 for deletion and insertion (the plain AUC over [0, 1]); for ROAD, whose
        curve stops before 1, the mean height of the curve."""
        span = (self.fractions[-1] - self.fractions[0]).item()
        return trapezoid_auc(self.fractions, self.probabilities) / span


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


def noisy_linear_imputation(images: torch.Tensor, missing: torch.Tensor, noise: float = 0.01,
                            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fill the missing pixels of ``images`` from their neighbours: ROAD's imputation (Rong et al. 2022).

    Each missing pixel is the weighted mean of its 8 neighbours (weight 1/6 for the four sharing an
    edge, 1/12 for the four diagonal ones, the weights of neighbours outside the image dropped and the
    rest taken as they are, so an edge pixel's equation is scaled rather than renormalised, as in the
    paper's code), known neighbours as they are and missing ones as unknowns: one sparse linear
    system per image (scipy's ``spsolve``), the same for every channel. Then Gaussian noise of standard
    deviation ``noise`` is added to the filled pixels. Known pixels are returned unchanged.

    Args:
        images: ``[B, C, H, W]`` (any space: the fill is a weighted mean, so it commutes with a
            per-channel affine normalisation; ``noise`` is in the images' units).
        missing: bool ``[B, H, W]``, True where a pixel is to be filled.
        noise: the noise's standard deviation; 0 for the plain linear fill.
        generator: the noise's random generator (None: torch's global one).

    Returns:
        ``[B, C, H, W]`` on the images' device and dtype.

    Raises:
        ValueError: ``missing`` not ``[B, H, W]`` bool; an image with every pixel missing (nothing
            to impute from); a negative noise.
    """
    if images.ndim != 4 or missing.shape != (images.shape[0], *images.shape[2:]) or missing.dtype != torch.bool:
        raise ValueError(f"missing must be a bool [B, H, W] mask for images {tuple(images.shape)}, "
                         f"got {missing.dtype} {tuple(missing.shape)}")
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative, not {noise}")
    filled = images.detach().cpu().double().clone()  # (B, C, H, W)
    for b in range(len(images)):
        where = missing[b].cpu().numpy()  # (H, W)
        if where.all():
            raise ValueError(f"image {b} has every pixel missing: there is nothing to impute from")
        if where.any():
            values = _linear_fill(filled[b].numpy(), where)  # (M, C)
            filled[b][:, torch.from_numpy(where)] = torch.from_numpy(values).T
    result = filled.to(images.dtype)
    if noise > 0:
        draws = torch.randn(images.shape, generator=generator, dtype=images.dtype)  # one draw per pixel, in order
        result = torch.where(missing.cpu()[:, None], result + noise * draws, result)
    return result.to(images.device)


def road_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: TargetLike, *,
               order: Order = "morf", steps: Steps = "decile", noise: float = 0.01, seed: int = 0,
               batch_size: int = 64, progress: Optional[Callable[[float], None]] = None) -> Curve:
    """ROAD: remove patches in relevance order, fill them by noisy linear imputation; the target probability.

    Rong et al. (2022), "A Consistent and Efficient Evaluation Strategy for Attribution Methods":
    a constant fill draws the removed region's outline, which a model can read (the class leaks
    through the mask's shape); imputing each removed pixel from its neighbours leaves little to read
    but what the pixels held. The removal is by whole patches, in the order of ``patch_ranks``
    (ties in raster order), as deletion; the curve runs from 0 to the last step before every patch
    is gone (K - 1 patches, or 90%), and ``Curve.auc`` is then its mean height.

    Args:
        images: model-ready ``[B, 3, H, W]``; maps: patch maps ``[B, gh, gw]``, larger = more relevant.
        target: one class, or one per image.
        order: ``"morf"`` removes the most relevant patches first (a faithful map makes it fall: lower is
            better); ``"lerf"`` the least relevant first (it should stay up: higher is better).
        steps: ``"decile"`` (0, 10%, ..., 90%) or ``"patch"`` (0, 1, ..., K - 1 patches).
        noise: the imputation noise's standard deviation, in model-input units (grad-cam's default 0.01).
        seed: the noise's seed: one field per image, drawn in image order (the same curve for the same
            inputs, whatever the batch size).
        batch_size: images per forward pass; progress: called with the fraction of forward passes done.

    Raises:
        ValueError: as ``deletion_curve``; an unknown order.
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', not {order!r}")
    original = check_images(model, images)
    grid = _check_curve_inputs(model, original, maps, batch_size)
    relevance = maps.to(original.device)
    ranks = patch_ranks(relevance if order == "morf" else -relevance)  # (B, gh, gw): 0 is removed first
    counts = step_counts(grid[0] * grid[1], steps)
    counts = counts[counts < grid[0] * grid[1]]  # (T,): every patch gone leaves nothing to impute from
    # One noise field per image, drawn in image order: each step's removed pixels take their share of it.
    noises = torch.randn(original.shape, generator=torch.Generator().manual_seed(seed)).to(original)  # (B, 3, H, W)

    def compose(item: torch.Tensor, step: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        filled = noisy_linear_imputation(original[item], changed, noise=0.0)  # (b, 3, H, W)
        return torch.where(changed[:, None], filled + noise * noises[item], filled)

    return _stepped_curve(f"road-{order}", model, original, ranks, counts, target, compose, batch_size, progress,
                          maps.device)


def all_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: TargetLike, *,
               steps: Steps = "patch", fill: Optional[torch.Tensor] = None, road_steps: Steps = "decile",
               road_noise: float = 0.01, seed: int = 0, batch_size: int = 64,
               progress: Optional[Callable[[float], None]] = None) -> dict[str, Curve]:
    """Deletion, insertion, ROAD MoRF and ROAD LeRF curves of the same maps, keyed by ``Curve.kind``.

    Args:
        steps, fill: deletion's and insertion's (``deletion_curve``); road_steps, road_noise, seed: ROAD's
            (``road_curve``'s steps, noise and seed).
        progress: called with the fraction of the four curves done.
        Others as ``deletion_curve``.
    """
    def part(index: int) -> Optional[Callable[[float], None]]:
        return None if progress is None else (lambda done: progress((index + done) / 4))

    common = dict(batch_size=batch_size)
    curves = [deletion_curve(model, images, maps, target, steps=steps, fill=fill, progress=part(0), **common),
              insertion_curve(model, images, maps, target, steps=steps, progress=part(1), **common)]
    curves += [road_curve(model, images, maps, target, order=order, steps=road_steps, noise=road_noise, seed=seed,
                          progress=part(2 + index), **common) for index, order in enumerate(("morf", "lerf"))]
    return {curve.kind: curve for curve in curves}


def mask_fractions(masks: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """The share of each grid cell's pixels inside the mask: bool ``[B, H, W]`` to ``[B, gh, gw]``."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks [B, H, W], got shape {tuple(masks.shape)}")
    height, width = masks.shape[-2:]
    gh, gw = grid_size
    if gh < 1 or gw < 1 or height % gh or width % gw:
        raise ValueError(f"a {gh}x{gw} grid does not tile {height}x{width} masks")
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
    grid = _check_curve_inputs(model, start, maps, batch_size)
    ranks = patch_ranks(maps.to(start.device))  # (B, gh, gw)
    counts = step_counts(grid[0] * grid[1], steps)  # (T,)

    def compose(item: torch.Tensor, step: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        return torch.where(changed[:, None], end[item], start[item])  # (b, 3, H, W)

    return _stepped_curve(kind, model, start, ranks, counts, target, compose, batch_size, progress, maps.device)


def _check_curve_inputs(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                        batch_size: int) -> tuple[int, int]:
    """The images' grid, once the maps are ``[B, gh, gw]`` on it and finite and ``batch_size`` is a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, not {batch_size!r}")
    grid = grid_shape(tuple(images.shape[-2:]), model_card(model).patch_size)
    _check_maps(maps)
    if tuple(maps.shape) != (len(images), *grid):
        raise ValueError(f"maps of shape {tuple(maps.shape)} do not match {len(images)} images on a "
                         f"{grid[0]}x{grid[1]} grid")
    return grid


def _stepped_curve(kind: str, model: nn.Module, images: torch.Tensor, ranks: torch.Tensor, counts: torch.Tensor,
                   target: TargetLike, compose: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                   batch_size: int, progress: Optional[Callable[[float], None]],
                   out_device: torch.device) -> Curve:
    """The target's probability at each step: at step t of image b the patches of rank below ``counts[t]``
    are changed, and ``compose(items [b], steps [b], changed [b, H, W] bool) -> [b, 3, H, W]`` makes the inputs."""
    batch = len(images)
    card = model_card(model)
    patch_size = card.patch_size
    grid = tuple(ranks.shape[-2:])
    targets = resolve_targets(target, batch, card.num_classes, device=images.device)
    counts = counts.to(images.device)
    # Every (image, step) pair is one forward row, run batch_size at a time.
    pairs = torch.cartesian_prod(torch.arange(batch, device=images.device), torch.arange(len(counts), device=images.device))
    probabilities = torch.empty(batch, len(counts), device=images.device)
    with torch.no_grad():
        for first in range(0, len(pairs), batch_size):
            item, step = pairs[first:first + batch_size].unbind(dim=1)  # (b,), (b,)
            changed = ranks[item] < counts[step].view(-1, 1, 1)  # (b, gh, gw)
            changed = changed.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)  # (b, H, W)
            logits = model(compose(item, step, changed)).float()  # (b, C)
            probabilities[item, step] = logits.softmax(dim=-1).gather(1, targets[item, None])[:, 0]
            if progress is not None:
                progress(min(first + batch_size, len(pairs)) / len(pairs))
    fractions = counts.float().cpu() / (grid[0] * grid[1])
    return Curve(kind, fractions, probabilities.to(out_device))


def _linear_fill(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The linear part of ROAD's imputation for one image: ``image [C, H, W]``, ``missing [H, W]`` bool;
    the values of the M missing pixels ``[M, C]`` in raster order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    height, width = missing.shape
    rows, cols = np.nonzero(missing)  # (M,), (M,): the unknowns, in raster order
    unknown = -np.ones((height, width), dtype=np.int64)
    unknown[rows, cols] = np.arange(len(rows))
    # Equation i: sum_j w_j * x_i - sum_(j missing) w_j * x_j = sum_(j known) w_j * v_j, over the in-image neighbours.
    diagonal = np.zeros(len(rows))
    entries_i, entries_j, entries_w = [], [], []
    right = np.zeros((len(rows), image.shape[0]))
    for (dy, dx), weight in _NEIGHBOURS.items():
        y, x = rows + dy, cols + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        i, y, x = np.nonzero(inside)[0], y[inside], x[inside]
        diagonal[i] += weight
        neighbour = unknown[y, x]
        free = neighbour >= 0
        entries_i.append(i[free])
        entries_j.append(neighbour[free])
        entries_w.append(np.full(free.sum(), -weight))
        np.add.at(right, i[~free], weight * image[:, y[~free], x[~free]].T)
    entries_i.append(np.arange(len(rows)))
    entries_j.append(np.arange(len(rows)))
    entries_w.append(diagonal)
    system = coo_matrix((np.concatenate(entries_w), (np.concatenate(entries_i), np.concatenate(entries_j))),
                        shape=(len(rows), len(rows))).tocsc()
    return spsolve(system, right).reshape(len(rows), -1)  # (M, C)


def _check_maps(maps: torch.Tensor) -> None:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(f"expected maps [B, gh, gw], got {getattr(maps, 'shape', type(maps).__name__)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps hold NaN or infinite values")


def _check_pair(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if masks.ndim != 3 or len(masks) != len(maps):
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not pair with maps of shape {tuple(maps.shape)}")
