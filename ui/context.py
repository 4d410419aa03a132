"""What every page works on: the selected model and image, ready for the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import streamlit as st
import torch
from PIL import Image

from vitviz.images import ImageLoadError, image_notes
from vitviz.inputs import model_device, model_pixels, normalize
from vitviz.hub import WeightsNotDownloaded
from vitviz.models import ModelCard, ModelLoadError

from . import cache
from .download import offer_download

# session_state keys written by the sidebar and read here
MODEL_REF = "model_ref"
IMAGE_SOURCE = "image_source"
SAMPLE_NAME = "sample_name"
UPLOAD = "upload"
SHAPES_INDEX = "shapes_index"
IMAGE_SOURCES = ("Sample photo", "Upload", "Shapes item")


@dataclass(frozen=True)
class Context:
    model_ref: str
    model: torch.nn.Module
    card: ModelCard
    image: Image.Image  # as loaded
    image_label: str
    model_image: Image.Image  # resized and cropped as the model sees it
    pixels: torch.Tensor  # [1, 3, H, W] in [0, 1] on the model's device
    inputs: torch.Tensor  # [1, 3, H, W] normalised: what the model's forward takes
    model_key: str  # the model ref and its file's version
    image_key: str  # content hash of model_image; with model_key, the key of every cached computation
    mask: Optional[torch.Tensor] = None  # [H, W] bool object mask at the model's input size (shapes items)
    true_label: Optional[str] = None  # the true class of a shapes item


def current_model() -> tuple[str, torch.nn.Module]:
    """The selected model, or an error on the page and a stop."""
    ref = st.session_state.get(MODEL_REF)
    if not ref:
        st.info("Choose a model in the sidebar.")
        st.stop()
    try:
        return ref, cache.model(ref)
    except WeightsNotDownloaded as missing:
        offer_download(missing)
        st.stop()
    except ModelLoadError as e:
        st.error(f"Could not load model **{ref}**: {e}")
        st.stop()


def current_image() -> tuple[Image.Image, str]:
    """The selected photo or upload, or a message on the page and a stop (shapes items: see ``current``)."""
    source = st.session_state.get(IMAGE_SOURCE, "Sample photo")
    if source == "Upload":
        upload = st.session_state.get(UPLOAD)
        if upload is None:
            st.info("Upload an image in the sidebar (or pick a sample photo).")
            st.stop()
        try:
            return cache.uploaded_image(upload.getvalue()), upload.name
        except ImageLoadError as e:
            st.error(f"**{upload.name}** cannot be used: {e}")
            st.stop()
    name = st.session_state.get(SAMPLE_NAME, "astronaut")
    return cache.sample_image(name), f"sample photo: {name}"


def current() -> Context:
    """Model and image for this page; stops the page with a clear message when either is missing."""
    ref, model = current_model()
    card = model.card
    mask = true_label = None
    if st.session_state.get(IMAGE_SOURCE) == "Shapes item":
        # drawn at the model's own input size, so its mask lines up with the model's patches
        index = int(st.session_state.get(SHAPES_INDEX, 0))
        image, true_label, mask = cache.shapes_item(index, card.image_size[0])
        label = f"shapes test item {index} (a {true_label})"
    else:
        image, label = current_image()
    for note in image_notes(image):
        st.caption(f"ℹ️ {note}")
    pixels = model_pixels(image, model)  # (1, 3, H, W): timm's evaluation transform for this model
    model_image = Image.fromarray((pixels[0].permute(1, 2, 0) * 255).round().byte().cpu().numpy())
    return Context(
        model_ref=ref,
        model=model,
        card=card,
        image=image,
        image_label=label,
        model_image=model_image,
        pixels=pixels,
        inputs=normalize(pixels, model),
        model_key=cache.model_key(ref),
        image_key=cache.image_key(model_image),
        mask=None if mask is None else mask.to(model_device(model)),
        true_label=true_label,
    )


def forget_on_new_input(ctx: Context, *keys: str) -> None:
    """Drop the widget values ``keys`` when the model or the image changed: a class picked for one image is
    rarely the one to explain on the next, so the widgets start again from the top prediction."""
    seen = f"_input_for_{'_'.join(keys)}"
    current = (ctx.model_key, ctx.image_key)
    if st.session_state.get(seen) != current:
        for key in keys:
            st.session_state.pop(key, None)
        st.session_state[seen] = current


def class_row_note(card: ModelCard) -> Optional[str]:
    """For a distilled model: which token's row the class maps read, and what the prediction averages."""
    if not card.has_distillation_token:
        return None
    return ("This model has a distillation token beside its class token. Rollout, gradient rollout and relevance "
            "read the **class token's** row; the model's prediction averages two heads, one on the class token and "
            "one on the distillation token (timm's `VisionTransformerDistilled` in eval mode).")


def offer_imagenet_model(card: ModelCard) -> None:
    """For an uploaded photo shown to a model that knows no everyday classes: offer a pretrained ImageNet
    model of the catalogue that is already on this machine (no download), one click away."""
    if st.session_state.get(IMAGE_SOURCE) != "Upload" or card.label_set.startswith("ImageNet"):
        return
    from vitviz.hub import cached_weights, catalogue
    from vitviz.registry import list_models

    labels = {entry.ref: entry.label for entry in list_models()}
    ready = [m for m in catalogue() if m.classes.startswith("ImageNet") and m.name in labels and cached_weights(m.name)]
    if not ready:
        return
    choice = ready[0]
    known = f"only {card.num_classes} classes" if card.num_classes else "no classes"
    st.info(f"**{card.name}** knows {known}; for a photo, **{choice.name}** ({choice.title}, {choice.trained_on}) "
            "is already on this machine.")
    st.button(f"Use {choice.name}", key="use_imagenet_model", icon=":material/swap_horiz:",
              on_click=lambda: st.session_state.update(model_choice=labels[choice.name]))
