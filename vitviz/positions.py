"""Positional embeddings: what a ViT learned about where each patch is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from torch import nn

__all__ = ["patch_pos_embed", "position_similarity", "resample_patch_pos_embed", "sincos_table"]


def position_similarity(pos_embed: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every position's embedding with every other's.

    Args:
        pos_embed: ``[N, D]`` patch-position embeddings, prefix tokens already excluded.

    Returns:
        ``[N, N]`` similarities in [-1, 1].
    """
    if pos_embed.ndim != 2:
        raise ValueError(f"expected pos_embed [N, D], got shape {tuple(pos_embed.shape)}")
    unit = F.normalize(pos_embed.float(), dim=-1)
    return unit @ unit.T


def patch_pos_embed(model: nn.Module) -> torch.Tensor | None:
    """The learned embeddings of the patch positions ``[gh*gw, D]``, or None when the model has none.

    timm stores prefix-token embeddings in front unless ``no_embed_class`` is set.
    """
    pos = getattr(model, "pos_embed", None)
    if not isinstance(pos, (torch.Tensor, nn.Parameter)) or pos.ndim != 3:
        return None
    grid_h, grid_w = model.patch_embed.grid_size
    num_patch = grid_h * grid_w
    skip = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
    if pos.shape[1] != skip + num_patch:
        raise ValueError(f"pos_embed has {pos.shape[1]} tokens; expected {skip} prefix + {num_patch} patches")
    return pos[0, skip:].detach().float().cpu()


def sincos_table(grid_size: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The fixed 2D sin-cos table ``[gh*gw, dim]`` (MoCo v3 / MAE style), in raster order."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos table needs a width divisible by 4, got {dim}")
    return build_sincos2d_pos_embed(list(grid_size), dim=dim, temperature=temperature).float()


def resample_patch_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """``[gh*gw, D]`` embeddings resampled to another grid with timm's ``resample_abs_pos_embed`` (bicubic)."""
    resampled = resample_abs_pos_embed(
        pos_embed.unsqueeze(0), new_size=list(new_grid), old_size=list(old_grid), num_prefix_tokens=0
    )
    return resampled[0]
