"""How far edge matching alone gets on the jigsaw puzzles a checkpoint is scored on: a classical solver as a yardstick.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/jigsaw_baseline.py [--grid 7] [--size 112] [--folder DIR]

No learning: each pair of patches is scored by how well one's border, extrapolated one pixel across the seam,
predicts the other's (the prediction-based compatibility of Pomeranz, Shemesh and Ben-Shahar, "A fully automated
greedy square jigsaw puzzle solver", CVPR 2011), and a greedy placer grows the picture from one patch, always
adding the patch and free cell, inside the known grid, that fit their placed neighbours best. Puzzles with many
flat or repeated patches (sky, fog, a plain wall) have no single right answer from the pixels, so its per-patch
accuracy says how much of a set can be solved from edges at this grid, and so how hard the set is. Per-patch
accuracy counts patches left at their own grid position (the metric of ``bench/jigsaw_accuracy.py``); the images
are those of ``bench/jigsaw_accuracy.py`` (held-out ``photos`` crops, the sample photos, ``--folder`` DIR).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz.images import fit_to_model, load_image  # noqa: E402
from vitviz.patches import patchify  # noqa: E402
from vitviz.samples import HELD_OUT_PHOTOS, PHOTO_NAMES, load_sample  # noqa: E402


def patches_of(image: np.ndarray, grid: int) -> np.ndarray:
    """``[N, p, p, 3]`` float patches of an ``[S, S, 3]`` image, row-major (``vitviz.patches.patchify``), N = grid**2."""
    p = image.shape[0] // grid
    tokens = patchify(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64)).permute(2, 0, 1)[None], p)[0]
    return tokens.reshape(grid * grid, 3, p, p).permute(0, 2, 3, 1).numpy()  # (N, p, p, 3)


def dissimilarities(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``right[i, j]``: j placed right of i; ``below[i, j]``: j placed below i; ``[N, N]``, lower is better.

    Prediction-based: each side's last two pixel columns (rows) extrapolate the next one; the squared error of
    both predictions across the seam, summed (Pomeranz et al. 2011, eq. 2, made symmetric).
    """
    def seam(a_last, a_prev, b_first, b_next):
        ahead = 2 * a_last - a_prev  # (N, p, 3): i's prediction of the column after it
        back = 2 * b_first - b_next  # j's prediction of the column before it
        return (((ahead[:, None] - b_first[None]) ** 2).sum((2, 3))
                + ((back[None] - a_last[:, None]) ** 2).sum((2, 3)))

    right = seam(patches[:, :, -1], patches[:, :, -2], patches[:, :, 0], patches[:, :, 1])
    below = seam(patches[:, -1], patches[:, -2], patches[:, 0], patches[:, 1])
    for d in (right, below):
        np.fill_diagonal(d, np.inf)
    return right, below


def solve(patches: np.ndarray, grid: int) -> np.ndarray:
    """Greedy placement: ``[N]``, the grid position (row-major) given to each patch."""
    n = len(patches)
    right, below = dissimilarities(patches)
    # Normalise each score by the second-best alternative, so a seam that is much better than the rest counts more.
    def norm(d):
        row = np.sort(d, axis=1)[:, 1:2] + 1e-9
        col = np.sort(d, axis=0)[1:2, :] + 1e-9
        return d / np.minimum(row, col)

    right, below = norm(right), norm(below)
    best_right, best_left = right.argmin(1), right.argmin(0)
    best_below, best_above = below.argmin(1), below.argmin(0)
    buddies = ((best_left[best_right] == np.arange(n)).astype(int) + (best_above[best_below] == np.arange(n)))
    seed = int(np.argmax(buddies - 1e-3 * np.minimum(right.min(1), below.min(1))))
    cells = {(0, 0): seed}
    placed = {seed}
    while len(placed) < n:
        rows = [r for r, _ in cells]
        cols = [c for _, c in cells]
        free = {(r + dr, c + dc) for r, c in cells for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0))} - set(cells)
        free = [(r, c) for r, c in free
                if max(rows + [r]) - min(rows + [r]) < grid and max(cols + [c]) - min(cols + [c]) < grid]
        unplaced = np.array([k for k in range(n) if k not in placed])
        best = (np.inf, None, None)
        for r, c in free:
            terms = []
            if (r, c - 1) in cells:
                terms.append(right[cells[(r, c - 1)], unplaced])
            if (r, c + 1) in cells:
                terms.append(right[unplaced, cells[(r, c + 1)]])
            if (r - 1, c) in cells:
                terms.append(below[cells[(r - 1, c)], unplaced])
            if (r + 1, c) in cells:
                terms.append(below[unplaced, cells[(r + 1, c)]])
            score = np.mean(terms, axis=0) / len(terms)  # cells with more placed neighbours first
            k = int(np.argmin(score))
            if score[k] < best[0]:
                best = (score[k], (r, c), int(unplaced[k]))
        _, cell, patch = best
        cells[cell] = patch
        placed.add(patch)
    top, left = min(r for r, _ in cells), min(c for _, c in cells)
    position = np.empty(n, dtype=int)
    for (r, c), k in cells.items():
        position[k] = (r - top) * grid + (c - left)
    return position


def accuracy(images: Sequence[np.ndarray], grid: int, seed: int = 0) -> tuple[float, float]:
    """Per-patch accuracy and exact-puzzle rate of ``solve`` over ``images`` (each ``[S, S, 3]``).

    Each puzzle is shuffled first (seeded), so no tie between equal patches is broken by their true order.
    """
    rng = np.random.default_rng(seed)
    hits = []
    for image in images:
        order = rng.permutation(grid * grid)  # shuffled token k carries the patch of position order[k]
        hits.append(solve(patches_of(image, grid)[order], grid) == order)
    return float(np.mean([h.mean() for h in hits])), float(np.mean([h.all() for h in hits]))


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=7, help="patches per side")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels (a multiple of --grid)")
    parser.add_argument("--images", type=int, default=100, help="held-out photos crops")
    parser.add_argument("--seed", type=int, default=0, help="the crops and the shuffles")
    parser.add_argument("--folder", type=Path, action="append", default=[],
                        help="a folder of photos no data set uses (repeatable)")
    args = parser.parse_args(argv)
    if args.size % args.grid:
        parser.error(f"--size {args.size} is not a multiple of --grid {args.grid}")

    from vitviz.data import fixed_set

    def as_array(image) -> np.ndarray:
        return np.asarray(fit_to_model(image, (args.size, args.size)), dtype=np.float64) / 255

    crops, _, _ = fixed_set("photos", "test", args.size, args.images, seed=args.seed)
    sets = {
        f"photos test crops ({args.size} px)": [c.permute(1, 2, 0).double().numpy() for c in crops],
        f"sample photos held out from training ({', '.join(HELD_OUT_PHOTOS)})":
            [as_array(load_sample(n)) for n in HELD_OUT_PHOTOS],
        "sample photos seen in training": [as_array(load_sample(n)) for n in PHOTO_NAMES if n not in HELD_OUT_PHOTOS],
    }
    for folder in args.folder:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        sets[f"photos in {folder.name}/, in no data set"] = [as_array(load_image(p)) for p in paths]
    lines = [f"Edge-matching greedy solver, {args.grid}x{args.grid} grid at {args.size} px "
             f"(chance per patch {1 / args.grid ** 2:.3f})", "",
             "| images | n | per-patch accuracy | exact puzzle |", "|---|---:|---:|---:|"]
    for label, images in sets.items():
        patch, puzzle = accuracy(images, args.grid, args.seed)
        lines.append(f"| {label} | {len(images)} | {patch:.3f} | {puzzle:.3f} |")
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
