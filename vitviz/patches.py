"""Cutting images into patch tokens and putting them back."""

from __future__ import annotations

import torch

__all__ = ["a_grid", "embedding_filter_components", "grid_shape", "patchify", "unpatchify"]


def a_grid(grid_size: tuple[int, int]) -> str:
    """"an 8x8 grid", "a 14x14 grid": the grid with the article its first number takes when read aloud
    (an eight, an eleven, an eighteen, an eighty-...)."""
    rows, cols = grid_size
    spoken_with_a_vowel = str(rows).startswith("8") or rows in (11, 18)
    return f"{'an' if spoken_with_a_vowel else 'a'} {rows}x{cols} grid"


def grid_shape(image_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """(rows, cols) of the patch grid; the patch size must divide both sides."""
    height, width = image_size
    if patch_size <= 0 or height % patch_size or width % patch_size:
        raise ValueError(f"patch size {patch_size} does not divide the image size {height}x{width}")
    return height // patch_size, width // patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Images ``[B, C, H, W]`` to patch tokens ``[B, N, C*p*p]`` in raster order.

    Each token is flattened channel-first (C, p, p), the order a ``Conv2d`` patch embedding
    with kernel = stride = p reads its weights, so ``tokens @ W.flatten(1).T`` equals the conv.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(images.shape)}")
    batch, channels, _, _ = images.shape
    rows, cols = grid_shape(images.shape[-2:], patch_size)
    x = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, p, p)
    return x.reshape(batch, rows * cols, channels * patch_size * patch_size)


def unpatchify(tokens: torch.Tensor, patch_size: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Patch tokens ``[B, N, C*p*p]`` back to images ``[B, C, H, W]``; the exact inverse of ``patchify``."""
    if tokens.ndim != 3:
        raise ValueError(f"expected tokens [B, N, C*p*p], got shape {tuple(tokens.shape)}")
    batch, num_tokens, dim = tokens.shape
    rows, cols = grid_size
    if num_tokens != rows * cols:
        raise ValueError(f"{num_tokens} tokens do not fill a {rows}x{cols} grid")
    if dim % (patch_size * patch_size):
        raise ValueError(f"token size {dim} is not a multiple of patch area {patch_size}x{patch_size}")
    channels = dim // (patch_size * patch_size)
    x = tokens.reshape(batch, rows, cols, channels, patch_size, patch_size)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, rows, p, cols, p)
    return x.reshape(batch, channels, rows * patch_size, cols * patch_size)


def embedding_filter_components(proj_weight: torch.Tensor, num_components: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of a patch embedding's filters, shown as RGB images.

    As in Dosovitskiy et al. (2020), Fig. 7 left: the rows of the linear patch projection
    ``[D, C, p, p]`` are centred and decomposed; each component is one ``C x p x p`` image.

    Returns:
        components ``[K, C, p, p]``, each min-max scaled to [0, 1] for display, and
        ``[K]`` the fraction of the filters' variance each explains.
    """
    if proj_weight.ndim != 4:
        raise ValueError(f"expected a conv weight [D, C, p, p], got shape {tuple(proj_weight.shape)}")
    embed_dim, channels, p, _ = proj_weight.shape
    filters = proj_weight.detach().float().cpu().reshape(embed_dim, -1)
    centred = filters - filters.mean(dim=0, keepdim=True)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)  # right: (min(D, Cpp), Cpp)
    k = min(num_components, right.shape[0])
    variance = singular.square()
    explained = variance[:k] / variance.sum().clamp_min(1e-12)
    components = right[:k].reshape(k, channels, p, p)
    low = components.amin(dim=(1, 2, 3), keepdim=True)
    high = components.amax(dim=(1, 2, 3), keepdim=True)
    return (components - low) / (high - low).clamp_min(1e-12), explained
