"""``crops:PATH``: unlabeled random crops of every image under a folder of your own, for the jigsaw pretext.

Any layout, no labels: every image file (``IMAGE_EXTENSIONS``) at any depth, hidden files and folders skipped.
Crops and augmentation are those of ``photos`` (random resized crops and flips for train, square crops for val
and test). Photo-level split: an image is held out for val and test when the CRC-32 of its path under PATH is
0 mod ``CROPS_HELD_OUT`` (10), so about one in ten; with at least two images, at least one is held out and at
least one trains (the lowest CRC-32 is held out when none would be, the highest trains when all would be). The
split depends on the paths alone: no seed, and no image added elsewhere in the folder, moves an image across it.

Images are decoded once (through ``vitviz.images``, so bad files are skipped and counted) and kept shrunk to at
most 512 px on a side, or less for a large folder: the stored pixels stay within ``CROPS_BUDGET_MB``, and a note
says how far they were shrunk. A changed folder is read again.

Raises ``DataError`` before reading any image for a path that is missing, a file, empty, or without image files;
after reading, when no image could be read or a split is empty (a folder of one image).
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .batches import DataError, ImageBatches
from .folders import IMAGE_EXTENSIONS, _fingerprint, _folder_root, _image_files, _skipped_note, _unreadable
from .photos import _PHOTO_MAX_SIDE, _Photos, _shrunk, _stack

__all__ = ["CROPS_BUDGET_MB", "CROPS_HELD_OUT"]

CROPS_HELD_OUT = 10  # one image in this many (by a CRC-32 of its path) is held out for val and test
CROPS_BUDGET_MB = 1024  # the float32 pixels (with their pyramid) kept for a folder's photos, at most
_HINT = "Give it a folder of photos (any layout, no classes needed), e.g. {path}."


def _crc(relative: str) -> int:
    return zlib.crc32(relative.encode("utf-8"))


def held_out_names(names: list[str]) -> set[str]:
    """Which of ``names`` (paths under the folder, "/"-separated) are held out for val and test (see above)."""
    held = {n for n in names if _crc(n) % CROPS_HELD_OUT == 0}
    if len(names) >= 2 and not held:
        held = {min(names, key=_crc)}
    if len(names) >= 2 and len(held) == len(names):
        held.discard(max(names, key=_crc))
    return held


def crops_root(path_text: str) -> Path:
    """The absolute folder of ``crops:PATH``, once it is known to hold image files; no image is read."""
    return _crops_files(path_text)[0]


def _crops_files(path_text: str) -> tuple[Path, list[Path]]:
    """``crops_root`` and the image files it holds, listed once."""
    root = _folder_root(path_text, _HINT)
    files = _image_files(root)
    if not files:
        raise DataError(f"The folder {root} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)}, in it and "
                        "its sub-folders).")
    if len(files) < 2:
        raise DataError(f"The folder {root} holds one image, {files[0].relative_to(root)}; crops:PATH needs at least "
                        "two, one of them held out to score the puzzle on.")
    return root, files


def _max_side(count: int) -> int:
    """The longest side that keeps ``count`` photos' pixels within ``CROPS_BUDGET_MB`` (4/3 for the pyramid)."""
    per_photo = CROPS_BUDGET_MB * 2**20 / max(count, 1) / (3 * 4 * 4 / 3)  # pixels on a square canvas
    return max(64, min(_PHOTO_MAX_SIDE, int(math.sqrt(per_photo))))


@lru_cache(maxsize=4)
def _read(root: str, max_side: int, fingerprint: tuple) -> tuple[tuple[tuple[str, np.ndarray], ...],
                                                                  tuple[tuple[str, str], ...]]:
    """Every readable image under ``root`` as (relative path, shrunk array), and the unreadable ones and why.

    ``fingerprint`` (every file's path, time and size) makes a changed folder read again.
    """
    from ..images import ImageLoadError, load_image

    read, skipped = [], []
    for path in _image_files(Path(root)):
        relative = path.relative_to(root).as_posix()
        try:
            read.append((relative, _shrunk(load_image(path), max_side)))
        except ImageLoadError as e:
            skipped.append((relative, str(e)))
    return tuple(read), tuple(skipped)


class _Crops(_Photos):
    """``crops:PATH``: random crops of every image under a folder, split by photo (see the module docstring)."""

    def __init__(self, path_text: str, split: str, image_size: int, device: torch.device):
        root, files = _crops_files(path_text)
        max_side = _max_side(len(files))
        read, skipped = _read(str(root), max_side, _fingerprint(root))
        if not read:
            raise _unreadable(root, skipped)
        held = held_out_names([name for name, _ in read])
        chosen = [(name, array) for name, array in read if (name in held) == (split != "train")]
        if not chosen:
            raise DataError(f"Only one image under {root} could be read ({read[0][0]}); crops:PATH needs at least two, "
                            "one of them held out to score the puzzle on.")
        notes = []
        if skipped:
            notes.append(_skipped_note(root, skipped, len(read) + len(skipped)))
        if max_side < _PHOTO_MAX_SIDE:
            notes.append(f"{root} holds {len(read) + len(skipped)} images: each is kept at most {max_side} px on a "
                         f"side (not {_PHOTO_MAX_SIDE}) to stay within {CROPS_BUDGET_MB} MB.")
        ImageBatches.__init__(self, f"crops:{root}", split, image_size, device, skipped=len(skipped), notes=notes)
        self.photo_names = tuple(name for name, _ in chosen)
        self.stack = _stack(tuple(array for _, array in chosen), device)
