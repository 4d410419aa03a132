"""Reading user images safely: any common mode to RGB, EXIF orientation applied, bad files named."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = ["Fit", "ImageLoadError", "ImageSource", "MAX_PIXELS", "fit_notes", "fit_to_model", "image_notes", "load_image",
           "model_fit", "to_tensor"]

# Decoded size limit: 40 megapixels is a 7300x5500 photo, ~120 MB as RGB. Larger files are
# refused from their header, before any pixel is decoded (decompression bombs).
MAX_PIXELS = 40_000_000

# A note is added when the model sees less than this share of an image, or an image enlarged this many times.
_KEPT_NOTE_BELOW = 0.5
_SCALE_NOTE_FROM = 3.0

_TRUNCATED = "This image file is truncated (cut off before its end); use the whole file."

ImageSource = Union[bytes, bytearray, str, os.PathLike, BinaryIO]


class ImageLoadError(ValueError):
    """An input that cannot be used as an image; the message says why, for a person."""


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``source`` (bytes, a path or a binary file-like) as an RGB image.

    EXIF orientation is applied; grayscale, palette, RGBA (composited on white), CMYK and
    16-bit images are converted faithfully. An animated image yields its first frame. Anything
    worth telling the user (first frame used, transparency flattened) is listed in
    ``image.info["notes"]`` (see ``image_notes``).

    Raises:
        ImageLoadError: not an image, truncated, too many pixels, unreadable path.
    """
    stream = _open_stream(source)
    notes: list[str] = []
    with warnings.catch_warnings():
        # Our own pixel limit below is stricter; PIL's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream)
        except UnidentifiedImageError:
            raise ImageLoadError("This file is not an image that can be read (PNG, JPEG, WebP, GIF, BMP, TIFF...).") from None
        except Image.DecompressionBombError as e:
            raise ImageLoadError(f"This image is far too large to open safely ({e}).") from None
        except OSError as e:
            if "truncated" in str(e).lower():
                raise ImageLoadError(_TRUNCATED) from None
            raise ImageLoadError(f"This image could not be opened: {e}.") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"This image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.0f} megapixels. Please resize it first."
        )
    if width == 0 or height == 0:
        raise ImageLoadError(f"This image has no pixels ({width}x{height}).")
    if getattr(image, "is_animated", False):
        notes.append(f"Animated image with {getattr(image, 'n_frames', '?')} frames: the first frame is used.")
        image.seek(0)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        message = str(e)
        if "truncated" in message.lower():
            raise ImageLoadError(_TRUNCATED) from None
        raise ImageLoadError(f"This image could not be decoded: {message}.") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not lose an otherwise good image
        notes.append("Its EXIF orientation tag could not be read; the image is shown as stored.")
    rgb, more_notes = _to_rgb(image)
    rgb.info["notes"] = notes + more_notes
    return rgb


def image_notes(image: Image.Image) -> list[str]:
    """What ``load_image`` found worth telling the user about this image."""
    return list(image.info.get("notes", []))


def _open_stream(source: ImageSource) -> BinaryIO:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageLoadError("The file is empty.")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(f"No file at {path}.")
        if path.is_dir():
            raise ImageLoadError(f"{path} is a folder, not an image file.")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageLoadError(f"{path} could not be read: {e.strerror}.") from None
        if not data:
            raise ImageLoadError(f"{path} is empty.")
        return io.BytesIO(data)
    if hasattr(source, "read"):
        data = source.read()
        if not data:
            raise ImageLoadError("The file is empty.")
        return io.BytesIO(data)
    raise ImageLoadError(f"Cannot read an image from a {type(source).__name__}.")


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert any PIL mode to 8-bit RGB without clipping high-bit-depth data."""
    notes: list[str] = []
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        bits = _declared_bits(image)
        array = np.asarray(image, dtype=np.float64)
        if bits:  # integers: scaled by the range their format declares, never by the values they hold
            array = array / (2.0 ** (bits - 1) - 1 if mode == "I" and bits == 32 else 2.0 ** bits - 1)
            depth = f"{bits}-bit"
        else:  # floating point: intensities in [0, 1], as scikit-image and most float TIFFs hold them
            low, high = float(array.min()), float(array.max())
            if low < 0.0 or high > 1.0:
                notes.append(f"Its values run from {low:.4g} to {high:.4g}; floating-point pixels are read as "
                             "intensities from 0 to 1, so the rest is clipped.")
            depth = "floating-point"
        gray = Image.fromarray(np.clip(np.rint(array * 255), 0, 255).astype(np.uint8), mode="L")
        notes.insert(0, f"A {depth} grayscale image, converted to 8 bits per channel for the model.")
        return gray.convert("RGB"), notes
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("LA", "La", "RGBa", "PA"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        alpha = image.getchannel("A")
        if alpha.getextrema()[0] < 255:
            notes.append("Transparent areas are shown on white.")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=alpha)
        return background, notes
    if mode == "CMYK":
        return image.convert("RGB"), notes
    if mode == "RGB":
        return image.copy() if image.readonly else image, notes
    return image.convert("RGB"), notes


def _declared_bits(image: Image.Image) -> int:
    """Bits per sample that an integer image's mode and format declare (0 for floating point).

    ``I;16*`` modes hold 16 bits. Mode ``I`` is 32-bit in memory whatever the file held: a TIFF says
    how many bits it stored (BitsPerSample), a PNG stores at most 16, anything else is taken as 32
    (PIL's signed 32-bit integers: 0 to 2**31 - 1, negatives clipped).
    """
    mode = image.mode
    if mode == "F":
        return 0
    if mode.startswith("I;16"):
        return 16
    tags = getattr(image, "tag_v2", None)
    if tags is not None and tags.get(258):
        stored = tags[258]
        return int(stored[0] if isinstance(stored, tuple) else stored)
    return 16 if image.format == "PNG" else 32


@dataclass(frozen=True)
class Fit:
    """How an image of ``size`` (W, H) pixels becomes the model's input: the centred box of the input's aspect
    ratio, resized to ``image_size`` (H, W)."""

    size: tuple[int, int]  # (W, H) of the image
    image_size: tuple[int, int]  # (H, W) of the model's input
    box: tuple[float, float, float, float]  # (left, top, right, bottom) in the image's pixels: what the model sees
    kept: float  # share of the image's area inside the box, in (0, 1]
    scale: float  # output pixels per image pixel along each side: above 1 the image is enlarged

    @property
    def box_size(self) -> tuple[int, int]:
        """The box's (W, H), rounded to whole pixels."""
        left, top, right, bottom = self.box
        return round(right - left), round(bottom - top)


def model_fit(size: tuple[int, int], image_size: tuple[int, int]) -> Fit:
    """Where ``fit_to_model`` cuts an image of ``size`` (W, H) for a model input of ``image_size`` (H, W), how
    much of the image that keeps, and how much it enlarges it.

    A 4000x300 panorama for a 224x224 input keeps its middle 300x300 box (``kept`` 0.075) at ``scale`` 0.75;
    a 16x16 icon keeps all of itself at ``scale`` 14.
    """
    width, height = size
    target_h, target_w = image_size
    if width < 1 or height < 1 or target_h < 1 or target_w < 1:
        raise ValueError(f"sizes must be positive: image {width}x{height}, model input {target_w}x{target_h}")
    scale = max(target_h / height, target_w / width)  # output pixels per input pixel
    box_w, box_h = min(width, target_w / scale), min(height, target_h / scale)
    left, top = (width - box_w) / 2, (height - box_h) / 2
    return Fit((width, height), (target_h, target_w), (left, top, left + box_w, top + box_h),
               kept=box_w * box_h / (width * height), scale=scale)


def fit_notes(size: tuple[int, int], image_size: tuple[int, int]) -> list[str]:
    """What a person should know about how the model sees an image of ``size`` (W, H): a note when the crop keeps
    less than half of it, and one when it is enlarged three times or more (``model_fit`` gives the numbers)."""
    fit = model_fit(size, image_size)
    width, height = size
    target_h, target_w = image_size
    notes = []
    if fit.kept < _KEPT_NOTE_BELOW:
        box_w, box_h = fit.box_size
        notes.append(f"The model sees only the middle {box_w}x{box_h} px of this {width}x{height} image "
                     f"({fit.kept:.0%} of it): its input is {target_w}x{target_h}, so the rest is cut off. "
                     "Crop the image yourself to choose what it sees.")
    if fit.scale >= _SCALE_NOTE_FROM:
        notes.append(f"This {width}x{height} image is enlarged {fit.scale:.1f} times to {target_w}x{target_h} px: "
                     "the model sees smooth blocks, not detail it could use.")
    return notes


def fit_to_model(image: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """The image as the model sees it: the largest centred box of the model's aspect ratio (``model_fit``),
    resized to ``image_size`` (H, W) with bicubic resampling.

    The box is cut from the original and resampled in one step (PIL's ``resize(box=...)``), so no
    intermediate image is larger than the result: a 20000x1 strip costs a 224x224 image, not a
    4,480,000x224 one.
    """
    target_h, target_w = image_size
    return image.resize((target_w, target_h), Image.Resampling.BICUBIC, box=model_fit(image.size, image_size).box)


def to_tensor(image: Image.Image) -> "torch.Tensor":
    """RGB PIL image to a float tensor ``[3, H, W]`` in [0, 1]."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
