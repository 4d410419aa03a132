"""Caches by kind: models are resources shared by every session (read-only, eval mode); images are data."""

from __future__ import annotations

import hashlib

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
