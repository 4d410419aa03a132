"""Is a map about the model at all? Model randomisation, chance-level maps, and how far methods agree.

Adebayo et al. (2018), "Sanity Checks for Saliency Maps": re-initialise a trained model's weights
and recompute the map. A map that explains the model must change; a map that stays alike is
explaining the image (its edges, its contrast), whatever the model computes with it.

    cascading     re-initialise the head, then the blocks from the last to the first, then the patch
                  and position embeddings, cumulatively, on a copy of the model; after each step, the
                  Spearman rank correlation of the map with the trained model's map.
    independent   the same parts one at a time, the rest of the model trained.

The parts of a timm ``VisionTransformer`` (``vitviz.models.load_model``'s models, or any module with
``blocks``):

    head          everything after the blocks: the final norm (``norm``, ``fc_norm``), attention
                  pooling (``attn_pool``), the classifier (``head``, and ``head_dist`` of a distilled DeiT)
    block i       ``blocks[i]``
    embeddings    everything before the blocks: ``patch_embed``, ``pos_embed``, the prefix tokens
                  (``cls_token``, ``dist_token``, ``reg_token``), ``norm_pre``

Re-initialisation follows timm's ViT initialisation: every weight of two or more dimensions
(linear and convolution weights, position embeddings, prefix tokens) is drawn from a truncated
normal of standard deviation 0.02; biases are set to 0 and the other one-dimensional parameters
(norm weights, LayerScale gammas) to 1. The draws come from a generator seeded by ``seed`` and the
part, so the cascading and the independent test give a part the same new weights.

The baselines every faithfulness and localization figure is read against: a seeded uniform random
map (chance) and a centre-biased map (a Gaussian bump on the grid's centre: objects are often
there, so "better than the centre" is the bar a real map should clear).

Spearman's rank correlation of two maps is taken over their flattened ``gh*gw`` cells, ties given
their average rank (``scipy.stats.rankdata``); it is NaN where either map is constant (a
CAM's ReLU can leave a randomised model's map all zero), and batch means leave NaN out.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Mapping, Optional

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from .card import model_card
from .inputs import TargetLike, resolve_targets

__all__ = [
    "BASELINES",
    "CENTRE",
    "Explain",
    "RANDOM",
    "agreement",
    "baseline_maps",
    "cascading_randomisation",
    "centre_map",
    "independent_randomisation",
    "method_explainer",
    "random_map",
    "randomisation_parts",
    "spearman",
]

# explain(model, images [B, 3, H, W]) -> maps [B, gh, gw]
Explain = Callable[[nn.Module, torch.Tensor], torch.Tensor]

# The maps that know nothing of the model, by display name.
RANDOM = "Random (chance)"
CENTRE = "Centre bias"
BASELINES = (RANDOM, CENTRE)

# Module attributes after the blocks and before them, in a timm VisionTransformer.
_HEAD = ("norm", "fc_norm", "attn_pool", "head", "head_dist")
_EMBEDDINGS = ("patch_embed", "pos_embed", "cls_token", "dist_token", "reg_token", "norm_pre")
_TRUNC_STD = 0.02  # timm's ViT initialisation


def randomisation_parts(model: nn.Module) -> list[str]:
    """The parts the cascading test re-initialises, in its order: ``head``, ``block L-1`` ... ``block 0``,
    ``embeddings`` (parts without parameters left out).

    Raises:
        ValueError: a model without ``blocks`` (a ``ModuleList`` or ``Sequential``).
    """
    return [name for name, _ in _parts(model)]


def cascading_randomisation(model: nn.Module, images: torch.Tensor, explain: Explain, seed: int = 0, *,
                            progress: Optional[Callable[[float], None]] = None) -> list[tuple[str, float]]:
    """Adebayo et al.'s cascading model randomisation: how far a map stays alike as the model is re-initialised.

    On a copy of ``model`` (the model passed in is left untouched), the head is re-initialised,
    then the blocks from the last to the first, then the patch and position embeddings,
    cumulatively; after each step the map is recomputed and compared with the trained model's map.

    Args:
        model: what ``vitviz.models.load_model`` returns (any module with ``blocks``), in eval mode.
        images: model-ready ``[B, 3, H, W]``.
        explain: ``explain(model, images) -> [B, gh, gw]``, e.g. ``method_explainer(GradCAM, target)``;
            called on the copy, once trained and once after each step.
        seed: seeds the new weights (see the module docstring).
        progress: called with the fraction of the maps computed, after each.

    Returns:
        One entry per step: (what has been randomised so far, e.g. ``"head + blocks 3-1"``, the
        Spearman rank correlation of the flattened map with the trained model's map, averaged over
        the batch; NaN where every image's map is constant).

    Raises:
        ValueError: a model without ``blocks``; maps that are not ``[B, gh, gw]``.
    """
    return _randomise(model, images, explain, seed, progress, cumulative=True)


def independent_randomisation(model: nn.Module, images: torch.Tensor, explain: Explain, seed: int = 0, *,
                              progress: Optional[Callable[[float], None]] = None) -> list[tuple[str, float]]:
    """The independent variant: each part re-initialised alone, the rest of the model trained.

    Args and errors as ``cascading_randomisation``; the parts come in the same order, each with the
    same new weights as there.

    Returns:
        One entry per part: (the part, ``"head"``, ``"block i"`` or ``"embeddings"``, the batch-mean
        Spearman rank correlation with the trained model's map).
    """
    return _randomise(model, images, explain, seed, progress, cumulative=False)


def method_explainer(method: type, target: TargetLike, **options: object) -> Explain:
    """An ``Explain`` for a ``vitviz.attributions`` method: its patch maps of ``target`` with ``options``.

    The target is fixed (the class the trained model is explained for stays the class explained as
    the weights change); each image is explained on its own, as the Attributions view and the
    benchmark do (SmoothGrad scales its noise to the batch's value range).
    """

    def explain(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        targets = resolve_targets(target, len(images), model_card(model).num_classes)
        return torch.cat([method(model).attribute(images[i:i + 1], int(targets[i]), **options).patch
                          for i in range(len(images))])

    return explain


def spearman(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps, over their flattened cells.

    Args:
        first, second: ``[B, ...]`` maps of one shape.

    Returns:
        ``[B]`` float64 in [-1, 1] on the CPU; NaN where either map is constant.

    Raises:
        ValueError: maps of different shapes, or with fewer than 2 cells.
    """
    if first.shape != second.shape or first.ndim < 2 or first[0].numel() < 2:
        raise ValueError(f"spearman needs two [B, ...] maps of one shape with 2 cells or more, "
                         f"got {tuple(first.shape)} and {tuple(second.shape)}")
    ranks = [rankdata(m.detach().double().cpu().flatten(1).numpy(), axis=1) for m in (first, second)]  # (B, K)
    a, b = (r - r.mean(axis=1, keepdims=True) for r in ranks)
    scale = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(scale > 0, (a * b).sum(axis=1) / scale, np.nan)
    return torch.from_numpy(rho)


def agreement(maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The rank correlation between every pair of methods' maps on the same images.

    Args:
        maps: method name -> ``[B, gh, gw]`` maps (all of one shape).

    Returns:
        ``[M, M]`` float64, rows and columns in the order of ``maps``: entry (i, j) is the batch-mean
        Spearman correlation of method i's maps with method j's (symmetric; 1 on the diagonal, NaN
        for a method whose maps are all constant).
    """
    names = list(maps)
    matrix = torch.full((len(names), len(names)), math.nan, dtype=torch.float64)
    for i, first in enumerate(names):
        for j in range(i, len(names)):
            matrix[i, j] = matrix[j, i] = _batch_mean(spearman(maps[first], maps[names[j]]))
    return matrix


def baseline_maps(batch: int, grid_size: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """The two baselines by display name: ``{RANDOM: random_map(...), CENTRE: centre_map(...)}``, each ``[B, gh, gw]``."""
    return {RANDOM: random_map(batch, grid_size, seed), CENTRE: centre_map(batch, grid_size)}


def random_map(batch: int, grid_size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Chance: ``[B, gh, gw]`` uniform in [0, 1), drawn from ``torch.Generator().manual_seed(seed)``."""
    return torch.rand(batch, *grid_size, generator=torch.Generator().manual_seed(seed))


def centre_map(batch: int, grid_size: tuple[int, int], sigma: Optional[float] = None) -> torch.Tensor:
    """A centre bias: ``[B, gh, gw]``, each cell ``exp(-d^2 / (2 sigma^2))`` with d its distance in patches from
    the grid's centre; ``sigma`` defaults to a quarter of the grid's longer side. Cells at equal distance
    tie (deletion and insertion then take them in raster order)."""
    gh, gw = grid_size
    sigma = max(gh, gw) / 4 if sigma is None else sigma
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    rows = torch.arange(gh, dtype=torch.float32) - (gh - 1) / 2
    cols = torch.arange(gw, dtype=torch.float32) - (gw - 1) / 2
    squared = rows[:, None] ** 2 + cols[None, :] ** 2  # (gh, gw)
    return torch.exp(-squared / (2 * sigma ** 2)).expand(batch, gh, gw).clone()


def _randomise(model: nn.Module, images: torch.Tensor, explain: Explain, seed: int,
               progress: Optional[Callable[[float], None]], cumulative: bool) -> list[tuple[str, float]]:
    """Both tests on a deep copy: each part re-initialised in turn, kept so (cumulative) or restored after its map."""
    clone = copy.deepcopy(model).eval()
    parts = _parts(clone)
    reference = _explain(explain, clone, images)
    _report(progress, 1, len(parts) + 1)
    results = []
    for index, (name, parameters) in enumerate(parts):
        kept = None if cumulative else [value.detach().clone() for _, value in parameters]
        _reinitialise(parameters, seed, index)
        label = _cascade_label([part for part, _ in parts[:index + 1]]) if cumulative else name
        results.append((label, _batch_mean(spearman(reference, _explain(explain, clone, images)))))
        if kept is not None:
            with torch.no_grad():
                for (_, value), trained in zip(parameters, kept):
                    value.copy_(trained)
        _report(progress, index + 2, len(parts) + 1)
    return results


def _parts(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Parameter]]]]:
    """``(part, [(parameter name, parameter)])`` in cascading order, parts without parameters left out."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        raise ValueError(f"{type(model).__name__} has no blocks (a ModuleList or Sequential): there is no depth "
                         "to randomise by")
    parts = [("head", _attribute_parameters(model, _HEAD))]
    parts += [(f"block {i}", list(blocks[i].named_parameters())) for i in reversed(range(len(blocks)))]
    parts.append(("embeddings", _attribute_parameters(model, _EMBEDDINGS)))
    return [(name, parameters) for name, parameters in parts if parameters]


def _attribute_parameters(model: nn.Module, names: tuple[str, ...]) -> list[tuple[str, nn.Parameter]]:
    found = []
    for name in names:
        value = getattr(model, name, None)
        if isinstance(value, nn.Parameter):
            found.append((name, value))
        elif isinstance(value, nn.Module):
            found += [(f"{name}.{key}", p) for key, p in value.named_parameters()]
    return found


def _reinitialise(parameters: list[tuple[str, nn.Parameter]], seed: int, part: int) -> None:
    """timm's ViT initialisation, drawn on the CPU from a generator seeded by (seed, part), copied in place."""
    generator = torch.Generator().manual_seed(seed * 10_000 + part)
    with torch.no_grad():
        for name, value in parameters:
            if value.ndim >= 2:
                fresh = nn.init.trunc_normal_(torch.empty(value.shape), std=_TRUNC_STD, generator=generator)
            elif name.endswith("bias"):
                fresh = torch.zeros(value.shape)
            else:  # norm weights, LayerScale gammas
                fresh = torch.ones(value.shape)
            value.copy_(fresh)


def _explain(explain: Explain, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    maps = explain(model, images)
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or len(maps) != len(images):
        raise ValueError(f"explain must return maps [B, gh, gw] for {len(images)} images, "
                         f"got {getattr(maps, 'shape', type(maps).__name__)}")
    return maps.detach()


def _report(progress: Optional[Callable[[float], None]], done: int, total: int) -> None:
    if progress is not None:
        progress(done / total)


def _batch_mean(values: torch.Tensor) -> float:
    defined = values[~torch.isnan(values)]
    return defined.mean().item() if len(defined) else math.nan


def _cascade_label(parts: list[str]) -> str:
    """What a cascade has randomised so far: ``head``, ``head + block 3``, ``head + blocks 3-1 + embeddings``."""
    blocks = [int(name.split()[1]) for name in parts if name.startswith("block ")]
    words = ["head"] if "head" in parts else []
    if len(blocks) == 1:
        words.append(f"block {blocks[0]}")
    elif blocks:
        words.append(f"blocks {blocks[0]}-{blocks[-1]}")
    if "embeddings" in parts:
        words.append("embeddings")
    return " + ".join(words)
