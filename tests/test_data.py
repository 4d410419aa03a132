"""Training data: every source's batches, determinism, splits, shapes items and masks, mixtures, and each bad input."""

import math
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vitviz.data import (
    SHAPES_CLASSES,
    DataError,
    build_data,
    check_spec,
    describe_specs,
    fixed_set,
    shapes_item,
)
from vitviz.data import cifar as cifar_module
from vitviz.data import photos as photos_module
from vitviz.samples import HELD_OUT_PHOTOS, PHOTO_NAMES, TRAIN_PHOTOS


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- every source: shapes, dtypes, ranges, determinism ------------------------------------------------

SOURCES = ["photos", "procedural", "textured", "shapes", "digits", "photos:1+procedural:1"]


@pytest.mark.parametrize("spec", SOURCES)
@pytest.mark.parametrize("split", ["train", "val"])
def test_batches_have_the_promised_shape_dtype_and_range(spec, split):
    data = build_data(spec, split, 32)
    images, labels = data.sample(6, _gen())
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (6,) and labels.dtype == torch.long
    assert images.device == data.device == torch.device("cpu")
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0.02
    if data.num_classes:
        assert ((labels >= 0) & (labels < data.num_classes)).all()
        assert len(data.class_names) == data.num_classes
    else:
        assert (labels == -1).all() and data.class_names == ()
    assert (data.num_classes, data.image_size, data.split) == (
        {"shapes": 4, "digits": 10}.get(spec, 0), 32, split)


@pytest.mark.parametrize("spec", SOURCES)
def test_a_batch_is_a_function_of_the_generator(spec):
    data = build_data(spec, "train", 32)
    first, first_labels = data.sample(8, _gen(3))
    again, again_labels = build_data(spec, "train", 32).sample(8, _gen(3))
    other, _ = data.sample(8, _gen(4))
    assert torch.equal(first, again) and torch.equal(first_labels, again_labels)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("spec", ["photos", "procedural", "textured", "shapes", "digits"])
def test_fixed_set_is_deterministic_and_follows_the_seed(spec):
    images, labels, masks = fixed_set(spec, "val", 32, 12, seed=0)
    again, again_labels, _ = fixed_set(spec, "val", 32, 12, seed=0)
    other, _, _ = fixed_set(spec, "val", 32, 12, seed=1)
    assert images.shape == (12, 3, 32, 32) and labels.shape == (12,)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.allclose(images, other)
    assert (masks is not None) == (spec == "shapes")


def test_val_and_test_are_different_sets():
    val, _, _ = fixed_set("photos", "val", 32, 8)
    test, _, _ = fixed_set("photos", "test", 32, 8)
    assert not torch.allclose(val, test)


def test_procedural_images_have_structure_at_several_scales():
    images, _ = build_data("procedural", "train", 64).sample(64, _gen())
    gray = images.mean(1)  # (B, S, S)
    # Neighbouring pixels agree (not noise), yet the image varies at every scale.
    neighbour = (gray[:, :, 1:] - gray[:, :, :-1]).abs().mean()
    assert neighbour < 0.5 * gray.std(dim=(1, 2)).mean()
    for pool in (2, 8, 16):
        coarse = torch.nn.functional.avg_pool2d(gray[:, None], pool)
        assert coarse.std(dim=(2, 3)).mean() > 0.03, pool


# --- photo-level split ------------------------------------------------------------------------------


@pytest.fixture
def coded_photos(monkeypatch):
    """The sample photos replaced by plain images whose grey level encodes the photo: a crop tells its photo."""
    import vitviz.samples

    def fake(name: str) -> Image.Image:
        i = PHOTO_NAMES.index(name)
        return Image.new("RGB", (60 + 7 * i, 50 + 5 * i), (10 * (i + 1),) * 3)

    monkeypatch.setattr(vitviz.samples, "load_sample", fake)
    photos_module._photo_arrays.cache_clear()
    photos_module._photo_stack.cache_clear()
    yield {name: 10 * (PHOTO_NAMES.index(name) + 1) for name in PHOTO_NAMES}
    photos_module._photo_arrays.cache_clear()
    photos_module._photo_stack.cache_clear()


def _codes(pixels: torch.Tensor) -> set:
    return set(torch.round(pixels * 255).long().unique().tolist())


def test_train_crops_come_from_train_photos_and_val_test_from_held_out(coded_photos):
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    for split, names in [("train", TRAIN_PHOTOS), ("val", HELD_OUT_PHOTOS), ("test", HELD_OUT_PHOTOS)]:
        images, _ = build_data("photos", split, 16).sample(300, _gen())
        per_crop = [_codes(image) for image in images]
        assert all(len(codes) == 1 for codes in per_crop)  # one photo per crop, no padding pulled in
        assert set().union(*per_crop) == {coded_photos[n] for n in names}, split


def test_shapes_backgrounds_follow_the_photo_split(coded_photos):
    for split, names in [("train", TRAIN_PHOTOS), ("test", HELD_OUT_PHOTOS)]:
        images, _, masks = fixed_set("shapes", split, 32, 60)
        near = torch.nn.functional.max_pool2d(masks[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
        background = images.permute(0, 2, 3, 1)[~near]  # (pixels, 3), away from the shapes' edges
        assert _codes(background) <= {coded_photos[n] for n in names}, split


@pytest.fixture
def split_coloured_photos(monkeypatch):
    """The sample photos replaced by flat red ones (train photos) and flat green ones (held-out photos)."""
    import vitviz.samples

    def fake(name: str) -> Image.Image:
        return Image.new("RGB", (90, 70), (0, 200, 0) if name in HELD_OUT_PHOTOS else (200, 0, 0))

    monkeypatch.setattr(vitviz.samples, "load_sample", fake)
    photos_module._photo_arrays.cache_clear()
    photos_module._photo_stack.cache_clear()
    yield
    photos_module._photo_arrays.cache_clear()
    photos_module._photo_stack.cache_clear()


def test_textured_leaves_are_cut_from_the_split_photos_in_random_places(split_coloured_photos):
    # Only a cut-out photo gives a pixel with two channels exactly 0: the colour fills never do, even blurred.
    cut = {}
    for split in ("train", "val", "test"):
        images, labels = build_data("textured", split, 32).sample(64, _gen())
        red = (images[:, 1] == 0) & (images[:, 2] == 0) & (images[:, 0] > 0.7)  # (B, S, S) from a train photo
        green = (images[:, 0] == 0) & (images[:, 2] == 0) & (images[:, 1] > 0.7)  # from a held-out photo
        cut[split] = red if split == "train" else green
        assert not (green if split == "train" else red).any(), split
        assert 0.1 < cut[split].float().mean() < 0.9, split  # half of the leaves and backgrounds, give or take
        assert (labels == -1).all()
    # The leaves lie anywhere: every pixel is cut from a photo in some images and coloured in others.
    share = cut["train"].float().mean(0)  # (S, S)
    assert 0 < share.min() and share.max() < 1


def test_procedural_is_unchanged_by_the_textured_option():
    from vitviz.data.procedural import _dead_leaves

    plain = _dead_leaves(4, 32, _gen(5), torch.device("cpu"))
    frames = torch.rand(4, 4, 3, 32, 32, generator=_gen(9))
    textured = _dead_leaves(4, 32, _gen(5), torch.device("cpu"), textures=frames, textured=0.5)
    assert torch.equal(_dead_leaves(4, 32, _gen(5), torch.device("cpu"), textures=frames, textured=0.0), plain)
    changed = (textured != plain).any(1)  # (4, S, S): pixels now cut from a frame
    assert 0.1 < changed.float().mean() < 0.9
    # A changed pixel holds its value from one of its own image's frames, at the same place.
    from_frame = (textured[:, None] == frames).all(2).any(1)  # (4, S, S)
    assert from_frame[changed].all()


# --- shapes -----------------------------------------------------------------------------------------


def _shape_of(mask: np.ndarray) -> str:
    """The class a mask's geometry says: stars are concave; of the convex ones, fill of the enclosing circle."""
    from skimage.measure import regionprops

    ys, xs = np.nonzero(mask)
    reach = np.sqrt((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max() + 0.5
    fill = mask.sum() / (math.pi * reach**2)  # circle ~0.93, square ~0.63, triangle ~0.43
    if regionprops(mask.astype(np.uint8))[0].solidity < 0.8:
        return "star"
    return "circle" if fill > 0.8 else "square" if fill > 0.53 else "triangle"


def test_shapes_labels_agree_with_the_drawn_masks():
    images, labels, masks = fixed_set("shapes", "test", 64, 40)
    assert masks.shape == (40, 64, 64) and masks.dtype == torch.bool
    assert labels.tolist() == [i % 4 for i in range(40)]  # every class 10 times
    for mask, label in zip(masks.numpy(), labels.tolist()):
        assert 0.03 < mask.mean() < 0.3
        assert _shape_of(mask) == SHAPES_CLASSES[label]


def test_a_shape_is_one_flat_colour_that_stands_out_from_its_surroundings():
    images, _, masks = fixed_set("shapes", "val", 64, 24)
    pool = torch.nn.functional.max_pool2d
    inner = ~(pool((~masks)[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0)  # mask eroded by 1 px
    ring = (pool(masks[:, None].float(), 7, stride=1, padding=3)[:, 0] > 0) & ~(
        pool(masks[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0)  # 1-3 px outside the mask
    for image, inside, around in zip(images, inner, ring):
        colour = image[:, inside]  # (3, pixels)
        assert colour.std(dim=1).max() < 1e-4
        assert torch.linalg.vector_norm(colour.mean(1) - image[:, around].mean(1)) > 0.25


def test_shapes_item_is_fixed_by_index_split_and_seed():
    image, label, mask = shapes_item(6, 48)
    again, again_label, again_mask = shapes_item(6, 48)
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48) and label == 2
    assert torch.equal(image, again) and torch.equal(mask, again_mask) and label == again_label
    images, labels, masks = fixed_set("shapes", "test", 48, 8)
    assert torch.allclose(images[6], image, atol=1e-6) and torch.equal(masks[6], mask)
    for other in (shapes_item(10, 48), shapes_item(6, 48, split="val"), shapes_item(6, 48, seed=1)):
        assert not torch.equal(other[2], mask)
    with pytest.raises(DataError, match="index is a whole number from 0 up, not -1"):
        shapes_item(-1, 48)


def test_shapes_batches_are_roughly_class_balanced():
    _, labels = build_data("shapes", "train", 16).sample(800, _gen())
    counts = torch.bincount(labels, minlength=4)
    assert counts.min() > 150 and counts.max() < 250, counts


# --- digits -----------------------------------------------------------------------------------------


def _sklearn_digits() -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)
    return {pixel.tobytes(): target for pixel, target in zip(pixels, digits.target)}


def _as_digit_bytes(image: torch.Tensor) -> bytes:
    return torch.round(image[0] * 255).to(torch.uint8).numpy().tobytes()


def test_digits_labels_match_sklearn_and_splits_partition_the_set():
    known = _sklearn_digits()
    seen = []
    for split in ("train", "val", "test"):
        images, labels, _ = fixed_set("digits", split, 8, 5000)
        assert torch.equal(images[:, 0], images[:, 1])  # gray as three equal channels
        seen.append({_as_digit_bytes(i) for i in images})
        assert all(known[_as_digit_bytes(i)] == label for i, label in zip(images, labels.tolist()))
    train, val, test = (len(s) for s in seen)
    assert 0.75 < train / sum((train, val, test)) < 0.85 and abs(val - test) < 10
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    # The split never depends on the seed: another seed gives the same test items.
    reseeded, _, _ = fixed_set("digits", "test", 8, 5000, seed=7)
    assert {_as_digit_bytes(i) for i in reseeded} == seen[2]


def test_only_the_train_split_is_augmented():
    known = _sklearn_digits()
    val, _ = build_data("digits", "val", 8).sample(64, _gen())
    train, _ = build_data("digits", "train", 8).sample(64, _gen())
    assert all(_as_digit_bytes(i) in known for i in val)
    assert sum(_as_digit_bytes(i) in known for i in train) < 16  # shifted and zoomed


# --- image folders ----------------------------------------------------------------------------------


def _solid(path, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def pets(tmp_path):
    """cat/ and dog/ with 10 images each (red encodes the item, green the class), one corrupt, one text file."""
    root = tmp_path / "pets"
    for label, name in enumerate(("cat", "dog")):
        for i in range(10):
            _solid(root / name / f"{i}.png", (10 * i + 5, 100 * label + 50, 0))
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "cat" / "notes.txt").write_text("not an image, not counted")
    return root


def test_folder_splits_partition_the_readable_images_with_their_labels(pets):
    items = set()
    for split, expected in [("train", 16), ("val", 2), ("test", 2)]:
        with pytest.warns(UserWarning, match=r"1 of 21 image files .* skipped: dog/broken\.jpg"):
            data = build_data(f"folder:{pets}", split, 16)
        assert (data.size, data.skipped, data.class_names) == (expected, 1, ("cat", "dog"))
        images, labels, _ = fixed_set(str(pets), split, 16, 100)
        colours = torch.round(images[:, :, 0, 0] * 255).long()  # (N, 3)
        assert torch.equal((colours[:, 1] - 50) // 100, labels)
        split_items = {tuple(c) for c in colours.tolist()}
        assert len(split_items) == expected and not split_items & items
        items |= split_items
    assert len(items) == 20


def test_folder_with_train_and_val_subfolders_uses_them(tmp_path):
    for split, colour in (("train", 10), ("val", 200)):
        for name in ("a", "b"):
            for i in range(3):
                _solid(tmp_path / split / name / f"{i}.png", (colour, i, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train = build_data(str(tmp_path), "train", 8)
        val = build_data(str(tmp_path), "val", 8)
    with pytest.warns(UserWarning, match="no test/ folder: its val/ images serve as the test split"):
        test = build_data(str(tmp_path), "test", 8)
    assert (train.size, val.size, test.size, train.class_names) == (6, 6, 6, ("a", "b"))
    assert (torch.round(train.sample(20, _gen())[0][:, 0] * 255) <= 12).all()
    assert (torch.round(val.sample(20, _gen())[0][:, 0] * 255) == 200).all()


def test_folder_mixture_respects_weights_and_keeps_shared_labels(tmp_path):
    for part, colour in (("dark", 0), ("light", 255)):
        for name in ("a", "b"):
            for i in range(4):
                _solid(tmp_path / part / name / f"{i}.png", (colour,) * 3)
    data = build_data(f"folder:{tmp_path / 'dark'}:1+folder:{tmp_path / 'light'}:3", "train", 8)
    assert data.class_names == ("a", "b")
    images, labels = data.sample(4000, _gen())
    light = (images.mean(dim=(1, 2, 3)) > 0.5).float().mean()
    assert abs(light - 0.75) < 0.03
    assert set(labels.tolist()) == {0, 1}


def test_mixture_of_different_classes_drops_labels():
    with pytest.warns(UserWarning, match="do not share one set of classes"):
        data = build_data("digits:1+shapes:1", "train", 16)
    images, labels = data.sample(32, _gen())
    assert data.num_classes == 0 and (labels == -1).all() and images.shape == (32, 3, 16, 16)


@pytest.mark.parametrize("layout, message", [
    ("missing", r"No folder at .*missing\. Give it one sub-folder of images per class"),
    ("file", r"file\.png is a file, not a folder"),
    ("empty", r"The folder .*empty is empty"),
    ("flat", r"has no class sub-folders \(it holds 2 files directly\)"),
    ("no images", r"The class sub-folders of .* \(a, b\) hold no image files"),
    ("empty class", r"These class folders hold no image files: .*b\b"),
    ("unreadable", r"None of the 2 image files under .* could be read; the first, .*a/0\.png, "
                   r"gave: This file is not an image"),
    ("too few", r"only 2 readable images, too few for a val split"),
])
def test_bad_folders_are_refused_with_a_clear_message(tmp_path, layout, message):
    root = tmp_path / layout.replace(" ", "_")
    if layout == "file":
        root = tmp_path / "file.png"
        _solid(root, (0, 0, 0))
    elif layout == "empty":
        root.mkdir()
    elif layout == "flat":
        _solid(root / "1.png", (0, 0, 0))
        _solid(root / "2.png", (0, 0, 0))
    elif layout == "no images":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        (root / "a" / "readme.txt").write_text("hello")
    elif layout == "empty class":
        _solid(root / "a" / "1.png", (0, 0, 0))
        (root / "b").mkdir()
    elif layout == "unreadable":
        for name in ("a", "b"):
            (root / name).mkdir(parents=True)
            (root / name / "0.png").write_bytes(b"garbage")
    elif layout == "too few":
        _solid(root / "a" / "1.png", (0, 0, 0))
        _solid(root / "b" / "1.png", (0, 0, 0))
    with pytest.raises(DataError, match=message):
        build_data(f"folder:{root}", "val", 16)


# --- CIFAR --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, title", [("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")])
def test_missing_cifar_fails_at_once_with_the_command_that_gets_it(tmp_path, monkeypatch, spec, title):
    monkeypatch.setenv("VITVIZ_DATA", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"(?s){title} is not in {tmp_path}.*download=True.*VITVIZ_DATA") as error:
        build_data(spec, "train", 32)
    assert time.perf_counter() - start < 2
    assert f"('{tmp_path}', download=True)" in str(error.value)


class _FakeCifar:
    """torchvision's CIFAR10 surface: data (N, 32, 32, 3) uint8, targets, classes."""

    def __init__(self, root, train, download):
        assert download is False
        n = 200 if train else 50
        self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)
        self.data[:, :, :, 0] = np.arange(n)[:, None, None]  # red channel: the item's number
        self.data[:, :, :, 1] = 0 if train else 255
        self.targets = [i % 10 for i in range(n)]
        self.classes = [f"class{i}" for i in range(10)]


def test_cifar_splits_when_present(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setenv("VITVIZ_DATA", str(tmp_path))
    (tmp_path / "cifar-10-batches-py").mkdir()
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar)
    cifar_module._cifar_arrays.cache_clear()
    sizes, items = {}, {}
    for split in ("train", "val", "test"):
        data = build_data("cifar10", split, 32)
        images, labels, _ = fixed_set("cifar10", split, 32, 1000)
        sizes[split] = data.size
        items[split] = set(torch.round(images[:, 0, 0, 0] * 255).long().tolist())
        assert torch.equal(torch.round(images[:, 0, 0, 0] * 255).long() % 10, labels)
        assert (images[:, 1] == (1.0 if split == "test" else 0.0)).all()  # test: the official test set
    cifar_module._cifar_arrays.cache_clear()
    assert sizes == {"train": 180, "val": 20, "test": 50} and not items["train"] & items["val"]


def test_damaged_cifar_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def damaged(root, train, download):
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setenv("VITVIZ_DATA", str(tmp_path))
    (tmp_path / "cifar-100-python").mkdir()
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", damaged)
    cifar_module._cifar_arrays.cache_clear()
    damaged_message = r"CIFAR-100 under .*cifar-100-python is incomplete or damaged .* download it again"
    with pytest.raises(DataError, match=damaged_message):
        build_data("cifar100", "test", 32)


# --- crops:PATH: your own photos for the jigsaw pretext ------------------------------------------------


@pytest.fixture
def album(tmp_path):
    """40 solid-colour images (red and green encode the item) at any depth and size, one corrupt, one text file,
    and a hidden folder of thumbnails that must not count."""
    root = tmp_path / "album"
    for i in range(40):
        folder = root / ("trips" if i % 3 else "") / ("2025" if i % 5 == 0 else "")
        _solid(folder / f"img{i}.png", (5 * i + 3, 250 - 5 * i, 77), size=(300 + 7 * i, 200 + 11 * i))
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    _solid(root / ".thumbs" / "t1.png", (0, 0, 255))
    return root


def _colours(images: torch.Tensor) -> set:
    """Each crop's colour, from one pixel (every image is one flat colour)."""
    return {tuple(c) for c in torch.round(images[:, :, 5, 5] * 255).long().tolist()}


def _crc_held_out(name: str) -> bool:
    return zlib.crc32(name.encode()) % 10 == 0


def test_crops_split_the_photos_of_a_folder_by_photo(album):
    colour = {p.relative_to(album).as_posix(): (5 * int(p.stem[3:]) + 3, 250 - 5 * int(p.stem[3:]), 77)
              for p in album.rglob("img*.png")}
    # One image in ten is held out, chosen by a CRC-32 of its path under the folder.
    held = {name for name in colour if _crc_held_out(name)}
    assert 0 < len(held) < len(colour)
    seen = {}
    for split in ("train", "val", "test"):
        with pytest.warns(UserWarning, match=r"1 of 41 image files under .* skipped: broken\.jpg"):
            data = build_data(f"crops:{album}", split, 24)
        assert data.num_classes == 0 and data.skipped == 1 and data.name == f"crops:{album}"
        assert f"crops of {len(held) if split != 'train' else len(colour) - len(held)} photos" in repr(data)
        images, labels = data.sample(400, _gen(1))
        assert images.shape == (400, 3, 24, 24) and (labels == -1).all()
        seen[split] = _colours(images)
    assert seen["train"] == {colour[n] for n in colour if n not in held}  # 400 draws reach every train photo
    assert seen["val"] == seen["test"] == {colour[n] for n in held}  # and never the hidden thumbnail's blue
    # Crops, not whole images resized: the train split zooms (10-100% of the area).
    big = Image.new("RGB", (256, 256))
    big.paste((255, 0, 0), (0, 0, 128, 256))  # left half red, right half blue
    big.paste((0, 0, 255), (128, 0, 256, 256))
    single = album.parent / "single"
    train_name = next(f"{i}.png" for i in range(100) if not _crc_held_out(f"{i}.png"))
    big.save(single / train_name) if single.mkdir() is None else None
    _solid(single / next(f"{i}.png" for i in range(100) if _crc_held_out(f"{i}.png")), (0, 255, 0))
    red_share = build_data(f"crops:{single}", "train", 16).sample(200, _gen(2))[0][:, 0].mean(dim=(1, 2))
    assert (red_share > 0.99).any() and (red_share < 0.01).any()  # small crops land inside one half


def test_a_small_crops_folder_still_holds_one_photo_out_and_trains_on_the_rest(tmp_path):
    colours = {}
    # three photos whose paths all hash into the training part: the lowest CRC-32 is held out instead
    names = [f"{i}.png" for i in range(60) if not _crc_held_out(f"{i}.png")][:3]
    for k, name in enumerate(names):
        colours[name] = (80 * k + 10, 40, 200)
        _solid(tmp_path / "few" / name, colours[name])
    lowest = min(names, key=lambda n: zlib.crc32(n.encode()))
    val = _colours(build_data(f"crops:{tmp_path / 'few'}", "val", 16).sample(50, _gen())[0])
    train = _colours(build_data(f"crops:{tmp_path / 'few'}", "train", 16).sample(50, _gen())[0])
    assert val == {colours[lowest]} and train == {colours[n] for n in names if n != lowest}
    # two photos that both hash into the held-out part: the highest CRC-32 trains
    both = [f"{i}.png" for i in range(400) if _crc_held_out(f"{i}.png")][:2]
    for name in both:
        _solid(tmp_path / "two" / name, (zlib.crc32(name.encode()) % 200, 10, 10))
    highest = max(both, key=lambda n: zlib.crc32(n.encode()))
    train = _colours(build_data(f"crops:{tmp_path / 'two'}", "train", 16).sample(20, _gen())[0])
    assert train == {(zlib.crc32(highest.encode()) % 200, 10, 10)}
    # one photo cannot be split
    _solid(tmp_path / "one" / "a.png", (1, 2, 3))
    for check in (lambda: check_spec(f"crops:{tmp_path / 'one'}"), lambda: build_data(f"crops:{tmp_path / 'one'}", "train", 16)):
        with pytest.raises(DataError, match=r"holds one image, a\.png; crops:PATH needs at least two, one of them held out"):
            check()


def test_a_large_crops_folder_is_kept_within_its_memory_budget(album, monkeypatch):
    from vitviz.data import crops

    monkeypatch.setattr(crops, "CROPS_BUDGET_MB", 4)
    # 41 files, float32 RGB on a square canvas, and a pyramid of 1/3 more: the side that fits 4 MB
    side = int(math.sqrt(4 * 2**20 / 41 / (3 * 4) / (4 / 3)))
    with pytest.warns(UserWarning, match=rf"holds 41 images: each is kept at most {side} px on a side \(not 512\) to "
                                         r"stay within 4 MB"):
        data = build_data(f"crops:{album}", "train", 16)
    levels = data.stack.levels
    assert max(levels[0].shape[-2:]) == side
    assert sum(level.numel() * 4 for level in levels) <= 4 * 2**20


def test_crops_in_a_mixture_and_check_spec(album, monkeypatch):
    monkeypatch.chdir(album.parent)
    assert check_spec("crops:album:2+photos") == f"crops:{album}:2+photos:1"
    assert check_spec(f"crops:{album}") == f"crops:{album}"
    with pytest.warns(UserWarning, match="skipped"):
        data = build_data("crops:album:3+procedural:1", "train", 16)
    assert data.num_classes == 0 and data.sample(8, _gen())[0].shape == (8, 3, 16, 16)
    with pytest.raises(DataError, match="has no labels to fine-tune on"):
        check_spec("crops:album", labeled=True)
    assert "crops:PATH" in describe_specs()


def test_a_folder_named_like_a_bundled_source_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("cat", "dog"):
        _solid(tmp_path / "photos" / name / "1.png", (9, 9, 9))
        _solid(tmp_path / "photos" / name / "2.png", (9, 9, 9))
    assert check_spec("photos") == "photos" and build_data("photos", "train", 16).name == "photos"
    assert check_spec("photos:1+procedural:1") == "photos:1+procedural:1"
    assert check_spec("./photos") == check_spec("folder:photos") == f"folder:{tmp_path / 'photos'}"


@pytest.mark.parametrize("layout, message", [
    ({}, r"The folder .*mine is empty. Give it a folder of photos \(any layout, no classes needed\)"),
    ({"a.txt": "text"}, r"The folder .* holds no image files \(looked for \.jpg"),
    ({"a.png": "not a png", "b.jpg": "nor a jpeg"}, r"None of the 2 image files under .* could be read; the first, "
                                                   r"a\.png, gave"),
    ({".hidden/a.png": "hidden"}, r"The folder .*mine is empty"),
])
def test_bad_crops_folders_get_one_clear_sentence(tmp_path, layout, message):
    root = tmp_path / "mine"
    root.mkdir()
    for name, text in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    with pytest.raises(DataError, match=message):
        build_data(f"crops:{root}", "train", 16)
    if "could be read" not in message:  # check_spec reads no image, so it cannot know that one
        with pytest.raises(DataError, match=message):
            check_spec(f"crops:{root}")
    with pytest.raises(DataError, match=r"'crops:' needs a path after it"):
        build_data("crops:", "train", 16)
    with pytest.raises(DataError, match=r"No folder at .*nowhere. Give it a folder of photos"):
        build_data(f"crops:{tmp_path / 'nowhere'}", "train", 16)
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=rf"a\.jpg is a file, not a folder. Give it a folder of photos .*, e\.g\. "
                                        rf"{tmp_path}\."):
        check_spec(f"crops:{tmp_path / 'a.jpg'}")


# --- specs and arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ("fotos", r"Unknown data source 'fotos'; choose from photos, procedural, textured, shapes, digits, cifar10, cifar100, "
              r"folder:PATH"),
    ("photos:x", r"In the data part 'photos:x', the weight 'x' is not a number"),
    ("photos:0+procedural", r"the weight must be a positive number, not 0"),
    ("photos:-2", r"the weight must be a positive number, not -2"),
    ("photos++procedural", r"empty part"),
    ("  ", r"The data spec is empty"),
    ("./no/such/folder", r"No folder at no/such/folder"),
])
def test_bad_specs_name_the_bad_value(spec, message):
    with pytest.raises(DataError, match=message):
        build_data(spec, "train", 32)


def test_bad_arguments_name_the_bad_value():
    with pytest.raises(DataError, match="Unknown split 'validation'"):
        build_data("photos", "validation", 32)
    with pytest.raises(DataError, match="image_size must be a whole number of pixels from 8 to 1024, not 4"):
        build_data("photos", "train", 4)
    with pytest.raises(DataError, match="batch_size must be a positive whole number, not 0"):
        build_data("procedural", "train", 16).sample(0, _gen())
    with pytest.raises(DataError, match="evaluation set size must be a positive whole number, not 0"):
        fixed_set("shapes", "test", 16, 0)


def test_describe_specs_names_every_source():
    text = describe_specs()
    for name in ("photos", "procedural", "textured", "shapes", "digits", "cifar10", "cifar100", "folder:PATH", "upload:NAME",
                 "A:W+B:W"):
        assert name in text
    assert ", ".join(SHAPES_CLASSES) in text


# --- check_spec: the cheap check before any work -------------------------------------------------------


@pytest.mark.parametrize("spec, normalised", [
    ("shapes", "shapes"),
    ("  digits  ", "digits"),
    ("photos:3", "photos"),
    ("photos:1+procedural:1", "photos:1+procedural:1"),
    ("photos+procedural:0.25", "photos:1+procedural:0.25"),
    ("shapes:2+shapes:0.1", "shapes:2+shapes:0.1"),
])
def test_check_spec_normalises_bundled_sources(spec, normalised):
    assert check_spec(spec) == normalised
    assert check_spec(normalised) == normalised


def test_check_spec_makes_folders_absolute(pets, monkeypatch):
    monkeypatch.chdir(pets.parent)
    assert check_spec("folder:pets") == check_spec("./pets") == check_spec(str(pets)) == f"folder:{pets}"
    mixed = check_spec("folder:pets:2+photos")
    assert mixed == f"folder:{pets}:2+photos:1"
    assert check_spec(mixed) == mixed and check_spec(f"folder:{pets}", labeled=True) == f"folder:{pets}"


def test_check_spec_reads_no_image(pets, monkeypatch, tmp_path):
    import torchvision.datasets

    import vitviz.images
    import vitviz.samples

    def refuse(*args, **kwargs):
        raise AssertionError("check_spec read an image")

    for module, name in ((vitviz.images, "load_image"), (vitviz.samples, "load_sample"),
                         (torchvision.datasets, "CIFAR10")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setenv("VITVIZ_DATA", str(tmp_path))
    (tmp_path / "cifar-10-batches-py").mkdir()
    spec = f"folder:{pets}:1+shapes:1+photos:1+procedural:1+digits:1+cifar10:1"
    assert check_spec(spec) == spec


@pytest.mark.parametrize("spec, message", [
    ("fotos", r"Unknown data source 'fotos'; choose from photos, procedural, textured, shapes, digits, cifar10, cifar100, "
              r"folder:PATH"),
    ("photos:x", r"In the data part 'photos:x', the weight 'x' is not a number"),
    ("photos:0+procedural", r"the weight must be a positive number, not 0"),
    ("shapes:inf", r"the weight must be a positive number, not inf"),
    ("", r"The data spec is empty"),
    ("./no/such/folder", r"No folder at no/such/folder"),
    ("folder:", r"'folder:' needs a path after it"),
])
def test_check_spec_refuses_bad_specs_naming_the_bad_value(spec, message):
    with pytest.raises(DataError, match=message):
        check_spec(spec)


@pytest.mark.parametrize("layout, message", [
    ("missing", r"No folder at .*missing\. Give it one sub-folder of images per class"),
    ("flat", r"has no class sub-folders \(it holds 2 files directly\)"),
    ("empty class", r"These class folders hold no image files: .*b\b"),
])
def test_check_spec_refuses_folders_without_class_subfolders(tmp_path, layout, message):
    root = tmp_path / layout.replace(" ", "_")
    if layout == "flat":
        _solid(root / "1.png", (0, 0, 0))
        _solid(root / "2.png", (0, 0, 0))
    elif layout == "empty class":
        _solid(root / "a" / "1.png", (0, 0, 0))
        (root / "b").mkdir()
    with pytest.raises(DataError, match=message):
        check_spec(f"folder:{root}")


def test_check_spec_refuses_a_mixture_folder_whose_path_holds_a_plus(tmp_path, monkeypatch):
    root = tmp_path / "a+b"
    _solid(root / "pets" / "cat" / "1.png", (0, 0, 0))
    monkeypatch.chdir(root)
    assert check_spec("pets") == f"folder:{root / 'pets'}"  # one folder is taken whole
    with pytest.raises(DataError, match=r"The folder .*a\+b/pets cannot be part of a mixture: its path holds '\+'"):
        check_spec("folder:pets:1+photos:1")


@pytest.mark.parametrize("spec", ["cifar10", "cifar100", "photos:1+cifar100:2"])
def test_check_spec_gives_the_same_missing_cifar_message_as_build_data(tmp_path, monkeypatch, spec):
    monkeypatch.setenv("VITVIZ_DATA", str(tmp_path))
    with pytest.raises(DataError) as checked:
        check_spec(spec)
    with pytest.raises(DataError) as built:
        build_data(spec, "train", 32)
    assert str(checked.value) == str(built.value) and "download=True" in str(checked.value)


@pytest.fixture
def pets_again(tmp_path):
    """A second folder with pets' classes (cat, dog), and one with other classes (bird, fish)."""
    for folder, names in (("pets2", ("cat", "dog")), ("birds", ("bird", "fish"))):
        for name in names:
            for i in range(3):
                _solid(tmp_path / folder / name / f"{i}.png", (i, 0, 0))
    return tmp_path / "pets2", tmp_path / "birds"


@pytest.mark.parametrize("spec, labeled", [
    ("shapes", True), ("digits", True), ("shapes:1+shapes:3", True), ("{pets}", True),
    ("folder:{pets}:1+folder:{pets2}:1", True),
    ("photos", False), ("procedural", False), ("photos:1+procedural:1", False), ("photos:1+shapes:1", False),
    ("digits:1+shapes:1", False), ("folder:{pets}:1+folder:{birds}:1", False), ("folder:{pets}:1+digits:1", False),
])
def test_check_spec_labeled_accepts_exactly_what_build_data_labels(pets, pets_again, spec, labeled):
    pets2, birds = pets_again
    spec = spec.format(pets=pets, pets2=pets2, birds=birds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (build_data(spec, "train", 16).num_classes > 0) == labeled
    assert check_spec(spec)  # every spec here is valid without labels
    if labeled:
        assert check_spec(spec, labeled=True) == check_spec(spec)
    else:
        with pytest.raises(DataError, match="has no labels to fine-tune on"):
            check_spec(spec, labeled=True)


@pytest.mark.parametrize("spec, message", [
    ("photos", r"The data 'photos' has no labels to fine-tune on; choose shapes, digits, cifar10, cifar100, "
               r"folder:PATH \(one sub-folder of images per class\) or upload:NAME"),
    ("procedural:2", r"The data 'procedural' has no labels"),
    ("shapes:1+procedural:1", r"The mixture 'shapes:1\+procedural:1' has no labels to fine-tune on: its part "
                              r"'procedural' is unlabeled"),
    ("digits+shapes", r"The mixture 'digits\+shapes' has no labels to fine-tune on: its parts do not share one "
                      r"set of classes"),
])
def test_check_spec_labeled_names_what_has_no_labels(spec, message):
    with pytest.raises(DataError, match=message):
        check_spec(spec, labeled=True)
