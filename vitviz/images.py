"""Reading user images safely: any common mode to RGB, EXIF orientation applied, bad files named."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = ["ImageLoadError", "ImageSource", "MAX_PIXELS", "fit_to_model", "image_notes", "load_image", "to_tensor"]

# Decoded size limit: 40 megapixels is a 7300x5500 photo, ~120 MB as RGB. Larger files are
# refused from their header, before any pixel is decoded (decompression bombs).
MAX_PIXELS = 40_000_000

_TRUNCATED = "This image file is truncated (cut off before its end); please upload the whole file."

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


def fit_to_model(image: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """The image as the model sees it: the largest centred box of the model's aspect ratio, resized to
    ``image_size`` (H, W) with bicubic resampling.

    The box is cut from the original and resampled in one step (PIL's ``resize(box=...)``), so no
    intermediate image is larger than the result: a 20000x1 strip costs a 224x224 image, not a
    4,480,000x224 one.
    """
    target_h, target_w = image_size
    scale = max(target_h / image.height, target_w / image.width)  # output pixels per input pixel
    box_w, box_h = min(image.width, target_w / scale), min(image.height, target_h / scale)
    left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
    return image.resize((target_w, target_h), Image.Resampling.BICUBIC, box=(left, top, left + box_w, top + box_h))


def to_tensor(image: Image.Image) -> "torch.Tensor":
    """RGB PIL image to a float tensor ``[3, H, W]`` in [0, 1]."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
