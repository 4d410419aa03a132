"""``textured``: endless dead leaves cut out of photo crops, unlabeled.

The layout of ``procedural``'s dead leaves (the same shapes, sizes, painting order and a third of the images
blurred), but half of the leaves, and half of the backgrounds, show a crop of a photo instead of a colour fill:
"dead leaves with textures" (Baradad et al. 2021, "Learning to See by Looking at Noise"), with the bundled sample
photos for textures. Every image has 4 frames, each a random crop of 2-50% of a random photo's area (aspect 3/4
to 4/3, flipped half the time) resized to the image; a textured leaf shows one of them where it lies. Within a
leaf the seams between patches are a photograph's, while the layout of the leaves is random, so no photo can be
learnt in its place.

Photo-level split as for ``photos``: train frames come from ``TRAIN_PHOTOS``, val and test frames from
``HELD_OUT_PHOTOS``. Images ``[n, 3, S, S]`` in [0, 1]; no further augmentation: every training item is new.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .batches import _crop_boxes, _flip, _rand, _randint
from .photos import _photo_crops, _Photos
from .procedural import _dead_leaves, _defocus

__all__: list[str] = []

_FRAMES = 4  # photo crops per image that its textured leaves are cut from
_FRAME_AREA = (0.02, 0.5)  # a frame's share of its photo's area
_TEXTURED = 0.5  # share of the leaves (and backgrounds) cut from a frame


class _Textured(_Photos):
    """Dead leaves, half of them cut out of crops of the split's photos (``_Photos``' photos and stack)."""

    def __init__(self, split: str, image_size: int, device: torch.device):
        super().__init__(split, image_size, device, name="textured")

    def _frames(self, n: int, generator: torch.Generator) -> Tensor:
        """``[n, T, 3, S, S]``: T random crops of random photos of the split per image."""
        k, size = n * _FRAMES, self.image_size
        photo = _randint(generator, self.device, len(self.photo_names), k)
        u = _rand(generator, self.device, k, 5)
        boxes = _crop_boxes(self.stack.sizes[photo], u[:, :4], scale=_FRAME_AREA, ratio=(3 / 4, 4 / 3))
        frames = _flip(_photo_crops(self.stack, photo, boxes, size), u[:, 4] < 0.5)
        return frames.view(n, _FRAMES, 3, size, size)

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        frames = self._frames(n, generator)
        images = _dead_leaves(n, self.image_size, generator, self.device, textures=frames, textured=_TEXTURED)
        images = _defocus(images, _rand(generator, self.device, n, 2))  # out of focus as procedural's leaves
        return images.clamp_(0, 1), self._unlabeled(n)
