"""The sample photos that ship with scikit-image, scikit-learn and matplotlib: offline, always there."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

__all__ = ["PHOTO_NAMES", "HELD_OUT_PHOTOS", "NATURAL_PHOTOS", "TRAIN_PHOTOS", "load_sample", "sample_names"]

# Natural colour photos first (shown in the picker), then the grayscale and texture ones.
PHOTO_NAMES = (
    "astronaut", "chelsea", "coffee", "rocket", "china", "flower", "grace_hopper", "cat",
    "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "motorcycle",
    "camera", "brick", "grass", "gravel", "moon", "coins", "clock", "page", "text",
)
# Photo-level split: the jigsaw model is judged on photos it never trained on.
HELD_OUT_PHOTOS = ("chelsea", "coffee", "grace_hopper", "flower")
TRAIN_PHOTOS = tuple(n for n in PHOTO_NAMES if n not in HELD_OUT_PHOTOS)
# The natural colour photos of everyday things (what an ImageNet classifier is for), held-out ones first; the
# others are grayscale, textures, microscopy, astronomy or a colour wheel.
NATURAL_PHOTOS = (*HELD_OUT_PHOTOS, "astronaut", "rocket", "china", "cat", "motorcycle")


def sample_names() -> tuple[str, ...]:
    return PHOTO_NAMES


@lru_cache(maxsize=None)
def _load_array(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(Image.open(f).convert("RGB"))
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name not in PHOTO_NAMES:
        raise ValueError(f"no sample photo named {name!r}; choose from {', '.join(PHOTO_NAMES)}")
    return getattr(skimage.data, name)()


def load_sample(name: str) -> Image.Image:
    """One sample photo as an RGB PIL image."""
    array = _load_array(name)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8), mode="RGB")
