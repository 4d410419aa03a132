"""Half-precision storage: a checkpoint's weights in float16, re-evaluated, both sets of metrics in its sidecar.

float16 keeps 11 significant bits: a trained ViT's logits move by about 1e-3, so its accuracy barely moves; the
``halve`` command measures that change instead of assuming it. The views cast the weights back to float32 on load
(``vitviz.checkpoints.load_state``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vitviz.checkpoints import load_state, read_weights, save_checkpoint
from vitviz.models import create_vit

from .accuracy import evaluate_checkpoint
from .config import ConfigError, EvaluateConfig, HalveConfig, init_sidecar

__all__ = ["halve_checkpoint"]

# The splits a checkpoint is scored on when its sidecar records none: training's own final splits.
_SPLITS = {"jigsaw": ("train", "val"), "classifier": ("val", "test")}


def halve_checkpoint(config: HalveConfig, command: Sequence[str] = ()) -> tuple[Path, dict[str, dict[str, float]],
                                                                                 dict[str, dict[str, float]]]:
    """Rewrite ``config.checkpoint`` with float16 weights; its sidecar's ``metrics`` become the float16 model's
    (on the splits it recorded, same evaluation sets) and ``storage`` keeps the float32 ones.

    Returns the weights path and the metrics before and after, per split.

    Raises:
        ConfigError: not a readable jigsaw or classifier checkpoint, or already stored in float16.
    """
    path, sidecar = init_sidecar(config.checkpoint)
    kind = sidecar.get("kind")
    if kind not in _SPLITS:
        raise ConfigError(f"{path.stem} is a {kind or 'non-vitviz'} checkpoint; halve takes a jigsaw or classifier "
                          "checkpoint", "checkpoint")
    state = read_weights(path)
    if all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point()):
        raise ConfigError(f"{path.stem} is already stored in float16", "checkpoint")
    splits = [s for s in (sidecar.get("metrics") or {}) if s in ("train", "val", "test")] or list(_SPLITS[kind])

    images = int(sidecar.get("training", {}).get("config", {}).get("eval_images", EvaluateConfig.images))

    def scores() -> dict[str, dict[str, float]]:  # training's own evaluation sets: its seed and its image count
        return {split: evaluate_checkpoint(EvaluateConfig(checkpoint=str(path), split=split, images=images,
                                                          device=config.device))[2] for split in splits}

    before = scores()
    grid = sidecar.get("jigsaw", {}).get("grid")
    model = create_vit(sidecar["architecture"], jigsaw_grid=tuple(grid) if grid else None)
    load_state(model, state, path.name)
    sidecar = {**sidecar, "storage": {"dtype": "float16", "command": list(command), "metrics_float32": before}}
    save_checkpoint(model, path, sidecar, dtype=torch.float16)  # written first: the float16 file is what is scored
    after = scores()
    save_checkpoint(model, path, {**sidecar, "metrics": after}, dtype=torch.float16)
    return path, before, after
