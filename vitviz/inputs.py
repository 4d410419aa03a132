"""Where an image enters a model: the shared checks on inputs and the image-to-model-input step.

Every function that runs a model goes through here, so that a bad input is refused with the same
message wherever it enters:

    model_device     the device a model's weights are on (where the maths runs)
    check_images     model-ready images ``[B, 3, H, W]`` checked against the model, on its device
    resolve_targets  an int, a sequence or a tensor of class indices as a LongTensor ``[B]``
    model_pixels     a PIL image as the model sees it: ``[1, 3, H, W]`` in [0, 1] on its device
    model_input      the same, normalised with the model's mean and std: what its forward takes
    normalize        ``[B, 3, H, W]`` in [0, 1] to the model's input

"Model-ready" images are normalised (``normalize``) float tensors ``[B, 3, H, W]``. A model is what
``vitviz.models.load_model`` returns (a module with a ``ModelCard``) or a timm ``VisionTransformer``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from PIL import Image
from torch import nn

from .card import ModelCard, model_card
from .patches import grid_shape

__all__ = ["MAX_ASPECT", "TargetLike", "check_images", "data_config", "require_autograd", "model_device", "model_input", "model_pixels", "normalize",
           "resolve_targets"]

TargetLike = Union[int, Sequence[int], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter: where its forward runs.

    Raises:
        ValueError: the model has no parameters (nothing says where it runs).
    """
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise ValueError(f"{type(model).__name__} has no parameters: there is no device to run it on")
    return parameter.device


def check_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Model-ready images checked against the model: detached and on the model's device.

    Args:
        model: in eval mode; its patch size is read from its card, else from timm's ``patch_embed``.
        images: normalised float ``[B, 3, H, W]``, on any device.

    Returns:
        ``images`` detached, on the model's device, ``[B, 3, H, W]``.

    Raises:
        ValueError: the model is in training mode (dropout alters its outputs); ``images`` are not
            a float tensor ``[B, 3, H, W]``; the patch size does not divide H and W; a model that takes
            one input size only (timm's ``strict_img_size``) is given another.
    """
    if model.training:
        raise ValueError(f"{_name(model)} is in training mode, where dropout alters its outputs: call model.eval()")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {getattr(images, 'shape', type(images).__name__)}")
    if not images.dtype.is_floating_point:
        raise ValueError(f"expected model-ready float images, got {images.dtype}")
    height, width = images.shape[-2:]
    patch_embed = getattr(model, "patch_embed", None)
    if not getattr(patch_embed, "dynamic_img_pad", False):  # timm pads a size the patches do not tile
        patch_size = _patch_size(model)
        if patch_size is not None:
            grid_shape((height, width), patch_size)  # raises for a size the patches do not tile
    if getattr(patch_embed, "strict_img_size", False) and patch_embed.img_size is not None:
        expected = tuple(patch_embed.img_size)
        if (height, width) != expected:
            raise ValueError(f"{_name(model)} takes {expected[0]}x{expected[1]} images, not {height}x{width}")
    return images.detach().to(model_device(model))


def resolve_targets(target: TargetLike, batch: int, num_classes: int,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """The class each of ``batch`` items is explained for, as a LongTensor ``[B]``.

    Args:
        target: one class index for every item (an int, or a 0-d tensor), or one per item (a
            sequence of ints or an integer tensor ``[B]``).
        batch: B, the number of items.
        num_classes: C; every index must lie in [0, C).
        device: where the result goes; None keeps the target's own device (the CPU for an int).

    Raises:
        ValueError: a bool, a float or bool tensor, a count other than B, or an index out of range.
    """
    if isinstance(target, bool):
        raise ValueError(f"target must be a class index, not {target!r}")
    if isinstance(target, int):
        targets = torch.full((batch,), target, dtype=torch.long)
    else:
        try:
            targets = torch.as_tensor(target)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"target must be a class index or {batch} of them, not {target!r}") from None
        if targets.ndim == 0:
            targets = targets.reshape(1).expand(batch)
        if targets.shape != (batch,) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise ValueError(f"target must be a class index or {batch} of them (a sequence or a LongTensor [{batch}]), "
                             f"got {_describe(target)}")
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if bad.numel():
        raise ValueError(f"target class {bad[0].item()} is out of range for {num_classes} classes")
    return targets.to(device=device if device is not None else targets.device, dtype=torch.long)


def require_autograd(what: str) -> None:
    """Raise ``ValueError`` in plain words when ``what`` (a gradient method) is called inside
    ``torch.inference_mode()``, where autograd cannot run. Inside ``torch.no_grad()`` gradient methods
    turn gradients back on for themselves, so the caller's grad mode never changes a map."""
    if torch.is_inference_mode_enabled():
        raise ValueError(f"{what} needs gradients, and autograd cannot run inside torch.inference_mode(): "
                         "call it outside that block (inside torch.no_grad() is fine)")


def model_pixels(image: Image.Image, model: nn.Module) -> torch.Tensor:
    """The image as the model sees it: ``[1, 3, H, W]`` in [0, 1] on the model's device.

    timm's own evaluation transform for the model's data config (``timm.data.resolve_model_data_config``:
    input size, ``crop_pct``, interpolation), without its normalisation: the shorter side resized to
    ``input size / crop_pct``, then the centre cropped. vitviz checkpoints declare ``crop_pct=1`` and bicubic
    resizing, so the crop keeps the whole shorter side. An image longer than ``MAX_ASPECT`` times its
    width (or the reverse) is first cut to its centred ``MAX_ASPECT``:1 box, so no intermediate image
    outgrows a few times the model's input (the part cut away lies outside the centre crop anyway).
    """
    pixels = _eval_transform(model)(_bounded(image.convert("RGB")))  # (3, H, W) uint8: timm's unnormalised output
    return (pixels.float() / 255.0).unsqueeze(0).to(model_device(model))  # (1, 3, H, W) in [0, 1]


MAX_ASPECT = 4.0  # longer side over shorter side that reaches timm's transform; a longer strip is cut first


def data_config(model: nn.Module) -> dict:
    """timm's data config of ``model`` (``resolve_model_data_config``): input size, interpolation, mean, std,
    crop_pct, crop_mode."""
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(model)


def _eval_transform(model: nn.Module):
    from timm.data import create_transform

    cfg = data_config(model)
    key = (tuple(cfg["input_size"]), cfg["interpolation"], float(cfg["crop_pct"]), cfg.get("crop_mode"))
    if key not in _TRANSFORMS:
        _TRANSFORMS[key] = create_transform(**cfg, is_training=False, normalize=False)
    return _TRANSFORMS[key]


_TRANSFORMS: dict[tuple, object] = {}


def _bounded(image: Image.Image) -> Image.Image:
    """``image`` cut to its centred box of aspect ratio at most ``MAX_ASPECT``."""
    width, height = image.size
    if width > MAX_ASPECT * height:
        keep = round(MAX_ASPECT * height)
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > MAX_ASPECT * width:
        keep = round(MAX_ASPECT * width)
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image


def model_input(image: Image.Image, model: nn.Module) -> torch.Tensor:
    """What the model's forward takes for ``image``: ``model_pixels`` normalised, ``[1, 3, H, W]`` on its device."""
    return normalize(model_pixels(image, model), model)


def normalize(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in [0, 1] to the model's input: ``(x - mean) / std`` from its card."""
    card = model_card(model)
    mean = torch.tensor(card.mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(card.std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def _card(model: nn.Module) -> Optional[ModelCard]:
    card = getattr(model, "card", None)
    return card if isinstance(card, ModelCard) else None


def _name(model: nn.Module) -> str:
    card = _card(model)
    return card.name if card is not None else f"the model ({type(model).__name__})"


def _patch_size(model: nn.Module) -> Optional[int]:
    """From the card, else timm's ``patch_embed``; None for a module that has neither."""
    card = _card(model)
    if card is not None:
        return card.patch_size
    patch_size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    return None if patch_size is None else int(patch_size[0])


def _describe(target: object) -> str:
    if isinstance(target, torch.Tensor):
        return f"{target.dtype} {tuple(target.shape)}"
    return repr(target)
