"""``photos``: unlabeled random crops of the bundled sample photos (``vitviz.samples``).

Photo-level split: train crops come from ``TRAIN_PHOTOS``, val and test crops from ``HELD_OUT_PHOTOS``, so no
seed can put a held-out photo into training. Photos are stored at most ``_PHOTO_MAX_SIDE`` (512) pixels on a
side, padded to one canvas ``[P, 3, H, W]`` on the device with an average-pooled pyramid, so every crop is read
at 1-2x its output size (antialiased).

Train: random resized crops (10-100% of the area, aspect 3/4 to 4/3) and flips. Val and test: square crops of
25-100% of the area, no flips. The same stack gives the ``shapes`` backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .batches import ImageBatches, _crop_boxes, _flip, _rand, _randint, _roi_crops

__all__: list[str] = []

_PHOTO_MAX_SIDE = 512  # photos are stored at most this large; crops are at most this sharp


@dataclass(frozen=True)
class _PhotoStack:
    """Photos padded to one canvas, with a pyramid so every crop is read at 1-2x its output size."""

    levels: tuple[Tensor, ...]  # level l: (P, 3, H / 2**l, W / 2**l) float in [0, 1]
    sizes: Tensor  # (P, 2) height and width of each photo at level 0, float


def _shrunk(image, max_side: int = _PHOTO_MAX_SIDE) -> np.ndarray:
    """``[H, W, 3]`` uint8 of an RGB PIL image, shrunk (LANCZOS) to at most ``max_side`` on a side."""
    from PIL import Image

    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


@lru_cache(maxsize=None)
def _photo_arrays(names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    from ..samples import load_sample

    return tuple(_shrunk(load_sample(name)) for name in names)


@lru_cache(maxsize=8)
def _photo_stack(names: tuple[str, ...], device: torch.device) -> _PhotoStack:
    return _stack(_photo_arrays(names), device)


def _stack(arrays: tuple[np.ndarray, ...], device: torch.device) -> _PhotoStack:
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

    def __init__(self, split: str, image_size: int, device: torch.device, name: str = "photos"):
        super().__init__(name, split, image_size, device)
        from ..samples import HELD_OUT_PHOTOS, TRAIN_PHOTOS

        self.photo_names = TRAIN_PHOTOS if split == "train" else HELD_OUT_PHOTOS
        self.stack = _photo_stack(tuple(self.photo_names), device)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, image_size={self.image_size}, "
                f"crops of {len(self.photo_names)} photos, device={self.device})")

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
