"""The jigsaw pretext: shuffle an image's patches, predict where each one came from.

One implementation shared by training and the Jigsaw view (Zhai et al. 2022, "Position
Prediction as an Effective Pretraining Strategy"; Chen et al. 2022, "Jigsaw-ViT"). A jigsaw
model is a timm ``VisionTransformer`` built with ``pos_embed='none'`` plus ``model.jigsaw_head``
(``nn.Linear(embed_dim, gh*gw)``, attached by ``vitviz.models.create_vit``): its patch tokens
carry no position, so the only way to place them is by what they show.

Convention everywhere: a permutation ``[B, N]`` says that shuffled token ``k`` carries the patch
from grid position ``permutation[b, k]`` (raster order); the logits ``[B, N, N]`` have one row
per shuffled token and one column per grid position, so the right answer for row ``k`` is
``permutation[b, k]``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .models import model_card, normalize

__all__ = [
    "decode_argmax",
    "jigsaw_logits",
    "jigsaw_metrics",
    "key_keep_mask",
    "position_logits",
    "region_positions",
    "shuffle_permutation",
    "solve",
    "solve_batch",
]


def shuffle_permutation(
    num_positions: int,
    generator: torch.Generator,
    *,
    batch_size: int = 1,
    positions: Optional[Sequence[int] | torch.Tensor] = None,
) -> torch.Tensor:
    """Seeded random permutations ``[batch_size, num_positions]`` (long, on the generator's device).

    Args:
        num_positions: N, the number of grid positions (gh*gw).
        generator: the source of randomness; the same seed gives the same permutations.
        batch_size: how many independent permutations.
        positions: when given, only these grid positions are shuffled among themselves and every
            other position keeps its patch (the Jigsaw view's "shuffle k patches" or "shuffle a
            region"); all positions when omitted.
    """
    if num_positions < 1 or batch_size < 1:
        raise ValueError(f"need at least one position and one permutation, got {num_positions} and {batch_size}")
    device = generator.device
    keys = torch.rand(batch_size, num_positions, generator=generator, device=device)
    if positions is None:
        return keys.argsort(dim=1)  # (B, N): a uniform random permutation per row
    chosen = torch.as_tensor(positions, dtype=torch.long, device=device).unique()
    if chosen.numel() and (chosen.min() < 0 or chosen.max() >= num_positions):
        raise ValueError(f"positions {chosen.tolist()} fall outside the grid's {num_positions} positions")
    permutation = torch.arange(num_positions, device=device).repeat(batch_size, 1)  # (B, N) identity
    order = keys[:, : chosen.numel()].argsort(dim=1)  # (B, k): a random order of the chosen positions
    permutation[:, chosen] = chosen[order]
    return permutation


def region_positions(grid_size: tuple[int, int], top: int, left: int, height: int, width: int) -> list[int]:
    """Raster indices of the grid positions in a rectangle, for ``shuffle_permutation(positions=...)``."""
    rows, cols = grid_size
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= rows and left + width <= cols):
        raise ValueError(f"region top={top} left={left} {height}x{width} does not fit a {rows}x{cols} grid")
    return [r * cols + c for r in range(top, top + height) for c in range(left, left + width)]


def key_keep_mask(
    batch_size: int,
    num_prefix_tokens: int,
    num_patches: int,
    drop_fraction: float,
    generator: torch.Generator,
) -> Optional[torch.Tensor]:
    """Which tokens stay visible as attention keys: bool ``[B, 1, 1, P+N]``, True = kept.

    ``round(drop_fraction * N)`` random patch tokens per image are hidden from the keys; prefix
    tokens are always kept and every token still makes a query, so each one gets a prediction.
    Returns None when nothing is dropped (attention then takes its fused path unchanged).
    """
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"the key drop fraction must be in [0, 1), got {drop_fraction}")
    num_drop = int(round(drop_fraction * num_patches))
    if num_drop == 0:
        return None
    device = generator.device
    ranks = torch.rand(batch_size, num_patches, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    keep_patches = ranks >= num_drop  # (B, N): exactly num_drop False per row
    keep_prefix = torch.ones(batch_size, num_prefix_tokens, dtype=torch.bool, device=device)
    return torch.cat([keep_prefix, keep_patches], dim=1)[:, None, None, :]  # (B, 1, 1, P+N)


def jigsaw_logits(
    model: nn.Module,
    images: torch.Tensor,
    permutation: torch.Tensor,
    key_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The jigsaw forward on normalised images: position logits ``[B, N, N]``.

    Patch tokens from ``model.patch_embed`` (no positional embedding), gathered in shuffled
    order, prefix tokens prepended, blocks (with ``key_mask`` from ``key_keep_mask`` as the
    attention mask, if given), final norm, then ``model.jigsaw_head`` on the patch tokens.
    """
    tokens = model.patch_embed(images)  # (B, N, D), raster order
    batch, num_patches, dim = tokens.shape
    tokens = tokens.gather(1, permutation[:, :, None].expand(batch, num_patches, dim))  # (B, N, D) shuffled
    x = model._pos_embed(tokens)  # (B, P+N, D): prefix tokens prepended; no positions when pos_embed is None
    x = model.norm_pre(model.patch_drop(x))
    for block in model.blocks:
        x = block(x, attn_mask=key_mask)
    x = model.norm(x)
    return model.jigsaw_head(x[:, model.num_prefix_tokens:])  # (B, N, gh*gw)


def position_logits(model: nn.Module, images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """A jigsaw checkpoint's position logits for images whose patches are shuffled by ``permutation``.

    Args:
        model: from ``vitviz.models.load_model`` for a checkpoint with a jigsaw head.
        images: float ``[B, 3, H, W]`` in [0, 1] at the model's input size (unshuffled; the
            model's normalisation is applied here).
        permutation: long ``[B, N]``; shuffled token ``k`` carries the patch from grid position
            ``permutation[b, k]``.

    Returns:
        ``[B, N, N]``: row ``k`` scores the grid positions for shuffled token ``k``; its right
        answer is ``permutation[b, k]``.
    """
    card = model_card(model)
    if card.jigsaw_grid is None or not hasattr(model, "jigsaw_head"):
        raise ValueError(f"{card.name} has no jigsaw head: position logits need a jigsaw checkpoint")
    if getattr(model, "pos_embed", None) is not None:
        raise ValueError(f"{card.name} has positional embeddings: a jigsaw model must be built with pos_embed='none'")
    if tuple(card.jigsaw_grid) != tuple(card.grid_size):
        raise ValueError(f"{card.name}: jigsaw head grid {card.jigsaw_grid} differs from the patch grid {card.grid_size}")
    if images.ndim != 4 or tuple(images.shape[-2:]) != tuple(card.image_size):
        raise ValueError(f"expected images [B, 3, {card.image_size[0]}, {card.image_size[1]}], got shape {tuple(images.shape)}")
    num_positions = card.grid_size[0] * card.grid_size[1]
    if permutation.shape != (images.shape[0], num_positions):
        raise ValueError(f"expected a permutation of shape {(images.shape[0], num_positions)}, got {tuple(permutation.shape)}")
    identity = torch.arange(num_positions, device=permutation.device)
    if not torch.equal(permutation.sort(dim=1).values, identity.expand_as(permutation)):
        raise ValueError(f"each row of the permutation must hold every position 0..{num_positions - 1} exactly once")
    device = next(model.parameters()).device
    return jigsaw_logits(model, normalize(images.to(device), model), permutation.to(device).long())


def decode_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Greedy decoding: each token's most likely position, ``[..., N, N] -> [..., N]``; positions may collide."""
    return logits.argmax(dim=-1)


def solve(logits: torch.Tensor) -> torch.Tensor:
    """The position of each token ``LongTensor[N]`` under the one-to-one assignment that
    maximises the summed log-softmax of ``logits [N, N]`` (rows: tokens, columns: positions)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"expected square logits [N, N], got shape {tuple(logits.shape)}")
    log_probs = F.log_softmax(logits.detach().double().cpu(), dim=-1).numpy()
    rows, columns = linear_sum_assignment(log_probs, maximize=True)
    assignment = np.empty(len(rows), dtype=np.int64)
    assignment[rows] = columns
    return torch.from_numpy(assignment).to(logits.device)


def solve_batch(logits: torch.Tensor) -> torch.Tensor:
    """``solve`` for each image of ``[B, N, N]`` logits: ``[B, N]``."""
    if logits.shape[0] == 0:
        return torch.empty(logits.shape[:2], dtype=torch.long, device=logits.device)
    return torch.stack([solve(item) for item in logits])


def jigsaw_metrics(logits: torch.Tensor, permutation: torch.Tensor) -> dict[str, float]:
    """Per-patch accuracy and exact-puzzle rate of both decoders over a batch.

    Args:
        logits: ``[B, N, N]`` from ``position_logits`` (or ``jigsaw_logits``).
        permutation: ``[B, N]``, the right answers.

    Returns:
        ``patch_acc_argmax``, ``puzzle_acc_argmax``, ``patch_acc_hungarian``,
        ``puzzle_acc_hungarian`` (fractions in [0, 1]) and ``chance`` (1/N, per patch).
    """
    if logits.ndim != 3 or logits.shape[:2] != permutation.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and permutation {tuple(permutation.shape)} do not match")
    permutation = permutation.to(logits.device)
    metrics: dict[str, float] = {}
    for decoder, predicted in (("argmax", decode_argmax(logits)), ("hungarian", solve_batch(logits))):
        correct = predicted == permutation  # (B, N)
        metrics[f"patch_acc_{decoder}"] = correct.float().mean().item()
        metrics[f"puzzle_acc_{decoder}"] = correct.all(dim=1).float().mean().item()
    metrics["chance"] = 1.0 / permutation.shape[1]
    return metrics
