"""Training data: bundled photos, generated images, labeled sets and image folders, as batches on the device.

Every source keeps its pixels as one tensor on the training device and makes each batch there
(crops, resizing, augmentation, drawing), so a GPU never waits on a data loader.

Data spec (the ``--data`` option), one source or a weighted mixture:

    photos          unlabeled random crops of the bundled sample photos (``vitviz.samples``); photo-level
                    split: train crops come from ``TRAIN_PHOTOS``, val and test crops from ``HELD_OUT_PHOTOS``
    procedural      endless generated unlabeled images: layered random discs, ellipses and rectangles
                    ("dead leaves", sizes from a power law) over colour gradients, some filled with stripes or
                    gradients, some blurred, some made of soft overlapping blobs
    shapes          generated, labeled: one circle, square, triangle or star (``SHAPES_CLASSES``) at a random
                    position, size (35-60% of the side), rotation and contrasting colour over a muted photo crop
                    (train photos for train, held-out photos for val and test); item i of a split is fixed by
                    (split, i, seed) and has an object mask (``shapes_item``, ``fixed_set``)
    digits          scikit-learn's 8x8 handwritten digits (10 classes, bright ink on black), upscaled
    cifar10         torchvision's CIFAR-10 / CIFAR-100 under ``data_root()`` ($VITVIZ_DATA, else
    cifar100        ~/.cache/vitviz/data); never downloaded here: a missing set fails at once with the command
                    that gets it; val is a fixed 5,000 of the 50,000 training images, test the official test set
    folder:PATH     a folder with one sub-folder of images per class (a bare path to an existing folder works
                    too); its train/ and val/ (and test/) sub-folders are the split when present, else a fixed
                    80/10/10 split per class; unreadable images are skipped and counted (``.skipped``, ``.notes``)
    A:W+B:W         a mixture: each batch item comes from part A or B with probability proportional to its
                    weight W (default 1), e.g. ``photos:1+procedural:1``; labeled only when every part has the
                    same classes (labels -1 otherwise); a folder path inside a mixture cannot contain "+"

``procedural`` has no split of its own: every split draws from the same endless distribution, and
``fixed_set`` gives val and test different images.

Augmentation (train split only, on the device): random resized crops and flips for ``photos``; crops of
80-100% of the side (small shifts and zooms) and flips for labeled sets (no flips for ``digits``, where a
mirrored digit is another shape); none for ``procedural`` and ``shapes``, whose every training item is new.
Val and test get none: ``photos`` then gives square crops without flips.

Determinism: a batch is a function of the ``torch.Generator`` passed to ``sample`` (its random numbers are
drawn on the generator's device); ``shapes`` items and ``fixed_set`` are functions of ``seed``. Splits never
depend on ``seed``, so no seed can move a test item into training.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "ImageBatches",
    "SHAPES_CLASSES",
    "SOURCES",
    "build_data",
    "data_root",
    "describe_specs",
    "fixed_set",
    "shapes_item",
]

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
SOURCES: tuple[str, ...] = ("photos", "procedural", "shapes", "digits", "cifar10", "cifar100", "folder")
SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Splits (digits, folders, CIFAR val) use this fixed seed, never the caller's.
_SPLIT_SEED = 1234
_PHOTO_MAX_SIDE = 512  # photos are stored at most this large; crops are at most this sharp
# Procedural leaves per image: up to 16 large ones and 112 small ones; radii as fractions of the side.
_LARGE_LEAVES, _SMALL_LEAVES = 16, 112
_LEAF_RADII = (0.025, 0.125, 0.7)  # small leaves from the first to the second, large from there to the third
_CHUNK_ELEMENTS = 1 << 22  # largest (batch, leaves, pixels) block tested at once: 16 MB of float32
DeviceLike = Union[str, torch.device]


class DataError(ValueError):
    """A data spec, path or data set that cannot be used; the message names it and says what to do."""


# --- the batch source -----------------------------------------------------------------------------


class ImageBatches:
    """Batches of one split of a data spec, made on ``device``.

    Attributes:
        name: the spec this was built from.
        split: "train", "val" or "test".
        num_classes: number of classes, 0 for unlabeled data.
        class_names: one name per label value.
        image_size: side S of the square images.
        device: where batches are made.
        size: number of items in a finite split (digits, folders, CIFAR); None for endless sources.
        skipped: images of a folder that could not be read and were left out.
        notes: sentences worth showing the user (skipped files, dropped labels).
    """

    def __init__(self, name: str, split: str, image_size: int, device: torch.device,
                 class_names: Sequence[str] = (), size: Optional[int] = None,
                 skipped: int = 0, notes: Sequence[str] = ()):
        self.name = name
        self.split = split
        self.image_size = image_size
        self.device = device
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.size = size
        self.skipped = skipped
        self.notes = tuple(notes)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A batch: images float ``[B, 3, S, S]`` in [0, 1] on ``device`` and labels long ``[B]`` (-1 if unlabeled).

        The train split is augmented; val and test are not.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive whole number, not {batch_size!r}.")
        return self._draw(batch_size, generator, augment=self.split == "train")

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _unlabeled(self, n: int) -> Tensor:
        return torch.full((n,), -1, dtype=torch.long, device=self.device)

    def __repr__(self) -> str:
        size = "endless" if self.size is None else f"{self.size} items"
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, image_size={self.image_size}, "
                f"classes={self.num_classes}, {size}, device={self.device})")


# --- random numbers and crops ---------------------------------------------------------------------


def _rand(generator: torch.Generator, device: torch.device, *shape: int) -> Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randint(generator: torch.Generator, device: torch.device, high: int, n: int) -> Tensor:
    return torch.randint(high, (n,), generator=generator, device=generator.device).to(device)


def _crop_boxes(sizes: Tensor, u: Tensor, scale: tuple[float, float], ratio: tuple[float, float]) -> Tensor:
    """Random crop boxes ``(x1, y1, x2, y2)`` in pixels, one per row of ``sizes``.

    Args:
        sizes: ``[K, 2]`` height and width of each image.
        u: ``[K, 4]`` uniform numbers: area, aspect, left, top.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of width / height, drawn log-uniformly.
    """
    height, width = sizes[:, 0], sizes[:, 1]
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    # Clamping instead of torchvision's retry loop keeps this one batched step.
    w = torch.sqrt(area * aspect).clamp(min=1.0).minimum(width)
    h = torch.sqrt(area / aspect).clamp(min=1.0).minimum(height)
    x1 = u[:, 2] * (width - w)
    y1 = u[:, 3] * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)  # (K, 4)


def _roi_crops(images: Tensor, index: Tensor, boxes: Tensor, size: int, sampling: int) -> Tensor:
    """``[K, C, size, size]`` bilinear crops of ``images[index[k]]`` over ``boxes[k]`` (pixels, x1 y1 x2 y2)."""
    from torchvision.ops import roi_align

    rois = torch.cat([index.to(boxes.dtype)[:, None], boxes], dim=1)  # (K, 5)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=sampling, aligned=True)


def _flip(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images ``[B, C, H, W]`` where ``flip [B]`` is true."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


# --- bundled photos -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PhotoStack:
    """Photos padded to one canvas, with a pyramid so every crop is read at 1-2x its output size."""

    levels: tuple[Tensor, ...]  # level l: (P, 3, H / 2**l, W / 2**l) float in [0, 1]
    sizes: Tensor  # (P, 2) height and width of each photo at level 0, float


@lru_cache(maxsize=None)
def _photo_arrays(names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    from PIL import Image

    from vitviz.samples import load_sample

    arrays = []
    for name in names:
        image = load_sample(name)
        scale = _PHOTO_MAX_SIDE / max(image.size)
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        arrays.append(np.asarray(image, dtype=np.uint8))  # (H, W, 3)
    return tuple(arrays)


@lru_cache(maxsize=8)
def _photo_stack(names: tuple[str, ...], device: torch.device) -> _PhotoStack:
    arrays = _photo_arrays(names)
    canvas_h = max(a.shape[0] for a in arrays)
    canvas_w = max(a.shape[1] for a in arrays)
    padded = []
    for array in arrays:
        photo = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)[None]  # (1, 3, h, w)
        # Edge padding: the pyramid's averaging must not pull black into a photo's border.
        padded.append(F.pad(photo, (0, canvas_w - array.shape[1], 0, canvas_h - array.shape[0]), mode="replicate"))
    level = torch.cat(padded).to(device)  # (P, 3, H, W)
    levels = [level]
    while min(level.shape[-2:]) >= 32:
        level = F.avg_pool2d(level, 2, ceil_mode=True)
        levels.append(level)
    sizes = torch.tensor([a.shape[:2] for a in arrays], dtype=torch.float32, device=device)
    return _PhotoStack(tuple(levels), sizes)


def _photo_crops(stack: _PhotoStack, photo: Tensor, boxes: Tensor, size: int) -> Tensor:
    """``[K, 3, size, size]`` crops of ``photo [K]`` over ``boxes [K, 4]`` (level-0 pixels), antialiased."""
    side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    # The level where the crop spans 1-2x the output: 2x2 samples per output pixel then average it.
    level = torch.log2(side / size).floor().clamp(0, len(stack.levels) - 1).long()
    out = torch.empty(len(photo), 3, size, size, device=boxes.device)
    for lv in level.unique().tolist():
        rows = (level == lv).nonzero().squeeze(1)
        out[rows] = _roi_crops(stack.levels[lv], photo[rows], boxes[rows] / 2**lv, size, sampling=2)
    return out.clamp_(0, 1)


class _Photos(ImageBatches):
    """Random crops of the bundled photos: random resized crops and flips for train, square crops otherwise."""

    def __init__(self, split: str, image_size: int, device: torch.device):
        super().__init__("photos", split, image_size, device)
        from vitviz.samples import HELD_OUT_PHOTOS, TRAIN_PHOTOS

        self.photo_names = TRAIN_PHOTOS if split == "train" else HELD_OUT_PHOTOS
        self.stack = _photo_stack(tuple(self.photo_names), device)

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        photo = _randint(generator, self.device, len(self.photo_names), n)
        u = _rand(generator, self.device, n, 5)
        if augment:
            boxes = _crop_boxes(self.stack.sizes[photo], u[:, :4], scale=(0.1, 1.0), ratio=(3 / 4, 4 / 3))
        else:
            boxes = _crop_boxes(self.stack.sizes[photo], u[:, :4], scale=(0.25, 1.0), ratio=(1.0, 1.0))
        images = _photo_crops(self.stack, photo, boxes, self.image_size)  # (n, 3, S, S)
        if augment:
            images = _flip(images, u[:, 4] < 0.5)
        return images, self._unlabeled(n)


# --- procedural images ----------------------------------------------------------------------------


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


def _dead_leaves(n: int, size: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``[n, 3, S, S]``: random ellipses and rectangles over a gradient, each painted over the earlier ones."""
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
    return torch.where(background, images, leaves)


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


def _procedural(n: int, size: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``[n, 3, S, S]`` in [0, 1]: 80% dead leaves (a third of them blurred), 20% soft blobs."""
    u = _rand(generator, device, n, 3)  # style, blurred or not, blur width
    blobs = u[:, 0] < 0.2
    images = torch.empty(n, 3, size, size, device=device)
    rows = (~blobs).nonzero().squeeze(1)
    if len(rows):
        leaves = _dead_leaves(len(rows), size, generator, device)
        # Out-of-focus leaves: blur of 0.5 to 2 pixels at 64 px, scaled with the image.
        blurred = u[rows, 1] < 1 / 3
        sigma = torch.where(blurred, (0.5 + 1.5 * u[rows, 2]) * size / 64, 0.0)
        images[rows] = _blur(leaves, sigma) if bool(blurred.any()) else leaves
    rows = blobs.nonzero().squeeze(1)
    if len(rows):
        images[rows] = _soft_blobs(len(rows), size, generator, device)
    return images.clamp_(0, 1)


class _Procedural(ImageBatches):
    def __init__(self, split: str, image_size: int, device: torch.device):
        super().__init__("procedural", split, image_size, device)

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        return _procedural(n, self.image_size, generator, self.device), self._unlabeled(n)


# --- shapes ---------------------------------------------------------------------------------------

_SHAPE_UNIFORMS = 12 + 8 * 3  # per item: background crop, shape placement, 8 candidate colours


def _item_uniforms(indices: Sequence[int], split: str, seed: int) -> Tensor:
    """``[n, _SHAPE_UNIFORMS]`` uniform numbers fixed by (seed, split, index) alone."""
    code = _SPLIT_CODES[split]
    rows = [np.random.default_rng([seed % 2**63, code, int(i)]).random(_SHAPE_UNIFORMS) for i in indices]
    return torch.from_numpy(np.stack(rows)).float()


def _shape_sdf(label: Tensor, u: Tensor, v: Tensor, radius: Tensor) -> Tensor:
    """Signed distance ``[n, S, S]`` in pixels to each item's shape (negative inside), in its own frame.

    ``radius [n]`` is the circumradius. Polygons and the star follow Inigo Quilez's ``sdStar``:
    ``n`` points, sharpness ``m`` (2 is a regular polygon; 3 gives a star with inner radius 0.47).
    """
    points = torch.tensor([4.0, 4.0, 3.0, 5.0], device=u.device)[label][:, None, None]
    sharp = torch.tensor([2.0, 2.0, 2.0, 3.0], device=u.device)[label][:, None, None]
    r = radius[:, None, None]
    an, en = math.pi / points, math.pi / sharp
    acs_x, acs_y, ecs_x, ecs_y = torch.cos(an), torch.sin(an), torch.cos(en), torch.sin(en)
    length = torch.hypot(u, v)
    # Fold the plane into one sector, then take the distance to the sector's edge segment.
    bn = torch.remainder(torch.atan2(u, v), 2 * an) - an
    qx = length * torch.cos(bn) - r * acs_x
    qy = length * torch.sin(bn).abs() - r * acs_y
    t = torch.minimum((-(qx * ecs_x + qy * ecs_y)).clamp(min=0), r * acs_y / ecs_y)
    qx, qy = qx + ecs_x * t, qy + ecs_y * t
    polygon = torch.hypot(qx, qy) * torch.sign(qx)
    circle = length - r
    return torch.where((label == 0)[:, None, None], circle, polygon)


def _render_shapes(labels: Tensor, u: Tensor, stack: _PhotoStack, size: int) -> tuple[Tensor, Tensor]:
    """Images ``[n, 3, S, S]`` and masks ``[n, S, S]`` of shapes ``labels [n]`` placed by ``u [n, 36]``."""
    device = u.device
    n = len(labels)
    # Background: a square crop of a photo, flipped at random, its contrast lowered so the shape stands out.
    photo = (u[:, 0] * len(stack.sizes)).long().clamp(max=len(stack.sizes) - 1)
    boxes = _crop_boxes(stack.sizes[photo], u[:, 1:5], scale=(0.15, 1.0), ratio=(1.0, 1.0))
    background = _flip(_photo_crops(stack, photo, boxes, size), u[:, 5] < 0.5)  # (n, 3, S, S)
    mean = background.mean(dim=(2, 3), keepdim=True)
    background = mean + (background - mean) * (0.35 + 0.35 * u[:, 6, None, None, None])

    # The shape: circumscribed diameter 35-60% of the side, wholly inside the frame, any rotation.
    radius = (0.175 + 0.125 * u[:, 7]) * size  # (n,) pixels
    cx = radius + 1 + u[:, 8] * (size - 2 * radius - 2)
    cy = radius + 1 + u[:, 9] * (size - 2 * radius - 2)
    angle = u[:, 10] * 2 * math.pi
    centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    dx = centres[None, None, :] - cx[:, None, None]  # (n, 1, S)
    dy = centres[None, :, None] - cy[:, None, None]  # (n, S, 1)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    sdf = _shape_sdf(labels, dx * cos + dy * sin, dy * cos - dx * sin, radius)  # (n, S, S)
    masks = sdf < 0
    alpha = (0.5 - sdf).clamp(0, 1)[:, None]  # (n, 1, S, S): one-pixel antialiased edge

    # Colour: the first of 8 random candidates far from the background under the shape, else the farthest.
    area = masks.sum(dim=(1, 2)).clamp(min=1)[:, None]
    under = (background * masks[:, None]).sum(dim=(2, 3)) / area  # (n, 3)
    candidates = u[:, 12:].view(n, 8, 3)
    distance = torch.linalg.vector_norm(candidates - under[:, None], dim=-1)  # (n, 8)
    far = distance > 0.5
    pick = torch.where(far.any(dim=1), far.float().argmax(dim=1), distance.argmax(dim=1))
    colour = candidates[torch.arange(n, device=device), pick]  # (n, 3)
    images = background * (1 - alpha) + colour[:, :, None, None] * alpha
    return images.clamp_(0, 1), masks


def _shapes_items(indices: Sequence[int], split: str, image_size: int, seed: int,
                  device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Items ``indices`` of a shapes split: images ``[n, 3, S, S]``, labels ``[n]``, masks ``[n, S, S]``."""
    from vitviz.samples import HELD_OUT_PHOTOS, TRAIN_PHOTOS

    stack = _photo_stack(tuple(TRAIN_PHOTOS if split == "train" else HELD_OUT_PHOTOS), device)
    labels = torch.tensor([int(i) % len(SHAPES_CLASSES) for i in indices], dtype=torch.long, device=device)
    images, masks = _render_shapes(labels, _item_uniforms(indices, split, seed).to(device), stack, image_size)
    return images, labels, masks


def shapes_item(index: int, image_size: int, split: Split = "test", seed: int = 0) -> tuple[Tensor, int, Tensor]:
    """Item ``index`` of the shapes data set: image ``[3, S, S]`` in [0, 1], its label, its mask ``[S, S]`` bool.

    The same (index, split, seed) always gives the same item; the label is ``index % 4``
    (an index into ``SHAPES_CLASSES``), so every run of 4 consecutive items holds each class once.
    """
    _check_split(split)
    _check_image_size(image_size)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise DataError(f"A shapes item index is a whole number from 0 up, not {index!r}.")
    images, labels, masks = _shapes_items([index], split, image_size, seed, torch.device("cpu"))
    return images[0], int(labels[0]), masks[0]


class _Shapes(ImageBatches):
    """Random items of a shapes split (indices drawn from the generator); every item is generated anew."""

    def __init__(self, split: str, image_size: int, seed: int, device: torch.device):
        super().__init__("shapes", split, image_size, device, class_names=SHAPES_CLASSES)
        self.seed = seed

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        indices = torch.randint(2**31 - 1, (n,), generator=generator, device=generator.device).tolist()
        images, labels, _ = _shapes_items(indices, self.split, self.image_size, self.seed, self.device)
        return images, labels


# --- labeled image stacks: digits, CIFAR, folders -------------------------------------------------


class _Stack(ImageBatches):
    """A finite labeled split kept as uint8 ``[N, 3, h, w]`` on the device; drawn with replacement."""

    def __init__(self, name: str, split: str, image_size: int, device: torch.device, images: Tensor,
                 labels: Tensor, class_names: Sequence[str], flips: bool, skipped: int = 0,
                 notes: Sequence[str] = ()):
        super().__init__(name, split, image_size, device, class_names, size=len(labels), skipped=skipped, notes=notes)
        self.images = images.to(device)  # (N, 3, h, w) uint8
        self.labels = labels.to(device)  # (N,) long
        self.flips = flips

    def _take(self, index: Tensor, u: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Items ``index [n]`` at the output size; ``u [n, 4]`` (scale, left, top, flip) augments them."""
        images = self.images[index].float().div_(255)  # (n, 3, h, w)
        h, w = images.shape[-2:]
        size = self.image_size
        if u is None:
            if (h, w) != (size, size):
                images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return images.clamp_(0, 1), self.labels[index]
        # Crops of 80-100% of each side at a random place: small shifts and zooms.
        side = 0.8 + 0.2 * u[:, 0]
        x1, y1 = u[:, 1] * (1 - side) * w, u[:, 2] * (1 - side) * h
        boxes = torch.stack([x1, y1, x1 + side * w, y1 + side * h], dim=1)  # (n, 4)
        sampling = max(1, math.ceil(min(h, w) / size))
        images = _roi_crops(images, torch.arange(len(index), device=self.device), boxes, size, sampling)
        if self.flips:
            images = _flip(images, u[:, 3] < 0.5)
        return images.clamp_(0, 1), self.labels[index]

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        index = _randint(generator, self.device, len(self.labels), n)
        return self._take(index, _rand(generator, self.device, n, 4) if augment else None)


def _split_rows(labels: np.ndarray, fractions: tuple[float, float]) -> dict[str, np.ndarray]:
    """A fixed split of item rows per class: ``fractions`` for val and test, the rest for train."""
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        rows = rows[np.random.default_rng([_SPLIT_SEED, int(value)]).permutation(len(rows))]
        # Every class with 3 or more items gets at least one in each split that has a share.
        n_val, n_test = (max(1, round(f * len(rows))) if f > 0 and len(rows) >= 3 else 0 for f in fractions)
        parts["val"].append(rows[:n_val])
        parts["test"].append(rows[n_val:n_val + n_test])
        parts["train"].append(rows[n_val + n_test:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _digits(split: str, image_size: int, device: torch.device) -> _Stack:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), ink bright
    rows = _split_rows(digits.target, (0.1, 0.1))[split]
    images = torch.from_numpy(pixels[rows])[:, None].expand(-1, 3, -1, -1).contiguous()  # (N, 3, 8, 8)
    labels = torch.from_numpy(digits.target[rows]).long()
    return _Stack("digits", split, image_size, device, images, labels, tuple(str(d) for d in range(10)), flips=False)


def data_root() -> Path:
    """Where downloaded data sets live: $VITVIZ_DATA, else ~/.cache/vitviz/data."""
    return Path(os.environ.get("VITVIZ_DATA") or Path.home() / ".cache" / "vitviz" / "data").expanduser()


_CIFAR = {"cifar10": ("CIFAR10", "CIFAR-10", "cifar-10-batches-py"),
          "cifar100": ("CIFAR100", "CIFAR-100", "cifar-100-python")}


@lru_cache(maxsize=2)
def _cifar_arrays(kind: str, root: str, train: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from torchvision import datasets

    cls_name, title, folder = _CIFAR[kind]
    try:
        dataset = getattr(datasets, cls_name)(root, train=train, download=False)
    except RuntimeError as e:
        raise DataError(f"{title} under {Path(root) / folder} is incomplete or damaged ({e}). Delete that folder "
                        f"and download it again: {_cifar_command(kind, root)}") from None
    return np.asarray(dataset.data), np.asarray(dataset.targets), tuple(dataset.classes)


def _cifar_command(kind: str, root: str) -> str:
    cls_name = _CIFAR[kind][0]
    return f"python -c \"from torchvision.datasets import {cls_name}; {cls_name}('{root}', download=True)\""


def _cifar(kind: str, split: str, image_size: int, device: torch.device) -> _Stack:
    cls_name, title, folder = _CIFAR[kind]
    root = data_root()
    if not (root / folder).is_dir():
        raise DataError(f"{title} is not in {root} (looked for {root / folder}/); nothing is downloaded during "
                        f"training. Get it once (about 170 MB) with:\n    {_cifar_command(kind, str(root))}\n"
                        f"or set VITVIZ_DATA to a folder that already holds it.")
    data, targets, classes = _cifar_arrays(kind, str(root), split != "test")
    if split != "test":
        # Val: a fixed 10% of the official training set; the official test set stays the test split.
        rows = _split_rows(targets, (0.1, 0.0))["val" if split == "val" else "train"]
        data, targets = data[rows], targets[rows]
    images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return _Stack(kind, split, image_size, device, images, torch.from_numpy(targets).long(), classes, flips=True)


# --- image folders --------------------------------------------------------------------------------

_LAYOUT_HINT = "Give it one sub-folder of images per class, e.g. {path}/cats/001.jpg and {path}/dogs/001.jpg."


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def _check_folder(root: Path) -> None:
    """The clear errors for a path that cannot be an image folder, before anything is read."""
    if not root.exists():
        raise DataError(f"No folder at {root}. " + _LAYOUT_HINT.format(path=root))
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder. " + _LAYOUT_HINT.format(path=root))
    if not any(_visible(p) for p in root.iterdir()):
        raise DataError(f"The folder {root} is empty. " + _LAYOUT_HINT.format(path=root))


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name to its image files, for a folder with one sub-folder per class."""
    _check_folder(root)
    entries = [p for p in root.iterdir() if _visible(p)]
    classes = sorted((p for p in entries if p.is_dir()), key=lambda p: p.name)
    if not classes:
        raise DataError(f"The folder {root} has no class sub-folders (it holds {len(entries)} files directly). "
                        + _LAYOUT_HINT.format(path=root))
    files = {c.name: _image_files(c) for c in classes}
    if not any(files.values()):
        raise DataError(f"The class sub-folders of {root} ({', '.join(files)}) hold no image files "
                        f"(looked for {', '.join(IMAGE_EXTENSIONS)}).")
    # A class folder without images would leave a label no image has: say so rather than guess.
    empty = [str(root / name) for name, paths in files.items() if not paths]
    if empty:
        raise DataError(f"These class folders hold no image files: {', '.join(empty)}. Remove them or add images.")
    return files


@dataclass(frozen=True)
class _FolderImages:
    images: Tensor  # (N, 3, S, S) uint8
    labels: np.ndarray  # (N,) int64
    skipped: tuple[tuple[Path, str], ...]  # unreadable files and why


def _read_folder(files: dict[str, list[Path]], class_names: Sequence[str], image_size: int) -> _FolderImages:
    from vitviz.images import ImageLoadError, fit_to_model, load_image

    arrays = [np.zeros((image_size, image_size, 3), dtype=np.uint8)]  # keeps np.stack valid; dropped below
    labels, skipped = [], []
    for name, paths in files.items():
        for path in paths:
            try:
                image = fit_to_model(load_image(path), (image_size, image_size))
            except ImageLoadError as e:
                skipped.append((path, str(e)))
                continue
            arrays.append(np.asarray(image, dtype=np.uint8))  # (S, S, 3)
            labels.append(class_names.index(name))
    images = torch.from_numpy(np.stack(arrays)[1:]).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    return _FolderImages(images, np.asarray(labels, dtype=np.int64), tuple(skipped))


@lru_cache(maxsize=4)
def _cached_folder(root: str, image_size: int, fingerprint: tuple) -> tuple[tuple[str, ...], dict[str, _FolderImages]]:
    """Class names and the decoded images of each split folder ("all" when unsplit).

    ``fingerprint`` (every file's path, time and size) makes a changed folder read again.
    """
    path = Path(root)
    if (path / "train").is_dir() and (path / "val").is_dir():
        split_files = {s: _class_folders(path / s) for s in SPLITS if (path / s).is_dir()}
        class_names = tuple(split_files["train"])
        for split, files in split_files.items():
            stray = [c for c in files if c not in class_names]
            if stray:
                raise DataError(f"{path / split} has class folders that {path / 'train'} lacks: {', '.join(stray)}.")
        return class_names, {s: _read_folder(f, class_names, image_size) for s, f in split_files.items()}
    files = _class_folders(path)
    class_names = tuple(files)
    return class_names, {"all": _read_folder(files, class_names, image_size)}


def _fingerprint(root: Path) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file())


def _folder(path_text: str, split: str, image_size: int, device: torch.device) -> _Stack:
    root = Path(path_text).expanduser()
    _check_folder(root)
    root = root.resolve()
    class_names, parts = _cached_folder(str(root), image_size, _fingerprint(root))
    total = sum(len(p.labels) + len(p.skipped) for p in parts.values())
    skipped = [s for p in parts.values() for s in p.skipped]
    if len(skipped) == total:
        first, reason = skipped[0]
        raise DataError(f"None of the {total} image files under {root} could be read; the first, {first}, "
                        f"gave: {reason}")
    training = parts.get("all") or parts["train"]
    unread = [repr(c) for i, c in enumerate(class_names) if not (training.labels == i).any()]
    if unread:
        raise DataError(f"No image of class {', '.join(unread)} under {root} could be read.")
    notes = []
    if "all" in parts:
        data = parts["all"]
        rows = _split_rows(data.labels, (0.1, 0.1))[split]
    else:
        data = parts.get(split) or parts["val"]
        if split not in parts:
            notes.append(f"{root} has no {split}/ folder: its val/ images serve as the {split} split.")
        rows = np.arange(len(data.labels))
    if len(rows) == 0:
        raise DataError(f"{root} has only {total - len(skipped)} readable images, too few for a {split} split; "
                        f"add images (at least 3 per class) or give it train/ and val/ sub-folders.")
    if skipped:
        listed = "; ".join(f"{p.relative_to(root)} ({reason})" for p, reason in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        notes.append(f"{len(skipped)} of {total} image files under {root} could not be read and were skipped: "
                     f"{listed}{more}")
    index = torch.from_numpy(rows)
    return _Stack(f"folder:{root}", split, image_size, device, data.images[index],
                  torch.from_numpy(data.labels[rows]), class_names, flips=True, skipped=len(skipped), notes=notes)


# --- mixtures -------------------------------------------------------------------------------------


class _Mixture(ImageBatches):
    """Each item from one part, chosen with probability proportional to the part's weight."""

    def __init__(self, name: str, parts: Sequence[ImageBatches], weights: Sequence[float]):
        first = parts[0]
        labeled = first.num_classes > 0 and all(p.class_names == first.class_names for p in parts)
        notes = [note for p in parts for note in p.notes]
        if not labeled and any(p.num_classes for p in parts):
            notes.append(f"The parts of {name} do not share one set of classes, so its labels are dropped (-1).")
        super().__init__(name, first.split, first.image_size, first.device,
                         class_names=first.class_names if labeled else (),
                         skipped=sum(p.skipped for p in parts), notes=notes)
        self.parts = tuple(parts)
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        weights = self.weights.to(generator.device)
        choice = torch.multinomial(weights, n, replacement=True, generator=generator).to(self.device)  # (n,)
        images = torch.empty(n, 3, self.image_size, self.image_size, device=self.device)
        labels = self._unlabeled(n)
        for i, part in enumerate(self.parts):
            rows = (choice == i).nonzero().squeeze(1)
            if len(rows):
                part_images, part_labels = part._draw(len(rows), generator, augment)
                images[rows] = part_images
                if self.num_classes:
                    labels[rows] = part_labels
        return images, labels


# --- specs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    source: str  # one of SOURCES
    path: str  # for "folder"
    weight: float


def _parse_weight(text: str, part: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise DataError(f"In the data part {part!r}, the weight {text!r} is not a number.") from None
    if not math.isfinite(weight) or weight <= 0:
        raise DataError(f"In the data part {part!r}, the weight must be a positive number, not {text}.")
    return weight


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or os.sep in text or "/" in text


def _parse_part(part: str) -> _Part:
    part = part.strip()
    if not part:
        raise DataError("A data spec has an empty part (two '+' in a row, or one at an end).")
    if part.startswith("folder:"):
        rest = part[len("folder:"):]
        head, sep, tail = rest.rpartition(":")
        if sep and head and not Path(rest).expanduser().is_dir():
            try:
                float(tail)
            except ValueError:
                return _Part("folder", rest, 1.0)
            return _Part("folder", head, _parse_weight(tail, part))
        if not rest:
            raise DataError("'folder:' needs a path after it, e.g. folder:~/pictures/pets.")
        return _Part("folder", rest, 1.0)
    name, sep, weight_text = part.partition(":")
    if name in SOURCES and name != "folder":
        return _Part(name, "", _parse_weight(weight_text, part) if sep else 1.0)
    if Path(part).expanduser().is_dir() or _looks_like_path(part):
        return _Part("folder", part, 1.0)
    raise DataError(f"Unknown data source {name!r}; choose from {', '.join(SOURCES[:-1])}, folder:PATH, "
                    f"or a mixture such as photos:1+procedural:1.")


def _parse(spec: str) -> list[_Part]:
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"The data spec is empty ({spec!r}); choose from {', '.join(SOURCES[:-1])}, folder:PATH, "
                        f"or a mixture such as photos:1+procedural:1.")
    spec = spec.strip()
    # A folder is taken whole first: its path may contain '+' or ':'.
    whole = spec[len("folder:"):] if spec.startswith("folder:") else spec
    if Path(whole).expanduser().is_dir():
        return [_Part("folder", whole, 1.0)]
    return [_parse_part(p) for p in spec.split("+")]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; choose from train, val, test.")


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        raise DataError(f"image_size must be a whole number of pixels from 8 to 1024, not {image_size!r}.")


def _build_part(part: _Part, split: str, image_size: int, seed: int, device: torch.device) -> ImageBatches:
    if part.source == "photos":
        return _Photos(split, image_size, device)
    if part.source == "procedural":
        return _Procedural(split, image_size, device)
    if part.source == "shapes":
        return _Shapes(split, image_size, seed, device)
    if part.source == "digits":
        return _digits(split, image_size, device)
    if part.source in _CIFAR:
        return _cifar(part.source, split, image_size, device)
    return _folder(part.path, split, image_size, device)


def _part_name(part: _Part) -> str:
    return f"folder:{part.path}" if part.source == "folder" else part.source


def build_data(spec: str, split: Split, image_size: int, *, seed: int = 0,
               device: DeviceLike = "cpu") -> ImageBatches:
    """The batches of ``split`` of the data ``spec`` (see the module docstring), made on ``device``.

    Args:
        spec: e.g. "shapes", "photos:1+procedural:1", "folder:~/pets" or a folder path.
        split: "train" (augmented), "val" or "test".
        image_size: side S of the square images, 8 to 1024.
        seed: picks the generated ``shapes`` items; splits never depend on it.
        device: where the pixels are kept and batches made.

    Raises:
        DataError: an unknown source, a bad weight or path, a folder without usable images, a missing CIFAR.
    """
    _check_split(split)
    _check_image_size(image_size)
    result = _build(_parse(spec), split, image_size, seed, torch.device(device))
    for note in result.notes:
        warnings.warn(note, stacklevel=2)
    return result


def _build(parts: list[_Part], split: str, image_size: int, seed: int, device: torch.device) -> ImageBatches:
    built = [_build_part(p, split, image_size, seed, device) for p in parts]
    if len(built) == 1:
        return built[0]
    name = "+".join(f"{_part_name(p)}:{p.weight:g}" for p in parts)
    return _Mixture(name, built, [p.weight for p in parts])


def fixed_set(spec: str, split: str, image_size: int, n: int, *,
              seed: int = 0) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """A deterministic evaluation set on the CPU, never augmented (also for the train split).

    Returns:
        images ``[n, 3, S, S]`` in [0, 1], labels ``[n]`` (-1 if unlabeled), and masks ``[n, S, S]``
        bool for ``shapes`` (items 0 to n-1 of the split) or None. A finite split (digits, folders,
        CIFAR) gives at most its size: a seeded choice of its items without repeats.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"The evaluation set size must be a positive whole number, not {n!r}.")
    _check_split(split)
    _check_image_size(image_size)
    parts = _parse(spec)
    cpu = torch.device("cpu")
    if len(parts) == 1 and parts[0].source == "shapes":
        return _shapes_items(range(n), split, image_size, seed, cpu)
    data = _build(parts, split, image_size, seed, cpu)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed % 2**63, _SPLIT_CODES[split]])
                                                 .generate_state(1)[0]))
    if isinstance(data, _Stack):
        index = torch.randperm(len(data.labels), generator=generator)[:n]
        images, labels = data._take(index, None)
    else:
        images, labels = data._draw(n, generator, augment=False)
    return images, labels, None


def describe_specs() -> str:
    """The data spec grammar, for ``--help``."""
    from vitviz.samples import HELD_OUT_PHOTOS, TRAIN_PHOTOS

    return (
        "Data: one source, or a weighted mixture A:W+B:W.\n"
        f"  photos       unlabeled random crops of the bundled sample photos ({len(TRAIN_PHOTOS)} for train, "
        f"{len(HELD_OUT_PHOTOS)} others for val/test)\n"
        "  procedural   endless generated images: layered random shapes over gradients ('dead leaves'), "
        "striped, blurred and soft-blob variants\n"
        f"  shapes       labeled, generated: {', '.join(SHAPES_CLASSES)} over photo crops, with object masks\n"
        "  digits       scikit-learn's 8x8 handwritten digits, 10 classes\n"
        f"  cifar10, cifar100   torchvision's CIFAR from {data_root()} ($VITVIZ_DATA); never downloaded here\n"
        "  folder:PATH  one sub-folder of images per class (or just PATH); train/ and val/ sub-folders are "
        "used as the split when present, else a fixed 80/10/10 split\n"
        "  A:W+B:W      each item from A or B with probability proportional to W, e.g. photos:1+procedural:1"
    )
