"""``upload:NAME``: your own images, brought as a zip of class folders and kept as a named data set.

``import_zip(source, name, root)`` checks the whole zip from its central directory before anything is
written: an entry that would land outside the data set's folder (``..``, an absolute path, a symbolic link),
an encrypted entry, more than ``MAX_FILES`` files or more than ``MAX_BYTES`` claimed uncompressed (a "zip bomb"
is refused from what its entries claim, without extracting it), or no class folder at all each raise a
``DataError`` (a ``ValueError``) in one sentence. It then reads every file through ``vitviz.images.load_image``
(modes, EXIF, pixel bombs), skips and counts those that are not readable images, and writes the rest under a
hidden temporary folder that becomes ``root/NAME/<class>/`` in one rename once at least one class holds an
image: a refused or failed import leaves nothing behind.

Layout: each top-level folder of the zip is a class (``cats/001.jpg``, ``dogs/a/002.png``: images in sub-folders
belong to their top folder); a single folder wrapping them all (``pets/cats/...``) is looked through; macOS
``__MACOSX/`` and hidden files are ignored; files outside any class folder are skipped and counted. A zip already
split into ``train/`` and ``val/`` is refused: the split is made here. Images are stored RGB, with their shorter
side at most ``STORED_SIDE`` pixels (JPEG files as JPEG, the rest as PNG); ``.upload.json`` beside the class
folders records the zip's name, what was skipped and why.

The split (``UploadedSet.val``) is stratified and stable: in each class with two images or more, the
``VAL_FRACTION`` of its images (at least one) whose names hash lowest form the validation split; it depends
on the images' names only, never on the order of the zip's entries or on a seed. ``upload:NAME`` gives that
train split (crops of 80-100% of the side and flips) and that val split, which also serves as its test split.

Uploads live in ``vitviz.registry.uploads_dir()`` (``<jobs root>/uploads``), where ``upload:NAME`` finds them;
``list_uploads``, ``read_upload`` and ``delete_upload`` take another ``root`` too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Optional, Union

import numpy as np
import torch

from .batches import SPLITS, DataError, _Stack
from .folders import _class_folders, _fingerprint, _FolderImages, _read_folder

__all__ = [
    "MAX_BYTES",
    "MAX_FILES",
    "STORED_SIDE",
    "UploadedSet",
    "VAL_FRACTION",
    "delete_upload",
    "import_zip",
    "list_uploads",
    "read_upload",
]

MAX_FILES = 10_000  # files in one zip
MAX_BYTES = 1_000_000_000  # their total uncompressed size, as the zip's entries claim it
STORED_SIDE = 512  # an image's shorter side is scaled down to this when stored: the app trains at 512 px at most
VAL_FRACTION = 0.2  # of each class's images, for validation
MANIFEST = ".upload.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LAYOUT = "put each class's images in a folder named after the class (cats/001.jpg, dogs/001.jpg) and zip those folders"
ZipSource = Union[bytes, bytearray, str, os.PathLike, BinaryIO]


@dataclass(frozen=True)
class UploadedSet:
    """An imported data set as its folder holds it; read without decoding an image."""

    name: str
    path: Path  # root/NAME, absolute
    files: dict[str, tuple[Path, ...]]  # class name -> its images, sorted; classes sorted by name
    val: frozenset[Path]  # the images of the validation split
    skipped: tuple[tuple[str, str], ...]  # zip entries that were not imported, and why
    source: str  # the zip's file name, "" when it came as bytes

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.files)

    @property
    def size(self) -> int:
        return sum(len(paths) for paths in self.files.values())

    def split(self, split: str) -> dict[str, tuple[Path, ...]]:
        """Each class's images in ``split`` ("train", or "val", which also serves as "test")."""
        if split not in SPLITS:
            raise DataError(f"Unknown split {split!r}; choose from train, val, test.")
        in_val = split != "train"
        return {c: tuple(p for p in paths if (p in self.val) == in_val) for c, paths in self.files.items()}


# --- import ---------------------------------------------------------------------------------------


def import_zip(source: ZipSource, name: str, root: Union[str, os.PathLike], *, max_files: int = MAX_FILES,
               max_bytes: int = MAX_BYTES) -> Path:
    """Import a zip of class folders as the data set ``name`` under ``root``; returns ``root/name``.

    Args:
        source: the zip's bytes, its path, or a binary file opened on it (e.g. a Streamlit upload).
        name: the data set's name (``upload:NAME``): up to 64 letters, digits, '.', '_' and '-'.
        root: the folder of uploaded sets (``vitviz.registry.uploads_dir()`` for the app and the CLI).
        max_files, max_bytes: the caps on the zip's file count and claimed uncompressed size.

    Raises:
        DataError: a bad or taken name, a file that is not a zip, an entry with ``..``, an absolute path, a
            link or a password, too many files or bytes, no class folder, or no readable image in any class;
            all but the last before anything is written, and none leaves a file behind.
    """
    root = Path(root).expanduser()
    _check_name(name)
    if (root / name).exists():
        raise DataError(f"An uploaded data set named {name!r} already exists in {root}; delete it or choose "
                        "another name.")
    archive = _open_zip(source)
    with archive:
        members, skipped = _plan(archive, max_files, max_bytes)
        root.mkdir(parents=True, exist_ok=True)
        partial = root / f".{name}.importing-{secrets.token_hex(4)}"
        try:
            before = len(skipped)
            counts = _extract(archive, members, partial, skipped)
            if not any(counts.values()):
                entry, reason = skipped[before]
                raise DataError(f"None of the {len(members)} files in the zip's class folders is an image that can "
                                f"be read; the first, {entry}, gave: {reason}")
            left_out = [c for c, n in counts.items() if n == 0]
            for class_name in left_out:
                shutil.rmtree(partial / class_name, ignore_errors=True)
            manifest = {"format": "vitviz-upload/1", "name": name, "source": _source_name(source),
                        "created": time.time(), "images": {c: n for c, n in counts.items() if n},
                        "left_out": left_out, "skipped": skipped}
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
            try:
                os.rename(partial, root / name)  # the set appears whole, or not at all
            except OSError:
                raise DataError(f"An uploaded data set named {name!r} already exists in {root}; delete it or "
                                "choose another name.") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return root / name


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise DataError(f"The data set name {name!r} is not allowed: use up to 64 letters, digits, '.', '_' and '-', "
                        "starting with a letter or digit.")


def _open_zip(source: ZipSource) -> zipfile.ZipFile:
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataError(f"No zip file at {path}.")
        source = path
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        raise DataError(f"This file is not a zip archive that can be read ({e}).") from None


def _source_name(source: ZipSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return Path(str(getattr(source, "name", "") or "")).name


def _entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path components, refusing any that would leave its folder; '.' and empty ones dropped."""
    entry = info.filename
    if "\x00" in entry or entry.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", entry):
        raise DataError(f"The zip entry {entry!r} is an absolute path, which would land outside the data set's "
                        "folder, so the zip was refused.")
    parts = re.split(r"[\\/]", entry)
    if ".." in parts:
        raise DataError(f"The zip entry {entry!r} climbs out of its folder with '..', which would land outside the "
                        "data set's folder, so the zip was refused.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"The zip entry {entry!r} is a symbolic link, which could point outside the data set's "
                        "folder, so the zip was refused.")
    if info.flag_bits & 0x1:
        raise DataError(f"The zip entry {entry!r} is encrypted; vitviz cannot read password-protected zips.")
    return tuple(p for p in parts if p not in ("", "."))


def _plan(archive: zipfile.ZipFile, max_files: int, max_bytes: int) -> tuple[
        list[tuple[zipfile.ZipInfo, str, PurePosixPath]], list[list[str]]]:
    """Every check that needs only the central directory; the files to read as (entry, class, path in the class),
    and the entries skipped so far as [entry, why]."""
    entries = archive.infolist()
    files = [(info, _entry_parts(info)) for info in entries]  # refuses bad paths first, whatever the count
    files = [(info, parts) for info, parts in files if not info.is_dir() and parts]
    if len(files) > max_files:
        raise DataError(f"The zip holds {len(files):,} files; the limit is {max_files:,}, so it was refused: "
                        "split it into smaller data sets.")
    claimed = sum(info.file_size for info, _ in files)
    if claimed > max_bytes:
        raise DataError(f"The zip's files claim {_size(claimed)} uncompressed, over the limit of {_size(max_bytes)}, "
                        "so it was refused without extracting it.")
    # macOS resource forks and hidden files (.DS_Store) are the system's, not the user's: ignored
    files = [(info, parts) for info, parts in files
             if parts[0] != "__MACOSX" and not any(p.startswith(".") for p in parts)]
    while len(files) > 0 and all(len(p) >= 3 for _, p in files) and len({p[0] for _, p in files}) == 1:
        files = [(info, parts[1:]) for info, parts in files]  # one folder wrapping the classes
    top = {parts[0] for _, parts in files if len(parts) >= 2}
    if "train" in top and top <= set(SPLITS):
        raise DataError("This zip is already split into train/ and val/ folders; vitviz makes its own split, so zip "
                        "the class folders themselves (cats/, dogs/) with all their images.")
    if not top:
        raise DataError(f"The zip has no class folders: {_LAYOUT}.")
    skipped = [[info.filename, "not inside a class folder"] for info, parts in files if len(parts) < 2]
    members = [(info, parts[0], PurePosixPath(*parts[1:])) for info, parts in files if len(parts) >= 2]
    return members, skipped


def _extract(archive: zipfile.ZipFile, members: list[tuple[zipfile.ZipInfo, str, PurePosixPath]], folder: Path,
             skipped: list[list[str]]) -> dict[str, int]:
    """Read each file through ``load_image`` and store it under ``folder/<class>/``; the images stored per class.
    Unreadable files are appended to ``skipped``."""
    from ..images import ImageLoadError, load_image

    counts = {class_name: 0 for class_name in sorted({c for _, c, _ in members})}
    stored: set[Path] = set()
    for info, class_name, inner in sorted(members, key=lambda m: m[0].filename):
        try:
            with archive.open(info) as entry:
                data = entry.read()  # at most file_size bytes: zipfile stops there (and checks the CRC)
        except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError) as e:
            skipped.append([info.filename, f"the zip entry is damaged or uses an unknown compression ({e})"])
            continue
        try:
            image = load_image(data)
        except ImageLoadError as e:
            skipped.append([info.filename, str(e)])
            continue
        jpeg = data[:3] == b"\xff\xd8\xff"
        target = folder / class_name / inner
        if target.suffix.lower() not in ((".jpg", ".jpeg") if jpeg else (".png",)):
            target = target.with_name(target.name + (".jpg" if jpeg else ".png"))
        if target in stored:
            skipped.append([info.filename, "another entry has the same name"])
            continue
        stored.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        _shrink(image).save(target, **(dict(format="JPEG", quality=95) if jpeg else dict(format="PNG")))
        counts[class_name] += 1
    return counts


def _shrink(image):
    """The image with its shorter side at most ``STORED_SIDE``."""
    from PIL import Image

    width, height = image.size
    scale = STORED_SIDE / min(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


# --- the sets -------------------------------------------------------------------------------------


def _uploads_root(root: Optional[Union[str, os.PathLike]]) -> Path:
    from ..registry import uploads_dir

    return Path(root).expanduser() if root is not None else uploads_dir()


def read_upload(name: str, root: Optional[Union[str, os.PathLike]] = None) -> UploadedSet:
    """The uploaded set ``name`` in ``root`` (default ``uploads_dir()``): its classes, images and split.

    Raises:
        DataError: a name that is not a data set name, or no such set (the message lists those there are).
    """
    folder = _uploads_root(root)
    _check_name(name)
    path = (folder / name).resolve()
    if not path.is_dir():
        there = [u.name for u in list_uploads(folder)]
        listed = f" (there are: {', '.join(there)})" if there else ""
        raise DataError(f"No uploaded data set named {name!r} in {folder}{listed}; upload a zip of class folders in "
                        "the Train view, or with vitviz.data.import_zip.")
    files = {c: tuple(paths) for c, paths in _class_folders(path).items()}
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    return UploadedSet(name, path, files, _val_files(path, files),
                       tuple((str(e), str(why)) for e, why in manifest.get("skipped", [])), manifest.get("source", ""))


def list_uploads(root: Optional[Union[str, os.PathLike]] = None) -> list[UploadedSet]:
    """Every uploaded set in ``root`` (default ``uploads_dir()``), by name; a folder that is not one is left out."""
    folder = _uploads_root(root)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and _NAME.fullmatch(path.name) and ".." not in path.name:
            try:
                found.append(read_upload(path.name, folder))
            except DataError:
                continue
    return found


def delete_upload(name: str, root: Optional[Union[str, os.PathLike]] = None) -> None:
    """Delete the uploaded set ``name`` and its images; ``DataError`` when there is none."""
    upload = read_upload(name, root)
    shutil.rmtree(upload.path)


def _val_files(root: Path, files: dict[str, tuple[Path, ...]]) -> frozenset[Path]:
    """The validation images: per class with two images or more, the ``VAL_FRACTION`` (at least one) whose
    names, relative to the set, hash lowest."""
    val = []
    for paths in files.values():
        if len(paths) < 2:
            continue
        ranked = sorted(paths, key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())
        val += ranked[:max(1, round(VAL_FRACTION * len(paths)))]
    return frozenset(val)


# --- the batch source -----------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _cached_upload(path: str, image_size: int, fingerprint: tuple) -> tuple[tuple[str, ...], _FolderImages]:
    """Class names and every image of the set, decoded at ``image_size``; a changed set is read again."""
    files = _class_folders(Path(path))
    class_names = tuple(files)
    return class_names, _read_folder(files, class_names, image_size)


def _upload(name: str, split: str, image_size: int, device: torch.device) -> _Stack:
    upload = read_upload(name)
    class_names, data = _cached_upload(str(upload.path), image_size, _fingerprint(upload.path))
    in_val = np.array([p in upload.val for p in data.paths], dtype=bool)
    rows = np.flatnonzero(in_val if split != "train" else ~in_val)
    if len(rows) == 0:
        raise DataError(f"The uploaded data set {name!r} has too few images for a {split} split: give each class "
                        "two images at least.")
    index = torch.from_numpy(rows)
    return _Stack(f"upload:{name}", split, image_size, device, data.images[index], torch.from_numpy(data.labels[rows]),
                  class_names, flips=True, skipped=len(data.skipped))
