"""What every page works on: the selected model and image, ready for the model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import streamlit as st
import torch
from PIL import Image

from vitviz.hub import WeightsNotDownloaded
from vitviz.images import ImageLoadError
from vitviz.inputs import model_device, model_pixels, normalize
from vitviz.models import ModelCard, ModelLoadError

from . import cache
from .download import offer_download

# session_state keys written by the sidebar and read here
MODEL_REF = "model_ref"
IMAGE_SOURCE = "image_source"
SAMPLE_NAME = "sample_name"
UPLOAD = "upload"
SHAPES_INDEX = "shapes_index"
IMAGE_SOURCES = ("Sample photo", "Shapes item")  # the bundled images, used while no file is uploaded


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

    @property
    def input_id(self) -> str:
        """A short name of this (model, image) pair: part of the key of a chart whose clicks belong to one image."""
        return hashlib.sha1(f"{self.model_key}|{self.image_key}".encode()).hexdigest()[:10]

    @property
    def about(self) -> dict[str, Any]:
        """What every download of a figure drawn from this model and image names first."""
        return {**about_model(self.model_ref, self.card), "image": self.image_label,
                "image_as_the_model_sees_it_px": list(self.card.image_size)}


def about_model(ref: str, card: ModelCard) -> dict[str, Any]:
    """The model part of a download's header: its reference, name and where it came from."""
    return {"model": ref, "model_name": card.name, "model_provenance": card.provenance}


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


class NoImage(Exception):
    """No image to work on: the message says why, for a person; ``error`` when a given file cannot be used."""

    def __init__(self, message: str, error: bool = False):
        super().__init__(message)
        self.error = error


def selected_image(image_size: Optional[tuple[int, int]] = None
                   ) -> tuple[Image.Image, str, Optional[torch.Tensor], Optional[str]]:
    """The image the sidebar selects: (image, label, object mask, true class).

    An uploaded file, while there is one; else the bundled source the sidebar's radio picks: a sample photo, or a
    shapes item (with its mask and class) drawn at ``image_size``, the model's input (64 px when None). The upload
    itself says whether it is in use, so no other widget has to follow it. Raises ``NoImage`` for a file that
    cannot be used.
    """
    upload = st.session_state.get(UPLOAD)
    if upload is not None:
        try:
            return cache.uploaded_image(upload.getvalue()), upload.name, None, None
        except ImageLoadError as e:
            raise NoImage(f"**{upload.name}** cannot be used: {e}", error=True) from None
    if st.session_state.get(IMAGE_SOURCE) == "Shapes item":
        # drawn at the model's own input size, so its mask lines up with the model's patches
        index = int(st.session_state.get(SHAPES_INDEX, 0))
        image, true_label, mask = cache.shapes_item(index, (image_size or (64, 64))[0])
        return image, f"shapes test item {index} (a {true_label})", mask, true_label
    name = st.session_state.get(SAMPLE_NAME, "astronaut")
    return cache.sample_image(name), f"sample photo: {name}", None, None


def current_image() -> tuple[Image.Image, str]:
    """The selected photo or upload, or a message on the page and a stop (shapes items: see ``current``)."""
    try:
        if st.session_state.get(UPLOAD) is None and st.session_state.get(IMAGE_SOURCE) == "Shapes item":
            name = st.session_state.get(SAMPLE_NAME, "astronaut")  # a shapes item is drawn for one model's input
            return cache.sample_image(name), f"sample photo: {name}"
        image, label, _, _ = selected_image()
        return image, label
    except NoImage as e:
        _stop(e)


def _stop(problem: NoImage) -> None:
    (st.error if problem.error else st.info)(str(problem))
    st.stop()


def current() -> Context:
    """Model and image for this page; stops the page with a clear message when either is missing. What the image
    went through on its way in (converted, cropped, enlarged) is said in the sidebar, under the image."""
    ref, model = current_model()
    card = model.card
    try:
        image, label, mask, true_label = selected_image(card.image_size)
    except NoImage as e:
        _stop(e)
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


def is_new_input(ctx: Context, group: str) -> bool:
    """True when the model or the image changed since the widgets of ``group`` last asked (and on their first run)."""
    seen = f"_input_for_{group}"
    current = (ctx.model_key, ctx.image_key)
    if st.session_state.get(seen) == current:
        return False
    st.session_state[seen] = current
    return True


def hold(defaults: Mapping[str, Any], reset: bool = False) -> None:
    """Settle the values of a group of widgets before they are drawn, so that the widgets in the browser and
    whatever this run draws from their values show one state.

    Each key gets its default when it has no value yet, or when ``reset``; otherwise its value is assigned
    again. An assigned value travels to the browser with its widget. Without that, the two can disagree: a run
    that stops before drawing a widget (no image yet, an upload being replaced, a model that failed to load)
    leaves the widget's value on the server while the browser forgets the widget, and draws it at its default
    when it comes back; the figures then follow the server until the next click. Widgets held here take no
    ``value=`` or ``index=`` of their own.
    """
    for key, default in defaults.items():
        st.session_state[key] = default if reset or key not in st.session_state else st.session_state[key]


def reset_on_new_input(ctx: Context, defaults: Mapping[str, Any], forget: Iterable[str] = (),
                       group: Optional[str] = None) -> bool:
    """``hold`` the widgets ``defaults`` names, back at their defaults when the model or the image changed (and
    ``forget`` the keys of ``forget`` then, e.g. the last click seen on a chart). Returns True when it reset."""
    fresh = is_new_input(ctx, group or "_".join([*defaults, *forget]))
    if fresh:
        for key in forget:
            st.session_state.pop(key, None)
    hold(defaults, reset=fresh)
    return fresh


def forget_on_new_input(ctx: Context, *keys: str) -> None:
    """Drop the values ``keys`` when the model or the image changed. For a widget prefer ``reset_on_new_input``
    with its default: a dropped value leaves the browser showing the old one."""
    if is_new_input(ctx, "_".join(keys)):
        for key in keys:
            st.session_state.pop(key, None)


FEW_CLASSES = 20  # a classifier with this many classes or fewer is told apart from one that can name most things


def known_classes_note(ctx: Context) -> Optional[str]:
    """For a classifier that knows only a few classes, shown beside its predictions: it has to pick one of them,
    whatever the image shows. None for a model with many classes, and for an item of its own data set."""
    names = ctx.card.class_names
    if not names or len(names) > FEW_CLASSES or ctx.true_label in names:
        return None
    return (f"**{ctx.card.name}** knows only these {len(names)} classes: {', '.join(names)}. Its probabilities are "
            f"shared among them alone, so it must pick one of them even for an image that shows none of them "
            f"(a photo of a kite): a high probability here says which of its classes fits best, not what the image is.")


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
    if st.session_state.get(UPLOAD) is None or card.label_set.startswith("ImageNet"):
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
