"""Where a classifier's decision comes from: captum's attributions and the attention maps, one interface.

Every method is a class over one model whose ``attribute(images, target, ...)`` returns
``AttributionMaps``: a map per image at patch resolution ``[B, gh, gw]`` and at pixel resolution
``[B, H, W]`` for the target class. ``METHODS`` maps each display name to its class.

As in captum (``Attribution`` -> ``GradientAttribution`` / ``PerturbationAttribution`` -> method),
each method derives from the base class of its family, which reads its maps:

    AttributionMethod
        GradientAttribution       IntegratedGradients, Saliency, SmoothGrad, GradientShap
        PerturbationAttribution   Occlusion, FeatureAblation
        AttentionAttribution      AttentionRollout, GradientRollout, Relevance

Each method declares its tunable keyword options as data (``options``: ``Option`` entries with
their defaults, ranges and labels), some of them answering to a setting shared across methods
(``SETTINGS``: path points, draws, forward rows per pass). ``Method.options_for(draws=8, ...)``
turns shared settings into that method's keywords, so a caller never switches on the method's type.

``images`` are model-ready: ``[B, 3, H, W]`` normalised with the model's mean and std
(``vitviz.inputs.normalize``); the model is what ``vitviz.models.load_model`` returns (any module
with a vitviz ``ModelCard``), in eval mode. Images and targets are checked by ``vitviz.inputs``.
The maths runs on the model's device; the maps come back on the images' device. Scores are the
model's logits: attributions explain the target logit.

How each family's map is read:

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
from .card import ModelCard, model_card
from .inputs import TargetLike, check_images, require_autograd, resolve_targets
from .patches import grid_shape

__all__ = [
    "AttentionAttribution",
    "AttentionRollout",
    "AttributionMaps",
    "AttributionMethod",
    "BaselineLike",
    "FeatureAblation",
    "GradientAttribution",
    "GradientRollout",
    "GradientShap",
    "IntegratedGradients",
    "Kind",
    "METHODS",
    "Occlusion",
    "Option",
    "PerturbationAttribution",
    "Progress",
    "Relevance",
    "SETTINGS",
    "Saliency",
    "Setting",
    "SmoothGrad",
    "TargetLike",
    "method_by_name",
    "setting_users",
]

Kind = Literal["gradient", "perturbation", "attention"]
BaselineLike = Union[Literal["mean", "black"], torch.Tensor]
Progress = Callable[[float], None]  # called with the fraction of the work done, in [0, 1]
Number = Union[int, float]

# Settings shared across methods: one value a caller sets once (a widget, a command-line flag) that
# each method taking it reads under its own keyword. Each maps to a label for the caller to show.
Setting = Literal["path_points", "draws", "batch_size"]
SETTINGS: dict[Setting, str] = {
    "path_points": "path points",  # points on the path from the baseline (one pass each)
    "draws": "draws",  # random draws per image: noisy copies, (baseline, point) samples
    "batch_size": "forward rows per pass",  # how many perturbed or sampled images one forward pass takes
}

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


@dataclass(frozen=True)
class Option:
    """One tunable keyword of a method's ``attribute``, as data: a page makes a widget of it, a command a flag."""

    name: str  # the keyword ``attribute`` takes
    label: str  # what it sets, in a few words
    default: Number  # ``attribute``'s own default
    low: Number  # the smallest value worth offering (the method may accept smaller)
    high: Number  # the largest value worth offering
    setting: Optional[Setting] = None  # the shared setting it answers to, if any


class AttributionMethod:
    """The interface: a model's forward function and ``attribute(images, target, ...) -> AttributionMaps``.

    Each family (``GradientAttribution``, ``PerturbationAttribution``, ``AttentionAttribution``) sets
    ``kind`` and reads its maths' output into maps; each method sets ``name`` (the display name) and
    ``options``, and implements ``attribute`` with its own keyword options: it validates them, then
    hands its maths to ``_maps``.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    options: ClassVar[tuple[Option, ...]] = ()  # the tunable keywords of ``attribute``
    needs_gradients: ClassVar[bool] = False  # backpropagates: refused inside torch.inference_mode()

    @classmethod
    def passes(cls, card: ModelCard, **options: Number) -> float:
        """About how many plain forward passes of one image this method costs with ``options`` (the
        keywords of ``attribute``): the images it runs the model on, a backward pass counted as two
        forwards. What a page multiplies by one forward's seconds to say how long a map will take."""
        return float(cls._rows(card, **options)) * (3.0 if cls.needs_gradients else 1.0)

    @classmethod
    def _rows(cls, card: ModelCard, **options: Number) -> int:
        """How many images per input image the method runs the model on (``_maps``' ``rows_per_image``)."""
        return 1

    @classmethod
    def options_for(cls, **settings: Number) -> dict[str, Number]:
        """This method's ``attribute`` keywords for settings shared across methods.

        E.g. ``SmoothGrad.options_for(path_points=50, draws=8)`` is ``{"nt_samples": 8}`` and
        ``Saliency.options_for(draws=8)`` is ``{}``: a caller passes every setting to every method.

        Raises:
            ValueError: a setting that is not a key of ``SETTINGS``.
        """
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(SETTINGS)}")
        return {option.name: settings[option.setting] for option in cls.options if option.setting in settings}

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

        ``maths`` returns what the family's ``_read`` takes. ``forward`` is ``forward_func`` counting
        the rows it is run on; ``rows_per_image`` is how many the method runs in all, for ``progress``.
        """
        if self.needs_gradients:
            require_autograd(self.name)
        inputs = check_images(self.model, images)
        targets = resolve_targets(target, len(inputs), self.card.num_classes, device=inputs.device)
        forward = _CountingForward(self.forward_func, len(inputs) * rows_per_image, progress)
        with torch.enable_grad():  # the same maps inside the caller's torch.no_grad() as outside it
            output = maths(self._prepare(inputs), targets, forward)
        patch, pixel = self._read(output)  # (B, gh, gw), (B, H, W)
        if progress is not None:
            progress(1.0)
        return AttributionMaps(self.name, self.kind, targets.to(images.device),
                               patch.detach().to(images.device), pixel.detach().to(images.device))

    def _prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """The checked inputs as the maths takes them."""
        return inputs

    def _read(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The maths' output as maps: patch ``[B, gh, gw]`` and pixel ``[B, H, W]``."""
        raise NotImplementedError


class GradientAttribution(AttributionMethod):
    """Gradient methods (captum's ``GradientAttribution``): per-pixel, per-channel attributions that add up.

    The pixel map sums the channels; the patch map sums each patch's pixels.
    """

    kind = "gradient"
    needs_gradients = True

    def _prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.requires_grad_(True)  # captum would set it anyway, with a warning

    def _read(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixel = output.detach().float().sum(dim=1)  # (B, 3, H, W) -> (B, H, W)
        patch_size = self.card.patch_size
        return _patch_pool(pixel, patch_size) * patch_size ** 2, pixel  # sum over each patch


class PerturbationAttribution(AttributionMethod):
    """Perturbation methods (captum's ``PerturbationAttribution``): the target logit's drop when a patch is
    replaced by the baseline. The pixel map is the mean over channels; the patch map the mean over each patch.
    """

    kind = "perturbation"

    def _read(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixel = output.detach().float().mean(dim=1)  # (B, 3, H, W) -> (B, H, W)
        return _patch_pool(pixel, self.card.patch_size), pixel  # mean over each patch


class AttentionAttribution(AttributionMethod):
    """Attention maps (``vitviz.attention``), computed on the patch grid: the pixel map repeats each
    patch's value over its pixels."""

    kind = "attention"

    def _read(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patch = output.float()  # (B, gh, gw)
        patch_size = self.card.patch_size
        return patch, patch.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)  # (B, H, W)


class IntegratedGradients(GradientAttribution):
    """Integrated Gradients (Sundararajan et al. 2017): gradients along the straight path from a baseline."""

    name = "Integrated Gradients"
    options = (Option("n_steps", "path points", 50, 4, 200, setting="path_points"),
               Option("internal_batch_size", "path points per forward pass", 32, 1, 256, setting="batch_size"))

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
            return ig.attribute(inputs, baselines=_baseline(baseline, inputs, self.card), target=targets,
                                n_steps=n_steps, method=method, internal_batch_size=internal_batch_size)

        return self._maps(images, target, progress, self._rows(self.card, n_steps=n_steps), maths)

    @classmethod
    def _rows(cls, card: ModelCard, n_steps: int = 50, **_: Number) -> int:
        return int(n_steps)


class Saliency(GradientAttribution):
    """Saliency (Simonyan et al. 2013): the absolute gradient of the target logit, per pixel and channel."""

    name = "Saliency"

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return captum_attr.Saliency(forward).attribute(inputs, target=targets, abs=True)

        return self._maps(images, target, progress, 1, maths)


class SmoothGrad(GradientAttribution):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies, captum's ``NoiseTunnel``."""

    name = "SmoothGrad"
    options = (Option("nt_samples", "noisy copies per image", 20, 2, 100, setting="draws"),
               Option("noise_level", "noise, as a fraction of the value range", 0.15, 0.0, 0.5),
               Option("internal_batch_size", "noisy copies per forward pass", 16, 1, 256, setting="batch_size"))

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

        return self._maps(images, target, progress, self._rows(self.card, nt_samples=nt_samples), maths)

    @classmethod
    def _rows(cls, card: ModelCard, nt_samples: int = 20, **_: Number) -> int:
        return int(nt_samples)


class GradientShap(GradientAttribution):
    """GradientSHAP (Lundberg & Lee 2017): gradient x (input - baseline) at random points between
    the input and baselines drawn from a distribution, averaged: expected gradients."""

    name = "GradientSHAP"
    options = (Option("n_samples", "(baseline, point) draws per image", 20, 2, 100, setting="draws"),
               Option("stdevs", "noise added to the input at each draw", 0.0, 0.0, 1.0),
               Option("internal_batch_size", "draws per forward pass", 16, 1, 256, setting="batch_size"))

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
            distribution = torch.cat([_baseline(b, inputs, self.card)[:1] for b in baselines])  # (K, 3, H, W)
            shap = captum_attr.GradientShap(forward)
            total = torch.zeros_like(inputs)
            # captum draws all samples in one pass; chunks of draws, weighted by size, give the same expectation.
            with _seeded(seed):
                for start in range(0, n_samples, internal_batch_size):
                    chunk = min(internal_batch_size, n_samples - start)
                    total += chunk * shap.attribute(inputs, distribution, n_samples=chunk, stdevs=stdevs,
                                                    target=targets)
            return total / n_samples

        return self._maps(images, target, progress, self._rows(self.card, n_samples=n_samples), maths)

    @classmethod
    def _rows(cls, card: ModelCard, n_samples: int = 20, **_: Number) -> int:
        return int(n_samples)


class Occlusion(PerturbationAttribution):
    """Occlusion (Zeiler & Fergus 2014): slide a patch-sized baseline window; record the logit's drop."""

    name = "Occlusion"
    options = (Option("perturbations_per_eval", "occluded copies per forward pass", 16, 1, 256,
                      setting="batch_size"),)

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
        check_images(self.model, images)

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return captum_attr.Occlusion(forward).attribute(
                inputs, sliding_window_shapes=(3, p, p), strides=(3, stride, stride),
                baselines=_baseline(baseline, inputs, self.card), target=targets,
                perturbations_per_eval=perturbations_per_eval)

        return self._maps(images, target, progress, self._rows(self.card, stride=stride), maths)

    @classmethod
    def _rows(cls, card: ModelCard, stride: Optional[int] = None, **_: Number) -> int:
        (height, width), p = card.image_size, card.patch_size
        stride = p if stride is None else stride
        return 1 + ((height - p) // stride + 1) * ((width - p) // stride + 1)  # the image, then one per window


class FeatureAblation(PerturbationAttribution):
    """Feature ablation with one feature per patch: replace each patch by the baseline; record the logit's drop."""

    name = "Feature ablation"
    options = (Option("perturbations_per_eval", "ablated copies per forward pass", 16, 1, 256, setting="batch_size"),)

    def attribute(self, images: torch.Tensor, target: TargetLike, *, baseline: BaselineLike = "mean",
                  perturbations_per_eval: int = 16, progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            perturbations_per_eval: ablated copies per image per forward pass.
        """
        _check_positive(perturbations_per_eval=perturbations_per_eval)
        p = self.card.patch_size
        gh, gw = grid_shape(tuple(check_images(self.model, images).shape[-2:]), p)

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            ids = torch.arange(gh * gw, device=inputs.device).view(1, 1, gh, gw)
            feature_mask = ids.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)  # (1, 1, H, W): patch index
            return captum_attr.FeatureAblation(forward).attribute(
                inputs, baselines=_baseline(baseline, inputs, self.card), target=targets, feature_mask=feature_mask,
                perturbations_per_eval=perturbations_per_eval)

        return self._maps(images, target, progress, self._rows(self.card), maths)

    @classmethod
    def _rows(cls, card: ModelCard, **_: Number) -> int:
        return 1 + card.grid_size[0] * card.grid_size[1]  # the image, then one per patch


class AttentionRollout(AttentionAttribution):
    """Attention rollout (Abnar & Zuidema 2020), ``vitviz.attention.rollout``: class-agnostic, the
    target is only checked; the class token's row (the patch rows' mean without one)."""

    name = "Attention rollout"
    options = (Option("discard_ratio", "share of the smallest attention entries dropped", 0.0, 0.0, 0.95),)

    def attribute(self, images: torch.Tensor, target: TargetLike, *,
                  head_fusion: Literal["mean", "max", "min"] = "mean", discard_ratio: float = 0.0,
                  start_layer: int = 0, progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            _, attentions = attention.capture(self.model, inputs)
            matrix = attention.rollout(attentions, head_fusion, discard_ratio, start_layer)  # (B, N, N)
            return attention.class_map(matrix, _grid(inputs, self.card), self.card.num_prefix_tokens,
                                       self.card.has_class_token)

        return self._maps(images, target, progress, 1, maths)


class GradientRollout(AttentionAttribution):
    """Gradient rollout, ``vitviz.attention.grad_rollout``: rollout of attention x its gradient for the target."""

    name = "Gradient rollout"
    needs_gradients = True
    options = (Option("discard_ratio", "share of the smallest weighted entries dropped", 0.0, 0.0, 0.95),)

    def attribute(self, images: torch.Tensor, target: TargetLike, *, discard_ratio: float = 0.0,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            return attention.grad_rollout(self.model, inputs, targets, discard_ratio)

        return self._maps(images, target, progress, 1, maths)


class Relevance(AttentionAttribution):
    """Transformer relevance (Chefer et al. 2021), ``vitviz.attention.relevance``, for the target."""

    name = "Relevance"
    needs_gradients = True

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


def setting_users(setting: Setting) -> list[tuple[type[AttributionMethod], Option]]:
    """The methods that take a shared setting, each with the option that answers to it (``METHODS`` order).

    Raises:
        ValueError: a setting that is not a key of ``SETTINGS``.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
    return [(cls, option) for cls in METHODS.values() for option in cls.options if option.setting == setting]


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


def _baseline(baseline: BaselineLike, inputs: torch.Tensor, card: ModelCard) -> torch.Tensor:
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
        mean = torch.tensor(card.mean, device=inputs.device, dtype=inputs.dtype)
        std = torch.tensor(card.std, device=inputs.device, dtype=inputs.dtype)
        return ((0 - mean) / std).view(1, 3, 1, 1).expand(shape).clone()
    raise ValueError(f"baseline must be 'mean', 'black' or a tensor, not {baseline!r}")


def _patch_pool(pixel: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The mean of each patch: ``[B, H, W]`` to ``[B, gh, gw]``."""
    return F.avg_pool2d(pixel[:, None], patch_size)[:, 0]


def _scale(maps: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` maps, each divided by its largest absolute value (zero maps left at zero)."""
    peak = maps.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak.view(-1, *([1] * (maps.ndim - 1)))


def _grid(inputs: torch.Tensor, card: ModelCard) -> tuple[int, int]:
    return grid_shape(tuple(inputs.shape[-2:]), card.patch_size)


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive whole number, not {value!r}")
