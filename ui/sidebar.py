"""The sidebar every page shares: the model picker and what to know about the model, the image (an uploader
always in reach) and the image as the model sees it, the device in use."""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Optional

import streamlit as st
import torch
from PIL import Image, ImageDraw

from vitviz.devices import default_device, describe_device
from vitviz.images import fit_notes, fit_to_model, image_notes
from vitviz.models import ModelLoadError
from vitviz.registry import default_model, list_models
from vitviz.samples import sample_names

from . import cache
from .context import IMAGE_SOURCE, IMAGE_SOURCES, MODEL_REF, SAMPLE_NAME, SHAPES_INDEX, UPLOAD, NoImage, selected_image

OTHER_TIMM = "Another timm ViT…"
WEIGHTS_FILE = "A local weights file…"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
SIDEBAR_WIDTH = 360  # px: wide enough for the longest name in the picker, "vit_small_patch14_reg4_dinov2 (timm)"
PREVIEW_PX = 256  # the image as the model sees it is drawn this wide, its pixels kept square and sharp


def draw_sidebar() -> None:
    """Draw the shared sidebar; the choices land in ``st.session_state`` for ``ui.current()``."""
    with st.sidebar:
        st.header("Model")
        ref = _model_picker()
        model = _model_notes(ref)
        st.header("Image")
        _image_picker()
        if model is not None:
            _image_as_the_model_sees_it(model)
        st.divider()
        try:
            st.caption(f"Device: **{describe_device(default_device())}**")
        except ValueError as e:
            st.error(str(e))


def _model_picker() -> str:
    entries = list_models()
    labels = {entry.label: entry.ref for entry in entries}
    options = [*labels, OTHER_TIMM, WEIGHTS_FILE]
    if st.session_state.get("model_choice") not in options:  # a first visit, or a checkpoint gone since
        default = default_model(entries)
        st.session_state["model_choice"] = default.label if default else options[0]
    choice = st.selectbox("Model", options, key="model_choice",
                          help="Checkpoints trained by vitviz come first (classifiers, then jigsaw models, by name), "
                               "then timm ViTs. The app opens on starter-shapes.")
    if choice == OTHER_TIMM:
        ref = st.text_input("timm model name", value="vit_small_patch16_384", key="timm_name",
                            help="Any timm VisionTransformer. Pretrained weights are used only if already cached.")
        ref = f"timm:{ref.strip()}" if ref.strip() else ""
    elif choice == WEIGHTS_FILE:
        ref = st.text_input("Path to .safetensors or .pth", key="weights_path",
                            help="A .pth is read with weights_only=True: files holding code are refused.").strip()
    else:
        ref = labels[choice]
    st.session_state[MODEL_REF] = ref
    return ref


def _model_notes(ref: str) -> Optional[torch.nn.Module]:
    """Load the chosen model (once: the pages share the cached one) and show what its card warns about, e.g.
    random weights: whatever page shows its output, the warning is beside it. None when it cannot be loaded
    (the page says why)."""
    if not ref:
        return None
    try:
        model = cache.model(ref)
    except ModelLoadError:
        return None
    for note in model.card.notes:
        st.warning(note)
    return model


def _image_picker() -> None:
    """The uploader, always in reach: while it holds a file, that file is the image. Below it, the bundled
    images, used while it is empty."""
    limit = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(f"Upload an image (up to {limit} MB)", type=IMAGE_TYPES, key=UPLOAD,
                              help="While a file is here, every view uses it; remove it (x) to use a bundled image. "
                                   "PNG, JPEG, WebP, GIF, BMP or TIFF.")
    uploaded = upload is not None
    source = st.radio("Or a bundled image", IMAGE_SOURCES, key=IMAGE_SOURCE, horizontal=True, disabled=uploaded)
    if source == "Shapes item":
        st.number_input("Item of the shapes test split", 0, 9999, key=SHAPES_INDEX, disabled=uploaded,
                        help="A generated test image with its true object mask, for the localization figures.")
    else:
        st.selectbox("Sample photo", sample_names(), key=SAMPLE_NAME, disabled=uploaded)
    if uploaded:
        st.caption("The upload is in use; remove it to use a bundled image.")


def _image_as_the_model_sees_it(model: torch.nn.Module) -> None:
    """The selected image resized and cropped to the model's input, with what that did to it."""
    card = model.card
    try:
        image, label, _, _ = selected_image(card.image_size)
    except NoImage:
        return  # the page says what is missing
    height, width = card.image_size
    seen = fit_to_model(image, card.image_size)
    zoom = max(1, PREVIEW_PX // max(height, width))
    st.image(_preview_png(cache.image_key(seen), seen, zoom), output_format="PNG",
             caption=f"As the model sees it: {width}x{height} px, from {image.width}x{image.height}")
    for note in fit_notes(image.size, card.image_size):
        st.warning(note)
    for note in image_notes(image):
        st.caption(f"ℹ️ {note}")


@st.cache_data(show_spinner=False, max_entries=16)
def _preview_png(image_key: str, _seen: Image.Image, zoom: int) -> bytes:
    """The preview enlarged ``zoom`` times (pixels kept square) as PNG bytes: encoded once per image, not on every
    rerun of every page (a 518 px PNG takes a tenth of a second here)."""
    buffer = io.BytesIO()
    _seen.resize((_seen.width * zoom, _seen.height * zoom), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def page_icon() -> Image.Image:
    """The tab's icon, drawn here so that no page asks another host for one: a 4x4 grid of patches, one the
    cyan of a selected patch."""
    icon = Image.new("RGB", (64, 64), (38, 39, 48))
    draw = ImageDraw.Draw(icon)
    for index in range(16):
        row, col = divmod(index, 4)
        colour = (0, 229, 255) if index == 6 else (250, 250, 250) if (row + col) % 2 else (180, 180, 190)
        draw.rectangle((2 + col * 15, 2 + row * 15, 14 + col * 15, 14 + row * 15), fill=colour)
    return icon
