"""``procedural``: endless generated unlabeled images, drawn on the device.

80% "dead leaves": up to 16 large and 112 small random discs, ellipses and rectangles (radii from a power law,
as fractions of the side) painted one over another on a colour gradient, each leaf flat, a gradient or stripes,
a third of the images blurred (0.5-2 px at 64 px, scaled with the side); 20% soft overlapping translucent blobs.
Images ``[n, 3, S, S]`` in [0, 1]. No split of its own: every split draws from the same distribution (``fixed_set``
gives val and test different images), and no augmentation: every training item is new.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .batches import ImageBatches, _rand

__all__: list[str] = []

# Procedural leaves per image: up to 16 large ones and 112 small ones; radii as fractions of the side.
_LARGE_LEAVES, _SMALL_LEAVES = 16, 112
_LEAF_RADII = (0.025, 0.125, 0.7)  # small leaves from the first to the second, large from there to the third
_CHUNK_ELEMENTS = 1 << 22  # largest (batch, leaves, pixels) block tested at once: 16 MB of float32


def _pixel_grid(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [0, 1]: ``y [S, 1]`` and ``x [1, S]``."""
    centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    return centres[:, None], centres[None, :]


def _gradients(u: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """``[B, 3, S, S]`` linear colour gradients; ``u [B, 7]``: two colours and a direction."""
    angle = u[:, 6, None, None] * 2 * math.pi
    along = (x - 0.5) * torch.cos(angle) + (y - 0.5) * torch.sin(angle)  # (B, S, S) in [-0.71, 0.71]
    t = (along / math.sqrt(2) + 0.5)[:, None]
    return u[:, 0:3, None, None] + (u[:, 3:6, None, None] - u[:, 0:3, None, None]) * t


def _leaf_inside(dx: Tensor, dy: Tensor, leaf: tuple[Tensor, ...]) -> Tensor:
    """Whether the points ``(dx, dy)`` from each leaf's centre lie in it (``leaf`` broadcasts with them)."""
    along_cos, along_sin, across_cos, across_sin, is_rect = leaf
    along = dx * along_cos + dy * along_sin  # in units of the leaf's radius
    across = dy * across_cos - dx * across_sin  # in units of its minor radius
    along, across = along * along, across * across
    return torch.where(is_rect, torch.maximum(along, across), along + across) <= 1


def _dead_leaves(n: int, size: int, generator: torch.Generator, device: torch.device,
                 textures: Optional[Tensor] = None, textured: float = 0.5) -> Tensor:
    """``[n, 3, S, S]``: random ellipses and rectangles over a gradient, each painted over the earlier ones.

    With ``textures [n, T, 3, S, S]`` (frames of photo crops, one set per image), each leaf and the background
    is, with probability ``textured``, cut out of one of its image's T frames instead of filled with colour: the
    "dead leaves with textures" of Baradad et al. (2021), "Learning to See by Looking at Noise", with photo
    crops for textures. The random numbers of the untextured case are drawn first, so ``textures=None`` gives
    the same images as before for the same generator.
    """
    y, x = _pixel_grid(size, device)
    images = _gradients(_rand(generator, device, n, 7), y, x)
    large, k = _LARGE_LEAVES, _LARGE_LEAVES + _SMALL_LEAVES
    p = _rand(generator, device, n, k, 15)
    cx, cy = p[..., 0] * 1.2 - 0.1, p[..., 1] * 1.2 - 0.1  # centres may lie just outside the frame
    # Radii with density r**-a; a = 3 is the scale-invariant law of natural images' occlusions, smaller a
    # (drawn per image, 2 to 3) gives more large leaves. The first slots hold the large radii, the rest the
    # small ones, which are drawn in a small window each: a fraction of the pixels to test.
    power = 1 - (2.0 + _rand(generator, device, n, 1))  # (n, 1): 1 - a
    low = torch.full((k,), _LEAF_RADII[0], device=device)
    high = torch.full((k,), _LEAF_RADII[1], device=device)
    low[:large], high[large:] = _LEAF_RADII[1], _LEAF_RADII[1]
    high[:large] = _LEAF_RADII[2]
    radius = (low**power + p[..., 2] * (high**power - low**power)) ** (1 / power)  # (n, k), fraction of the side
    # 2 to 16 large leaves per image: the unused slots move out of the frame.
    unused = torch.arange(k, device=device) >= 2 + (_rand(generator, device, n, 1) * (large - 1)).long()
    cx = torch.where(unused & (torch.arange(k, device=device) < large), -10.0, cx)
    minor = radius * (0.25 + 0.75 * p[..., 3])
    angle = p[..., 4] * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    leaf = tuple(t[..., None, None] for t in (cos / radius, sin / radius, cos / minor, sin / minor, p[..., 5] < 0.4))
    depth = _rand(generator, device, n, k).argsort(dim=1).float()  # (n, k): painting order, highest on top

    # The depth of the top leaf at each pixel, -1 for the background.
    top = torch.full((n, size * size), -1.0, device=device)
    chunk = max(1, min(large, _CHUNK_ELEMENTS // (n * size * size)))
    for start in range(0, large, chunk):
        c = slice(start, min(start + chunk, large))
        inside = _leaf_inside(x - cx[:, c, None, None], y - cy[:, c, None, None], tuple(t[:, c] for t in leaf))
        top = torch.maximum(top, torch.where(inside, depth[:, c, None, None], -1.0).amax(dim=1).view(n, -1))
    window = math.ceil(2 * _LEAF_RADII[1] * size) + 2
    offsets = torch.arange(window, device=device, dtype=torch.float32)
    chunk = max(1, min(k - large, _CHUNK_ELEMENTS // (n * window * window)))
    for start in range(large, k, chunk):
        c = slice(start, min(start + chunk, k))
        px = torch.floor(cx[:, c] * size - window / 2)[..., None] + offsets  # (n, chunk, window) columns
        py = torch.floor(cy[:, c] * size - window / 2)[..., None] + offsets  # rows
        dx = ((px + 0.5) / size - cx[:, c, None])[:, :, None, :]  # (n, chunk, 1, window)
        dy = ((py + 0.5) / size - cy[:, c, None])[:, :, :, None]  # (n, chunk, window, 1)
        inside = _leaf_inside(dx, dy, tuple(t[:, c] for t in leaf))  # (n, chunk, window, window)
        inside &= ((px >= 0) & (px < size))[:, :, None, :] & ((py >= 0) & (py < size))[:, :, :, None]
        pixel = py.clamp(0, size - 1)[..., :, None] * size + px.clamp(0, size - 1)[..., None, :]
        value = torch.where(inside, depth[:, c, None, None], -1.0)
        top.scatter_reduce_(1, pixel.long().view(n, -1), value.view(n, -1), reduce="amax")
    slot = torch.gather(depth.argsort(dim=1), 1, top.clamp(min=0).long())  # (n, S*S): the top leaf
    background = (top < 0).view(n, 1, size, size)

    # Each image's own palette: leaf colours pulled towards one base colour, some images muted, some vivid.
    base, spread = _rand(generator, device, n, 1, 3), 0.3 + 0.7 * _rand(generator, device, n, 1, 1)
    p[..., 6:12] = (base.repeat(1, 1, 2) + (p[..., 6:12] - base.repeat(1, 1, 2)) * spread)

    # Colour each pixel by its top leaf's fill: flat, a linear gradient, or stripes.
    def per_pixel(t: Tensor) -> Tensor:
        return torch.gather(t, 1, slot).view(n, size, size)

    colour_a = torch.gather(p[..., 6:9], 1, slot[..., None].expand(-1, -1, 3))  # (n, S*S, 3)
    colour_b = torch.gather(p[..., 9:12], 1, slot[..., None].expand(-1, -1, 3))
    fill = per_pixel(p[..., 12])
    direction = per_pixel(p[..., 13]) * 2 * math.pi
    along = (x - per_pixel(cx)) * torch.cos(direction) + (y - per_pixel(cy)) * torch.sin(direction)
    gradient = (0.5 + along / (2 * per_pixel(radius))).clamp(0, 1)
    frequency = 2.0 * 8.0 ** per_pixel(p[..., 14])  # 2 to 16 stripes across the image
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * frequency * along + 6 * direction)
    t = torch.where(fill < 0.55, 0.0, torch.where(fill < 0.8, gradient, stripes))  # (n, S, S)
    leaves = colour_a + (colour_b - colour_a) * t.view(n, size * size, 1)  # (n, S*S, 3)
    leaves = leaves.permute(0, 2, 1).reshape(n, 3, size, size)
    images = torch.where(background, images, leaves)
    if textures is None:
        return images
    # Leaf j of image b (and slot k, the background) shows frame `frame[b, j]` of image b, or -1: its colours.
    q = _rand(generator, device, n, k + 1, 2)
    frame = torch.where(q[..., 0] < textured, (q[..., 1] * textures.shape[1]).long(), -1)  # (n, k + 1)
    frame = torch.gather(frame, 1, torch.where(background.view(n, -1), k, slot))  # (n, S*S)
    flat = textures.flatten(3)  # (n, T, 3, S*S)
    cut = torch.gather(flat, 1, frame.clamp(min=0)[:, None, None, :].expand(-1, 1, 3, -1))[:, 0]  # (n, 3, S*S)
    return torch.where(frame[:, None, :] >= 0, cut, images.flatten(2)).view(n, 3, size, size)


def _soft_blobs(n: int, size: int, generator: torch.Generator, device: torch.device, blobs: int = 16) -> Tensor:
    """``[n, 3, S, S]``: translucent discs with soft edges, laid one over another on a gradient."""
    y, x = _pixel_grid(size, device)
    images = _gradients(_rand(generator, device, n, 7), y, x)
    p = _rand(generator, device, n, blobs, 8)
    radius = 0.05 + 0.35 * p[..., 2] ** 2  # (n, blobs), fraction of the side
    edge = 0.005 + 0.08 * p[..., 3] ** 2
    for j in range(blobs):
        distance = torch.sqrt((x - p[:, j, 0, None, None]) ** 2 + (y - p[:, j, 1, None, None]) ** 2)  # (n, S, S)
        alpha = torch.sigmoid((radius[:, j, None, None] - distance) / edge[:, j, None, None])
        alpha = (alpha * (0.4 + 0.6 * p[:, j, 4, None, None]))[:, None]  # (n, 1, S, S)
        images = images * (1 - alpha) + p[:, j, 5:8, None, None] * alpha
    return images


def _blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur of each image ``[B, C, S, S]`` with its own ``sigma [B]`` in pixels."""
    b, c, h, w = images.shape
    radius = min(int(math.ceil(3 * float(sigma.max()))), h - 1, w - 1)
    if radius < 1:
        return images
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1)
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=b * c)
    return flat.view(b, c, h, w)


def _defocus(images: Tensor, u: Tensor) -> Tensor:
    """Out-of-focus images: where ``u[:, 0] < 1/3``, a blur of 0.5 to 2 pixels at 64 px (by ``u[:, 1]``), scaled
    with the side of ``images [B, 3, S, S]``; ``u [B, 2]`` uniform."""
    blurred = u[:, 0] < 1 / 3
    sigma = torch.where(blurred, (0.5 + 1.5 * u[:, 1]) * images.shape[-1] / 64, 0.0)
    return _blur(images, sigma) if bool(blurred.any()) else images


def _procedural(n: int, size: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``[n, 3, S, S]`` in [0, 1]: 80% dead leaves (a third of them blurred), 20% soft blobs."""
    u = _rand(generator, device, n, 3)  # style, blurred or not, blur width
    blobs = u[:, 0] < 0.2
    images = torch.empty(n, 3, size, size, device=device)
    rows = (~blobs).nonzero().squeeze(1)
    if len(rows):
        images[rows] = _defocus(_dead_leaves(len(rows), size, generator, device), u[rows, 1:3])
    rows = blobs.nonzero().squeeze(1)
    if len(rows):
        images[rows] = _soft_blobs(len(rows), size, generator, device)
    return images.clamp_(0, 1)


class _Procedural(ImageBatches):
    def __init__(self, split: str, image_size: int, device: torch.device):
        super().__init__("procedural", split, image_size, device)

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        return _procedural(n, self.image_size, generator, self.device), self._unlabeled(n)
