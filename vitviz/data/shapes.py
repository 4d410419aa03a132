"""``shapes``: a generated, labeled data set with object masks, for localisation checks.

One circle, square, triangle or star (``SHAPES_CLASSES``) at a random position, size (circumscribed diameter
35-60% of the side, wholly inside the frame), rotation and contrasting colour over a muted photo crop (train
photos for train, held-out photos for val and test). Item i of a split is fixed by (split, i, seed) alone and
its label is ``i % 4``; ``shapes_item`` gives one item with its mask ``[S, S]`` bool. No augmentation: every
training batch draws new indices.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .batches import _SPLIT_CODES, DataError, ImageBatches, Split, _check_image_size, _check_split, _crop_boxes, _flip
from .photos import _photo_crops, _photo_stack, _PhotoStack

__all__ = ["SHAPES_CLASSES", "shapes_item"]

SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
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
    from ..samples import HELD_OUT_PHOTOS, TRAIN_PHOTOS

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
