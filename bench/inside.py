"""What the Layers view costs: the inside-the-blocks functions against a plain forward in the same process.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/inside.py [--repeats 7] [--knockout-repeats 3] [--clock process] [--threads N]

Batch 1, on the CPU (and CUDA when there is one), for ``vit_base_patch16_224`` (random weights) and the
starter checkpoints in ``models/`` when they exist:

1. From one recorded forward (every block's tokens and attention): the logit lens pooled and per patch
   after every block, the PCA of the block the view shows (and, beside it, of every block), every
   token's norm after every block, the outliers and their attention share, against a plain forward
   pass. Aim: at most 1.3x on ``vit_base_patch16_224``.
2. Every head knocked out, one at a time (144 for ``vit_base_patch16_224``): seconds, and how many plain
   forward passes that is. Aim: under 15 s on a 2-core CPU.
3. Attention flow (exact maximum flows, one per patch): seconds. Aim: under 2 s on the starter models.

Each figure is the median of the timed runs after a warm-up; the methods are interleaved within a
repeat so that load from other processes falls on all of them alike; on a shared CPU, ``--clock
process`` (CPU time of this process, summed over its threads) is steadier than wall time. Wall
seconds are printed beside every knock-out and flow figure.
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

from bench.timing import add_options, clock_and_devices, interleaved_medians, models_to_time, timer  # noqa: E402
from vitviz import inside  # noqa: E402
from vitviz.attention import attention_flow, capture  # noqa: E402

STARTERS = ("starter-shapes", "starter-shapes-scratch", "starter-jigsaw")
INSIDE_AIM, KNOCKOUT_AIM_S, FLOW_AIM_S = 1.3, 15.0, 2.0


def read_everything(model: torch.nn.Module, images: torch.Tensor, pca_blocks: str = "last") -> None:
    """What the Layers view computes from its one forward pass: the logit lens of every block (pooled and
    per patch), the PCA of the block shown (the last; ``pca_blocks="every"``: of every block), every
    token's norm after every block, the outliers and the attention share they receive."""
    record = inside.record_blocks(model, images)
    prefix = model.num_prefix_tokens
    if getattr(model, "num_classes", 0):
        inside.pooled_lens(model, record.tokens)
        inside.patch_lens(model, record.tokens)
    for block in record.tokens[0] if pca_blocks == "every" else record.tokens[0, -1:]:  # (N, D) per block
        inside.token_pca(block[prefix:], 3)
    outliers = inside.norm_outliers(record.norms)
    rows = inside.class_attention(record.attentions, prefix, model.cls_token is not None)
    inside.outlier_attention_share(rows.mean(dim=2), outliers)


def bench_inside(model: torch.nn.Module, images: torch.Tensor, device: torch.device, repeats: int,
                 clock: Callable[[], float]) -> dict[str, float]:
    def forward() -> None:
        with torch.no_grad():
            model(images)

    methods = {"forward": forward, "inside": lambda: read_everything(model, images),
               "every": lambda: read_everything(model, images, "every")}
    return interleaved_medians(methods, timer(device, clock), repeats)


def bench_knockout(model: torch.nn.Module, images: torch.Tensor, device: torch.device, repeats: int,
                   clock: Callable[[], float]) -> dict[str, float]:
    """Median seconds (chosen clock and wall) of all knock-outs, and of a forward pass timed beside each."""
    timed = timer(device, clock)

    def forward() -> None:
        with torch.no_grad():
            model(images)

    forward()
    forwards, knockouts, walls = [], [], []
    for _ in range(repeats):
        forwards.append(statistics.median(timed(forward) for _ in range(3)))
        start = time.perf_counter()
        knockouts.append(timed(lambda: inside.head_knockout(model, images, 0)))
        walls.append(time.perf_counter() - start)
    return {"forward": statistics.median(forwards), "knockout": statistics.median(knockouts),
            "wall": statistics.median(walls)}


def bench_flow(model: torch.nn.Module, images: torch.Tensor, repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    _, attentions = capture(model, images)
    grid = tuple(model.patch_embed.grid_size)
    times, walls = [], []
    for _ in range(repeats):
        start, wall = clock(), time.perf_counter()
        attention_flow(attentions, grid, model.num_prefix_tokens, model.cls_token is not None)
        times.append(clock() - start)
        walls.append(time.perf_counter() - wall)
    return {"flow": statistics.median(times), "wall": statistics.median(walls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the forward and the readings (median)")
    parser.add_argument("--knockout-repeats", type=int, default=3, help="timed runs of all knock-outs (median)")
    add_options(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock, devices = clock_and_devices(args)
    models = [(name, build()) for name, build in models_to_time(STARTERS)]

    print(f"{'model':<24} {'device':<6} {'forward ms':>10} {'lens+PCA+norms ms':>17} {'ratio':>6} "
          f"{'PCA of every block':>18} {'ratio':>6}   (aim <= {INSIDE_AIM})")
    for name, model in models:
        for device in devices:
            model.to(device)
            images = torch.randn(1, 3, *model.card.image_size, device=device)
            t = bench_inside(model, images, device, args.repeats, clock)
            print(f"{name:<24} {device.type:<6} {1000 * t['forward']:>10.1f} {1000 * t['inside']:>17.1f} "
                  f"{t['inside'] / t['forward']:>6.2f} {1000 * t['every']:>18.1f} {t['every'] / t['forward']:>6.2f}",
                  flush=True)

    print(f"\n{'head knock-out':<24} {'device':<6} {'heads':>5} {'forward ms':>10} {'all heads s':>11} {'= forwards':>10} "
          f"{'wall s':>7}   (aim < {KNOCKOUT_AIM_S:g} s)")
    for name, model in models:
        if not model.card.num_classes:
            continue
        for device in devices:
            model.to(device)
            images = torch.randn(1, 3, *model.card.image_size, device=device)
            k = bench_knockout(model, images, device, args.knockout_repeats, clock)
            print(f"{name:<24} {device.type:<6} {model.card.depth * model.card.num_heads:>5} {1000 * k['forward']:>10.1f} "
                  f"{k['knockout']:>11.2f} {k['knockout'] / k['forward']:>10.1f} {k['wall']:>7.2f}", flush=True)

    print(f"\n{'attention flow':<24} {'grid':>6} {'problems':>8} {'flow s':>8} {'wall s':>7}   (aim < {FLOW_AIM_S:g} s on the starters)")
    for name, model in models:
        model.to("cpu")
        images = torch.randn(1, 3, *model.card.image_size)
        gh, gw = model.card.grid_size
        f = bench_flow(model, images, 1 if name.startswith("vit_base") else 3, clock)
        print(f"{name:<24} {f'{gh}x{gw}':>6} {gh * gw:>8} {f['flow']:>8.2f} {f['wall']:>7.2f}", flush=True)

    print(f"\nbatch 1, {args.clock} clock; torch {torch.__version__}, {torch.get_num_threads()} CPU threads. "
          "Knock-out and flow on random inputs; vit_base_patch16_224 has random weights unless they are cached.")


if __name__ == "__main__":
    main()
