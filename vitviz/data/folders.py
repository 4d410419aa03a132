"""``folder:PATH``: a folder with one sub-folder of images per class.

Its train/ and val/ (and test/) sub-folders are the split when present (val/ stands in for a missing test/),
else a fixed 80/10/10 split per class. Images (``IMAGE_EXTENSIONS``, hidden files ignored) are read once through
``vitviz.images``, fitted to the square side and kept as uint8 ``[N, 3, S, S]``; a changed folder is read again.
Unreadable images are skipped and counted (``.skipped``, ``.notes``). Train crops of 80-100% of the side and flips.

Raises ``DataError`` before reading any image for a path that is missing, a file, empty, or has no class
sub-folders with images; after reading, when no image (or no image of some class) could be read, or a split
would be empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .batches import SPLITS, DataError, _split_rows, _Stack

__all__ = ["IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_LAYOUT_HINT = "Give it one sub-folder of images per class, e.g. {path}/cats/001.jpg and {path}/dogs/001.jpg."


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``, at any depth, sorted; hidden files and hidden sub-folders are skipped."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and all(_visible(Path(part)) for part in p.relative_to(folder).parts))


def _unreadable(root: Path, skipped: Sequence[tuple[str, str]]) -> DataError:
    """The error for a folder none of whose image files could be read: ``skipped`` is (file, why) for each."""
    first, reason = skipped[0]
    return DataError(f"None of the {len(skipped)} image files under {root} could be read; the first, {first}, "
                     f"gave: {reason}")


def _skipped_note(root: Path, skipped: Sequence[tuple[str, str]], total: int) -> str:
    """The note for the ``skipped`` (file, why) of the ``total`` image files under ``root``: the first three named."""
    listed = "; ".join(f"{name} ({reason})" for name, reason in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"{len(skipped)} of {total} image files under {root} could not be read and were skipped: {listed}{more}"


def _check_folder(root: Path, hint: str = _LAYOUT_HINT) -> None:
    """The clear errors for a path that cannot be an image folder, before anything is read.

    ``hint`` (formatted with ``path``) says what the folder should hold.
    """
    if not root.exists():
        raise DataError(f"No folder at {root}. " + hint.format(path=root))
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder. " + hint.format(path=root.parent))
    if not any(_visible(p) for p in root.iterdir()):
        raise DataError(f"The folder {root} is empty. " + hint.format(path=root))


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
    paths: tuple[Path, ...] = ()  # the file of each row


def _read_folder(files: dict[str, list[Path]], class_names: Sequence[str], image_size: int) -> _FolderImages:
    from ..images import ImageLoadError, fit_to_model, load_image

    arrays = [np.zeros((image_size, image_size, 3), dtype=np.uint8)]  # keeps np.stack valid; dropped below
    labels, skipped, read = [], [], []
    for name, paths in files.items():
        for path in paths:
            try:
                image = fit_to_model(load_image(path), (image_size, image_size))
            except ImageLoadError as e:
                skipped.append((path, str(e)))
                continue
            arrays.append(np.asarray(image, dtype=np.uint8))  # (S, S, 3)
            labels.append(class_names.index(name))
            read.append(path)
    images = torch.from_numpy(np.stack(arrays)[1:]).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    return _FolderImages(images, np.asarray(labels, dtype=np.int64), tuple(skipped), tuple(read))


def _split_files(path: Path) -> tuple[tuple[str, ...], dict[str, dict[str, list[Path]]]]:
    """Class names and the class files of each split folder ("all" when unsplit); lists files, reads none."""
    if (path / "train").is_dir() and (path / "val").is_dir():
        split_files = {s: _class_folders(path / s) for s in SPLITS if (path / s).is_dir()}
        class_names = tuple(split_files["train"])
        for split, files in split_files.items():
            stray = [c for c in files if c not in class_names]
            if stray:
                raise DataError(f"{path / split} has class folders that {path / 'train'} lacks: {', '.join(stray)}.")
        return class_names, split_files
    files = _class_folders(path)
    return tuple(files), {"all": files}


@lru_cache(maxsize=4)
def _cached_folder(root: str, image_size: int, fingerprint: tuple) -> tuple[tuple[str, ...], dict[str, _FolderImages]]:
    """Class names and the decoded images of each split folder ("all" when unsplit).

    ``fingerprint`` (every file's path, time and size) makes a changed folder read again.
    """
    class_names, split_files = _split_files(Path(root))
    return class_names, {s: _read_folder(f, class_names, image_size) for s, f in split_files.items()}


def _fingerprint(root: Path) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file())


def _folder_root(path_text: str, hint: str = _LAYOUT_HINT) -> Path:
    """The folder's absolute path, after the checks that need only its entries."""
    root = Path(path_text).expanduser()
    _check_folder(root, hint)
    return root.resolve()


def _folder_classes(path_text: str) -> tuple[Path, tuple[str, ...]]:
    """The folder's absolute path and class names, after every check that reads no image."""
    root = _folder_root(path_text)
    return root, _split_files(root)[0]


def _folder(path_text: str, split: str, image_size: int, device: torch.device) -> _Stack:
    root = _folder_root(path_text)
    class_names, parts = _cached_folder(str(root), image_size, _fingerprint(root))
    total = sum(len(p.labels) + len(p.skipped) for p in parts.values())
    skipped = [s for p in parts.values() for s in p.skipped]
    if len(skipped) == total:
        raise _unreadable(root, [(str(path), reason) for path, reason in skipped])
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
        notes.append(_skipped_note(root, [(str(p.relative_to(root)), reason) for p, reason in skipped], total))
    index = torch.from_numpy(rows)
    return _Stack(f"folder:{root}", split, image_size, device, data.images[index],
                  torch.from_numpy(data.labels[rows]), class_names, flips=True, skipped=len(skipped), notes=notes)
