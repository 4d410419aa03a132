"""Your own images as a zip of class folders: import_zip's checks and refusals, the stored set, its split, upload:NAME."""

import io
import json
import stat
import struct
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitviz.data import (DataError, build_data, check_spec, delete_upload, fixed_set, import_zip, list_uploads,
                         read_upload)
from vitviz.data.upload import MAX_BYTES, MAX_FILES, STORED_SIDE

# Three classes told apart by colour: a learnable set a test can make in milliseconds.
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def class_image(class_name: str, seed: int, size=(40, 32), fmt="PNG") -> bytes:
    """A noisy image of the class's colour, with a lighter square somewhere in it."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOURS[class_name]) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    y, x = rng.integers(0, size[1] // 2), rng.integers(0, size[0] // 2)
    pixels[y:y + size[1] // 3, x:x + size[0] // 3] += 40
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def make_zip(entries: dict, order=None) -> bytes:
    """A zip of ``{name: bytes}``, written in ``order`` (default: as given)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in order or entries:
            archive.writestr(name, entries[name])
    return buffer.getvalue()


def three_classes(counts=(10, 10, 10), prefix="") -> dict:
    return {f"{prefix}{c}/{c}-{i:03d}.png": class_image(c, seed=100 * k + i)
            for k, (c, n) in enumerate(zip(COLOURS, counts)) for i in range(n)}


def written(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


# --- the import -----------------------------------------------------------------------------------


def test_a_zip_of_class_folders_becomes_a_data_set_and_a_non_image_is_skipped_and_counted(tmp_path):
    entries = three_classes((4, 3, 2))
    entries["red/notes.txt"] = b"these are red things"
    entries["README.md"] = b"my data set"
    entries["__MACOSX/red/._red-000.png"] = b"resource fork"
    entries["blue/.DS_Store"] = b"finder"
    path = import_zip(make_zip(entries), "colours", tmp_path / "uploads")

    assert path == tmp_path / "uploads" / "colours"
    stored = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert stored == [".upload.json"] + sorted(n for n in entries if n.endswith(".png") and "__MACOSX" not in n)
    upload = read_upload("colours", tmp_path / "uploads")
    assert upload.class_names == ("blue", "green", "red")
    assert {c: len(p) for c, p in upload.files.items()} == {"blue": 2, "green": 3, "red": 4}
    assert upload.skipped == (
        ("README.md", "not inside a class folder"),
        ("red/notes.txt", "This file is not an image that can be read (PNG, JPEG, WebP, GIF, BMP, TIFF...)."),
    )
    # the pixels are the zip's, through load_image
    original = np.asarray(Image.open(io.BytesIO(entries["green/green-001.png"])))
    assert np.array_equal(np.asarray(Image.open(path / "green" / "green-001.png")), original)


def test_one_folder_wrapping_the_classes_is_looked_through_and_sub_folders_stay_in_their_class(tmp_path):
    entries = {"pets/cats/a.png": class_image("red", 1), "pets/cats/indoor/b.png": class_image("red", 2),
               "pets/dogs/c.png": class_image("blue", 3)}
    upload = read_upload(import_zip(make_zip(entries), "pets", tmp_path).name, tmp_path)
    assert {c: [p.relative_to(upload.path).as_posix() for p in paths] for c, paths in upload.files.items()} == \
        {"cats": ["cats/a.png", "cats/indoor/b.png"], "dogs": ["dogs/c.png"]}


def test_images_are_stored_rgb_exif_oriented_and_no_larger_than_needed(tmp_path):
    big = Image.new("RGB", (1600, 1200), (10, 200, 30))
    rotated = Image.new("RGB", (60, 20), (250, 250, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    entries = {}
    for name, image, kwargs in (("a/big.jpg", big, {}), ("a/turned.jpeg", rotated, {"exif": exif}),
                                ("b/grey.webp", Image.new("L", (30, 30), 128), {})):
        buffer = io.BytesIO()
        image.save(buffer, format={"jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}[name.rsplit(".", 1)[1]], **kwargs)
        entries[name] = buffer.getvalue()
    path = import_zip(make_zip(entries), "kinds", tmp_path)
    big_stored = Image.open(path / "a" / "big.jpg")
    assert big_stored.format == "JPEG" and big_stored.size == (round(STORED_SIDE * 4 / 3), STORED_SIDE)
    assert Image.open(path / "a" / "turned.jpeg").size == (20, 60)  # the EXIF rotation applied
    grey = Image.open(path / "b" / "grey.webp.png")  # not a format the folder reader keeps: stored as PNG
    assert grey.format == "PNG" and grey.mode == "RGB" and grey.getpixel((0, 0)) == (128, 128, 128)


# --- refusals: each in one sentence, nothing written ----------------------------------------------


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/a.png", class_image("red", 0))
        link = zipfile.ZipInfo("cats/passwd.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "../../../../etc/passwd")
    return buffer.getvalue()


def claimed_size_bomb() -> bytes:
    """Two small entries whose central directory claims 700 MB each: 1.4 GB, over the 1 GB cap."""
    data = bytearray(make_zip({"cats/a.png": class_image("red", 0), "dogs/b.png": class_image("blue", 1)}))
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) != -1:
        data[start + 24:start + 28] = struct.pack("<I", 700_000_000)  # uncompressed size
        start += 4
    return bytes(data)


def too_many_files() -> bytes:
    return make_zip({f"c{i % 3}/{i}.png": b"" for i in range(MAX_FILES + 1)})


@pytest.mark.parametrize("make, message", [
    (lambda: make_zip({"cats/a.png": class_image("red", 0), "../evil.png": class_image("red", 1)}),
     "The zip entry '../evil.png' climbs out of its folder with '..', which would land outside the data set's "
     "folder, so the zip was refused."),
    (lambda: make_zip({"cats/../../evil.png": class_image("red", 1)}),
     "The zip entry 'cats/../../evil.png' climbs out of its folder with '..'"),
    (lambda: make_zip({"cats\\..\\..\\evil.png": class_image("red", 1)}),
     "The zip entry 'cats\\\\..\\\\..\\\\evil.png' climbs out of its folder with '..'"),
    (lambda: make_zip({"cats/a.png": class_image("red", 0), "/tmp/evil.png": class_image("red", 1)}),
     "The zip entry '/tmp/evil.png' is an absolute path, which would land outside the data set's folder, so the "
     "zip was refused."),
    (lambda: make_zip({"C:/evil.png": class_image("red", 1)}), "The zip entry 'C:/evil.png' is an absolute path"),
    (symlink_zip, "The zip entry 'cats/passwd.png' is a symbolic link, which could point outside the data set's "
                  "folder, so the zip was refused."),
    (claimed_size_bomb, "The zip's files claim 1.4 GB uncompressed, over the limit of 1.0 GB, so it was refused "
                        "without extracting it."),
    (too_many_files, "The zip holds 10,001 files; the limit is 10,000, so it was refused: split it into smaller "
                     "data sets."),
    (lambda: make_zip({"a.png": class_image("red", 0), "b.png": class_image("red", 1)}),
     "The zip has no class folders: put each class's images in a folder named after the class (cats/001.jpg, "
     "dogs/001.jpg) and zip those folders."),
    (lambda: make_zip({"train/cats/a.png": class_image("red", 0), "val/cats/b.png": class_image("red", 1)}),
     "This zip is already split into train/ and val/ folders; vitviz makes its own split"),
    (lambda: b"PK\x03\x04 but not really a zip", "This file is not a zip archive that can be read"),
])
def test_a_zip_that_could_harm_or_cannot_work_is_refused_before_anything_is_written(tmp_path, make, message):
    root = tmp_path / "uploads"
    with pytest.raises(DataError) as refused:
        import_zip(make(), "refused", root)
    assert str(refused.value).startswith(message)
    assert str(refused.value).count(". ") == 0  # one sentence
    assert written(root) == []
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()


def test_the_caps_are_the_documented_ones():
    assert (MAX_FILES, MAX_BYTES) == (10_000, 1_000_000_000)


def test_a_zip_with_no_readable_image_leaves_nothing_behind(tmp_path):
    zipped = make_zip({"cats/a.png": b"not a png", "dogs/b.jpg": class_image("red", 0)[:40]})
    with pytest.raises(DataError) as refused:
        import_zip(zipped, "broken", tmp_path / "uploads")
    assert str(refused.value) == ("None of the 2 files in the zip's class folders is an image that can be read; the "
                                  "first, cats/a.png, gave: This file is not an image that can be read (PNG, JPEG, "
                                  "WebP, GIF, BMP, TIFF...).")
    assert written(tmp_path / "uploads") == []  # not even the temporary folder


def test_a_class_without_a_readable_image_is_left_out(tmp_path):
    entries = {**three_classes((2, 2, 0)), "blue/x.png": b"broken"}
    upload = read_upload(import_zip(make_zip(entries), "two", tmp_path).name, tmp_path)
    assert upload.class_names == ("green", "red")
    assert json.loads((upload.path / ".upload.json").read_text())["left_out"] == ["blue"]


@pytest.mark.parametrize("name, message", [
    ("../up", "The data set name '../up' is not allowed: use up to 64 letters, digits, '.', '_' and '-', starting "
              "with a letter or digit."),
    ("a/b", "The data set name 'a/b' is not allowed"),
    (".hidden", "The data set name '.hidden' is not allowed"),
    ("x" * 65, "The data set name 'xxxxxxxx"),
])
def test_bad_names_are_refused(tmp_path, name, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        import_zip(make_zip(three_classes((1, 1, 1))), name, tmp_path)
    assert written(tmp_path) == []


def test_a_taken_name_is_refused_and_the_set_kept(tmp_path):
    import_zip(make_zip(three_classes((2, 2, 2))), "taken", tmp_path)
    before = written(tmp_path)
    with pytest.raises(DataError, match=f"An uploaded data set named 'taken' already exists in {tmp_path}; delete it "
                                        "or choose another name."):
        import_zip(make_zip(three_classes((3, 3, 3))), "taken", tmp_path)
    assert written(tmp_path) == before


# --- the split ------------------------------------------------------------------------------------


def test_the_split_is_stratified_and_stable(tmp_path):
    entries = three_classes((10, 20, 5))
    first = read_upload(import_zip(make_zip(entries), "first", tmp_path).name, tmp_path)
    # the same images zipped in another order, under another wrapper folder: the same split
    wrapped = {f"mine/{n}": data for n, data in entries.items()}
    again = read_upload(import_zip(make_zip(wrapped, order=sorted(wrapped, reverse=True)), "again", tmp_path).name,
                        tmp_path)
    val = {c: len(p) for c, p in first.split("val").items()}
    assert val == {"red": 2, "green": 4, "blue": 1}  # 20% of each class
    assert {p.relative_to(first.path) for p in first.val} == {p.relative_to(again.path) for p in again.val}
    for class_name, paths in first.files.items():  # train and val partition each class
        train, held = first.split("train")[class_name], first.split("val")[class_name]
        assert sorted(train + held) == sorted(paths) and not set(train) & set(held)
    # one more image moves nothing else: the split depends on the names only
    entries["red/red-999.png"] = class_image("red", 999)
    more = read_upload(import_zip(make_zip(entries), "more", tmp_path).name, tmp_path)
    old = {p.relative_to(first.path) for p in first.val}
    new = {p.relative_to(more.path) for p in more.val}
    assert len(old ^ new) <= 1 and len(new) == len(old)


def test_upload_spec_gives_the_split_with_its_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("VITVIZ_JOBS", str(tmp_path / "jobs"))
    from vitviz.registry import uploads_dir

    import_zip(make_zip(three_classes((10, 20, 5))), "colours", uploads_dir())
    train = build_data("upload:colours", "train", 16)
    val = build_data("upload:colours", "val", 16)
    test = build_data("upload:colours", "test", 16)
    assert train.name == "upload:colours" and train.class_names == ("blue", "green", "red")
    assert Counter(val.labels.tolist()) == {0: 1, 1: 4, 2: 2}
    assert Counter(train.labels.tolist()) == {0: 4, 1: 16, 2: 8}
    assert torch.equal(test.images, val.images)  # val is also the test split
    # the pixels: each image's mean colour is its class's
    for data in (train, val):
        means = data.images.float().mean(dim=(2, 3))  # (N, 3)
        assert (means.argmax(dim=1) == torch.tensor([2, 1, 0])[data.labels]).all()
    images, labels, _ = fixed_set("upload:colours", "val", 16, 100)
    assert len(images) == 7 and sorted(labels.tolist()) == sorted(val.labels.tolist())
    batch, batch_labels = train.sample(8, torch.Generator().manual_seed(0))
    assert batch.shape == (8, 3, 16, 16) and 0 <= batch.min() and batch.max() <= 1


def test_check_spec_and_its_refusals_for_uploads(tmp_path, monkeypatch):
    monkeypatch.setenv("VITVIZ_JOBS", str(tmp_path / "jobs"))
    from vitviz.registry import uploads_dir

    with pytest.raises(DataError, match=f"No uploaded data set named 'pets' in {uploads_dir()}; upload a zip of "
                                        "class folders in the Train view"):
        check_spec("upload:pets")
    import_zip(make_zip(three_classes((2, 2, 2))), "colours", uploads_dir())
    assert check_spec("upload:colours", labeled=True) == "upload:colours"
    assert check_spec(" upload:colours:2+upload:colours ") == "upload:colours:2+upload:colours:1"
    with pytest.raises(DataError, match=r"No uploaded data set named 'pets' in .* \(there are: colours\)"):
        check_spec("upload:pets")
    with pytest.raises(DataError, match="'upload:' needs the name of an uploaded data set after it"):
        check_spec("upload:")
    with pytest.raises(DataError, match="The data set name '../x' is not allowed"):
        check_spec("upload:../x")
    with pytest.raises(DataError, match="too few images for a val split: give each class two images at least"):
        import_zip(make_zip(three_classes((1, 1, 1))), "tiny", uploads_dir())
        build_data("upload:tiny", "val", 16)


def test_list_and_delete(tmp_path):
    import_zip(make_zip(three_classes((2, 2, 2))), "b-set", tmp_path)
    import_zip(make_zip(three_classes((3, 1, 1))), "a-set", tmp_path)
    (tmp_path / ".a-set.importing-1234").mkdir()  # what a killed import would leave: not a set
    assert [(u.name, u.size) for u in list_uploads(tmp_path)] == [("a-set", 5), ("b-set", 6)]
    delete_upload("a-set", tmp_path)
    assert [u.name for u in list_uploads(tmp_path)] == ["b-set"] and not (tmp_path / "a-set").exists()
    with pytest.raises(DataError, match="No uploaded data set named 'a-set'"):
        delete_upload("a-set", tmp_path)
    with pytest.raises(DataError, match="is not allowed"):
        delete_upload("..", tmp_path)
    assert (tmp_path / "b-set").is_dir()
