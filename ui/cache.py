"""Caches by kind: models are resources shared by every session (read-only, eval mode); images are data;
large per-(model, image) tensors live in one process-wide cache bounded in bytes (``bounded``)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import threading
from collections import OrderedDict
from typing import Any, Callable

import streamlit as st
import torch
from PIL import Image

from vitviz.images import load_image
from vitviz.models import load_model
from vitviz.registry import model_version
from vitviz.samples import load_sample


def model(ref: str) -> torch.nn.Module:
    return _model(ref, model_version(ref))


def model_key(ref: str) -> str:
    """The model's part of every cached computation's key: the ref and the version of its file."""
    return f"{ref}@{model_version(ref)}"


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def _model(ref: str, version: str) -> torch.nn.Module:
    loaded = load_model(ref)
    loaded.requires_grad_(True)  # gradient methods need it; nothing ever steps an optimiser on a cached model
    return loaded


@st.cache_data(show_spinner=False, max_entries=32)
def uploaded_image(data: bytes) -> Image.Image:
    return load_image(data)


@st.cache_data(show_spinner=False)
def sample_image(name: str) -> Image.Image:
    return load_sample(name)


@st.cache_data(show_spinner="Drawing the shapes item…", max_entries=64)
def shapes_item(index: int, image_size: int) -> tuple[Image.Image, str, torch.Tensor]:
    from vitviz.data import SHAPES_CLASSES, shapes_item as make_item

    pixels, label, mask = make_item(index, image_size, split="test")
    array = (pixels.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return Image.fromarray(array), SHAPES_CLASSES[label], mask


def image_key(image: Image.Image) -> str:
    """A short content hash: the cache key of every per-image computation."""
    return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()[:16]


# One budget for every large cached result (attentions, maps), shared by all sessions: a 37x37-patch model's
# attentions for one image are about 0.5 GB, so a count of entries says nothing about memory.
CACHE_MB_ENV = "VITVIZ_CACHE_MB"
DEFAULT_CACHE_MB = 1024
_BOUNDED: "OrderedDict[tuple, tuple[Any, int]]" = OrderedDict()
_BOUNDED_LOCK = threading.Lock()


def bounded(spinner: str = "") -> Callable:
    """Memoise a function of hashable arguments in the process-wide cache bounded to ``$VITVIZ_CACHE_MB``
    megabytes (default 1024), least recently used first out; arguments named with a leading ``_`` are
    not part of the key (as with ``st.cache_data``). Results are shared, not copied: callers must not
    change them. One result larger than the whole budget is still returned, and kept until the next one."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def cached(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            key = (function.__qualname__, *((k, v) for k, v in bound.arguments.items() if not k.startswith("_")))
            with _BOUNDED_LOCK:
                if key in _BOUNDED:
                    _BOUNDED.move_to_end(key)
                    return _BOUNDED[key][0]
            if spinner:
                with st.spinner(spinner):
                    value = function(*args, **kwargs)
            else:
                value = function(*args, **kwargs)
            _keep(key, value)
            return value

        return cached

    return decorate


def bounded_bytes() -> int:
    """Bytes held by the bounded cache now."""
    with _BOUNDED_LOCK:
        return sum(size for _, size in _BOUNDED.values())


def clear_bounded() -> None:
    with _BOUNDED_LOCK:
        _BOUNDED.clear()


def _keep(key: tuple, value: Any) -> None:
    budget = float(os.environ.get(CACHE_MB_ENV, DEFAULT_CACHE_MB)) * 1e6
    with _BOUNDED_LOCK:
        _BOUNDED[key] = (value, _nbytes(value))
        total = sum(size for _, size in _BOUNDED.values())
        while total > budget and len(_BOUNDED) > 1:
            _, (_, size) = _BOUNDED.popitem(last=False)
            total -= size


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if hasattr(value, "__dataclass_fields__"):
        return sum(_nbytes(getattr(value, name)) for name in value.__dataclass_fields__)
    return 64
