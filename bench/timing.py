"""What the benchmarks share: the clock and the devices they run on, a timer that waits for CUDA, the models timed."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn

from vitviz.models import load_model
from vitviz.registry import BUNDLED_MODELS_DIR

Clock = Callable[[], float]


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` (repeatable) and ``--clock``."""
    parser.add_argument("--device", action="append", help="cpu, cuda, ... (default: cpu, and cuda when available)")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="process: CPU time of this process, steadier than wall time on a machine shared with other jobs")


def clock_and_devices(args: argparse.Namespace) -> tuple[Clock, list[torch.device]]:
    """The clock ``--clock`` names and the devices ``--device`` lists (the CPU, and CUDA when there is one)."""
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    devices = [torch.device(d) for d in (args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])])]
    return clock, devices


def timer(device: torch.device, clock: Clock) -> Callable[[Callable[[], object]], float]:
    """A function that runs ``fn`` and returns its duration on ``clock``, CUDA work included."""
    def run(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return clock() - start
    return run


def interleaved_medians(methods: dict[str, Callable[[], object]], timed: Callable[[Callable[[], object]], float],
                        repeats: int, warmups: int = 1) -> dict[str, float]:
    """Each method's median duration over ``repeats`` rounds, after ``warmups`` untimed ones. The methods take
    turns within a round, so that load from other processes falls on all of them alike."""
    for _ in range(warmups):
        for fn in methods.values():
            fn()
    samples: dict[str, list[float]] = {key: [] for key in methods}
    for _ in range(repeats):
        for key, fn in methods.items():
            samples[key].append(timed(fn))
    return {key: statistics.median(values) for key, values in samples.items()}


def models_to_time(starters: Sequence[str]) -> list[tuple[str, Callable[[], nn.Module]]]:
    """``vit_base_patch16_224`` (random weights: the timing does not depend on them), then each of the ``starters``
    checkpoints that ``models/`` holds, as (name, loader) on the CPU; a missing starter is said and skipped."""
    models = [("vit_base_patch16_224", lambda: load_model("random:vit_base_patch16_224", device="cpu"))]
    for name in starters:
        if (BUNDLED_MODELS_DIR / f"{name}.safetensors").exists():
            models.append((name, lambda name=name: load_model(name, device="cpu")))
        else:
            print(f"note: {BUNDLED_MODELS_DIR / name}.safetensors is not there yet; {name} is skipped")
    return models
