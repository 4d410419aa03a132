"""Where a classifier's decision comes from: captum's attributions and the attention maps, one interface.

Every method is a class over one model (``AttributionMethod``) whose ``attribute(images, target, ...)``
returns ``AttributionMaps``: a map per image at patch resolution ``[B, gh, gw]`` and at pixel
resolution ``[B, H, W]`` for the target class. ``METHODS`` maps each display name to its class.

``images`` are model-ready: ``[B, 3, H, W]`` normalised with the model's mean and std
(``vitviz.models.normalize``); the model is what ``vitviz.models.load_model`` returns (any module
with a vitviz ``ModelCard``), in eval mode. The maths runs on the model's device; the maps come
back on the images' device. Scores are the model's logits: attributions explain the target logit.

How each kind of map is read:

    gradient      Integrated Gradients, Saliency, SmoothGrad, GradientSHAP: captum's per-pixel,
                  per-channel attributions; pixel map = sum over channels, patch map = sum over
                  the patch's pixels (these attributions add up: IG's sum to f(x) - f(baseline)).
    perturbation  Occlusion, Feature ablation: the drop of the target logit when a patch is
                  replaced by the baseline; pixel map = mean over channels (each pixel carries the
                  drop of the windows over it), patch map = mean over the patch's pixels.
    attention     attention rollout, gradient rollout, relevance (``vitviz.attention``): computed
                  on the patch grid; the pixel map repeats each patch's value over its pixels.

Baselines (the "absent" input that gradient and perturbation methods compare against):

    "mean"   zero in model-input space: every pixel at the normalisation mean, i.e. the per-channel
             mean of the data the normalisation was fitted on (ImageNet's for timm and vitviz models).
    "black"  a black image, ``(0 - mean) / std`` per channel after normalisation.
    tensor   any model-input tensor broadcastable to ``[1, 3, H, W]`` (e.g. another data set's mean).

Units differ between kinds (gradient x input, logit drops, attention flow); ``AttributionMaps.scaled``
puts every map on one scale [-1, 1] for side-by-side display.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Iterator, Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from captum import attr as captum_attr
from torch import nn

from . import attention
from .models import ModelCard, model_card
from .patches import grid_shape

__all__ = [
    "AttentionRollout",
    "AttributionMaps",
    "AttributionMethod",
    "BaselineLike",
    "FeatureAblation",
    "GradientRollout",
    "GradientShap",
    "IntegratedGradients",
    "Kind",
    "METHODS",
    "Occlusion",
    "Progress",
    "Relevance",
    "Saliency",
    "SmoothGrad",
    "TargetLike",
    "method_by_name",
]

Kind = Literal["gradient", "perturbation", "attention"]
BaselineLike = Union[Literal["mean", "black"], torch.Tensor]
TargetLike = Union[int, Sequence[int], torch.Tensor]
Progress = Callable[[float], None]  # called with the fraction of the work done, in [0, 1]

# numpy's and torch's global generators are shared by every Streamlit session's thread: one seeded
# method at a time, so that two sessions' draws do not interleave.
_SEEDED = threading.Lock()


@dataclass(frozen=True)
class AttributionMaps:
    """One method's maps for a batch of images and their target classes."""

    method: str  # the display name, a key of METHODS
    kind: Kind
    target: torch.Tensor  # (B,) long: the class each map explains
    patch: torch.Tensor  # (B, gh, gw)
    pixel: torch.Tensor  # (B, H, W)

    def scaled(self) -> "AttributionMaps":
        """Each map divided by its largest absolute value, so maps of every method share one scale [-1, 1].

        An all-zero map stays zero.
        """
        return replace(self, patch=_scale(self.patch), pixel=_scale(self.pixel))


class AttributionMethod:
    """The interface: a model's forward function and ``attribute(images, target, ...) -> AttributionMaps``.

    Subclasses set ``name`` (the display name) and ``kind``, and implement ``attribute`` with their
    own keyword options; each validates its options, then hands its maths to ``_maps``.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]

    def __init__(self, model: nn.Module):
        self.card: ModelCard = model_card(model)
        if self.card.num_classes == 0:
            raise ValueError(f"{self.card.name} has no classifier head (no class names): there is no class to explain")
        self.model = model
        self.forward_func: Callable[[torch.Tensor], torch.Tensor] = model  # logits (B, C)

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Maps of ``images [B, 3, H, W]`` (model-ready) for ``target`` (one class, or one per image)."""
        raise NotImplementedError

    def _maps(self, images: torch.Tensor, target: TargetLike, progress: Optional[Progress], rows_per_image: int,
              maths: Callable[[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]
              ) -> AttributionMaps:
        """Validate, move to the model's device, run ``maths(inputs, targets, forward)``, read the maps back.

        ``maths`` returns captum's attributions ``[B, 3, H, W]`` (gradient and perturbation kinds) or a
        patch map ``[B, gh, gw]`` (attention kind). ``forward`` is ``forward_func`` counting the rows
        it is run on; ``rows_per_image`` is how many the method runs in all, for ``progress``.
        """
        inputs = self._check_images(images)
        targets = self._check_target(target, len(inputs))
        patch_size = self.card.patch_size
        forward = _CountingForward(self.forward_func, len(inputs) * rows_per_image, progress)
        if self.kind == "attention":
            patch = maths(inputs, targets, forward).float()  # (B, gh, gw)
            pixel = patch.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)  # (B, H, W)
        else:
            if self.kind == "gradient":
                inputs.requires_grad_(True)  # captum would set it anyway, with a warning
            attributions = maths(inputs, targets, forward).detach().float()  # (B, 3, H, W)
            if self.kind == "gradient":
                pixel = attributions.sum(dim=1)  # (B, H, W)
                patch = _patch_pool(pixel, patch_size) * patch_size ** 2  # sum over each patch
            else:
                pixel = attributions.mean(dim=1)
                patch = _patch_pool(pixel, patch_size)  # mean over each patch
        if progress is not None:
            progress(1.0)
        return AttributionMaps(self.name, self.kind, targets.to(images.device),
                               patch.detach().to(images.device), pixel.detach().to(images.device))

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            raise ValueError(f"{self.card.name} is in training mode (dropout would alter the maps): call model.eval()")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {getattr(images, 'shape', type(images).__name__)}")
        if not images.dtype.is_floating_point:
            raise ValueError(f"expected model-ready float images, got {images.dtype}")
        grid_shape(tuple(images.shape[-2:]), self.card.patch_size)  # raises for a size the patches do not tile
        return images.detach().to(_device(self.model))

    def _check_target(self, target: TargetLike, batch: int) -> torch.Tensor:
        """``[B]`` long class indices on the model's device from an int, a sequence or a tensor."""
        if isinstance(target, bool):
            raise ValueError(f"target must be a class index, not {target!r}")
        if isinstance(target, int):
            targets = torch.full((batch,), target, dtype=torch.long)
        else:
            targets = torch.as_tensor(target)
            if targets.ndim == 0:
                targets = targets.reshape(1).expand(batch)
            if targets.shape != (batch,) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
                raise ValueError(f"target must be a class index or {batch} of them, got {target!r}")
        bad = targets[(targets < 0) | (targets >= self.card.num_classes)]
        if bad.numel():
            raise ValueError(f"target class {bad[0].item()} is out of range for {self.card.num_classes} classes")
        return targets.to(device=_device(self.model), dtype=torch.long)

    def _baseline(self, baseline: BaselineLike, inputs: torch.Tensor) -> torch.Tensor:
        """The baseline as a model-input tensor ``[1, 3, H, W]`` (or ``[B, 3, H, W]`` if given so)."""
        shape = (1, *inputs.shape[1:])
        if isinstance(baseline, torch.Tensor):
            given = baseline.to(inputs)
            per_image = given.ndim == 4 and len(given) == len(inputs)
            try:
                return torch.broadcast_to(given, inputs.shape if per_image else shape).clone()
            except RuntimeError:
                raise ValueError(f"a baseline of shape {tuple(baseline.shape)} does not broadcast to "
                                 f"{tuple(inputs.shape)}") from None
        if baseline == "mean":
            return torch.zeros(shape, device=inputs.device, dtype=inputs.dtype)
        if baseline == "black":
            mean = torch.tensor(self.card.mean, device=inputs.device, dtype=inputs.dtype)
            std = torch.tensor(self.card.std, device=inputs.device, dtype=inputs.dtype)
            return ((0 - mean) / std).view(1, 3, 1, 1).expand(shape).clone()
        raise ValueError(f"baseline must be 'mean', 'black' or a tensor, not {baseline!r}")


class IntegratedGradients(AttributionMethod):
    """Integrated Gradients (Sundararajan et al. 2017): gradients along the straight path from a baseline."""

    name = "Integrated Gradients"
    kind = "gradient"

    def attribute(self, images: torch.Tensor, target: TargetLike, *, baseline: BaselineLike = "mean",
                  n_steps: int = 50, method: Literal["gausslegendre", "riemann_trapezoid", "riemann_middle"] =
                  "gausslegendre", internal_batch_size: int = 32,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            n_steps: points on the path (one forward and backward pass each).
            method: captum's quadrature rule along the path.
            internal_batch_size: path points per forward pass, over all images.
        """
        _check_positive(n_steps=n_steps, internal_batch_size=internal_batch_size)

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            ig = captum_attr.IntegratedGradients(forward)
            return ig.attribute(inputs, baselines=self._baseline(baseline, inputs), target=targets,
                                n_steps=n_steps, method=method, internal_batch_size=internal_batch_size)

        return self._maps(images, target, progress, n_steps, maths)


class Saliency(AttributionMethod):
    """Saliency (Simonyan et al. 2013): the absolute gradient of the target logit, per pixel and channel."""

    name = "Saliency"
    kind = "gradient"

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return captum_attr.Saliency(forward).attribute(inputs, target=targets, abs=True)

        return self._maps(images, target, progress, 1, maths)


class SmoothGrad(AttributionMethod):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies, captum's ``NoiseTunnel``."""

    name = "SmoothGrad"
    kind = "gradient"

    def attribute(self, images: torch.Tensor, target: TargetLike, *, nt_samples: int = 20,
                  noise_level: float = 0.15, internal_batch_size: int = 16, seed: int = 0,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            nt_samples: noisy copies per image.
            noise_level: the noise's standard deviation as a fraction of the batch's value range
                (the paper's 10-20%); pass one image at a time for maps that do not depend on the batch.
            internal_batch_size: noisy copies per image per forward pass.
            seed: the noise is drawn from this seed (the maps are reproducible).
        """
        _check_positive(nt_samples=nt_samples, internal_batch_size=internal_batch_size)
        if not noise_level >= 0:
            raise ValueError(f"noise_level must be non-negative, not {noise_level}")

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            stdev = noise_level * (inputs.max() - inputs.min()).item()
            tunnel = captum_attr.NoiseTunnel(captum_attr.Saliency(forward))
            with _seeded(seed):
                return tunnel.attribute(inputs, nt_type="smoothgrad", nt_samples=nt_samples,
                                        nt_samples_batch_size=min(internal_batch_size, nt_samples),
                                        stdevs=stdev, target=targets, abs=True)

        return self._maps(images, target, progress, nt_samples, maths)


class GradientShap(AttributionMethod):
    """GradientSHAP (Lundberg & Lee 2017): gradient x (input - baseline) at random points between
    the input and baselines drawn from a distribution, averaged: expected gradients."""

    name = "GradientSHAP"
    kind = "gradient"

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  baselines: Sequence[BaselineLike] = ("mean", "black"), n_samples: int = 20,
                  stdevs: float = 0.0, internal_batch_size: int = 16, seed: int = 0,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            baselines: the baseline distribution (each entry as the module docstring describes).
            n_samples: random (baseline, point on the path) draws per image.
            stdevs: standard deviation of the noise added to the input at each draw.
            internal_batch_size: draws per image per forward pass.
            seed: the draws come from this seed (the maps are reproducible).
        """
        _check_positive(n_samples=n_samples, internal_batch_size=internal_batch_size)
        if len(baselines) == 0:
            raise ValueError("baselines must name at least one baseline")

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            distribution = torch.cat([self._baseline(b, inputs)[:1] for b in baselines])  # (K, 3, H, W)
            shap = captum_attr.GradientShap(forward)
            total = torch.zeros_like(inputs)
            # captum draws all samples in one pass; chunks of draws, weighted by size, give the same expectation.
            with _seeded(seed):
                for start in range(0, n_samples, internal_batch_size):
                    chunk = min(internal_batch_size, n_samples - start)
                    total += chunk * shap.attribute(inputs, distribution, n_samples=chunk, stdevs=stdevs,
                                                    target=targets)
            return total / n_samples

        return self._maps(images, target, progress, n_samples, maths)


class Occlusion(AttributionMethod):
    """Occlusion (Zeiler & Fergus 2014): slide a patch-sized baseline window; record the logit's drop."""

    name = "Occlusion"
    kind = "perturbation"

    def attribute(self, images: torch.Tensor, target: TargetLike, *, baseline: BaselineLike = "mean",
                  stride: Optional[int] = None, perturbations_per_eval: int = 16,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            stride: window step in pixels; the patch size (default) slides over the patch grid, a
                smaller one overlaps windows for a finer pixel map.
            perturbations_per_eval: occluded copies per image per forward pass.
        """
        p = self.card.patch_size
        stride = p if stride is None else stride
        _check_positive(stride=stride, perturbations_per_eval=perturbations_per_eval)
        if stride > p:
            raise ValueError(f"stride {stride} is larger than the {p}-pixel window: some pixels would never be occluded")
        height, width = self._check_images(images).shape[-2:]
        windows = ((height - p) // stride + 1) * ((width - p) // stride + 1)

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return captum_attr.Occlusion(forward).attribute(
                inputs, sliding_window_shapes=(3, p, p), strides=(3, stride, stride),
                baselines=self._baseline(baseline, inputs), target=targets,
                perturbations_per_eval=perturbations_per_eval)

        return self._maps(images, target, progress, 1 + windows, maths)


class FeatureAblation(AttributionMethod):
    """Feature ablation with one feature per patch: replace each patch by the baseline; record the logit's drop."""

    name = "Feature ablation"
    kind = "perturbation"

    def attribute(self, images: torch.Tensor, target: TargetLike, *, baseline: BaselineLike = "mean",
                  perturbations_per_eval: int = 16, progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            perturbations_per_eval: ablated copies per image per forward pass.
        """
        _check_positive(perturbations_per_eval=perturbations_per_eval)
        p = self.card.patch_size
        gh, gw = grid_shape(tuple(self._check_images(images).shape[-2:]), p)

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            ids = torch.arange(gh * gw, device=inputs.device).view(1, 1, gh, gw)
            feature_mask = ids.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)  # (1, 1, H, W): patch index
            return captum_attr.FeatureAblation(forward).attribute(
                inputs, baselines=self._baseline(baseline, inputs), target=targets, feature_mask=feature_mask,
                perturbations_per_eval=perturbations_per_eval)

        return self._maps(images, target, progress, 1 + gh * gw, maths)


class AttentionRollout(AttributionMethod):
    """Attention rollout (Abnar & Zuidema 2020), ``vitviz.attention.rollout``: class-agnostic, the
    target is only checked; the class token's row (the patch rows' mean without one)."""

    name = "Attention rollout"
    kind = "attention"

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  head_fusion: Literal["mean", "max", "min"] = "mean", discard_ratio: float = 0.0,
                  start_layer: int = 0, progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            _, attentions = attention.capture(self.model, inputs)
            matrix = attention.rollout(attentions, head_fusion, discard_ratio, start_layer)  # (B, N, N)
            return attention.class_map(matrix, _grid(inputs, self.card), self.card.num_prefix_tokens,
                                       self.card.has_class_token)

        return self._maps(images, target, progress, 1, maths)


class GradientRollout(AttributionMethod):
    """Gradient rollout, ``vitviz.attention.grad_rollout``: rollout of attention x its gradient for the target."""

    name = "Gradient rollout"
    kind = "attention"

    def attribute(self, images: torch.Tensor, target: TargetLike, *, discard_ratio: float = 0.0,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return attention.grad_rollout(self.model, inputs, targets, discard_ratio)

        return self._maps(images, target, progress, 1, maths)


class Relevance(AttributionMethod):
    """Transformer relevance (Chefer et al. 2021), ``vitviz.attention.relevance``, for the target."""

    name = "Relevance"
    kind = "attention"

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return attention.relevance(self.model, inputs, targets)

        return self._maps(images, target, progress, 1, maths)


METHODS: dict[str, type[AttributionMethod]] = {
    cls.name: cls
    for cls in (IntegratedGradients, Saliency, SmoothGrad, GradientShap, Occlusion, FeatureAblation,
                AttentionRollout, GradientRollout, Relevance)
}


def method_by_name(name: str) -> type[AttributionMethod]:
    """The class of a display name, or of its slug (lower case, hyphens: ``integrated-gradients``)."""
    wanted = name.strip().lower().replace(" ", "-")
    for display, cls in METHODS.items():
        if wanted == display.lower().replace(" ", "-"):
            return cls
    slugs = ", ".join(display.lower().replace(" ", "-") for display in METHODS)
    raise ValueError(f"unknown attribution method {name!r}; known: {slugs}")


class _CountingForward:
    """``forward_func`` that counts the rows it runs and reports the fraction of ``total`` done."""

    def __init__(self, forward_func: Callable[[torch.Tensor], torch.Tensor], total: int,
                 progress: Optional[Progress]):
        self.forward_func, self.total, self.progress, self.done = forward_func, total, progress, 0

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.forward_func(inputs)
        self.done += len(inputs)
        if self.progress is not None:
            self.progress(min(self.done / self.total, 1.0))
        return logits


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run with torch's and numpy's global generators seeded (captum draws from both), then restore them."""
    with _SEEDED, torch.random.fork_rng():
        state = np.random.get_state()
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(state)


def _patch_pool(pixel: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The mean of each patch: ``[B, H, W]`` to ``[B, gh, gw]``."""
    return F.avg_pool2d(pixel[:, None], patch_size)[:, 0]


def _scale(maps: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` maps, each divided by its largest absolute value (zero maps left at zero)."""
    peak = maps.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak.view(-1, *([1] * (maps.ndim - 1)))


def _grid(inputs: torch.Tensor, card: ModelCard) -> tuple[int, int]:
    return grid_shape(tuple(inputs.shape[-2:]), card.patch_size)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive whole number, not {value!r}")
