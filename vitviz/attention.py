"""Where a ViT looks: every block's attention, rollout, gradient rollout, relevance, attention distance.

Notation: ``attentions`` is a list of L tensors ``[B, H, N, N]`` (post-softmax, each row sums to 1
over the keys), N = P + gh*gw with P prefix tokens (class token first, then registers) and the
gh x gw patch grid in raster order. Functions that run the model take ``images``: model-ready
tensors ``[B, 3, H, W]``, already normalised with the model's mean and std (``vitviz.inputs.normalize``),
checked and moved to the model's device by ``vitviz.inputs.check_images``; the model must be a timm
``VisionTransformer`` in eval mode. Targets are read by ``vitviz.inputs.resolve_targets``.

Works for any grid, patch size and number of prefix tokens (class token or not, registers or not).
timm's attention is fused (``scaled_dot_product_attention``), which never builds the attention
matrix; ``recorded_attention`` turns that off for the duration of one pass and restores it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Literal, Optional, Sequence, Union

import numpy as np
import torch
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_flow
from torch import nn

from .inputs import TargetLike, check_images, require_autograd, resolve_targets

__all__ = [
    "HeadFusion",
    "attention_flow",
    "attention_flow_size",
    "attention_gradients",
    "capture",
    "class_map",
    "class_query",
    "grad_rollout",
    "grad_rollout_matrix",
    "gradient_maps",
    "mass_mask",
    "mean_attention_distance",
    "mean_attention_distance_over",
    "pick_head",
    "prefix_share",
    "query_map",
    "recorded_attention",
    "relevance",
    "relevance_matrix",
    "rollout",
    "rollout_layers",
    "rollout_row",
    "top_predictions",
]

HeadFusion = Literal["mean", "max", "min"]
Query = Union[int, Literal["patches"]]

# Streamlit serves every session from one cached model in its own thread: one recording at a time,
# so that no pass restores the fused setting while another still needs it off.
_RECORDING = threading.RLock()


@contextmanager
def recorded_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record every block's attention during the forward passes run inside the ``with``.

    Turns off fused attention in each block (only the manual path builds the matrix) and hooks
    the attention dropout, whose output is the post-softmax attention ``[B, H, N, N]``. On exit
    the hooks are removed and each block's fused setting is restored to what it was.

    Yields:
        The list the attentions are appended to, in forward order. Tensors are recorded as they
        flow, so under ``torch.enable_grad`` they stay in the graph (gradients can be taken
        with respect to them).
    """
    modules = _attention_modules(model)
    recorded: list[torch.Tensor] = []
    owner = threading.get_ident()

    def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if threading.get_ident() == owner:  # another session's pass through the shared model is not ours
            recorded.append(output)

    with _RECORDING:
        fused = [m.fused_attn for m in modules]
        handles = [m.attn_drop.register_forward_hook(record) for m in modules]
        try:
            for m in modules:
                m.fused_attn = False
            yield recorded
        finally:
            for handle in handles:
                handle.remove()
            for m, setting in zip(modules, fused):
                m.fused_attn = setting


def capture(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One forward pass: the logits and every block's attention.

    Args:
        model: a timm ``VisionTransformer`` in eval mode (fused attention on or off: left as found).
        images: model-ready ``[B, 3, H, W]`` (normalised).

    Returns:
        logits ``[B, num_classes]`` and a list of L attentions ``[B, H, N, N]``, rows summing to 1,
        on the model's device.

    Raises:
        ValueError: as ``vitviz.inputs.check_images``; a model that is not a timm ``VisionTransformer``.
    """
    images = check_images(model, images)
    with torch.no_grad(), recorded_attention(model) as attentions:
        logits = model(images)
    _check_recorded(model, attentions)
    return logits, list(attentions)


def attention_gradients(model: nn.Module, images: torch.Tensor, target: TargetLike
                        ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """One forward and one backward pass: logits, attentions, and the target logit's gradient wrt each.

    Each batch item's own target logit is differentiated (items do not interact in a ViT, so
    one backward of their sum gives every item its own gradient). ``autograd.grad`` with the
    attentions as inputs returns gradient l for attention l, so layers cannot be mismatched,
    and no parameter gradient is computed or stored.

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        images: model-ready ``[B, 3, H, W]``.
        target: one class index for every item, or one per item (a sequence or a LongTensor ``[B]``).

    Returns:
        logits ``[B, C]`` and two lists of L tensors ``[B, H, N, N]``: attentions and gradients (detached).

    Raises:
        ValueError: as ``capture``; a model with no classifier head; a target as ``vitviz.inputs.resolve_targets``.
    """
    require_autograd("Gradient rollout and relevance")
    images = check_images(model, images)
    if getattr(model, "num_classes", 1) == 0:
        raise ValueError(f"{type(model).__name__} has no classifier head (num_classes=0): there is no class to explain")
    # The whole pass runs with gradients on, whatever the caller's mode (torch.no_grad() included); the
    # input requires grad so the attentions are in the graph even if the weights are frozen.
    with torch.enable_grad():
        images = images.detach().requires_grad_(True)
        with recorded_attention(model) as attentions:
            logits = model(images)
        _check_recorded(model, attentions)
        targets = resolve_targets(target, *logits.shape, device=logits.device)
        score = logits.gather(1, targets[:, None]).sum()
        gradients = torch.autograd.grad(score, attentions)
    return logits.detach(), [a.detach() for a in attentions], list(gradients)


def rollout(attentions: Sequence[torch.Tensor], head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0,
            start_layer: int = 0) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): attention flow through the residual stream.

    For each layer from ``start_layer``: fuse the heads, optionally zero the ``int(N*N*discard_ratio)``
    smallest entries of each item (never entry [0, 0]), add the identity for the residual,
    normalise each row over the keys, and multiply: ``R = A_l @ R`` from ``R = I``.

    The protected entry [0, 0] is the class token's attention to itself (as in jacobgil's vit-explain,
    whose discard keeps the class token's own row alive). In a model with no class token it is patch 0's
    self-attention: protecting it changes little there, since the identity added next gives every token
    a self-edge anyway; no other entry is protected.

    Args:
        attentions: L tensors ``[B, H, N, N]``.
        head_fusion: how heads are combined: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: fraction in [0, 1) of each fused matrix's entries set to zero.
        start_layer: the first layer taken into account (0-based).

    Returns:
        ``[B, N, N]``; row q is how much each token reaches query q. See ``query_map``.
    """
    return _product(rollout_layers(attentions, head_fusion, discard_ratio, start_layer))


def rollout_layers(attentions: Sequence[torch.Tensor], head_fusion: HeadFusion = "mean",
                   discard_ratio: float = 0.0, start_layer: int = 0) -> torch.Tensor:
    """Each layer's matrix as ``rollout`` multiplies it: heads fused, the ``int(N*N*discard_ratio)`` smallest
    entries of each item zeroed (never entry [0, 0]), the identity added, each row normalised over the keys.

    ``rollout`` is the product of these from the last layer down; ``rollout_row`` reads one query's row of it
    without forming the product. Each layer's matrix depends on that layer alone, so the matrices from start
    layer 0 serve every start layer: ``rollout_layers(attentions)[s:]`` is ``rollout_layers(attentions, ..., s)``.

    Args:
        attentions, head_fusion, discard_ratio, start_layer: as in ``rollout``.

    Returns:
        ``[L - start_layer, B, N, N]`` float32, each row summing to 1.
    """
    layers = _layers(attentions)
    if not 0 <= start_layer < len(layers):
        raise ValueError(f"start_layer {start_layer} is out of range for {len(layers)} layers")
    layers = layers[start_layer:]
    if head_fusion not in ("mean", "max", "min"):
        raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', not {head_fusion!r}")
    _check_discard(discard_ratio)
    prepared = _empty_layers(layers)  # (L, B, N, N)
    for out, a in zip(prepared, layers):  # one layer at a time: at 37x37 patches the stacked heads are 0.5 GB
        if head_fusion == "mean":
            torch.mean(a.float(), dim=1, out=out)  # (B, N, N)
        else:
            out.copy_(a.amax(dim=1) if head_fusion == "max" else a.amin(dim=1))
        _residual_(out, discard_ratio)
    return prepared


def rollout_row(layers: torch.Tensor, query: Query, grid_size: tuple[int, int],
                num_prefix_tokens: int = 1) -> torch.Tensor:
    """One query's row of the rollout of ``layers``, over the patches: ``query_map(rollout(...), query, ...)``.

    The row of a product is the row vector carried through its factors: ``e_q A_L ... A_1``, L vector-matrix
    products (``L * N * N`` multiply-adds) instead of the L matrix products of the whole rollout
    (``L * N**3``: N times more, 1374 at 37x37 patches and 5 prefix tokens). Equal to the whole rollout's row
    up to float rounding.

    Args:
        layers: ``[L, B, N, N]``, the matrices as rollout multiplies them (``rollout_layers``), first layer first.
        query, grid_size, num_prefix_tokens: as in ``query_map``.

    Returns:
        ``[B, gh, gw]``: the row's patch columns, prefix columns dropped (not renormalised).
    """
    if layers.ndim != 4 or layers.shape[-1] != layers.shape[-2] or len(layers) == 0:
        raise ValueError(f"expected layers [L, B, N, N], got shape {tuple(layers.shape)}")
    return _carry_row(layers, query, grid_size, num_prefix_tokens)


def grad_rollout_matrix(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor],
                        discard_ratio: float = 0.0) -> torch.Tensor:
    """Gradient rollout's ``[B, N, N]``: rollout of ``clamp(mean over heads of A * dA, min=0)`` per layer."""
    return _product(_grad_rollout_layers(attentions, gradients, discard_ratio))


def relevance_matrix(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chefer et al. (2021) relevance ``[B, N, N]``: ``R = I``; per block ``R = R + mean_h(clamp(dA * A, 0)) @ R``."""
    relevance = None
    for a_bar in _relevance_layers(attentions, gradients):  # (B, N, N) each
        relevance = _identity_like(a_bar) if relevance is None else relevance
        relevance = relevance + a_bar @ relevance
    return relevance


def gradient_maps(model: nn.Module, images: torch.Tensor, target: TargetLike,
                  discard_ratio: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient rollout and relevance for class ``target`` from one forward and one backward pass.

    Both weight each head's attention A by the gradient dA of the target logit with respect to it
    (``attention_gradients``), keep the positive part and average the heads:

        gradient rollout   rollout of ``clamp(mean_h(A * dA), min=0)`` per layer (``grad_rollout_matrix``:
                           Abnar & Zuidema 2020's rollout, weighted as in Gildenblat's vit-explain)
        relevance          ``R = I``; per block ``R = R + mean_h(clamp(dA * A, min=0)) @ R``
                           (``relevance_matrix``: Chefer et al. 2021, "Generic Attention-model Explainability")

    and each is read on the class token's row (the patch rows' mean for a model with no class token).

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        images: model-ready ``[B, 3, H, W]``.
        target: a class index, or one per item (a sequence or a LongTensor ``[B]``).
        discard_ratio: gradient rollout's, as in ``rollout``.

    Returns:
        Gradient rollout and relevance, ``[B, gh, gw]`` each, on the model's device.

    Raises:
        ValueError: as ``attention_gradients``; a discard ratio outside [0, 1).
    """
    _check_discard(discard_ratio)
    _, attentions, gradients = attention_gradients(model, images, target)
    return (_class_row(model, images, _grad_rollout_layers(attentions, gradients, discard_ratio)),
            _class_row(model, images, _relevance_layers(attentions, gradients), residual=True))


def grad_rollout(model: nn.Module, images: torch.Tensor, target: TargetLike, discard_ratio: float = 0.0) -> torch.Tensor:
    """Gradient rollout for class ``target``: one forward and one backward pass (see ``gradient_maps``).

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        images: model-ready ``[B, 3, H, W]``.
        target: a class index, or one per item (a sequence or a LongTensor ``[B]``).
        discard_ratio: as in ``rollout``.

    Returns:
        ``[B, gh, gw]``: the class token's row (the patch rows' mean for a model with no class token).
    """
    _check_discard(discard_ratio)
    _, attentions, gradients = attention_gradients(model, images, target)
    return _class_row(model, images, _grad_rollout_layers(attentions, gradients, discard_ratio))


def relevance(model: nn.Module, images: torch.Tensor, target: TargetLike) -> torch.Tensor:
    """Transformer relevance (Chefer et al. 2021, "Generic Attention-model Explainability") for ``target``.

    One forward and one backward pass (see ``gradient_maps``).

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        images: model-ready ``[B, 3, H, W]``.
        target: a class index, or one per item (a sequence or a LongTensor ``[B]``).

    Returns:
        ``[B, gh, gw]``: ``R[:, 0, P:]``, or for a model with no class token the mean of the patch rows of ``R[:, P:, P:]``.
    """
    _, attentions, gradients = attention_gradients(model, images, target)
    return _class_row(model, images, _relevance_layers(attentions, gradients), residual=True)


def query_map(matrix: torch.Tensor, query: Query, grid_size: tuple[int, int],
              num_prefix_tokens: int = 1) -> torch.Tensor:
    """One query's row over the patches, on the grid.

    Args:
        matrix: ``[..., N, N]``: one layer's attention ``[B, H, N, N]``, a head's ``[B, N, N]``, a rollout.
        query: a token index in [0, N) (0 is the class token when there is one; patch (r, c) is
            ``num_prefix_tokens + r * gw + c``), or ``"patches"`` for the mean of the patch rows.
        grid_size: (gh, gw).
        num_prefix_tokens: P, the tokens before the patches.

    Returns:
        ``[..., gh, gw]``: the row's patch columns, prefix columns dropped (not renormalised).
    """
    _check_tokens(matrix, grid_size, num_prefix_tokens)
    row = _query_row(matrix, query, num_prefix_tokens)  # (..., N)
    return row[..., num_prefix_tokens:].reshape(*row.shape[:-1], *grid_size)


def prefix_share(matrix: torch.Tensor, query: Query, grid_size: tuple[int, int],
                 num_prefix_tokens: int = 1) -> torch.Tensor:
    """The share of one query's attention that goes to the prefix tokens: what ``query_map`` leaves out.

    Args:
        matrix, query, grid_size, num_prefix_tokens: as in ``query_map``.

    Returns:
        ``[...]``: the row's mass on the P prefix columns (for ``"patches"``, the mean over the patch
        rows), in [0, 1] for attention rows that sum to 1; zero for a model with no prefix tokens.
    """
    _check_tokens(matrix, grid_size, num_prefix_tokens)
    return _query_row(matrix, query, num_prefix_tokens)[..., :num_prefix_tokens].sum(dim=-1)


def pick_head(per_head: torch.Tensor, head: Optional[int] = None, dim: int = 0) -> torch.Tensor:
    """One head's values, or the mean of all heads when ``head`` is None.

    Args:
        per_head: values with a head axis at ``dim``, e.g. ``query_map`` of one layer ``[H, gh, gw]``
            or ``prefix_share`` ``[H]``.
        head: 0-based head index, or None for the mean over the heads.
        dim: the head axis.

    Returns:
        ``per_head`` without its head axis.

    Raises:
        ValueError: a head index outside [0, H).
    """
    if head is None:
        return per_head.mean(dim=dim)
    num_heads = per_head.shape[dim]
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < num_heads:
        raise ValueError(f"head {head!r} is out of range for {num_heads} heads")
    return per_head.select(dim, head)


def class_query(has_class_token: bool) -> Query:
    """The query a classifier's decision is read from: the class token (0), else the patch rows' mean."""
    return 0 if has_class_token else "patches"


def class_map(matrix: torch.Tensor, grid_size: tuple[int, int], num_prefix_tokens: int,
              has_class_token: bool) -> torch.Tensor:
    """The map a classifier's decision is read from: the class token's row, else the patch rows' mean."""
    return query_map(matrix, class_query(has_class_token), grid_size, num_prefix_tokens)


def mean_attention_distance(attentions: Sequence[torch.Tensor], grid_size: tuple[int, int], patch_size: int,
                            num_prefix_tokens: int = 1) -> torch.Tensor:
    """Mean attention distance in pixels per layer and head (Dosovitskiy et al. 2020, Fig. 7 right).

    Prefix rows and columns are dropped without renormalising; for each query patch i the distance
    is ``sum_j A[i, j] * patch_size * ||g(i) - g(j)||`` with g the (row, col) grid position;
    averaged over query patches and the batch.

    Returns:
        ``[L, H]`` in pixels.
    """
    layers = _layers(attentions)
    _check_tokens(layers[0], grid_size, num_prefix_tokens)
    if patch_size <= 0:
        raise ValueError(f"patch_size must be positive, not {patch_size}")
    rows, cols = torch.meshgrid(torch.arange(grid_size[0]), torch.arange(grid_size[1]), indexing="ij")
    positions = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()  # (gh*gw, 2)
    num_tokens, patches = layers[0].shape[-1], grid_size[0] * grid_size[1]
    # The mean over query patches of sum_j A[i, j] d(i, j) is one inner product of A with the distances, over
    # 1/(gh*gw): zero distances on the prefix rows and columns drop them, so each layer is one matrix-vector
    # product over its contiguous [B, H, N*N], with no copy of the patch block.
    distance = torch.zeros(num_tokens, num_tokens, device=layers[0].device)
    distance[num_prefix_tokens:, num_prefix_tokens:] = torch.cdist(positions, positions) * patch_size  # pixels
    per_layer = [(a.float().reshape(*a.shape[:2], -1) @ distance.flatten()).mean(dim=0) / patches  # (H,)
                 for a in layers]
    return torch.stack(per_layer)  # (L, H)


def mean_attention_distance_over(model: nn.Module, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """``mean_attention_distance`` averaged over many images, one ``capture`` per batch.

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        batches: model-ready ``[B, 3, H, W]`` tensors on the model's device (sizes may differ
            between batches for a model that takes several sizes).

    Returns:
        ``[L, H]`` in pixels, every image weighted alike.
    """
    total, count = None, 0
    for images in batches:
        _, attentions = capture(model, images)
        distance = mean_attention_distance(attentions, _grid(model, images), int(model.patch_embed.patch_size[0]),
                                           model.num_prefix_tokens)  # (L, H)
        total = distance * len(images) if total is None else total + distance * len(images)
        count += len(images)
    if total is None:
        raise ValueError("no images given")
    return total / count


def mass_mask(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """DINO's mass threshold: per map, the smallest set of cells holding ``fraction`` of its total.

    As ``visualize_attention.py`` in facebookresearch/dino: each map is scaled to sum 1, cells are
    taken from the largest down until their mass reaches ``fraction``.

    Args:
        maps: ``[..., gh, gw]``, non-negative (attention, rollout, relevance).
        fraction: t in (0, 1].

    Returns:
        bool ``[..., gh, gw]``: True where a cell is kept.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} must be in (0, 1]")
    if maps.ndim < 2:
        raise ValueError(f"expected maps [..., gh, gw], got shape {tuple(maps.shape)}")
    if (maps < 0).any():
        raise ValueError(f"maps must be non-negative for a mass threshold (smallest value {maps.min().item():.3g})")
    flat = maps.flatten(-2).float()  # (..., gh*gw)
    values, order = flat.sort(dim=-1, descending=True)
    share = values / values.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    before = share.cumsum(dim=-1) - share  # mass of the larger cells taken before this one
    keep_sorted = before < fraction
    keep = torch.empty_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return keep.reshape(maps.shape)


def top_predictions(logits: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most probable classes per item: softmax probabilities ``[B, k]`` and class indices ``[B, k]``.

    k larger than the number of classes gives every class.
    """
    if logits.ndim != 2:
        raise ValueError(f"expected logits [B, C], got shape {tuple(logits.shape)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    probabilities = logits.float().softmax(dim=-1)
    return probabilities.topk(min(k, logits.shape[1]), dim=-1)


def _check_discard(discard_ratio: float) -> None:
    if not 0 <= discard_ratio < 1:
        raise ValueError(f"discard_ratio {discard_ratio} must be in [0, 1)")


def _residual_(fused: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """One fused layer ``[B, N, N]`` made, in place, what rollout multiplies: discard, + I, each row to 1."""
    if discard_ratio > 0:
        _discard_smallest_(fused, discard_ratio)
    fused.diagonal(dim1=-2, dim2=-1).add_(1)  # + I
    return fused.div_(fused.sum(dim=-1, keepdim=True))  # each query's row over the keys sums to 1


def _empty_layers(layers: list[torch.Tensor]) -> torch.Tensor:
    """Room for one fused float32 ``[B, N, N]`` per layer of ``[B, H, N, N]``s: ``[L, B, N, N]``."""
    batch, _, n, _ = layers[0].shape
    return torch.empty(len(layers), batch, n, n, device=layers[0].device)


def _product(layers: torch.Tensor) -> torch.Tensor:
    """``A_L @ ... @ A_1`` of ``[L, B, N, N]`` (first layer first): ``[B, N, N]``."""
    result = _identity_like(layers[0])
    for a in layers:
        result = a @ result
    return result


def _grad_rollout_layers(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor],
                         discard_ratio: float) -> torch.Tensor:
    """Gradient rollout's matrices as rollout multiplies them: ``[L, B, N, N]``."""
    _check_discard(discard_ratio)
    pairs = _paired(attentions, gradients)
    prepared = _empty_layers([a for a, _ in pairs])  # (L, B, N, N)
    for out, (a, g) in zip(prepared, pairs):
        torch.mean(a.float() * g.float(), dim=1, out=out).clamp_(min=0)  # (B, N, N)
        _residual_(out, discard_ratio)
    return prepared


def _relevance_layers(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """Relevance's ``A_bar = mean_h(clamp(dA * A, 0))`` per block: ``[L, B, N, N]``."""
    return torch.stack([(g.float() * a.float()).clamp(min=0).mean(dim=1) for a, g in _paired(attentions, gradients)])


def _paired(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]
            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers, grads = _layers(attentions), _layers(gradients)
    if len(layers) != len(grads) or layers[0].shape != grads[0].shape:
        raise ValueError(f"attentions {(len(layers), *layers[0].shape)} and gradients {(len(grads), *grads[0].shape)} "
                         "differ in shape")
    return list(zip(layers, grads))


def _class_row(model: nn.Module, images: torch.Tensor, layers: torch.Tensor, residual: bool = False) -> torch.Tensor:
    """The class map (``class_map``) of the product of ``layers`` ``[L, B, N, N]``: ``[B, gh, gw]``.
    ``residual``: the factors are ``I + A_l`` (relevance), else ``A_l`` (rollout)."""
    return _carry_row(layers, class_query(model.cls_token is not None), _grid(model, images), model.num_prefix_tokens,
                      residual)


def _carry_row(layers: torch.Tensor, query: Query, grid_size: tuple[int, int], num_prefix_tokens: int,
               residual: bool = False) -> torch.Tensor:
    """Row ``query`` of the product ``F_L ... F_1`` of ``layers`` ``[L, B, N, N]`` (``F_l = A_l``, or ``I + A_l``
    with ``residual``), as the row vector carried through the factors, last first; its patch columns ``[B, gh, gw]``."""
    _check_tokens(layers, grid_size, num_prefix_tokens)
    row = _query_vector(query, layers[0], num_prefix_tokens)  # (B, 1, N)
    for index in range(len(layers) - 1, -1, -1):  # the product's row is e_q F_L first
        row = row + row @ layers[index] if residual else row @ layers[index]
    return row[:, 0, num_prefix_tokens:].reshape(-1, *grid_size)


def _discard_smallest_(a: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero, in place, the ``int(N*N*ratio)`` smallest entries of each item ``[B, N, N]``, entry [0, 0] excepted.

    The count-th smallest value is found by selection (``kthvalue``, no sort); entries below it go, and of
    the entries equal to it, as many as the count still needs, first in raster order."""
    batch, n, _ = a.shape
    count = int(n * n * ratio)
    if count == 0:
        return a
    candidates = a.reshape(batch, n * n).clone()
    candidates[:, 0] = float("inf")  # [0, 0] (the class token on itself) is never a candidate
    threshold = candidates.kthvalue(count, dim=-1, keepdim=True).values  # (B, 1)
    drop = candidates <= threshold
    if (drop.sum(dim=-1) != count).any():  # ties at the threshold: keep the later ones
        below = candidates < threshold
        tied = candidates == threshold
        still = count - below.sum(dim=-1, keepdim=True)  # (B, 1): tied entries to drop too
        drop = below | (tied & (tied.cumsum(dim=-1) <= still))
    return a.masked_fill_(drop.reshape(batch, n, n), 0.0)


def _identity_like(matrix: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]`` identities matching ``matrix`` ``[B, N, N]``."""
    batch, n, _ = matrix.shape
    return torch.eye(n, dtype=matrix.dtype, device=matrix.device).expand(batch, n, n)


def _stack(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """L tensors ``[B, H, N, N]`` as one ``[L, B, H, N, N]``."""
    return attentions if isinstance(attentions, torch.Tensor) and attentions.ndim == 5 else torch.stack(_layers(attentions))


def _layers(attentions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """L tensors ``[B, H, N, N]`` (or one stacked ``[L, B, H, N, N]``), checked, as a list without copying."""
    layers = list(attentions)
    if len(layers) == 0:
        raise ValueError("no attention layers given")
    shape = tuple(layers[0].shape)
    if any(tuple(a.shape) != shape for a in layers) or len(shape) != 4 or shape[-1] != shape[-2]:
        raise ValueError(f"expected L attentions [B, H, N, N], got shapes {sorted({tuple(a.shape) for a in layers})}")
    return layers


def _query_vector(query: Query, like: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """The row vector ``[B, 1, N]`` that picks row ``query`` of a ``[B, N, N]`` like ``like`` (for ``"patches"``:
    the mean of the patch rows)."""
    batch, num_tokens = like.shape[0], like.shape[-1]
    _check_query(query, num_tokens)
    vector = torch.zeros(batch, 1, num_tokens, dtype=like.dtype, device=like.device)
    if query == "patches":
        vector[..., num_prefix_tokens:] = 1 / (num_tokens - num_prefix_tokens)
    else:
        vector[..., query] = 1
    return vector


def _check_query(query: Query, num_tokens: int) -> None:
    if query != "patches" and not (isinstance(query, int) and not isinstance(query, bool) and 0 <= query < num_tokens):
        raise ValueError(f"query {query!r} is neither a token index in [0, {num_tokens}) nor 'patches'")


def _check_tokens(matrix: torch.Tensor, grid_size: tuple[int, int], num_prefix_tokens: int) -> int:
    num_tokens = matrix.shape[-1]
    if num_prefix_tokens < 0 or num_tokens != num_prefix_tokens + grid_size[0] * grid_size[1]:
        raise ValueError(f"{num_tokens} tokens are not {num_prefix_tokens} prefix tokens and a "
                         f"{grid_size[0]}x{grid_size[1]} grid")
    return num_tokens


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """Each block's attention: the one submodule with a ``fused_attn`` switch and an ``attn_drop``."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or len(blocks) == 0:
        raise ValueError(f"{type(model).__name__} has no transformer blocks: expected a timm VisionTransformer")
    modules = []
    for index, block in enumerate(blocks):
        found = [m for m in block.modules() if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)]
        if len(found) != 1:
            raise ValueError(f"block {index} ({type(block).__name__}) has {len(found)} timm attention modules, not one")
        modules.append(found[0])
    return modules


def _check_recorded(model: nn.Module, attentions: list[torch.Tensor]) -> None:
    depth = len(model.blocks)
    if len(attentions) != depth:
        raise ValueError(f"recorded {len(attentions)} attentions for {depth} blocks: the model's forward "
                         "does not run each block's attention once")


def _grid(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """(gh, gw) for this input size (the model may take sizes other than its default)."""
    return tuple(model.patch_embed.dynamic_feat_size(tuple(images.shape[-2:])))


def _query_row(matrix: torch.Tensor, query: Query, num_prefix_tokens: int) -> torch.Tensor:
    """Row ``query`` of ``[..., N, N]``, or the mean of the patch rows for ``"patches"``: ``[..., N]``."""
    _check_query(query, matrix.shape[-1])
    return matrix[..., num_prefix_tokens:, :].mean(dim=-2) if query == "patches" else matrix[..., query, :]


# --- attention flow --------------------------------------------------------------------------------

# scipy's maximum flow takes integer capacities: each capacity (at most 1) is rounded to a multiple of
# 2**-30, which moves a cut of k edges by at most k * 2**-31; every flow value stays below 2**31.
_FLOW_SCALE = 2 ** 30


def attention_flow(attentions: Sequence[torch.Tensor], grid_size: tuple[int, int], num_prefix_tokens: int = 1,
                   has_class_token: Optional[bool] = None,
                   progress: Optional[Callable[[float], None]] = None) -> torch.Tensor:
    """Attention flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

    The layered graph has a node per token at each layer boundary 0..L; the edge from token j at
    boundary l to token i at boundary l+1 has capacity ``A_l[i, j]``, with
    ``A_l = 0.5 * mean_h(attn_l) + 0.5 * I``, rows renormalised (the residual mixing of rollout). The
    value of input patch j is the maximum flow from node (0, P + j) to the class token at boundary L;
    for a model with no class token, the mean over the patch tokens t at L of the maximum flows from
    (0, P + j) to (L, P + t).

    The maximum flows are exact (scipy's Dinic, ``scipy.sparse.csgraph.maximum_flow``, on capacities
    rounded to multiples of 2**-30). The layered structure keeps them cheap: one graph per image
    serves every patch's problem, since only the source changes (boundary 0 has no incoming
    edges, so its other nodes carry nothing); and with a class token, only the edges into the class
    token are kept at the last boundary. Each problem has L * N * N edges at most, and there are
    gh*gw of them per image (gh*gw squared with no class token): see ``attention_flow_size``.

    Args:
        attentions: L tensors ``[B, H, N, N]``.
        grid_size: (gh, gw).
        num_prefix_tokens: P, the tokens before the patches.
        has_class_token: whether token 0 is a class token; None: whenever P > 0.
        progress: called with the fraction of the maximum-flow problems solved.

    Returns:
        ``[B, gh, gw]`` float64 flow values in [0, 1] (each node's incoming capacities sum to 1, its row of ``A_l``).

    Raises:
        ValueError: attentions that are not L tensors ``[B, H, N, N]`` of P prefix tokens and the grid; a
            class token with P = 0.
    """
    stack = _stack(attentions)  # (L, B, H, N, N)
    num_tokens = _check_tokens(stack, grid_size, num_prefix_tokens)
    with_class = num_prefix_tokens > 0 if has_class_token is None else has_class_token
    if with_class and num_prefix_tokens == 0:
        raise ValueError("a class token needs num_prefix_tokens >= 1")
    depth, batch = stack.shape[:2]
    fused = stack.detach().double().cpu().mean(dim=2)  # (L, B, N, N)
    mixed = 0.5 * fused + 0.5 * torch.eye(num_tokens, dtype=fused.dtype)
    mixed = mixed / mixed.sum(dim=-1, keepdim=True)  # (L, B, N, N); row i: what token i takes from each token j
    patches = range(num_prefix_tokens, num_tokens)
    sinks = [depth * num_tokens] if with_class else [depth * num_tokens + t for t in patches]
    total, done = batch * len(patches) * len(sinks), 0
    flows = torch.zeros(batch, len(patches), dtype=torch.float64)
    for item in range(batch):
        graph = _flow_graph(mixed[:, item].numpy(), sinks)
        for column, source in enumerate(patches):
            values = [maximum_flow(graph, source, sink).flow_value for sink in sinks]
            flows[item, column] = sum(values) / len(values) / _FLOW_SCALE
            done += len(sinks)
            if progress is not None:
                progress(done / total)
    return flows.reshape(batch, *grid_size)


def attention_flow_size(depth: int, grid_size: tuple[int, int], num_prefix_tokens: int = 1,
                        has_class_token: bool = True) -> int:
    """The work of ``attention_flow`` for one image: maximum-flow problems x edges per problem.

    Dinic's time grows faster than this, but it ranks models: about 90 million for
    ``vit_base_patch16_224`` (a few seconds), 30 billion for a 37x37 grid.
    """
    patches = grid_size[0] * grid_size[1]
    num_tokens = num_prefix_tokens + patches
    problems = patches if has_class_token else patches * patches
    return problems * depth * num_tokens * num_tokens


def _flow_graph(mixed: np.ndarray, sinks: list[int]) -> csr_array:
    """The layered graph of ``mixed`` ``[L, N, N]`` (numpy) as scipy's CSR capacities: node (l, i) is
    ``l * N + i``; the edge (l, j) -> (l + 1, i) has capacity ``mixed[l, i, j]``; at the last boundary
    only edges into ``sinks`` are kept."""
    depth, num_tokens, _ = mixed.shape
    nodes = (depth + 1) * num_tokens
    starts, ends, capacities = [], [], []
    for layer in range(depth):
        targets = np.arange(num_tokens) if layer < depth - 1 else np.array(sinks) - depth * num_tokens
        i, j = np.meshgrid(targets, np.arange(num_tokens), indexing="ij")  # (targets, N) each
        starts.append((layer * num_tokens + j).ravel())
        ends.append(((layer + 1) * num_tokens + i).ravel())
        capacities.append(mixed[layer][i, j].ravel())
    scaled = np.rint(np.concatenate(capacities) * _FLOW_SCALE).astype(np.int32)
    keep = scaled > 0
    return csr_array((scaled[keep], (np.concatenate(starts)[keep], np.concatenate(ends)[keep])), shape=(nodes, nodes))
