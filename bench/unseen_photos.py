"""Gather the 25 photographs that the 7x7 jigsaw figures call "photos in no data set", from Debian packages.

    .venv/bin/python bench/unseen_photos.py /tmp/unseen_photos
    HF_HUB_OFFLINE=1 .venv/bin/python bench/jigsaw_accuracy.py --checkpoint starter-jigsaw-16 --folder /tmp/unseen_photos

Fifteen photographs from Ubuntu's Lomiri wallpapers and ten from KDE Plasma's (landscapes, animals, objects and
interiors; the drawn and rendered wallpapers of those packages are left out), none of them used by a vitviz data
set. Needs ``apt-get download`` and ``dpkg-deb`` (Debian or Ubuntu, with the package lists fetched); the packages
are unpacked in a temporary folder, not installed. A Plasma wallpaper comes in several sizes: the largest is taken.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")
LOMIRI = (  # /usr/share/backgrounds/NAME.jpg
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Infinite-Sea_by_Aury88", "Kleiber_by_Lukas_Baubkus",
    "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
    "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
    "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
    "sunset_by_Aitzol_Berasategi",
)
PLASMA = (  # /usr/share/wallpapers/NAME/contents/images/WxH.jpg
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut",
    "Path", "summer_1am",
)


def _pixels(path: Path) -> int:
    width, _, height = path.stem.partition("x")
    return int(width) * int(height) if width.isdigit() and height.isdigit() else 0


def gather(out: Path) -> list[Path]:
    """Download and unpack ``PACKAGES`` in a temporary folder and copy the 25 photographs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=root, check=True, capture_output=True)
        for deb in root.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "x")], check=True)
        sources = [root / "x/usr/share/backgrounds" / f"{name}.jpg" for name in LOMIRI]
        for name in PLASMA:
            sizes = (root / "x/usr/share/wallpapers" / name / "contents/images").glob("*.jpg")
            sources.append(max(sizes, key=_pixels).rename(root / f"{name}.jpg"))
        return [Path(shutil.copy(source, out / source.name)) for source in sources]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to copy the photographs into")
    args = parser.parse_args(argv)
    try:
        copied = gather(args.out)
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        detail = getattr(e, "stderr", b"") or b""
        print(f"Could not gather the photographs ({e}{': ' + detail.decode().strip() if detail else ''}); "
              "this needs apt-get download and dpkg-deb on Debian or Ubuntu.", file=sys.stderr)
        return 1
    print(f"{len(copied)} photographs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
