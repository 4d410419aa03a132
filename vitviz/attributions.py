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
        CAMAttribution            GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, EigenCAM,
                                  ScoreCAM, AblationCAM (through _PerChannelCAM)

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
    cam           Grad-CAM and its family, from the ``grad-cam`` package (``pytorch_grad_cam``) on one
                  block's first norm, its tokens reshaped to the patch grid (``cam_reshape_transform``):
                  the package's map on the grid (ReLU, min-max scaled to [0, 1]) is the patch map; the
                  pixel map is the package's own bilinear upsampling of it.

Baselines (the "absent" input that gradient and perturbation methods compare against):

    "mean"   zero in model-input space: every pixel at the normalisation mean, i.e. the per-channel
             mean of the data the normalisation was fitted on (ImageNet's for timm and vitviz models).
    "black"  a black image, ``(0 - mean) / std`` per channel after normalisation.
    tensor   any model-input tensor broadcastable to ``[1, 3, H, W]`` (e.g. another data set's mean).

Units differ between kinds (gradient x input, logit drops, attention flow); ``AttributionMaps.scaled``
puts every map on one scale [-1, 1] for side-by-side display.
"""

from __future__ import annotations

import copy
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
    "AblationCAM",
    "AttentionAttribution",
    "AttentionRollout",
    "AttributionMaps",
    "AttributionMethod",
    "BaselineLike",
    "CAMAttribution",
    "EigenCAM",
    "FeatureAblation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientAttribution",
    "GradientRollout",
    "GradientShap",
    "IntegratedGradients",
    "Kind",
    "LayerCAM",
    "METHODS",
    "Occlusion",
    "Option",
    "PerturbationAttribution",
    "Progress",
    "Relevance",
    "SETTINGS",
    "Saliency",
    "ScoreCAM",
    "Setting",
    "SmoothGrad",
    "TargetLike",
    "XGradCAM",
    "cam_reshape_transform",
    "method_by_name",
    "setting_users",
]

Kind = Literal["gradient", "perturbation", "attention", "cam"]
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
            layers = attention.rollout_layers(attentions, head_fusion, discard_ratio, start_layer)  # (L', B, N, N)
            return attention.rollout_row(layers, attention.class_query(self.card.has_class_token),
                                         _grid(inputs, self.card), self.card.num_prefix_tokens)  # the class row

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


# --- the CAM family, through the grad-cam package ------------------------------------------------------------------


def cam_reshape_transform(card: ModelCard, grid_size: Optional[tuple[int, int]] = None
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ``reshape_transform`` the grad-cam package takes for a ViT: tokens ``[B, N, D]`` to ``[B, D, gh, gw]``.

    The first ``card.num_prefix_tokens`` tokens (class token, distillation token, registers, in any
    number; none for a model without them) are dropped and the ``gh*gw`` patch tokens, in raster
    order, are laid out on the grid with one channel per embedding dimension: the layout of a CNN's
    feature map, which every grad-cam method reads (the package's ViT tutorial writes the same
    function for one class token on a 14x14 grid).

    Args:
        card: the model's card: its prefix tokens and, by default, its grid.
        grid_size: ``(gh, gw)`` of the images being explained; None is ``card.grid_size``.

    Returns:
        The transform. It raises ``ValueError`` for tokens that are not ``[B, P + gh*gw, D]``.
    """
    prefix = card.num_prefix_tokens
    gh, gw = card.grid_size if grid_size is None else grid_size

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[1] != prefix + gh * gw:
            raise ValueError(f"expected tokens [B, {prefix} + {gh}*{gw}, D] for {card.name}, "
                             f"got shape {tuple(tokens.shape)}")
        patches = tokens[:, prefix:]  # (B, gh*gw, D)
        return patches.reshape(len(tokens), gh, gw, tokens.shape[2]).permute(0, 3, 1, 2)  # (B, D, gh, gw)

    return reshape


class CAMAttribution(AttributionMethod):
    """Class activation maps from the ``grad-cam`` package (Gildenblat et al., ``pytorch_grad_cam``), on one block.

    Each method weighs the channels of a layer's patch tokens (the embedding dimensions, laid out
    on the grid by ``cam_reshape_transform``) and sums them into one map on the patch grid, which
    the package passes through a ReLU and min-max scales to [0, 1]. That grid map is the patch map;
    the pixel map is the package's own upsampling of it (``scale_cam_image``: bilinear, scaled
    again), the map the package returns when called on the model directly.

    The layer is block ``block``'s first norm (``norm1``; ``in_norm`` in timm's
    ``ParallelScalingBlock``), by default in the last block, as the package advises for ViTs: the
    class token reads the patch tokens through that block's attention, so its first norm's patch
    tokens carry the class score's gradient, while the last block's output patch tokens do not
    reach the class token at all.

    The package runs on a copy of the module tree that shares the model's weights (frozen, so a
    backward pass stores no parameter gradients): its hooks, and Ablation-CAM's temporary swap of
    the layer, stay off the model that every app session shares. Gradients reach the layer through
    the input, which is made to require them.
    """

    kind = "cam"
    cam_name: ClassVar[str]  # the grad-cam class, imported when first used (the package pulls in OpenCV)
    options = (Option("block", "block whose first norm is read (-1 is the last)", -1, -12, -1),)

    def attribute(self, images: torch.Tensor, target: TargetLike, *, block: int = -1,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            block: the block whose first norm is read (Python indexing: -1 is the last).
        """
        return self._cam(images, target, block, progress)

    def _cam(self, images: torch.Tensor, target: TargetLike, block: int, progress: Optional[Progress],
             extra_rows: int = 0, **arguments: object) -> AttributionMaps:
        """Run the grad-cam class ``cam_name`` on ``block``'s first norm.

        ``extra_rows``: forward rows per image beyond the first pass (one per channel for Score-CAM
        and Ablation-CAM), for ``progress``; ``arguments`` go to the class.
        """
        depth = len(self.model.blocks)
        if isinstance(block, bool) or not isinstance(block, int) or not -depth <= block < depth:
            raise ValueError(f"block {block!r} is not a block of {self.card.name}, which has {depth} "
                             f"(0 to {depth - 1}, or -{depth} to -1 from the end)")
        rows_per_image = 1 + extra_rows
        settings = {key: arguments.pop(key) for key in ("batch_size",) if key in arguments}

        def maths(inputs: torch.Tensor, targets: torch.Tensor, forward: Callable) -> torch.Tensor:
            import pytorch_grad_cam
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            grid = _grid(inputs, self.card)
            clone = _frozen_copy(self.model)
            counted = _CountedModel(clone, _CountingForward(clone, len(inputs) * rows_per_image, forward.progress))
            cam = getattr(pytorch_grad_cam, self.cam_name)(
                counted, target_layers=[_first_norm(clone.blocks[block])],
                reshape_transform=cam_reshape_transform(self.card, grid), **arguments)
            for key, value in settings.items():
                setattr(cam, key, value)  # Score-CAM reads its batch size as an attribute
            gh, gw = grid
            cam.get_target_width_height = lambda _inputs: (gw, gh)  # the map on the grid, not upsampled
            try:
                maps = cam(inputs, [ClassifierOutputTarget(int(t)) for t in targets])  # (B, gh, gw) in [0, 1]
            finally:
                cam.activations_and_grads.release()
            return torch.from_numpy(maps)

        return self._maps(images, target, progress, rows_per_image, maths)

    def _prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        # The copy's weights are frozen: the layer's gradient flows from the input.
        return inputs.requires_grad_(True) if self.needs_gradients else inputs

    def _read(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from pytorch_grad_cam.utils.image import scale_cam_image

        patch = output.float()  # (B, gh, gw)
        patch_size = self.card.patch_size
        size = (patch.shape[2] * patch_size, patch.shape[1] * patch_size)  # (W, H), as cv2 takes it
        # As the package's __call__: upsample each min-max scaled map, then min-max scale the result.
        pixel = scale_cam_image(scale_cam_image(patch.numpy(), size))  # (B, H, W)
        return patch, torch.from_numpy(pixel)


class GradCAM(CAMAttribution):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by the mean gradient of the target logit over the grid."""

    name = "Grad-CAM"
    cam_name = "GradCAM"
    needs_gradients = True


class GradCAMPlusPlus(CAMAttribution):
    """Grad-CAM++ (Chattopadhay et al. 2018): channel weights from positive gradients, with the second- and
    third-order terms of an exponential score, so that several instances of a class all count."""

    name = "Grad-CAM++"
    cam_name = "GradCAMPlusPlus"
    needs_gradients = True


class XGradCAM(CAMAttribution):
    """XGrad-CAM (Fu et al. 2020): channels weighted by the gradient times the activation, normalised by the
    channel's sum over the grid (the weights that make the map satisfy the paper's sensitivity and conservation)."""

    name = "XGrad-CAM"
    cam_name = "XGradCAM"
    needs_gradients = True


class LayerCAM(CAMAttribution):
    """LayerCAM (Jiang et al. 2021): each activation weighted by its own positive gradient, element by element
    (no averaging over the grid), then summed over channels."""

    name = "LayerCAM"
    cam_name = "LayerCAM"
    needs_gradients = True


class EigenCAM(CAMAttribution):
    """EigenCAM (Muhammad & Yeasin 2020): the patch tokens' projection on their first principal component.
    No gradient and no class: the same map for every target (which is only checked); the sign of a
    principal component is arbitrary, so the map may mark the background instead of the object."""

    name = "EigenCAM"
    cam_name = "EigenCAM"


class _PerChannelCAM(CAMAttribution):
    """The CAMs that run one forward pass per channel of the layer (``embed_dim`` per image) and no gradient."""

    options = (*CAMAttribution.options,
               Option("batch_size", "perturbed copies per forward pass", 32, 1, 256, setting="batch_size"))
    passes: ClassVar[int] = 1  # forward passes over the batch besides the per-channel ones

    def attribute(self, images: torch.Tensor, target: TargetLike, *, block: int = -1, batch_size: int = 32,
                  progress: Optional[Progress] = None) -> AttributionMaps:
        """Args:
            block: the block whose first norm is read (Python indexing: -1 is the last).
            batch_size: perturbed copies of one image per forward pass (it changes the speed, not the map).
        """
        _check_positive(batch_size=batch_size)
        return self._cam(images, target, block, progress, extra_rows=self.passes - 1 + self.card.embed_dim,
                         batch_size=batch_size, **self._arguments())

    def _arguments(self) -> dict[str, object]:
        """Keyword arguments of the grad-cam class beyond the model, layer and reshape."""
        return {}


class ScoreCAM(_PerChannelCAM):
    """Score-CAM (Wang et al. 2020): each channel, upsampled to the image and min-max scaled, masks the
    (normalised) input; the channel weights are the softmax over channels of the target logits of
    the masked inputs."""

    name = "Score-CAM"
    cam_name = "ScoreCAM"


class AblationCAM(_PerChannelCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): each channel's weight is the relative drop of the target logit,
    ``(y - y_k) / y``, when channel k of the layer's tokens (prefix tokens included) is ablated: set to zero
    when the layer's smallest value is zero, else far below it (the package's rule, for layers whose
    values can be negative, like a norm's). Uses the package's ViT ablation layer (``AblationLayerVit``);
    one pass more than Score-CAM, for the unablated scores."""

    name = "Ablation-CAM"
    cam_name = "AblationCAM"
    passes = 2

    def _arguments(self) -> dict[str, object]:
        from pytorch_grad_cam.ablation_layer import AblationLayerVit

        return {"ablation_layer": AblationLayerVit()}  # a fresh one per call: it holds the batch being ablated


METHODS.update({cls.name: cls for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, EigenCAM, ScoreCAM,
                                          AblationCAM)})


class _CountedModel(nn.Module):
    """``model`` behind a module whose forward counts rows for ``progress``; the model stays its child, so
    the package finds its layers, parameters and device through it."""

    def __init__(self, model: nn.Module, counter: _CountingForward):
        super().__init__()
        self.model = model
        self.counter = counter  # not a module: the model is registered once, above

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.counter(inputs)


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree whose parameters and buffers are the model's own storage (no weight is copied),
    its parameters frozen (``requires_grad=False``): hooks and layer swaps on it leave the model alone."""
    memo: dict[int, object] = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in model.parameters()}
    memo.update({id(b): b for b in model.buffers()})
    return copy.deepcopy(model, memo)


def _first_norm(block: nn.Module) -> nn.Module:
    """A block's first norm: ``norm1`` (timm's ``Block``, ``ResPostBlock``) or ``in_norm`` (``ParallelScalingBlock``)."""
    for name in ("norm1", "in_norm"):
        layer = getattr(block, name, None)
        if isinstance(layer, nn.Module):
            return layer
    raise ValueError(f"{type(block).__name__} has no first norm (norm1 or in_norm) for a CAM to read")
