"""The sidebar every page shares: model picker, image source, the device in use."""

from __future__ import annotations

import streamlit as st

from vitviz.devices import default_device, describe_device
from vitviz.registry import list_models
from vitviz.samples import sample_names

from .context import IMAGE_SOURCE, IMAGE_SOURCES, MODEL_REF, SAMPLE_NAME, SHAPES_INDEX, UPLOAD

OTHER_TIMM = "Another timm ViT…"
WEIGHTS_FILE = "A local weights file…"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]


def draw_sidebar() -> None:
    """Draw the shared sidebar; the choices land in ``st.session_state`` for ``ui.current()``."""
    with st.sidebar:
        st.header("Model")
        _model_picker()
        st.header("Image")
        _image_picker()
        st.divider()
        try:
            st.caption(f"Device: **{describe_device(default_device())}**")
        except ValueError as e:
            st.error(str(e))


def _model_picker() -> None:
    entries = list_models()
    labels = {entry.label: entry.ref for entry in entries}
    choice = st.selectbox("Model", [*labels, OTHER_TIMM, WEIGHTS_FILE], key="model_choice",
                          help="Checkpoints trained by vitviz come first, then timm ViTs.")
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


def _image_picker() -> None:
    source = st.radio("Source", IMAGE_SOURCES, key=IMAGE_SOURCE, horizontal=True)
    if source == "Upload":
        limit = st.get_option("server.maxUploadSize")
        st.file_uploader(f"Image (up to {limit} MB)", type=IMAGE_TYPES, key=UPLOAD)
    elif source == "Shapes item":
        st.number_input("Item of the shapes test split", 0, 9999, key=SHAPES_INDEX,
                        help="A generated test image with its true object mask, for the localization figures.")
    else:
        st.selectbox("Sample photo", sample_names(), key=SAMPLE_NAME)
