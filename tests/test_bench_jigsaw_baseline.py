"""bench/jigsaw_baseline.py: the edge-matching yardstick solves what edges decide, and only that."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "jigsaw_baseline.py"


@pytest.fixture(scope="module")
def baseline():
    spec = importlib.util.spec_from_file_location("jigsaw_baseline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smooth_field(size: int, seed: int) -> np.ndarray:
    """``[size, size, 3]`` in [0, 1]: a sum of random low-frequency waves, so every seam is continuous."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3))
    for _ in range(6):
        fy, fx, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi, 3)
        image += np.sin(2 * np.pi * (fy * y[..., None] + fx * x[..., None]) + phase)  # (size, size, 3)
    return (image - image.min()) / (image.max() - image.min())


def test_true_neighbours_have_the_lowest_seam_dissimilarity(baseline):
    grid = 5
    patches = baseline.patches_of(_smooth_field(80, 0), grid)
    right, below = baseline.dissimilarities(patches)
    for r in range(grid):
        for c in range(grid - 1):  # the patch right of (r, c) is the best right neighbour of (r, c)
            assert right[r * grid + c].argmin() == r * grid + c + 1
    for r in range(grid - 1):
        for c in range(grid):
            assert below[r * grid + c].argmin() == (r + 1) * grid + c
    # the score is the squared error of the one-pixel extrapolation across the seam, both ways (by hand for one pair)
    a, b = patches[0], patches[1]
    by_hand = ((2 * a[:, -1] - a[:, -2] - b[:, 0]) ** 2).sum() + ((2 * b[:, 0] - b[:, 1] - a[:, -1]) ** 2).sum()
    assert right[0, 1] == pytest.approx(by_hand)


def test_a_smooth_image_is_solved_whatever_the_shuffle_and_a_flat_one_is_not(baseline):
    images = [_smooth_field(112, seed) for seed in range(3)]
    assert baseline.accuracy(images, 7, seed=1) == (1.0, 1.0)
    assert baseline.accuracy(images, 7, seed=2) == (1.0, 1.0)
    # a flat grey image has no edges: its patches are interchangeable and the shuffle decides, near chance
    flat = [np.full((112, 112, 3), 0.5) for _ in range(20)]
    patch, puzzle = baseline.accuracy(flat, 7, seed=0)
    assert patch < 0.1 and puzzle == 0.0
