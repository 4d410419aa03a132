"""bench/unseen_photos.py: the 25 photographs from three Debian packages, the largest size of each Plasma one."""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("unseen_photos", REPO / "bench" / "unseen_photos.py")
unseen_photos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(unseen_photos)


def _fake_apt_get(bin_dir: Path, packages: Path) -> None:
    """An ``apt-get`` whose ``download`` copies prebuilt .deb files into the working folder."""
    script = bin_dir / "apt-get"
    script.write_text(f'#!/bin/sh\n[ "$1" = download ] || exit 100\ncp {packages}/*.deb .\n')
    script.chmod(0o755)


def _build_deb(root: Path, name: str, files: dict[str, tuple[int, int]]) -> None:
    """A real .deb (``dpkg-deb -b``) holding a JPEG of each size at each path."""
    tree = root / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(f"Package: {name}\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: t\n")
    for path, size in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (size[0] % 256, 0, 0)).save(tree / path)
    subprocess.run(["dpkg-deb", "-b", "--root-owner-group", str(tree), str(root / f"{name}.deb")], check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_gathers_the_listed_photographs_and_the_largest_plasma_size(tmp_path, monkeypatch, capsys):
    debs = tmp_path / "debs"
    debs.mkdir()
    lomiri = {f"usr/share/backgrounds/{name}.jpg": (24, 16) for name in unseen_photos.LOMIRI}
    lomiri["usr/share/backgrounds/Fossa_by_Jasper_Roks.jpg"] = (24, 16)  # a drawn one: left out
    _build_deb(debs, "lomiri-wallpapers", lomiri)
    plasma = {}
    for name in unseen_photos.PLASMA:
        for size in ((40, 30), (64, 40), (32, 24)):
            plasma[f"usr/share/wallpapers/{name}/contents/images/{size[0]}x{size[1]}.jpg"] = size
    _build_deb(debs, "plasma-workspace-wallpapers", plasma)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_apt_get(bin_dir, debs)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    out = tmp_path / "photos"
    assert unseen_photos.main([str(out)]) == 0
    assert capsys.readouterr().out == f"25 photographs in {out}\n"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{n}.jpg" for n in (*unseen_photos.LOMIRI, *unseen_photos.PLASMA)])
    assert all(Image.open(out / f"{n}.jpg").size == (64, 40) for n in unseen_photos.PLASMA)


def test_without_apt_get_it_says_what_it_needs_in_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    assert unseen_photos.main([str(tmp_path / "photos")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Could not gather the photographs (") and err.count("\n") == 1
    assert err.rstrip().endswith("this needs apt-get download and dpkg-deb on Debian or Ubuntu.")
