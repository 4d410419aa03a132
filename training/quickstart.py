"""The starter models the app shows first: a jigsaw model and two shapes classifiers.

``starter-jigsaw`` learns the jigsaw pretext on photos mixed with procedural images (32 px,
8 px patches: a 4x4 grid); a model that only saw the ~20 bundled photos memorises them, the
procedural half makes it place patches of photos it never saw. ``starter-shapes`` is fine-tuned
from it on ``shapes`` at 64 px (an 8x8 grid: its blocks never saw positions, so the coarser
pretext grid is no obstacle), and ``starter-shapes-scratch`` gets the same fine-tune, the same
number of steps, from random weights.

``--patch-size 16`` makes the second generation at the patch size of the ViT paper: ``starter-jigsaw-16``,
``starter-shapes-16`` and ``starter-shapes-16-scratch``, all at 112 px with 16 px patches (a 7x7 grid of patches a
person can recognise). At 7x7 a model shown photos learns where each photo's contents sit rather than how patches
meet, so ``starter-jigsaw-16`` learns on procedural images alone, with the seam loss (``training.seams``). The
bundled ``starter-jigsaw-16`` then went on (``pretrain --init``) on ``procedural:1+textured:1``, dead leaves cut
out of photo crops in random layouts (README: the second generation).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from .config import ConfigError, FinetuneConfig, PretrainConfig, QuickstartConfig
from .train import RunResult, train

__all__ = ["quickstart", "starter_configs"]

# Shares of the total budget; the rest covers start-up and the final evaluations.
_PRETRAIN_SHARE = 0.42
_FINETUNE_SHARE = 0.26
# Per patch size: the pretext's and the fine-tune's image sides (grids 4x4 and 8x8 for 8 px patches; 7x7 for 16 px).
_IMAGE_SIZES = {8: (32, 64), 16: (112, 112)}


def starter_configs(config: QuickstartConfig) -> tuple[PretrainConfig, FinetuneConfig]:
    """The pretrain and fine-tune configurations (the scratch run is the fine-tune without ``init``).

    Raises:
        ConfigError: a patch size other than 8 or 16.
    """
    if config.patch_size not in _IMAGE_SIZES:
        raise ConfigError(f"--patch-size {config.patch_size} is not one of 8, 16 (the two starter generations)",
                          "patch_size")
    pretext_size, finetune_size = _IMAGE_SIZES[config.patch_size]
    suffix = "" if config.patch_size == 8 else f"-{config.patch_size}"
    common = dict(out_dir=config.out_dir, run_dir=config.run_dir, model=config.model, patch_size=config.patch_size,
                  seed=config.seed, device=config.device, threads=config.threads, steps=0, batch_size=64)
    pretext = dict(data="photos:1+procedural:1") if config.patch_size == 8 else dict(data="procedural", seam_loss=1.0)
    pretrain = PretrainConfig(name=f"starter-jigsaw{suffix}", eval_data="photos", image_size=pretext_size,
                              minutes=_PRETRAIN_SHARE * config.minutes, lr=2e-3, eval_every=250, **pretext, **common)
    finetune = FinetuneConfig(name=f"starter-shapes{suffix}", data="shapes", image_size=finetune_size, init="",
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
    results.append(train(replace(finetune, name=f"{finetune.name}-scratch", minutes=0.0,
                                 steps=results[1].steps), command))
    if not results[-1].interrupted:
        _print_comparison(results)
    return results


def _print_comparison(results: list[RunResult]) -> None:
    jigsaw, shapes, scratch = results
    print("\nstarter models")
    for split, label in (("train", "training photos"), ("val", "held-out photos")):
        m = jigsaw.metrics[split]
        print(f"  {jigsaw.checkpoint.stem} on {label}: per-patch {m['patch_acc_argmax']:.3f} (argmax) / "
              f"{m['patch_acc_hungarian']:.3f} (Hungarian), exact puzzles {m['puzzle_acc_argmax']:.3f} / "
              f"{m['puzzle_acc_hungarian']:.3f}; chance per patch {m['chance']:.4f}")
    for result, name in ((shapes, f"{shapes.checkpoint.stem} (from {jigsaw.checkpoint.stem})"),
                         (scratch, scratch.checkpoint.stem)):
        m = result.metrics["test"]
        print(f"  {name}: test accuracy {m['accuracy']:.3f} after {result.steps} steps; chance {m['chance']:.3f}")
