"""load_image: every mode converted faithfully, every bad input refused with a sentence a person understands."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from vitviz.images import ImageLoadError, fit_notes, fit_to_model, image_notes, load_image, model_fit, to_tensor


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


def test_a_panorama_keeps_its_middle_and_says_what_share():
    fit = model_fit((4000, 300), (224, 224))
    assert fit.box == (1850.0, 0.0, 2150.0, 300.0) and fit.box_size == (300, 300)
    assert fit.kept == pytest.approx(300 / 4000) and fit.scale == pytest.approx(224 / 300)
    assert fit_notes((4000, 300), (224, 224)) == [
        "The model sees only the middle 300x300 px of this 4000x300 image (8% of it): its input is 224x224, "
        "so the rest is cut off. Crop the image yourself to choose what it sees."]
    # the box is what fit_to_model cuts: a panorama whose middle 300 columns are red comes out all red
    panorama = Image.new("RGB", (4000, 300), (0, 0, 255))
    panorama.paste((255, 0, 0), (1850, 0, 2150, 300))
    fitted = to_tensor(fit_to_model(panorama, (224, 224)))
    inner = fitted[:, :, 1:-1]  # the bicubic kernel reaches a pixel beyond the box at its edges
    assert float(inner[0].min()) > 0.99 and float(inner[2].max()) < 0.01


def test_a_tiny_image_says_how_many_times_it_is_enlarged():
    fit = model_fit((16, 16), (224, 224))
    assert fit.kept == 1.0 and fit.scale == 14.0
    assert fit_notes((16, 16), (224, 224)) == [
        "This 16x16 image is enlarged 14.0 times to 224x224 px: the model sees smooth blocks, not detail it could use."]
    # a photo of about the model's shape and size needs no note; a non-square model input crops along its own shape
    assert fit_notes((640, 480), (224, 224)) == [] and fit_notes((100, 80), (224, 224)) == []
    assert model_fit((300, 100), (32, 64)).box == (50.0, 0.0, 250.0, 100.0)
    with pytest.raises(ValueError, match="sizes must be positive"):
        model_fit((0, 10), (224, 224))


def _depth_cases():
    dark = np.tile(np.linspace(0, 200, 256).astype(np.uint16), (8, 1))  # a dark 16-bit image: values 0..200
    return [
        ("I;16 PNG", _encode(Image.fromarray(dark), "PNG")),
        ("I;16 TIFF", _encode(Image.fromarray(dark), "TIFF")),
        ("I;16B TIFF", _encode(Image.frombytes("I;16B", dark.shape[::-1], dark.astype(">u2").tobytes()), "TIFF")),
    ]


@pytest.mark.parametrize("name, data", _depth_cases(), ids=[c[0] for c in _depth_cases()])
def test_a_dark_sixteen_bit_image_stays_dark(name, data):
    """The depth comes from the mode, not from the values: 200 of 65535 is 0.78 of 255, so 1 after rounding."""
    loaded = np.asarray(load_image(data))
    assert round(200 / 65535 * 255) == 1
    assert loaded.max() == 1 and loaded.min() == 0
    assert "16-bit grayscale image, converted to 8 bits" in image_notes(load_image(data))[0]


def test_thirty_two_bit_and_float_tiffs_use_their_declared_range():
    values = np.array([[0, 2**31 - 1, 2**30, 1000]], dtype=np.int32)
    loaded = np.asarray(load_image(_encode(Image.fromarray(values), "TIFF")))[0, :, 0]
    assert loaded.tolist() == [0, 255, round(2**30 / (2**31 - 1) * 255), 0]  # signed 32-bit: 0 .. 2**31 - 1
    floats = np.array([[0.0, 0.5, 1.0, 0.25]], dtype=np.float32)
    loaded = load_image(_encode(Image.fromarray(floats), "TIFF"))
    assert np.asarray(loaded)[0, :, 0].tolist() == [0, 128, 255, 64]
    bright = load_image(_encode(Image.fromarray(floats * 400), "TIFF"))  # out of [0, 1]: clipped, and said
    assert np.asarray(bright)[0, :, 0].tolist() == [0, 255, 255, 255]
    assert any("clipped" in note for note in image_notes(bright))


def test_a_jpeg_cut_inside_its_header_is_called_truncated():
    data = _encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[:200])


_PEAK = """
import resource, sys
from PIL import Image
from vitviz.images import fit_to_model, load_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(data)
fitted = fit_to_model(image, (int(sys.argv[2]), int(sys.argv[3])))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(fitted.size[0], fitted.size[1], (after - before) // 1024)
"""


@pytest.mark.parametrize("size, fmt, target", [
    ((20000, 1), "PNG", (224, 224)),  # the 100-byte strip of the bug report
    ((1, 20000), "PNG", (224, 224)),  # the same, standing
    ((16000, 2), "WEBP", (112, 224)),  # another format (WebP stops at 16383 px), a non-square model input
    ((7000, 5000), "JPEG", (224, 224)),  # a large ordinary photo
])
def test_fitting_an_extreme_image_stays_small(size, fmt, target, tmp_path):
    """Every intermediate image is bounded: the peak memory of load + fit stays under 100 MB."""
    path = tmp_path / f"strip.{fmt.lower()}"
    Image.new("RGB", size, (90, 120, 200)).save(path, fmt)
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path), *map(str, target)], capture_output=True, text=True,
                         cwd=root, check=True).stdout.split()
    width, height, grown_mb = map(int, out)
    assert (height, width) == target
    assert grown_mb < 100, f"peak memory grew by {grown_mb} MB"
