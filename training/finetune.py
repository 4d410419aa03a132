"""What a fine-tune trains (``--mode``) and how its images are augmented (``--augment``).

Modes:

- ``full``: every weight;
- ``last``: the last ``--train-blocks`` blocks, the final norm (and attention pool) and the head; the earlier
  blocks are frozen, so autograd keeps no activations for them and the backward pass stops at the first
  trained block;
- ``probe`` (a linear probe): the head alone, on the frozen model's pooled features (``forward_head(...,
  pre_logits=True)``) of the training and evaluation images, each image's computed once and kept on the device
  (``ProbeFeatures``): after that, a step is one small matrix product, so the run takes seconds.

``--augment timm`` draws the training images unaugmented and passes each through
``timm.data.create_transform(is_training=True)`` for the starting model's data config (``TimmAugmented``):
random resized crops of ``TIMM_SCALE`` of the area, flips and colour jitter, with the start model's
interpolation. Its random numbers come from the run's generator, so a batch stays a function of it.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from vitviz.data import ImageBatches

from .accuracy import normalize_images

__all__ = ["MODES", "ProbeFeatures", "TIMM_SCALE", "TimmAugmented", "set_trainable", "timm_train_transform"]

MODES = ("full", "last", "probe")
# Crops of 25-100% of the area, not timm's ImageNet default of 8-100%: a short fine-tune on a few hundred
# images of your own learns little from crops that miss the object.
TIMM_SCALE = (0.25, 1.0)


def set_trainable(vit: nn.Module, mode: str, train_blocks: int = 0) -> list[str]:
    """Freeze what ``mode`` keeps fixed; returns the names of the parameters left to train."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    vit.requires_grad_(mode == "full")
    if mode != "full":
        trained: list[nn.Module] = [vit.head, *([vit.head_dist] if hasattr(vit, "head_dist") else [])]
        if mode == "last":
            trained += [*vit.blocks[len(vit.blocks) - train_blocks:], vit.norm, vit.fc_norm]
            trained += [vit.attn_pool] if getattr(vit, "attn_pool", None) is not None else []
        for module in trained:
            module.requires_grad_(True)
    return [name for name, p in vit.named_parameters() if p.requires_grad]


class ProbeFeatures:
    """A frozen model's pooled features ``[n, D]`` (what its head reads) for sets of images, kept on its device.

    Each distinct image goes through the model once: an image met again (the same pixels, as when a data set's
    test split is its val split) reuses its features.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], batch_size: int):
        self.model, self.mean, self.std, self.batch_size = model, mean, std, batch_size
        self.device = next(model.parameters()).device
        self._seen: dict[bytes, Tensor] = {}  # an image's digest -> its features (D,)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        """Features ``[n, D]`` of images ``[n, 3, S, S]`` in [0, 1], in eval mode, batch by batch."""
        keys = [hashlib.blake2b(image.cpu().numpy().tobytes(), digest_size=16).digest() for image in images]
        new, pending = [], set()  # rows whose image is not seen yet, the first of any repeats
        for i, key in enumerate(keys):
            if key not in self._seen and key not in pending:
                new.append(i)
                pending.add(key)
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(new), self.batch_size):
            rows = new[start:start + self.batch_size]
            batch = normalize_images(images[rows].to(self.device), self.mean, self.std)
            tokens = self.model.forward_features(batch)  # (b, N, D)
            pooled = self.model.forward_head(tokens, pre_logits=True).float()  # (b, D)
            self._seen.update(zip((keys[i] for i in rows), pooled))
        self.model.train(was_training)
        return torch.stack([self._seen[key] for key in keys])  # (n, D)


def timm_train_transform(data_config: dict[str, Any], image_size: int) -> Callable[[Image.Image], Tensor]:
    """timm's training transform for ``data_config`` at ``image_size``, unnormalised: PIL image to uint8 ``[3, S, S]``."""
    from timm.data import create_transform

    config = {k: data_config[k] for k in ("interpolation", "mean", "std", "crop_pct", "crop_mode") if k in data_config}
    return create_transform(input_size=(3, image_size, image_size), is_training=True, scale=TIMM_SCALE,
                            normalize=False, **config)


class TimmAugmented(ImageBatches):
    """The unaugmented items of ``data``, each augmented by a timm training ``transform`` on the CPU."""

    def __init__(self, data: ImageBatches, transform: Callable[[Image.Image], Tensor]):
        super().__init__(data.name, data.split, data.image_size, data.device, data.class_names, data.size,
                         data.skipped, data.notes)
        self.data, self.transform = data, transform

    def _draw(self, n: int, generator: torch.Generator, augment: bool) -> tuple[Tensor, Tensor]:
        images, labels = self.data._draw(n, generator, augment=False)  # (n, 3, S, S) in [0, 1]
        if not augment:
            return images, labels
        # timm's transforms draw from Python's and torch's global generators: seed both from ours, then put them back
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        pixels = images.mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (n, S, S, 3)
        state = random.getstate()
        random.seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = [self.transform(Image.fromarray(np.ascontiguousarray(p))) for p in pixels]  # each (3, S, S) uint8
        random.setstate(state)
        return torch.stack(out).to(images.device).float().div_(255), labels
