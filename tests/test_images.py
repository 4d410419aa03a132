"""load_image: every mode converted faithfully, every bad input refused with a sentence a person understands."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from vitviz.images import ImageLoadError, fit_to_model, image_notes, load_image, to_tensor


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _rgb(seed: int = 0, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))


def test_rgb_png_from_bytes_path_and_file_like(tmp_path):
    original = _rgb()
    data = _encode(original)
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        loaded = load_image(source)
        assert loaded.mode == "RGB"
        assert np.array_equal(np.asarray(loaded), np.asarray(original))
        assert image_notes(loaded) == []


def test_not_an_image():
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(b"name,value\nalpha,1\n" * 20)


def test_empty_file():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt):
    data = _encode(_rgb(size=(256, 256)), fmt)
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    # 8000 x 6000 one-bit pixels compress to a few kB but would decode to 48 megapixels.
    data = _encode(Image.new("1", (8000, 6000)))
    assert len(data) < 100_000
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ImageLoadError, match=r"8000x6000 = 48\.0 megapixels; the limit is 40 megapixels"):
        load_image(data)
    assert decoded == []


def test_animated_gif_uses_first_frame_and_says_so():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(buffer.getvalue())
    assert loaded.getpixel((8, 8)) == (255, 0, 0)
    assert image_notes(loaded) == ["Animated image with 3 frames: the first frame is used."]


def test_grayscale_and_palette():
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode="L")
    loaded = np.asarray(load_image(_encode(gray)))
    assert np.array_equal(loaded[..., 0], np.asarray(gray)) and np.array_equal(loaded[..., 0], loaded[..., 2])
    palette = _rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert np.array_equal(np.asarray(load_image(_encode(palette))), np.asarray(palette.convert("RGB")))


def test_rgba_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (200, 100, 0, 128))
    loaded = load_image(_encode(rgba))
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((2, 2)) == (10, 20, 30)
    blended = loaded.getpixel((1, 0))
    assert all(abs(a - round(b * 128 / 255 + 255 * (1 - 128 / 255))) <= 1 for a, b in zip(blended, (200, 100, 0)))
    assert image_notes(loaded) == ["Transparent areas are shown on white."]


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = load_image(_encode(cmyk, "JPEG", quality=100)).getpixel((4, 4))
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_png_keeps_its_range():
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(values))
    loaded = np.asarray(load_image(data))
    assert loaded[0, :, 0].tolist() == [0, 1, 128, 255]
    assert "converted to 8 bits" in image_notes(load_image(data))[0]


def test_exif_orientation_applied():
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = load_image(_encode(image, "JPEG", exif=exif, quality=100))
    assert loaded.size == (10, 20)
    assert sum(loaded.getpixel((9, 0))) > 600  # the top-left pixel is now top-right


def test_bad_paths(tmp_path):
    with pytest.raises(ImageLoadError, match="No file at"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


def test_fit_to_model_crops_the_centre_at_the_model_size():
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 0, 0), (100, 0, 200, 100))  # the middle third is red
    fitted = fit_to_model(image, (32, 32))
    assert fitted.size == (32, 32)
    tensor = to_tensor(fitted)
    assert tensor.shape == (3, 32, 32) and float(tensor[0].mean()) > 0.95 and float(tensor[1].mean()) < 0.05
