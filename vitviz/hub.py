"""Pretrained weights from the Hugging Face Hub: the catalogue, what is cached, and downloads on request.

Weights go through ``huggingface_hub`` into its standard cache (``$HF_HOME/hub``, or ``$HF_HUB_CACHE``),
the cache timm itself reads, and only when the user asks (``download_weights``: the Download button,
or ``python -m vitviz fetch NAME``). Everything else here reads the cache without touching the network.
The environment is read at call time (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``),
so one process can point at another cache or a stand-in Hub.

A timm name names its weights: ``vit_base_patch16_224.augreg2_in21k_ft_in1k`` is the file
``model.safetensors`` of the Hub repository ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``
(timm's pretrained config, ``hf_hub_id``). ``hf-hub:ORG/NAME`` names a Hub repository directly: its
``config.json`` and ``model.safetensors`` (timm's or Hugging Face ``transformers``' format).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

from .checkpoints import ModelLoadError

__all__ = [
    "RANDOM_INIT",
    "WeightsNotDownloaded",
    "CATALOGUE_PATH",
    "CatalogueEntry",
    "DownloadError",
    "HubFile",
    "Progress",
    "cache_dir",
    "cached_file",
    "cached_weights",
    "catalogue",
    "download_weights",
    "hub_files",
    "partial_bytes",
    "partial_download",
]

CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.json"
ETAG_TIMEOUT_S = 4.0  # how long the first request may wait before "no network" is said
Progress = Callable[[int, Optional[int]], None]  # (bytes so far, total bytes or None)


RANDOM_INIT = "random:"  # a reference's prefix that asks for a timm model with random weights


class WeightsNotDownloaded(ModelLoadError):
    """A pretrained model whose weights are not in the local cache yet; ``download_weights(name)`` fetches them."""

    def __init__(self, name: str, download_mb: Optional[int]):
        size = f" (about {download_mb} MB)" if download_mb else ""
        super().__init__(f"{name}'s pretrained weights{size} are not downloaded yet: press Download, or run "
                         f"`python -m vitviz fetch {name}`; to see the architecture untrained, pick "
                         f"{RANDOM_INIT}{name.split('.')[0]} (random init).")
        self.name = name
        self.download_mb = download_mb


class DownloadError(ValueError):
    """A download that did not happen or did not finish; the message says what to do, in one sentence."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One real pretrained ViT the picker offers (``vitviz/catalogue.json``)."""

    name: str  # the timm name with its pretrained tag
    title: str
    trained_on: str
    parameters: int
    download_mb: int
    image_size: int
    patch_size: int
    grid: tuple[int, int]
    prefix_tokens: str
    classes: str  # the label set of its head; "" for a model with no classifier


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub repository."""

    repo_id: str
    filename: str


@lru_cache(maxsize=1)
def catalogue() -> tuple[CatalogueEntry, ...]:
    """The catalogue of real ViTs, as the data file lists them."""
    entries = json.loads(CATALOGUE_PATH.read_text())["models"]
    return tuple(CatalogueEntry(**{**e, "grid": tuple(e["grid"])}) for e in entries)


def cache_dir() -> Path:
    """The huggingface_hub cache in use now: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_files(name: str) -> list[HubFile]:
    """The Hub files that make up ``name``'s pretrained weights, weights last; empty when timm knows of none.

    A timm name gives its pretrained config's ``hf_hub_id`` and ``model.safetensors``; ``hf-hub:ORG/NAME``
    gives that repository's ``config.json`` and ``model.safetensors``.
    """
    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:"):].split("@")[0]
        return [HubFile(repo, "config.json"), HubFile(repo, "model.safetensors")]
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return []
    filename = getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
    return [HubFile(repo, filename)]


def cached_file(file: HubFile) -> Optional[Path]:
    """The file's path in the local cache, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo_id, file.filename, cache_dir=str(cache_dir()))
    return Path(found) if isinstance(found, str) else None


def cached_weights(name: str) -> Optional[Path]:
    """The weights file of ``name`` if every file it needs is already cached (see ``hub_files``), else None."""
    files = hub_files(name)
    paths = [cached_file(f) for f in files]
    return paths[-1] if paths and all(paths) else None


def download_weights(name: str, progress: Optional[Progress] = None, show_bar: bool = False) -> Path:
    """Download ``name``'s pretrained weights into the huggingface_hub cache, resuming a broken-off download.

    A download that breaks off keeps its bytes outside the cache (``partial_download``); the next call asks the
    Hub for the rest only (an HTTP ``Range`` request) and checks the whole file's size and SHA-256 before it
    becomes a cache entry.

    Args:
        name: a timm name (with its pretrained tag) or ``hf-hub:ORG/NAME``.
        progress: called with (bytes so far, total bytes) as the weights arrive.
        show_bar: also draw a text progress bar on stderr (the command line).

    Returns:
        The cached weights file.

    Raises:
        DownloadError: downloads are off (``HF_HUB_OFFLINE``), the Hub cannot be reached (within about
            ``ETAG_TIMEOUT_S`` seconds), the name has no weights on the Hub, the transfer broke off (its bytes
            are kept for the next call), or the whole file does not match its SHA-256 or is not readable weights
            (it is deleted); the message says what to do. None of these ever becomes a cache entry.
    """
    files = hub_files(name)
    if not files:
        raise DownloadError(f"timm has no pretrained weights for {name}: pick one with a tag, such as "
                            f"{name.split('.')[0]}.augreg_in21k_ft_in1k, or use it with random weights (random init).")
    if _offline():
        raise DownloadError(_offline_sentence(name, "downloads are off here (HF_HUB_OFFLINE is set)"))
    path = None
    for file in files:
        path = _download(name, file, progress if file is files[-1] else None, show_bar)
    _check_weights(name, path)
    return path


def _download(name: str, file: HubFile, progress: Optional[Progress], show_bar: bool) -> Path:
    """``file`` in the cache, fetched if need be, continuing from where an earlier try broke off.

    huggingface_hub retries a dropped connection within one download but deletes what it got when that download
    fails, so a second click would start again from zero. The bytes go instead to ``blobs/<etag>.incomplete`` in
    the repository's cache folder, through huggingface_hub's own ``http_get`` (its ``Range`` requests and
    retries), under its lock for that blob. A finished file must have the size the Hub announced and, where the
    ETag is a SHA-256 (every LFS file), that hash; only then is it renamed to ``blobs/<etag>``, and
    ``hf_hub_download`` makes the snapshot link and the ref exactly as for its own downloads.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url

    started = time.monotonic()
    _reachable(name, file)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; the environment now (checked by the caller) decides.
    was_offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    try:
        meta = get_hf_file_metadata(hf_hub_url(file.repo_id, file.filename, endpoint=endpoint),
                                    timeout=ETAG_TIMEOUT_S, endpoint=endpoint)
        if meta.etag and meta.commit_hash:
            _fetch_blob(name, file, meta, progress, show_bar)
        # The blob is in place (or the Hub gave no ETag): this links it into the snapshot, or downloads it whole.
        found = hf_hub_download(file.repo_id, file.filename, cache_dir=str(cache_dir()), endpoint=endpoint,
                                etag_timeout=ETAG_TIMEOUT_S, tqdm_class=_progress_class(progress, show_bar))
    except DownloadError:
        raise
    except Exception as e:  # huggingface_hub and httpx raise many kinds: each becomes one sentence
        raise DownloadError(_explain(name, file, e, time.monotonic() - started)) from None
    finally:
        constants.HF_HUB_OFFLINE = was_offline
    return Path(found)


def partial_download(file: HubFile, etag: str) -> Path:
    """Where the bytes of ``file`` (whose Hub ETag is ``etag``) gather until it is whole: ``blobs/<etag>.incomplete``."""
    return _blobs(file) / f"{etag}.incomplete"


def partial_bytes(name: str) -> int:
    """Bytes of ``name``'s weights already fetched by a download that broke off (0 if none); reads only the cache."""
    files = hub_files(name)
    return sum(p.stat().st_size for p in _partials(files[-1])) if files else 0


def _blobs(file: HubFile) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir() / repo_folder_name(repo_id=file.repo_id, repo_type="model") / "blobs"


def _partials(file: HubFile) -> list[Path]:
    """This module's partial downloads in ``file``'s repository (named ``<etag>.incomplete``, unlike
    huggingface_hub's own ``<etag>.<random>.incomplete``)."""
    folder = _blobs(file)
    return [p for p in folder.glob("*.incomplete") if _is_etag(p.name[:-len(".incomplete")])] if folder.is_dir() else []


def _fetch_blob(name: str, file: HubFile, meta, progress: Optional[Progress], show_bar: bool) -> None:
    """Fetch ``file``'s blob into the cache, resuming its ``partial_download``; see ``_download``."""
    import logging

    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    partial = partial_download(file, meta.etag)
    blob = partial.with_suffix("")
    if blob.exists():
        return
    lock = cache_dir() / ".locks" / partial.parent.parent.name / f"{meta.etag}.lock"  # huggingface_hub's own lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(lock)):
        if blob.exists():  # another process finished it while this one waited
            return
        have = partial.stat().st_size if partial.exists() else 0
        if meta.size is not None and have > meta.size:  # not a prefix of this file: start again
            partial.unlink()
            have = 0
        if meta.size is not None:
            free = shutil.disk_usage(partial.parent).free
            if free < meta.size - have:
                raise _no_space(name, meta.size - have, free, have)
            if progress is not None:
                progress(have, meta.size)  # the bar starts where the last try stopped
        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"  # byte offsets must be the file's own
        hub_log = logging.getLogger("huggingface_hub")  # its retry warnings would break the one sentence
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # setLevel, not .level: it clears the level cache of its child loggers
        try:
            with partial.open("ab") as out:
                http_get(meta.location, out, resume_size=have, headers=headers, expected_size=meta.size,
                         displayed_filename=file.filename, tqdm_class=_progress_class(progress, show_bar))
        except Exception as e:
            got = partial.stat().st_size if partial.exists() else 0
            if meta.size is not None and got > meta.size:
                partial.unlink(missing_ok=True)
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                raise _no_space(name, (meta.size or got + 1) - got, shutil.disk_usage(partial.parent).free,
                                got) from None
            total = f" of {_mb(meta.size)}" if meta.size else ""
            raise DownloadError(f"The download of {name} broke off after {_mb(got)}{total} ({type(e).__name__}); "
                                f"those bytes are kept outside the cache: press Download again (or rerun python -m "
                                f"vitviz fetch {name}) to resume from there.") from None
        finally:
            hub_log.setLevel(level)
        if _is_sha256(meta.etag) and _sha256(partial) != meta.etag:
            partial.unlink()
            raise DownloadError(f"The download of {name} does not match its SHA-256 on the Hub (the file changed, "
                                f"or bytes were damaged on the way); it was deleted: press Download again.")
        os.replace(partial, blob)
        for stale in _partials(file):  # a broken-off download of an older version of the file
            stale.unlink(missing_ok=True)


def _no_space(name: str, needed: int, free: int, kept: int) -> DownloadError:
    """The sentence for a disk that cannot take the ``needed`` bytes still to come."""
    kept_text = f" (the {_mb(kept)} already fetched are kept)" if kept else ""
    return DownloadError(f"{name}'s weights need {_mb(needed)} more on the disk that holds the Hugging Face cache "
                         f"({cache_dir()}), which has {_mb(free)} free: free some space (or point HF_HOME at a larger "
                         f"disk), then press Download again{kept_text}.")


def _is_etag(text: str) -> bool:
    """A Hub ETag of a file: a git SHA-1 (40 hex digits) or an LFS file's SHA-256 (64)."""
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _is_sha256(etag: str) -> bool:
    return len(etag) == 64 and _is_etag(etag.lower())


def _sha256(path: Path) -> str:
    import hashlib

    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _reachable(name: str, file: HubFile) -> None:
    """One HEAD request, no retries, at most ``ETAG_TIMEOUT_S``: no network or a missing file is said at once
    (huggingface_hub itself retries a refused connection with back-off for about half a minute)."""
    import urllib.error
    import urllib.request

    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/{file.repo_id}/resolve/main/{file.filename}"
    started = time.monotonic()
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=ETAG_TIMEOUT_S).close()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403, 404):
            raise DownloadError(f"{file.repo_id} has no {file.filename} on the Hugging Face Hub (HTTP {e.code}): "
                                f"check the name {name!r}.") from None
    except (OSError, ValueError) as e:  # refused, unreachable, timed out, no such host
        raise DownloadError(_offline_sentence(name, f"the Hugging Face Hub could not be reached in "
                                                    f"{time.monotonic() - started:.0f} s ({e})")) from None


def _explain(name: str, file: HubFile, error: Exception, seconds: float) -> str:
    kind = type(error).__name__
    text = str(error).split("\n")[0]
    if kind in ("RepositoryNotFoundError", "EntryNotFoundError", "RevisionNotFoundError", "GatedRepoError"):
        return f"{file.repo_id} has no {file.filename} on the Hugging Face Hub ({kind}): check the name {name!r}."
    if kind == "OfflineModeIsEnabled":
        return _offline_sentence(name, "downloads are off here (HF_HUB_OFFLINE is set)")
    if "consistency check failed" in text.lower() or "incomplete" in text.lower() or kind in (
            "RemoteProtocolError", "ReadError", "ChunkedEncodingError", "ReadTimeout"):
        return (f"The download of {name} broke off ({text}); nothing broken was kept: press Download again "
                f"(or rerun python -m vitviz fetch {name}) to try again.")
    if kind in ("LocalEntryNotFoundError", "ConnectError", "ConnectTimeout", "ConnectionError", "TimeoutException",
                "HfHubHTTPError", "HTTPError", "OSError") or isinstance(error, OSError):
        return _offline_sentence(name, f"the Hugging Face Hub could not be reached in {seconds:.0f} s ({text})")
    return f"The download of {name} failed: {kind}: {text}"


def _offline_sentence(name: str, why: str) -> str:
    return (f"{name}'s weights are not on this machine and {why}: run `python -m vitviz fetch {name}` on a machine "
            f"with a network and copy its Hugging Face cache ({cache_dir()}) here, or pick a bundled starter model.")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_weights(name: str, path: Path) -> None:
    """A downloaded safetensors file must open; one that does not is removed from the cache, not kept."""
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as e:
        _remove_cached(path)
        raise DownloadError(f"The file downloaded for {name} is not readable weights ({str(e).splitlines()[0]}); "
                            "it was removed from the cache: press Download again.") from None


def _remove_cached(path: Path) -> None:
    """Remove a cached file: the snapshot's link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _progress_class(progress: Optional[Progress], show_bar: bool):
    """A tqdm class for ``hf_hub_download`` that reports bytes to ``progress`` (and draws a bar if asked)."""
    from tqdm import tqdm

    class _Reporting(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = False  # huggingface_hub turns bars off away from a terminal; the count must run
            kwargs["file"] = sys.stderr if show_bar else io.StringIO()
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            shown = super().update(n)
            if progress is not None:
                progress(int(self.n), int(self.total) if self.total else None)
            return shown

    return _Reporting
