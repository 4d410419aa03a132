"""``cifar10`` and ``cifar100``: torchvision's CIFAR under ``data_root()``, never downloaded here.

``data_root()`` is $VITVIZ_DATA, else ~/.cache/vitviz/data. A missing set fails at once with the command that
gets it (about 170 MB), a damaged one with the advice to download it again. Val is a fixed 5,000 of the 50,000
training images (10% per class, independent of the seed), test the official 10,000-image test set. Images
uint8 ``[N, 3, 32, 32]``; train crops of 80-100% of the side and flips.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .batches import DataError, _split_rows, _Stack

__all__ = ["data_root"]


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


def _cifar_root(kind: str) -> Path:
    """``data_root()`` once it holds the set ``kind``; a ``DataError`` with the command that gets it otherwise."""
    cls_name, title, folder = _CIFAR[kind]
    root = data_root()
    if not (root / folder).is_dir():
        raise DataError(f"{title} is not in {root} (looked for {root / folder}/); nothing is downloaded during "
                        f"training. Get it once (about 170 MB) with:\n    {_cifar_command(kind, str(root))}\n"
                        f"or set VITVIZ_DATA to a folder that already holds it.")
    return root


def _cifar(kind: str, split: str, image_size: int, device: torch.device) -> _Stack:
    root = _cifar_root(kind)
    data, targets, classes = _cifar_arrays(kind, str(root), split != "test")
    if split != "test":
        # Val: a fixed 10% of the official training set; the official test set stays the test split.
        rows = _split_rows(targets, (0.1, 0.0))["val" if split == "val" else "train"]
        data, targets = data[rows], targets[rows]
    images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return _Stack(kind, split, image_size, device, images, torch.from_numpy(targets).long(), classes, flips=True)
