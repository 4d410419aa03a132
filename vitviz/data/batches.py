"""The batch source every data set is: ``ImageBatches``, its error, the splits, and the device-side crops.

A source keeps its pixels as one tensor on its device and makes each batch there: ``sample(B, generator)``
gives images float ``[B, 3, S, S]`` in [0, 1] and labels long ``[B]`` (-1 for unlabeled data). Random numbers
are drawn on the generator's device and then moved, so a batch is a function of the generator alone.

Also here, shared by the sources: random crop boxes (pixels, ``x1 y1 x2 y2``) cut with
``torchvision.ops.roi_align``, left-right flips, ``_Stack`` (a finite labeled split held as uint8
``[N, 3, h, w]``: digits, CIFAR, folders; train crops of 80-100% of each side) and ``_split_rows``, the fixed
per-class split those use (seed ``_SPLIT_SEED``, never the caller's).
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DataError", "ImageBatches", "SPLITS", "Split"]

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Splits (digits, folders, CIFAR val) use this fixed seed, never the caller's.
_SPLIT_SEED = 1234
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


# --- arguments ------------------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; choose from train, val, test.")


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        raise DataError(f"image_size must be a whole number of pixels from 8 to 1024, not {image_size!r}.")


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
