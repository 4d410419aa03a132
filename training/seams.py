"""The seam loss: an auxiliary jigsaw objective that asks each shuffled patch which patch lies to its right
and which below it (or that none does, at the grid's edge).

Predicting each patch's grid position from its pixels alone lets a small model memorise where a few photos'
contents sit; placing a patch among its neighbours needs what its edges show. The seam loss rewards that
directly: one relation per pair of tokens, the pairwise task of relative-position pretraining (Doersch et al.
2015, "Unsupervised Visual Representation Learning by Context Prediction") asked of every token at once, with
the bilinear pair scores of a pointer network (Vinyals et al. 2015). It trains alongside the position loss and
is dropped when the weights are saved: a checkpoint holds the ``JigsawViT`` alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SeamHead", "SeamJigsaw", "seam_targets"]


def seam_targets(permutation: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Which shuffled token holds the patch right of and below each shuffled token.

    Args:
        permutation: long ``[B, N]``; shuffled token ``k`` carries grid position ``permutation[b, k]``.
        grid: ``(gh, gw)``, with ``gh * gw == N``.

    Returns:
        ``(right, below)``, long ``[B, N]`` each: the index of the neighbouring token, or ``N`` where token
        ``k``'s patch is on the grid's last column (``right``) or last row (``below``).
    """
    rows, cols = grid
    batch, n = permutation.shape
    if rows * cols != n:
        raise ValueError(f"a {rows}x{cols} grid has {rows * cols} positions, the permutation {n}")
    holder = permutation.argsort(dim=1)  # (B, N): holder[b, q] is the token carrying position q
    none = torch.full_like(permutation, n)
    right = torch.where(permutation % cols < cols - 1, holder.gather(1, (permutation + 1).clamp(max=n - 1)), none)
    below = torch.where(permutation < n - cols, holder.gather(1, (permutation + cols).clamp(max=n - 1)), none)
    return right, below


class SeamHead(nn.Module):
    """Bilinear scores between every pair of shuffled tokens, one set for "right of" and one for "below".

    Args:
        embed_dim: the width of the tokens it reads (the ViT's ``embed_dim``).
        dim: the width of the query and key projections.
    """

    def __init__(self, embed_dim: int, dim: int = 64):
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(embed_dim, 4 * dim)  # right query, left key, down query, up key
        self.edge = nn.Linear(embed_dim, 2)  # the "no neighbour" score, right and below

    def logits(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(right, below)`` logits ``[B, N, N+1]`` for tokens ``[B, N, D]``: column ``j < N`` scores token ``j``
        as the neighbour (a token is never its own), column ``N`` scores "none"."""
        n = tokens.shape[1]
        right_q, left_k, down_q, up_k = self.proj(tokens).split(self.dim, dim=-1)
        edge = self.edge(tokens)  # (B, N, 2)
        self_pair = torch.eye(n, dtype=torch.bool, device=tokens.device)
        out = []
        for query, key, none in ((right_q, left_k, edge[..., :1]), (down_q, up_k, edge[..., 1:])):
            scores = (query @ key.transpose(1, 2)) / math.sqrt(self.dim)  # (B, N, N)
            out.append(torch.cat([scores.masked_fill(self_pair, float("-inf")), none], dim=-1))
        return out[0], out[1]

    def forward(self, tokens: torch.Tensor, permutation: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The seam loss: the mean cross-entropy of both relations over every token (a scalar)."""
        right, below = self.logits(tokens.float())
        right_target, below_target = seam_targets(permutation, grid)
        return 0.5 * (F.cross_entropy(right.flatten(0, 1), right_target.flatten())
                      + F.cross_entropy(below.flatten(0, 1), below_target.flatten()))


class SeamJigsaw(nn.Module):
    """A ``JigsawViT`` and its ``SeamHead`` trained as one: ``forward`` returns the position logits
    ``[B, N, gh*gw]`` and the seam loss, in one call that DDP and ``torch.compile`` can wrap."""

    def __init__(self, vit: nn.Module, seam: SeamHead):
        super().__init__()
        self.vit, self.seam = vit, seam

    def no_weight_decay(self) -> set[str]:
        return {f"vit.{name}" for name in self.vit.no_weight_decay()}

    def forward(self, images: torch.Tensor, permutation: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits, tokens = self.vit(images, permutation, key_mask, return_tokens=True)
        return logits, self.seam(tokens, permutation, self.vit.jigsaw_grid)
