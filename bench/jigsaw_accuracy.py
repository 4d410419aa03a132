"""How well a jigsaw checkpoint puts shuffled patches back: argmax against Hungarian decoding.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/jigsaw_accuracy.py [--checkpoint starter-jigsaw] [--images 100]

Per-patch accuracy, exact-puzzle rate and mean displacement (grid distance, in patches) on
``--images`` held-out ``photos`` crops (``vitviz.data.fixed_set("photos", "test", size, n)``:
crops of photos the model never trained on) and on the sample photos (``vitviz.samples``), each
resized and centre-cropped to the model's input size as the app shows them, split into the photos
held out from training and the others; and, with ``--folder DIR`` (repeatable), every image in DIR shown the
same way: photos that no data set uses. Every image gets one seeded full shuffle (``--seed``) and
``--drop`` of its patch tokens hidden from the attention keys (0 by default, as in evaluation).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz.images import load_image  # noqa: E402
from vitviz.inputs import model_pixels  # noqa: E402
from vitviz.jigsaw import jigsaw_checkpoints, jigsaw_metrics, position_logits, shuffle_permutation  # noqa: E402
from vitviz.models import load_model  # noqa: E402
from vitviz.registry import checkpoint_dirs  # noqa: E402
from vitviz.samples import HELD_OUT_PHOTOS, PHOTO_NAMES, load_sample  # noqa: E402

COLUMNS = ("patch_acc", "puzzle_acc", "displacement")


def find_jigsaw_checkpoint(ref: str) -> str:
    """``ref`` if it names a jigsaw checkpoint (by name or path), else exit with what to do."""
    path = Path(ref).expanduser()
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            sys.exit(f"No checkpoint file at {path}.")
        return str(path)
    if ref not in jigsaw_checkpoints():
        searched = ", ".join(str(d) for d in checkpoint_dirs())
        hint = " Train it with: python -m training quickstart" if ref == "starter-jigsaw" else ""
        sys.exit(f"No jigsaw checkpoint named {ref!r} in {searched}.{hint}")
    return ref


@torch.no_grad()
def measure(model: torch.nn.Module, images: torch.Tensor, seed: int, drop: float,
            batch_size: int = 256) -> dict[str, float]:
    """``jigsaw_metrics`` (both decoders, with displacement) of ``model`` on ``images [n, 3, H, W]`` in [0, 1]."""
    grid = tuple(model.card.grid_size)
    generator = torch.Generator().manual_seed(seed)
    permutations = shuffle_permutation(grid[0] * grid[1], generator, batch_size=len(images))  # (n, N)
    logits = torch.cat([
        position_logits(model, images[start:start + batch_size], permutations[start:start + batch_size],
                        drop_fraction=drop, generator=generator).float().cpu()
        for start in range(0, len(images), batch_size)
    ])  # (n, N, N)
    return jigsaw_metrics(logits, permutations, grid_size=grid)


def sample_photos(names: Sequence[str], model: torch.nn.Module) -> torch.Tensor:
    """The named sample photos as the app shows them to ``model``: ``[n, 3, H, W]`` in [0, 1] on its device."""
    return torch.cat([model_pixels(load_sample(name), model) for name in names])


def folder_photos(folder: Path, model: torch.nn.Module) -> torch.Tensor:
    """Every image in ``folder`` (sorted by name) as the app shows it to ``model``: ``[n, 3, H, W]`` in [0, 1]."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not paths:
        sys.exit(f"No .jpg, .png or .webp images in {folder}.")
    return torch.cat([model_pixels(load_image(path), model) for path in paths])


def table(rows: dict[str, tuple[int, dict[str, float]]], name: str, chance: float) -> str:
    """Markdown: one row per image set; argmax / Hungarian in each cell."""
    lines = [
        f"Jigsaw accuracy of `{name}` (argmax / Hungarian; chance per patch {chance:.3f})",
        "",
        "| images | n | per-patch accuracy | exact puzzle | mean displacement (patches) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, (count, m) in rows.items():
        cells = [f"{m[f'{c}_argmax']:.3f} / {m[f'{c}_hungarian']:.3f}" for c in COLUMNS]
        lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="starter-jigsaw", help="a jigsaw checkpoint's name or .safetensors path")
    parser.add_argument("--images", type=int, default=100, help="held-out photos crops")
    parser.add_argument("--seed", type=int, default=0, help="the crops and the shuffles")
    parser.add_argument("--drop", type=float, default=0.0, help="fraction of patch tokens hidden from the keys")
    parser.add_argument("--folder", type=Path, action="append", default=[],
                        help="a folder of photos no data set uses (repeatable)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps; the app's default when omitted")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be at least 1, got {args.images}")

    from vitviz.data import fixed_set  # the held-out split

    model = load_model(find_jigsaw_checkpoint(args.checkpoint), device=args.device)
    card = model.card
    if not card.has_jigsaw_head:
        sys.exit(f"{args.checkpoint} has no jigsaw head; pass a jigsaw checkpoint with --checkpoint.")
    if card.image_size[0] != card.image_size[1]:
        sys.exit(f"{card.name} takes {card.image_size[0]}x{card.image_size[1]} images; the photos crops are square.")
    crops, _, _ = fixed_set("photos", "test", card.image_size[0], args.images, seed=args.seed)
    seen = [name for name in PHOTO_NAMES if name not in HELD_OUT_PHOTOS]
    sets = {
        f"photos test crops ({card.image_size[0]} px)": crops,
        f"sample photos held out from training ({', '.join(HELD_OUT_PHOTOS)})": sample_photos(HELD_OUT_PHOTOS, model),
        "sample photos seen in training (other crops of them)": sample_photos(seen, model),
    }
    for folder in args.folder:
        sets[f"photos in {folder.name}/, in no data set"] = folder_photos(folder, model)
    rows = {label: (len(images), measure(model, images, args.seed, args.drop)) for label, images in sets.items()}
    report = table(rows, card.name, 1.0 / (card.grid_size[0] * card.grid_size[1]))
    print(report)
    return report


if __name__ == "__main__":
    main()
