"""The data spec (the training ``--data`` option): parsed, checked, and built into batches.

``build_data(spec, split, image_size)`` gives an ``ImageBatches``; ``fixed_set`` a deterministic evaluation set
on the CPU; ``check_spec`` the cheap check to run before starting work (it reads no image); ``describe_specs``
the grammar for ``--help``. The grammar is in the package docstring (``vitviz.data``).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .batches import _SPLIT_CODES, DataError, DeviceLike, ImageBatches, Split, _check_image_size, _check_split, _Stack
from .cifar import _CIFAR, _cifar, _cifar_root, data_root
from .crops import CROPS_HELD_OUT, _Crops, crops_root
from .digits import _DIGIT_CLASSES, _digits
from .folders import _folder, _folder_classes
from .mixtures import _Mixture
from .photos import _Photos
from .procedural import _Procedural
from .shapes import SHAPES_CLASSES, _Shapes, _shapes_items
from .textured import _Textured
from .upload import _upload, read_upload

__all__ = ["SOURCES", "build_data", "check_spec", "describe_specs", "fixed_set"]

SOURCES: tuple[str, ...] = ("photos", "procedural", "textured", "shapes", "digits", "cifar10", "cifar100", "upload",
                            "folder", "crops")
# What an unknown or empty spec is told to choose from.
_CHOICES = "photos, procedural, textured, shapes, digits, cifar10, cifar100, folder:PATH, crops:PATH, upload:NAME"
_PATH_SOURCES = ("folder", "crops")  # sources whose part is SOURCE:PATH[:W]
_BUNDLED = tuple(s for s in SOURCES if s not in (*_PATH_SOURCES, "upload"))  # named alone, never a folder


@dataclass(frozen=True)
class _Part:
    source: str  # one of SOURCES
    path: str  # the folder of "folder" and "crops", the set's name for "upload"
    weight: float


def _parse_weight(text: str, part: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise DataError(f"In the data part {part!r}, the weight {text!r} is not a number.") from None
    if not math.isfinite(weight) or weight <= 0:
        raise DataError(f"In the data part {part!r}, the weight must be a positive number, not {text}.")
    return weight


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or os.sep in text or "/" in text


def _parse_part(part: str) -> _Part:
    part = part.strip()
    if not part:
        raise DataError("A data spec has an empty part (two '+' in a row, or one at an end).")
    source = next((s for s in _PATH_SOURCES if part.startswith(f"{s}:")), None)
    if source:
        rest = part[len(source) + 1:]
        head, sep, tail = rest.rpartition(":")
        if sep and head and not Path(rest).expanduser().is_dir():
            try:
                float(tail)
            except ValueError:
                return _Part(source, rest, 1.0)
            return _Part(source, head, _parse_weight(tail, part))
        if not rest:
            raise DataError(f"'{source}:' needs a path after it, e.g. {source}:~/pictures/pets.")
        return _Part(source, rest, 1.0)
    if part.startswith("upload:"):
        rest = part[len("upload:"):]
        head, sep, tail = rest.rpartition(":")  # a set's name holds no ':'
        if not (head if sep else rest):
            raise DataError("'upload:' needs the name of an uploaded data set after it, e.g. upload:pets.")
        return _Part("upload", head, _parse_weight(tail, part)) if sep else _Part("upload", rest, 1.0)
    name, sep, weight_text = part.partition(":")
    if name in _BUNDLED:
        return _Part(name, "", _parse_weight(weight_text, part) if sep else 1.0)
    if Path(part).expanduser().is_dir() or _looks_like_path(part):
        return _Part("folder", part, 1.0)
    raise DataError(f"Unknown data source {name!r}; choose from {_CHOICES}, or a mixture such as "
                    "photos:1+procedural:1.")


def _parse(spec: str) -> list[_Part]:
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"The data spec is empty ({spec!r}); choose from {_CHOICES}, or a mixture such as "
                        "photos:1+procedural:1.")
    spec = spec.strip()
    # A folder is taken whole first: its path may contain '+' or ':'. A bundled source's name is never a folder
    # (a folder called photos/ is ./photos or folder:photos).
    source = next((s for s in _PATH_SOURCES if spec.startswith(f"{s}:")), "folder")
    whole = spec[len(source) + 1:] if spec.startswith(f"{source}:") else spec
    bundled = spec.split("+")[0].partition(":")[0].strip() in _BUNDLED
    if whole and not (bundled and whole == spec) and Path(whole).expanduser().is_dir():  # "" is the working folder
        return [_Part(source, whole, 1.0)]
    return [_parse_part(p) for p in spec.split("+")]


def _build_part(part: _Part, split: str, image_size: int, seed: int, device: torch.device) -> ImageBatches:
    if part.source == "photos":
        return _Photos(split, image_size, device)
    if part.source == "crops":
        return _Crops(part.path, split, image_size, device)
    if part.source == "procedural":
        return _Procedural(split, image_size, device)
    if part.source == "textured":
        return _Textured(split, image_size, device)
    if part.source == "shapes":
        return _Shapes(split, image_size, seed, device)
    if part.source == "digits":
        return _digits(split, image_size, device)
    if part.source in _CIFAR:
        return _cifar(part.source, split, image_size, device)
    if part.source == "upload":
        return _upload(part.path, split, image_size, device)
    return _folder(part.path, split, image_size, device)


def _part_name(part: _Part) -> str:
    return f"{part.source}:{part.path}" if part.source in ("folder", "upload", "crops") else part.source


def build_data(spec: str, split: Split, image_size: int, *, seed: int = 0,
               device: DeviceLike = "cpu") -> ImageBatches:
    """The batches of ``split`` of the data ``spec`` (see the module docstring), made on ``device``.

    Args:
        spec: e.g. "shapes", "photos:1+procedural:1", "folder:~/pets" or a folder path.
        split: "train" (augmented), "val" or "test".
        image_size: side S of the square images, 8 to 1024.
        seed: picks the generated ``shapes`` items; splits never depend on it.
        device: where the pixels are kept and batches made.

    Raises:
        DataError: an unknown source, a bad weight or path, a folder without usable images, a missing CIFAR.
    """
    _check_split(split)
    _check_image_size(image_size)
    result = _build(_parse(spec), split, image_size, seed, torch.device(device))
    for note in result.notes:
        warnings.warn(note, stacklevel=2)
    return result


def _build(parts: list[_Part], split: str, image_size: int, seed: int, device: torch.device) -> ImageBatches:
    built = [_build_part(p, split, image_size, seed, device) for p in parts]
    if len(built) == 1:
        return built[0]
    name = "+".join(f"{_part_name(p)}:{p.weight:g}" for p in parts)
    return _Mixture(name, built, [p.weight for p in parts])


def fixed_set(spec: str, split: str, image_size: int, n: int, *,
              seed: int = 0) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """A deterministic evaluation set on the CPU, never augmented (also for the train split).

    Returns:
        images ``[n, 3, S, S]`` in [0, 1], labels ``[n]`` (-1 if unlabeled), and masks ``[n, S, S]``
        bool for ``shapes`` (items 0 to n-1 of the split) or None. A finite split (digits, folders,
        CIFAR) gives at most its size: a seeded choice of its items without repeats.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"The evaluation set size must be a positive whole number, not {n!r}.")
    _check_split(split)
    _check_image_size(image_size)
    parts = _parse(spec)
    cpu = torch.device("cpu")
    if len(parts) == 1 and parts[0].source == "shapes":
        return _shapes_items(range(n), split, image_size, seed, cpu)
    data = _build(parts, split, image_size, seed, cpu)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed % 2**63, _SPLIT_CODES[split]])
                                                 .generate_state(1)[0]))
    if isinstance(data, _Stack):
        index = torch.randperm(len(data.labels), generator=generator)[:n]
        images, labels = data._take(index, None)
    else:
        images, labels = data._draw(n, generator, augment=False)
    return images, labels, None


def check_spec(spec: str, *, labeled: bool = False) -> str:
    """The data ``spec`` normalised, once every check that reads no image has passed.

    Cheap enough to run before starting work: it lists folder entries but loads no image, so a folder's
    unreadable files, or too few images for a split, still surface only in ``build_data``.

    Args:
        spec: a data spec, as for ``build_data``.
        labeled: also require labels to train a classifier on, as fine-tuning does: ``build_data`` must give
            ``num_classes > 0``.

    Returns:
        The spec with each folder as its absolute path (``folder:/abs/path``), a single source by its name
        alone, and a mixture as ``A:W+B:W`` with every weight written out; ``check_spec`` of the result returns
        it unchanged.

    Raises:
        DataError: an empty spec, an unknown source, a weight that is not a positive number, a folder that is
            missing, a file, empty, or without class sub-folders holding image files, a mixture's folder whose
            absolute path holds "+", a CIFAR set missing from ``data_root()``; with ``labeled``, a ``photos``,
            ``procedural`` or ``textured`` part, or a mixture whose parts do not share one set of classes.
    """
    parts = _parse(spec)
    checked = [_check_part(p) for p in parts]  # (normalised name, class key) per part
    names, keys = [name for name, _ in checked], [key for _, key in checked]
    if labeled:
        unlabeled = [name for name, key in checked if key == ()]
        if unlabeled and len(parts) == 1:
            raise DataError(f"The data {names[0]!r} has no labels to fine-tune on; choose shapes, digits, cifar10, "
                            "cifar100, folder:PATH (one sub-folder of images per class) or upload:NAME (a zip of "
                            "class folders you uploaded).")
        if unlabeled:
            raise DataError(f"The mixture {spec.strip()!r} has no labels to fine-tune on: its part {unlabeled[0]!r} "
                            f"is unlabeled.")
        # As in build_data, a mixture keeps its labels only when every part has the same classes.
        if any(key != keys[0] for key in keys):
            raise DataError(f"The mixture {spec.strip()!r} has no labels to fine-tune on: its parts do not share "
                            f"one set of classes.")
    if len(parts) == 1:
        return names[0]
    for name in names:
        if "+" in name:
            raise DataError(f"The folder {name.partition(':')[2]} cannot be part of a mixture: its path holds '+'.")
    return "+".join(f"{name}:{_weight_text(p.weight)}" for name, p in zip(names, parts))


def _check_part(part: _Part) -> tuple[str, Union[tuple[str, ...], str]]:
    """A part's normalised name and its class key: its class names (``()`` if unlabeled), or a CIFAR set's name.

    CIFAR's class names are known only once the set is read; a CIFAR part shares its classes with the same set
    only (not with a folder named after CIFAR's classes, which ``build_data`` would label).
    """
    if part.source in ("photos", "procedural", "textured"):
        return part.source, ()
    if part.source == "shapes":
        return part.source, SHAPES_CLASSES
    if part.source == "digits":
        return part.source, _DIGIT_CLASSES
    if part.source in _CIFAR:
        _cifar_root(part.source)
        return part.source, part.source
    if part.source == "upload":
        return f"upload:{part.path}", read_upload(part.path).class_names
    if part.source == "crops":
        return f"crops:{crops_root(part.path)}", ()
    root, class_names = _folder_classes(part.path)
    return f"folder:{root}", class_names


def _weight_text(weight: float) -> str:
    short = f"{weight:g}"
    return short if float(short) == weight else repr(weight)


def describe_specs() -> str:
    """The data spec grammar, for ``--help``."""
    from ..registry import uploads_dir
    from ..samples import HELD_OUT_PHOTOS, TRAIN_PHOTOS
    from .upload import VAL_FRACTION

    return (
        "Data: one source, or a weighted mixture A:W+B:W.\n"
        f"  photos       unlabeled random crops of the bundled sample photos ({len(TRAIN_PHOTOS)} for train, "
        f"{len(HELD_OUT_PHOTOS)} others for val/test)\n"
        "  procedural   endless generated images: layered random shapes over gradients ('dead leaves'), "
        "striped, blurred and soft-blob variants\n"
        "  textured     endless dead leaves, half of them cut out of crops of the sample photos (train photos for "
        "train, held-out ones for val/test)\n"
        f"  shapes       labeled, generated: {', '.join(SHAPES_CLASSES)} over photo crops, with object masks\n"
        "  digits       scikit-learn's 8x8 handwritten digits, 10 classes\n"
        f"  cifar10, cifar100   torchvision's CIFAR from {data_root()} ($VITVIZ_DATA); never downloaded here\n"
        "  folder:PATH  one sub-folder of images per class (or just PATH); train/ and val/ sub-folders are "
        "used as the split when present, else a fixed 80/10/10 split\n"
        "  crops:PATH   unlabeled random crops of every image under PATH, like photos (for jigsaw pretraining on "
        f"your own photos); one image in {CROPS_HELD_OUT} (by a hash of its path) is held out for val/test\n"
        "  upload:NAME  a zip of class folders uploaded in the app's Train view (vitviz.data.import_zip), kept in "
        f"{uploads_dir()}; a fixed, stratified {1 - VAL_FRACTION:.0%}/{VAL_FRACTION:.0%} train/val split (val is "
        "also the test split)\n"
        "  A:W+B:W      each item from A or B with probability proportional to W, e.g. photos:1+procedural:1"
    )
