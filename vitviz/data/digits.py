"""``digits``: scikit-learn's 1,797 handwritten digits, 8x8 pixels, 10 classes, bright ink on black.

Kept as uint8 ``[N, 3, 8, 8]`` (grey as three equal channels) and resized to the output side on the device.
A fixed 80/10/10 split per class (``_split_rows``), independent of the seed. Train crops of 80-100% of the side,
without flips: a mirrored digit is another shape.
"""

from __future__ import annotations

import numpy as np
import torch

from .batches import _split_rows, _Stack

__all__: list[str] = []

_DIGIT_CLASSES = tuple(str(d) for d in range(10))


def _digits(split: str, image_size: int, device: torch.device) -> _Stack:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), ink bright
    rows = _split_rows(digits.target, (0.1, 0.1))[split]
    images = torch.from_numpy(pixels[rows])[:, None].expand(-1, 3, -1, -1).contiguous()  # (N, 3, 8, 8)
    labels = torch.from_numpy(digits.target[rows]).long()
    return _Stack("digits", split, image_size, device, images, labels, _DIGIT_CLASSES, flips=False)
