"""What the Attributions view costs: seconds per image of every attribution method.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attributions.py [--repeats 3] [--device cpu] [--threads N]

Batch 1, on the CPU and on CUDA when there is one, for ``vit_tiny_patch16_224`` (random weights,
a 14x14 grid) and the starter checkpoint ``models/starter-shapes.safetensors`` (an 8x8 grid) when it
exists. Integrated Gradients takes 50 path points, SmoothGrad and GradientSHAP 20 draws, occlusion
and feature ablation one pass per patch of the grid (plus the unperturbed one); forward passes of
the many-pass methods are batched 64 at a time. Each figure (and its ratio to a forward pass) is the median of ``--repeats`` timed
runs after one warm-up run; the methods are interleaved within a repeat so that load from other
processes falls on all of them alike. A plain forward pass is timed as the unit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz.attributions import METHODS  # noqa: E402
from vitviz.models import load_model  # noqa: E402
from vitviz.registry import BUNDLED_MODELS_DIR  # noqa: E402

STARTER = "starter-shapes"
# IG path points, SmoothGrad and GradientSHAP draws, forward rows per pass in the many-pass methods
SETTINGS = dict(path_points=50, draws=20, batch_size=64)


def _timed(device: torch.device, fn: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench_model(model: torch.nn.Module, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of a forward pass and of each method on one random model-ready image."""
    model = model.to(device).eval()
    height, width = model.card.image_size
    images = torch.randn(1, 3, height, width, device=device)

    def forward() -> None:
        with torch.no_grad():
            model(images)

    runs: dict[str, Callable[[], object]] = {"forward": forward}
    for name, cls in METHODS.items():
        method = cls(model)
        runs[name] = lambda method=method, options=cls.options_for(**SETTINGS): method.attribute(images, 0, **options)
    for fn in runs.values():
        fn()
    samples: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            samples[key].append(_timed(device, fn))
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument("--device", action="append", help="device(s) to time on (default: cpu, and cuda if present)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    models = ["random:vit_tiny_patch16_224"]
    if (BUNDLED_MODELS_DIR / f"{STARTER}.safetensors").exists():
        models.append(STARTER)
    else:
        print(f"({STARTER} is not in {BUNDLED_MODELS_DIR}: timing vit_tiny_patch16_224 only)")
    results = {}
    for name in models:
        model = load_model(name, device="cpu")
        grid = "x".join(map(str, model.card.grid_size))
        for device in devices:
            results[(f"{name} ({grid})", device)] = bench_model(model, torch.device(device), args.repeats)
    columns = list(results)
    header = ["seconds / image"] + [f"{model} {device}" for model, device in columns]
    # The ratio to a forward pass travels between machines and loads better than the seconds.
    rows = [[key] + [f"{results[column][key]:.4f} ({results[column][key] / results[column]['forward']:.1f}x)"
                     for column in columns] for key in ["forward", *METHODS]]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    threads = f"{torch.get_num_threads()} CPU threads"
    print(f"batch 1, median of {args.repeats}, {threads}; IG 50 steps, SmoothGrad/GradientSHAP 20 draws, "
          f"occlusion over the patch grid")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
