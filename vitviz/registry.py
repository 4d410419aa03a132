"""Where models live: the checkpoint folders, the model picker's entries, and what a model reference names.

A reference (what ``vitviz.models.load_model`` takes) is a checkpoint name, found in
``checkpoint_dirs()``; a timm model name (optionally ``timm:NAME``); or a path to a weights file.
Checkpoint folders, searched in order: the bundled ``models/``, the folders of ``$VITVIZ_MODELS``
(separated by ``os.pathsep``), and ``<jobs root>/models`` where the app's training jobs publish
their checkpoints (``$VITVIZ_JOBS``, default ``<repo>/jobs``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from .card import Source
from .checkpoints import WEIGHTS_SUFFIXES, ModelLoadError, read_sidecar

__all__ = [
    "BUNDLED_MODELS_DIR",
    "CHECKPOINT_NAME",
    "DEFAULT_JOBS_ROOT",
    "DEFAULT_MODEL",
    "JOBS_ENV",
    "MODELS_ENV",
    "ModelEntry",
    "TIMM_SUGGESTIONS",
    "checkpoint_dirs",
    "default_model",
    "find_checkpoint",
    "jobs_models_dir",
    "jobs_root",
    "list_models",
    "model_version",
    "resolve",
    "uploads_dir",
]

MODELS_ENV = "VITVIZ_MODELS"
JOBS_ENV = "VITVIZ_JOBS"
_REPO = Path(__file__).resolve().parent.parent
BUNDLED_MODELS_DIR = _REPO / "models"
DEFAULT_JOBS_ROOT = _REPO / "jobs"
# A checkpoint name: a plain file name, so a name can never reach outside its folder.
CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# What the app opens on when it is listed: the bundled classifier pretrained with the jigsaw task.
DEFAULT_MODEL = "starter-shapes"
# Offered in the picker with random weights (random init), after the checkpoints and the catalogue of
# pretrained models (vitviz/catalogue.json); any other timm ViT name or hf-hub: id can be typed in.
TIMM_SUGGESTIONS = (
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch32_224",
    "vit_small_patch8_224",
)

Kind = Literal["classifier", "jigsaw", "checkpoint", "unreadable sidecar", "timm"]


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model picker."""

    ref: str  # what load_model takes
    source: Source
    label: str  # what the picker shows
    kind: str = "timm"  # a checkpoint's sidecar kind ("classifier", "jigsaw", ...); "pretrained" or "random init"
    path: Optional[Path] = None  # a checkpoint's weights file


def jobs_root() -> Path:
    """``$VITVIZ_JOBS`` if set, else ``<repo>/jobs``: where the app's training jobs keep their state."""
    env = os.environ.get(JOBS_ENV, "").strip()
    return Path(env).expanduser() if env else DEFAULT_JOBS_ROOT


def jobs_models_dir(root: Optional[Path] = None) -> Path:
    """The folder training jobs publish their checkpoints to: ``<jobs root>/models``."""
    return (root or jobs_root()) / "models"


def uploads_dir(root: Optional[Path] = None) -> Path:
    """The folder of the data sets uploaded as zips (``vitviz.data.import_zip``): ``<jobs root>/uploads``."""
    return (root or jobs_root()) / "uploads"


def checkpoint_dirs() -> list[Path]:
    """Folders searched for checkpoints, in order: the bundled ``models/``, then ``$VITVIZ_MODELS`` if
    set, then ``jobs_models_dir()``."""
    dirs = [BUNDLED_MODELS_DIR]
    extra = os.environ.get(MODELS_ENV, "").strip()
    if extra:
        dirs.extend(Path(p).expanduser() for p in extra.split(os.pathsep) if p)
    dirs.append(jobs_models_dir())
    return dirs


def find_checkpoint(name: str) -> Optional[Path]:
    """The weights file of the first checkpoint called ``name`` in ``checkpoint_dirs()``, or None.
    A name that is not a plain file name (``CHECKPOINT_NAME``) finds nothing."""
    if not CHECKPOINT_NAME.fullmatch(name) or ".." in name:
        return None
    for directory in checkpoint_dirs():
        candidate = directory / f"{name}.safetensors"
        if candidate.is_file():
            return candidate
    return None


def list_models() -> list[ModelEntry]:
    """Checkpoints first (bundled, then user), then the catalogue of pretrained ViTs (downloaded or not), then
    timm architectures with random weights. In each folder classifiers come before jigsaw models, each group sorted
    by name (``starter-shapes`` before ``starter-shapes-scratch``; never by file time, which a clone sets
    arbitrarily). A checkpoint whose run was stopped before its end (a cancelled job: its sidecar says
    ``training.finished`` false) says so in its label."""
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for directory in checkpoint_dirs():
        if not directory.is_dir():
            continue
        found = []
        for weights in sorted(directory.glob("*.safetensors"), key=lambda path: path.stem):
            if weights.stem in seen or not weights.with_suffix(".json").exists():
                continue
            seen.add(weights.stem)
            try:
                sidecar = read_sidecar(weights)
            except ModelLoadError:
                sidecar = {"kind": "unreadable sidecar"}
            kind = sidecar.get("kind", "checkpoint")
            label = f"{weights.stem} ({kind}{_partial(sidecar)})"
            found.append(ModelEntry(weights.stem, "checkpoint", label, kind, weights))
        entries.extend(sorted(found, key=lambda e: e.kind != "classifier"))  # a stable sort: by name within each group
    from .hub import RANDOM_INIT, catalogue

    for model in catalogue():  # the label stays the same once downloaded: the picker keys its choice on it
        entries.append(ModelEntry(model.name, "timm", f"{model.name} ({model.title}; {model.download_mb} MB)", "pretrained"))
    entries.extend(ModelEntry(f"{RANDOM_INIT}{name}", "timm", f"{name} (random init)", "random init")
                   for name in TIMM_SUGGESTIONS)
    return entries


def default_model(entries: Optional[list[ModelEntry]] = None) -> Optional[ModelEntry]:
    """The entry the app opens on: ``DEFAULT_MODEL`` when listed, else the first classifier checkpoint, else the
    first entry (None for an empty list). ``entries`` defaults to ``list_models()``."""
    entries = list_models() if entries is None else entries
    for wanted in (lambda e: e.ref == DEFAULT_MODEL, lambda e: e.kind == "classifier", lambda e: True):
        found = next((e for e in entries if wanted(e)), None)
        if found is not None:
            return found
    return None


def _partial(sidecar: dict) -> str:
    """``", partial: stopped at step 12 of 40"`` for a run that ended before its budget, else ``""``."""
    training = sidecar.get("training")
    if not isinstance(training, dict) or training.get("finished", True) is not False:
        return ""
    planned = (training.get("config") or {}).get("steps")
    return f", partial: stopped at step {training.get('steps', '?')}" + (f" of {planned}" if planned else "")


def resolve(ref: str) -> tuple[Source, "str | Path"]:
    """What ``ref`` names: ("timm", model name), ("file", weights path) or ("checkpoint", weights path).

    A ``timm:`` prefix, a weights suffix or a path separator decide at once; otherwise a checkpoint of
    that name wins over a timm name.
    """
    ref = ref.strip()
    if ref.startswith("timm:"):
        return "timm", ref[len("timm:"):]
    if ref.startswith(("random:", "hf-hub:")):  # random init, a Hub repository: both for vitviz.models to build
        return "timm", ref
    path = Path(ref).expanduser()
    if path.suffix in WEIGHTS_SUFFIXES or os.sep in ref:
        return "file", path
    checkpoint = find_checkpoint(ref)
    return ("checkpoint", checkpoint) if checkpoint is not None else ("timm", ref)


def model_version(ref: "str | os.PathLike") -> str:
    """Which file ``ref`` names now and its size and modification time; empty for a timm name.
    With the ref it keys caches, so a checkpoint trained again under the same name is loaded again."""
    source, target = resolve(str(ref))
    if source == "timm":  # which cached weights it would load: a download changes the version
        from .hub import cached_weights, hub_files

        if str(target).startswith("random:"):
            return ""
        try:
            weights, known = cached_weights(str(target)), bool(hub_files(str(target)))
        except Exception:  # not a timm name: load_model will say so
            return ""
        if weights is None:
            return "not downloaded" if known else ""
        target = weights
    try:
        stat = Path(target).stat()
    except OSError:
        return ""
    return f"{target}:{stat.st_size}-{stat.st_mtime_ns}"
