"""The starter models the app shows first: a jigsaw model and two shapes classifiers.

``starter-jigsaw`` learns the jigsaw pretext on photos mixed with procedural images (32 px,
8 px patches: a 4x4 grid); a model that only saw the ~20 bundled photos memorises them, the
procedural half makes it place patches of photos it never saw. ``starter-shapes`` is fine-tuned
from it on ``shapes`` at 64 px (an 8x8 grid: its blocks never saw positions, so the coarser
pretext grid is no obstacle), and ``starter-shapes-scratch`` gets the same fine-tune, the same
number of steps, from random weights.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from .config import FinetuneConfig, PretrainConfig, QuickstartConfig
from .train import RunResult, train

__all__ = ["quickstart", "starter_configs"]

# Shares of the total budget; the rest covers start-up and the final evaluations.
_PRETRAIN_SHARE = 0.42
_FINETUNE_SHARE = 0.26


def starter_configs(config: QuickstartConfig) -> tuple[PretrainConfig, FinetuneConfig]:
    """The pretrain and fine-tune configurations (the scratch run is the fine-tune without ``init``)."""
    common = dict(out_dir=config.out_dir, run_dir=config.run_dir, model=config.model, patch_size=8,
                  seed=config.seed, device=config.device, threads=config.threads, steps=0, batch_size=64)
    pretrain = PretrainConfig(name="starter-jigsaw", data="photos:1+procedural:1", eval_data="photos",
                              image_size=32, minutes=_PRETRAIN_SHARE * config.minutes, lr=2e-3,
                              eval_every=250, **common)
    finetune = FinetuneConfig(name="starter-shapes", data="shapes", image_size=64, init="",
                              minutes=_FINETUNE_SHARE * config.minutes, lr=1e-3, eval_every=250,
                              **common)
    return pretrain, finetune


def quickstart(config: QuickstartConfig, command: Sequence[str] = ()) -> list[RunResult]:
    """Train the three starter models in turn; stops early (returning what ran) if one is interrupted."""
    pretrain, finetune = starter_configs(config)
    results = [train(pretrain, command)]
    if results[-1].interrupted:
        return results
    results.append(train(replace(finetune, init=str(results[0].checkpoint)), command))
    if results[-1].interrupted:
        return results
    # The same number of steps as the pretrained fine-tune: the comparison is at equal budget.
    results.append(train(replace(finetune, name="starter-shapes-scratch", minutes=0.0,
                                 steps=results[1].steps), command))
    _print_comparison(results)
    return results


def _print_comparison(results: list[RunResult]) -> None:
    jigsaw, shapes, scratch = results
    print("\nstarter models")
    for split, label in (("train", "training photos"), ("val", "held-out photos")):
        m = jigsaw.metrics[split]
        print(f"  starter-jigsaw on {label}: per-patch {m['patch_acc_argmax']:.3f} (argmax) / "
              f"{m['patch_acc_hungarian']:.3f} (Hungarian), exact puzzles {m['puzzle_acc_argmax']:.3f} / "
              f"{m['puzzle_acc_hungarian']:.3f}; chance per patch {m['chance']:.4f}")
    for result, name in ((shapes, "starter-shapes (from starter-jigsaw)"), (scratch, "starter-shapes-scratch")):
        m = result.metrics["test"]
        print(f"  {name}: test accuracy {m['accuracy']:.3f} after {result.steps} steps; chance {m['chance']:.3f}")
