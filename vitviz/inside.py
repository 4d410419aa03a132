"""Inside the blocks: what the residual stream holds after each block, and which heads a prediction needs.

Notation as in ``vitviz.attention``: L blocks of H heads, N = P + gh*gw tokens (P prefix tokens: class
token first, then a distillation token or registers; then the patches in raster order), width D,
C classes. ``tokens`` is the residual stream after every block, before the model's final norm,
``[B, L, N, D]``: entry l is the output of block l (0-based), the input of block l+1. Functions that
run the model take model-ready ``images`` ``[B, 3, H, W]`` (normalised, checked by
``vitviz.inputs.check_images``) and a timm ``VisionTransformer`` in eval mode.

    record_blocks         one forward pass: the output, every block's tokens, every block's attention
    logit_lens            the final norm and head read after each block (nostalgebraist 2020): ``[B, L, C]``
    pooled_lens           the same, from recorded tokens
    patch_lens            each patch token read by the head on its own: its class at each depth
    settling_layer        the first block from which a class stays the top-1 to the end
    token_pca             a block's patch tokens on their first principal components, as colours (DINO, DINOv2)
    TokenStats            the moments of many tokens, to fit one PCA over several images
    foreground_mask       the first component thresholded
    token_norms           ``||x_l[i]||`` for every token after every block (Darcet et al. 2024)
    norm_outliers         tokens whose norm is above median + k robust standard deviations
    class_attention       each head's class-token attention row in every block, prefix tokens included
    outlier_attention_share   the share of the class token's attention the flagged tokens receive
    head_knockout         the target's probability change when one head at a time is silenced: ``[L, H]``
    head_knockout_effects the same with the logit change and the intact values
    rank_correlation      Spearman's rank correlation of two maps

Attention flow, the max-flow counterpart of rollout, is ``vitviz.attention.attention_flow``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from timm.layers import Attention
from timm.models.vision_transformer import Block, ParallelScalingBlock, ResPostBlock
from torch import nn

from .attention import recorded_attention
from .inputs import TargetLike, check_images, resolve_targets

__all__ = [
    "BlockRecord",
    "Knockout",
    "KnockoutMode",
    "TokenStats",
    "class_attention",
    "foreground_mask",
    "head_knockout",
    "head_knockout_effects",
    "logit_lens",
    "norm_outliers",
    "outlier_attention_share",
    "patch_lens",
    "pooled_lens",
    "rank_correlation",
    "record_blocks",
    "settling_layer",
    "token_norms",
    "token_pca",
]

KnockoutMode = Literal["zero", "mean"]
Progress = Callable[[float], None]  # called with the fraction of the work done, in [0, 1]

# A robust standard deviation: 1.4826 x the median absolute deviation estimates sigma for normal data.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class BlockRecord:
    """What one forward pass leaves behind (``record_blocks``).

    Attributes:
        output: the model's output ``[B, C]``: its logits, or its pooled features ``[B, D]`` for a model
            with no classifier head.
        tokens: the residual stream after every block, before the final norm, ``[B, L, N, D]``.
        attentions: L attentions ``[B, H, N, N]`` (rows sum to 1), or an empty list when not recorded.
    """

    output: torch.Tensor
    tokens: torch.Tensor
    attentions: list[torch.Tensor]

    @property
    def norms(self) -> torch.Tensor:
        """``[B, L, N]``: the L2 norm of every token after every block (see ``token_norms``)."""
        return self.tokens.float().norm(dim=-1)


def record_blocks(model: nn.Module, images: torch.Tensor, attention: bool = True) -> BlockRecord:
    """One forward pass that keeps every block's tokens (timm's ``forward_intermediates``) and attention.

    The pass is the model's own: ``forward_intermediates`` runs patch embedding, positions and every
    block as ``forward_features`` does, and ``forward_head`` on its final (normed) features gives
    the model's output. Attention is recorded as ``vitviz.attention.capture`` records it (fused attention
    off for this pass only).

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        images: model-ready ``[B, 3, H, W]``.
        attention: also record every block's attention.

    Returns:
        A ``BlockRecord``, on the model's device.

    Raises:
        ValueError: as ``vitviz.inputs.check_images``; a model with no ``forward_intermediates`` (not a
            timm ``VisionTransformer``).
    """
    images = check_images(model, images)
    if not callable(getattr(model, "forward_intermediates", None)) or not hasattr(model, "blocks"):
        raise ValueError(f"{type(model).__name__} is not a timm VisionTransformer: it has no forward_intermediates")
    attentions: list[torch.Tensor] = []
    with torch.no_grad():
        if attention:
            with recorded_attention(model) as recorded:
                final, states = _intermediates(model, images)
            attentions = list(recorded)
            if len(attentions) != len(model.blocks):
                raise ValueError(f"recorded {len(attentions)} attentions for {len(model.blocks)} blocks: the model's "
                                 "forward does not run each block's attention once")
        else:
            final, states = _intermediates(model, images)
        output = model.forward_head(final)
    return BlockRecord(output=output, tokens=torch.stack(states, dim=1), attentions=attentions)  # tokens (B, L, N, D)


def logit_lens(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens"; for ViTs as in ViT-Prisma).

    After each block l, the model's own final norm and ``forward_head`` are applied to the residual
    stream, which pools it exactly as the model does (class token, or the patch mean for an
    average-pooled model, with ``fc_norm`` where the model has one), and the logits are softmaxed.
    The last row is the model's own prediction.

    Args:
        model: a timm ``VisionTransformer`` in eval mode, with a classifier head.
        images: model-ready ``[B, 3, H, W]``.

    Returns:
        ``[B, L, C]`` class probabilities after each block (rows sum to 1).

    Raises:
        ValueError: as ``record_blocks``; a model with no classifier head.
    """
    return pooled_lens(model, record_blocks(model, images, attention=False).tokens)


def pooled_lens(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``logit_lens`` from recorded tokens ``[B, L, N, D]`` (``record_blocks(...).tokens``): ``[B, L, C]``."""
    _require_head(model)
    batch, depth, num_tokens, dim = _check_block_tokens(tokens)
    with torch.no_grad():
        logits = model.forward_head(model.norm(tokens.reshape(batch * depth, num_tokens, dim)))  # (B*L, C)
    return logits.float().softmax(dim=-1).reshape(batch, depth, -1)


def patch_lens(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit lens on each patch token: the class each patch would be read as after each block.

    Each patch token is read by the model's final norm and ``forward_head`` on its own: as a sequence
    of P + 1 copies of that token, so that whatever the pooling reads (the class token's place, the
    distillation token's, or the mean of the patches) is that token. For a class-token model this is
    the head applied to the patch token; for an average-pooled one, ``fc_norm`` and the head.

    Args:
        model: a timm ``VisionTransformer`` with a classifier head.
        tokens: ``[B, L, N, D]`` from ``record_blocks``.

    Returns:
        The top-1 class ``[B, L, gh*gw]`` (long) and its probability ``[B, L, gh*gw]``, patches in raster order.

    Raises:
        ValueError: a model with no classifier head; tokens that are not ``[B, L, N, D]``.
    """
    _require_head(model)
    batch, depth, num_tokens, dim = _check_block_tokens(tokens)
    prefix = model.num_prefix_tokens
    patches = tokens[:, :, prefix:]  # (B, L, Np, D)
    classes, probabilities = [], []
    with torch.no_grad():
        for layer in range(depth):  # one layer at a time keeps the (Np, P+1, D) copies small
            alone = patches[:, layer].reshape(-1, 1, dim).expand(-1, prefix + 1, dim)  # (B*Np, P+1, D)
            logits = model.forward_head(model.norm(alone)).float()  # (B*Np, C)
            top = logits.softmax(dim=-1).max(dim=-1)
            classes.append(top.indices.reshape(batch, -1))
            probabilities.append(top.values.reshape(batch, -1))
    return torch.stack(classes, dim=1), torch.stack(probabilities, dim=1)  # (B, L, Np) each


def settling_layer(classes: torch.Tensor, target: Union[int, torch.Tensor]) -> torch.Tensor:
    """The first layer from which ``target`` is the top-1 class at every later layer.

    Args:
        classes: top-1 classes ``[..., L]`` (e.g. ``pooled_lens(...).argmax(-1)`` ``[B, L]``, or
            ``patch_lens`` moved to ``[B, gh*gw, L]``).
        target: the class, one for all or ``[...]``; for the pooled lens, the model's prediction
            (its last layer), so every item settles by layer L-1 at the latest.

    Returns:
        ``[...]`` long: the 0-based layer, or -1 where the last layer's top-1 is not ``target``.
    """
    if classes.ndim < 1 or classes.shape[-1] == 0:
        raise ValueError(f"expected classes [..., L] with L >= 1, got shape {tuple(classes.shape)}")
    target = torch.as_tensor(target, device=classes.device)
    agree = classes == target.unsqueeze(-1)  # (..., L)
    from_here_on = agree.flip(-1).cumprod(dim=-1).flip(-1).bool()  # agree at l and every later layer
    first = from_here_on.int().argmax(dim=-1)
    return torch.where(from_here_on.any(dim=-1), first, torch.full_like(first, -1)).long()


@dataclass(frozen=True)
class TokenStats:
    """The count, sum and scatter (sum of outer products) of a set of tokens ``[M, D]``, in float64.

    Enough to fit a PCA over many images without keeping their tokens: stats add up
    (``TokenStats.of(a) + TokenStats.of(b)`` fits the tokens of both), and ``token_pca`` takes them as
    ``fit_on``.
    """

    count: int
    total: torch.Tensor  # (D,)
    scatter: torch.Tensor  # (D, D)

    @classmethod
    def of(cls, tokens: torch.Tensor) -> "TokenStats":
        """The stats of ``tokens`` ``[M, D]``."""
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ValueError(f"expected tokens [M, D] with M >= 1, got shape {tuple(tokens.shape)}")
        x = tokens.detach().double().cpu()
        return cls(count=x.shape[0], total=x.sum(dim=0), scatter=x.T @ x)

    def __add__(self, other: "TokenStats") -> "TokenStats":
        if self.total.shape != other.total.shape:
            raise ValueError(f"cannot add the stats of {self.total.shape[0]}-wide and {other.total.shape[0]}-wide tokens")
        return TokenStats(self.count + other.count, self.total + other.total, self.scatter + other.scatter)

    def principal_axes(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean ``[D]`` and the first k principal axes ``[k, D]`` (rows, unit length, largest variance first)."""
        mean = self.total / self.count
        covariance = self.scatter / self.count - torch.outer(mean, mean)  # (D, D)
        return mean, _top_eigenvectors(covariance, k).T


def token_pca(tokens: torch.Tensor, k: int = 3, fit_on: Optional[Union[torch.Tensor, TokenStats]] = None) -> torch.Tensor:
    """A block's patch tokens projected on their first k principal components, each scaled to [0, 1].

    As the DINO and DINOv2 papers show patch features: the tokens are centred, projected on the
    principal axes, and each component is min-max scaled over ``tokens`` (so three of them read as
    RGB). The sign of a component is arbitrary; here each axis is turned so that its largest
    coordinate (in absolute value) is positive (scikit-learn's ``svd_flip`` convention), so the same
    tokens always get the same colours.

    Args:
        tokens: ``[N, D]``, e.g. one image's patch tokens after block l.
        k: the number of components, 1 <= k <= D.
        fit_on: what the mean and axes are fitted on: None for ``tokens`` themselves, more tokens
            ``[M, D]``, or their ``TokenStats``, e.g. this image and the sample photos together.

    Returns:
        ``[N, k]`` in [0, 1]; a component constant over ``tokens`` is 0.

    Raises:
        ValueError: tokens not ``[N, D]``; k out of range; ``fit_on`` of another width.
    """
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise ValueError(f"expected tokens [N, D], got shape {tuple(tokens.shape)}")
    dim = tokens.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim:
        raise ValueError(f"k must be an integer in [1, {dim}], not {k!r}")
    x = tokens.detach().double().cpu()
    if isinstance(fit_on, TokenStats):
        if fit_on.total.shape[0] != dim:
            raise ValueError(f"fit_on holds the stats of {fit_on.total.shape[0]}-wide tokens; tokens are {dim} wide")
        mean, axes = fit_on.principal_axes(k)
    else:
        fit = x if fit_on is None else fit_on.detach().double().cpu()
        if fit.ndim != 2 or fit.shape[1] != dim or fit.shape[0] < k:
            raise ValueError(f"fit_on must be at least {k} tokens [M, {dim}], got shape {tuple(fit.shape)}")
        mean, axes = _principal_axes(fit, k)
    largest = axes.abs().argmax(dim=1, keepdim=True)
    axes = axes * axes.gather(1, largest).sign()  # (k, D), each axis's largest coordinate positive
    projected = (x - mean) @ axes.T  # (N, k)
    low, high = projected.min(dim=0).values, projected.max(dim=0).values
    span = high - low
    scaled = (projected - low) / torch.where(span > 0, span, torch.ones_like(span))
    return scaled.float()


def _principal_axes(fit: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean ``[D]`` and first k principal axes ``[k, D]`` of float64 tokens ``[M, D]``."""
    count, dim = fit.shape
    if count > dim:
        return TokenStats.of(fit).principal_axes(k)
    mean = fit.mean(dim=0)
    centred = fit - mean  # (M, D)
    axes = (centred.T @ _top_eigenvectors(centred @ centred.T, k)).T  # (k, D) from the (M, M) Gram matrix: X^T u = s v
    return mean, axes / axes.norm(dim=1, keepdim=True).clamp_min(torch.finfo(axes.dtype).tiny)


def _top_eigenvectors(symmetric: torch.Tensor, k: int) -> torch.Tensor:
    """The eigenvectors ``[n, k]`` of the k largest eigenvalues of a symmetric ``[n, n]``, largest first."""
    _, vectors = torch.linalg.eigh(symmetric)  # eigenvalues ascending
    return vectors[:, -k:].flip(-1)


def foreground_mask(component: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The first principal component thresholded into foreground and background (as in DINOv2, Fig. 1).

    Cells above ``threshold`` form one side; since a component's sign is arbitrary, the side holding
    fewer of the grid's border cells is called the foreground (an object rarely fills the border),
    the above side when they tie.

    Args:
        component: ``[gh, gw]``, the first column of ``token_pca`` on the grid, in [0, 1].
        threshold: in [0, 1].

    Returns:
        bool ``[gh, gw]``: True on the foreground.
    """
    if component.ndim != 2:
        raise ValueError(f"expected a component [gh, gw], got shape {tuple(component.shape)}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold {threshold} must be in [0, 1]")
    above = component > threshold
    border = torch.ones_like(above)
    if min(above.shape) > 2:
        border[1:-1, 1:-1] = False
    above_on_border = int((above & border).sum())
    below_on_border = int((~above & border).sum())
    return above if above_on_border <= below_on_border else ~above


def token_norms(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The L2 norm of every token, prefix tokens included, after every block (Darcet et al. 2024,
    "Vision Transformers Need Registers": high-norm tokens are where a ViT stores global information).

    Args:
        model: a timm ``VisionTransformer`` in eval mode.
        images: model-ready ``[B, 3, H, W]``.

    Returns:
        ``[B, L, N]``: ``||x_l[i]||_2`` of the residual stream after block l (before the final norm).
    """
    return record_blocks(model, images, attention=False).norms


def norm_outliers(norms: torch.Tensor, k: float = 4.0) -> torch.Tensor:
    """Tokens whose norm is an outlier: above ``median + k * 1.4826 * MAD`` of their layer's norms.

    The median and the median absolute deviation (MAD) are taken over the last axis (all the tokens
    of one layer, prefix tokens included); 1.4826 x MAD estimates the standard deviation of normal
    data, so k counts robust standard deviations. Only high norms are flagged (Darcet et al.'s
    artifacts are high-norm tokens).

    Args:
        norms: ``[..., N]``, e.g. ``token_norms`` ``[B, L, N]``.
        k: how many robust standard deviations above the median, > 0.

    Returns:
        bool ``[..., N]``: True for an outlier.
    """
    if not k > 0:
        raise ValueError(f"k must be positive, not {k}")
    if norms.ndim < 1 or norms.shape[-1] == 0:
        raise ValueError(f"expected norms [..., N], got shape {tuple(norms.shape)}")
    values = norms.double()
    median = values.quantile(0.5, dim=-1, keepdim=True)  # the mean of the two middle values for an even count
    mad = (values - median).abs().quantile(0.5, dim=-1, keepdim=True)
    return values > median + k * MAD_TO_SIGMA * mad


def class_attention(attentions: Sequence[torch.Tensor], num_prefix_tokens: int = 1,
                    has_class_token: bool = True) -> torch.Tensor:
    """Each head's attention row of the class token in every block, over every token (prefix tokens included).

    Args:
        attentions: L attentions ``[B, H, N, N]``.
        num_prefix_tokens: P.
        has_class_token: whether token 0 is a class token; if not, the mean of the patch queries' rows.

    Returns:
        ``[B, L, H, N]``, each row summing to 1.
    """
    layers = list(attentions)
    if not layers or any(a.ndim != 4 or a.shape != layers[0].shape or a.shape[-1] != a.shape[-2] for a in layers):
        raise ValueError(f"expected L attentions [B, H, N, N], got shapes {[tuple(a.shape) for a in layers]}")
    num_tokens = layers[0].shape[-1]
    if not 0 <= num_prefix_tokens < num_tokens or (has_class_token and num_prefix_tokens == 0):
        raise ValueError(f"{num_prefix_tokens} prefix tokens (class token: {has_class_token}) do not fit {num_tokens} tokens")
    # rows are taken before stacking: the whole stack would be L x H x N x N numbers
    rows = [a[:, :, 0] if has_class_token else a[:, :, num_prefix_tokens:].mean(dim=-2) for a in layers]  # L x (B, H, N)
    return torch.stack(rows, dim=1)


def outlier_attention_share(class_rows: torch.Tensor, outliers: torch.Tensor) -> torch.Tensor:
    """How much of the class token's attention the flagged tokens receive, in the block that reads them.

    The tokens after block l are the keys of block l+1, so the share for layer l is the class token's
    attention in block l+1 (mean over heads) summed over the tokens flagged after block l. There is no
    entry for the last layer: no block reads it.

    Args:
        class_rows: ``[B, L, N]``, the class token's attention in each block, mean over heads
            (``class_attention(...).mean(dim=2)``).
        outliers: bool ``[B, L, N]``, e.g. ``norm_outliers(token_norms(...))``.

    Returns:
        ``[B, L-1]`` in [0, 1].
    """
    if class_rows.ndim != 3 or outliers.shape != class_rows.shape:
        raise ValueError(f"expected class attention rows and outliers of one shape [B, L, N], got "
                         f"{tuple(class_rows.shape)} and {tuple(outliers.shape)}")
    flagged = outliers[:, :-1].to(class_rows.device, class_rows.dtype)  # flags after blocks 0..L-2
    return (class_rows[:, 1:].float() * flagged).sum(dim=-1)  # read by blocks 1..L-1


@dataclass(frozen=True)
class Knockout:
    """What silencing each head does to one image's target class (``head_knockout_effects``).

    Attributes:
        probability: ``[L, H]`` the target's probability with head h of block l knocked out, minus intact.
        logit: ``[L, H]`` the same for the target's logit.
        intact_probability, intact_logit: the target's values with every head in place.
        target: the class.
        mode: ``"zero"`` or ``"mean"``.
    """

    probability: torch.Tensor
    logit: torch.Tensor
    intact_probability: float
    intact_logit: float
    target: int
    mode: str


def head_knockout(model: nn.Module, images: torch.Tensor, target: TargetLike, mode: KnockoutMode = "zero",
                  progress: Optional[Progress] = None) -> torch.Tensor:
    """The change in the target class's probability when each head of each block is knocked out, one at a time.

    Head h of block l contributes zero to the input of that block's ``attn.proj`` (its slice of the
    concatenated head outputs), or with ``mode="mean"`` its slice is replaced at every token by its
    mean over the patch tokens (mean ablation). See ``head_knockout_effects`` for how it is batched.

    Args:
        model: a timm ``VisionTransformer`` in eval mode, with a classifier head.
        images: one model-ready image ``[1, 3, H, W]``.
        target: the class.
        mode: ``"zero"`` or ``"mean"``.
        progress: called with the fraction of the work done.

    Returns:
        ``[L, H]``: knocked-out probability minus intact probability (negative: the head helped the class).
    """
    return head_knockout_effects(model, images, target, mode, progress).probability


def head_knockout_effects(model: nn.Module, images: torch.Tensor, target: TargetLike, mode: KnockoutMode = "zero",
                          progress: Optional[Progress] = None) -> Knockout:
    """Every head of every block knocked out, one at a time: the target's probability and logit changes.

    Exact and batched: one intact pass keeps the input of every block; for block l, its attention is
    computed once and the H knocked-out variants of its ``proj`` input go on as a batch of H through
    the rest of the network (blocks before l are never run again). In the last block of a model that
    pools its class token (or class and distillation tokens), only those rows are computed, since
    nothing else reaches the head. About L(L+1)/2 blocks per head in all instead of L.

    Args:
        model: a timm ``VisionTransformer`` in eval mode, with a classifier head, whose blocks are
            timm's ``Block``, ``ResPostBlock`` or ``ParallelScalingBlock``.
        images: one model-ready image ``[1, 3, H, W]``.
        target: the class.
        mode: ``"zero"``, or ``"mean"`` (each token's slice replaced by the slice's mean over the patch tokens).
        progress: called with the fraction of the work done (weighted by the blocks each layer runs).

    Returns:
        A ``Knockout``; its tensors on the CPU.

    Raises:
        ValueError: as ``vitviz.inputs.check_images``; more than one image; a model with no classifier head;
            a target as ``vitviz.inputs.resolve_targets``; an unknown mode; a block type not listed above.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', not {mode!r}")
    images = check_images(model, images)
    if images.shape[0] != 1:
        raise ValueError(f"head knock-out takes one image [1, 3, H, W], got a batch of {images.shape[0]}")
    _require_head(model)
    blocks = list(model.blocks)
    projections = [_head_projection(block, index) for index, block in enumerate(blocks)]  # (module, heads, head_dim)

    owner = threading.get_ident()
    inputs: list[torch.Tensor] = []

    def keep_input(_module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == owner:  # another session's pass through the shared model is not ours
            inputs.append(args[0])

    handles = [block.register_forward_pre_hook(keep_input) for block in blocks]
    try:
        with torch.no_grad():
            intact = model(images).float()  # (1, C)
    finally:
        for handle in handles:
            handle.remove()
    if len(inputs) != len(blocks):
        raise ValueError(f"the forward pass ran {len(inputs)} blocks, not the model's {len(blocks)}")
    target_index = int(resolve_targets(target, 1, intact.shape[1])[0])
    intact_logit = float(intact[0, target_index])
    intact_probability = float(intact[0].softmax(dim=-1)[target_index])

    rows = _pooled_rows(model)
    depth = len(blocks)
    work = [depth - layer for layer in range(depth)]  # blocks run per layer's batch
    probability = torch.zeros(depth, projections[0][1])
    logit = torch.zeros_like(probability)
    if len({heads for _, heads, _ in projections}) != 1:
        raise ValueError("head knock-out needs the same number of heads in every block")
    prefix = model.num_prefix_tokens
    with torch.no_grad():
        for layer, block in enumerate(blocks):
            module, heads, head_dim = projections[layer]
            edit = _knock_out(mode, heads, head_dim, prefix)
            if layer == depth - 1:
                x = _last_block(block, inputs[layer], rows, module, edit)
            else:
                x = _edited_block(block, inputs[layer], module, edit)  # (heads, N, D)
                for later in blocks[layer + 1:-1]:
                    x = later(x)
                x = _last_block(blocks[-1], x, rows)
            knocked = model.forward_head(model.norm(x)).float()  # (heads, C)
            logit[layer] = knocked[:, target_index].cpu() - intact_logit
            probability[layer] = knocked.softmax(dim=-1)[:, target_index].cpu() - intact_probability
            if progress is not None:
                progress(sum(work[:layer + 1]) / sum(work))
    return Knockout(probability=probability, logit=logit, intact_probability=intact_probability,
                    intact_logit=intact_logit, target=target_index, mode=mode)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps of the same shape, flattened (ties share their mean rank).

    Returns NaN when either map is constant (its ranks have no spread).
    """
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be compared")
    x = a.detach().double().cpu().flatten().numpy()
    y = b.detach().double().cpu().flatten().numpy()
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


# --- helpers -------------------------------------------------------------------------------------

def _intermediates(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """timm's ``forward_intermediates``: the final normed features ``[B, N, D]`` and each block's output ``[B, N, D]``."""
    final, states = model.forward_intermediates(images, output_fmt="NLC", return_prefix_tokens=True, norm=False)
    if model.num_prefix_tokens:
        states = [torch.cat([prefix, patches], dim=1) for patches, prefix in states]  # prefix first, as in the model
    return final, list(states)


def _require_head(model: nn.Module) -> None:
    if getattr(model, "num_classes", 0) == 0:
        raise ValueError(f"{type(model).__name__} has no classifier head (num_classes=0): there are no classes to read")


def _check_block_tokens(tokens: torch.Tensor) -> tuple[int, int, int, int]:
    if tokens.ndim != 4:
        raise ValueError(f"expected tokens [B, L, N, D], got shape {tuple(tokens.shape)}")
    return tuple(tokens.shape)


def _head_projection(block: nn.Module, index: int) -> tuple[nn.Linear, int, int]:
    """The linear layer that takes block ``index``'s concatenated head outputs, its heads and head width."""
    if isinstance(block, (Block, ResPostBlock)) and isinstance(block.attn, Attention):
        return block.attn.proj, block.attn.num_heads, block.attn.head_dim
    if isinstance(block, ParallelScalingBlock):
        # the attention part is the first num_heads * head_dim inputs of a fused projection
        module = block.attn_out_proj if block.attn_out_proj is not None else block.out_proj
        return module, block.num_heads, block.head_dim
    raise ValueError(f"block {index} ({type(block).__name__}) is not a timm Block, ResPostBlock or ParallelScalingBlock "
                     "with standard attention: its heads cannot be knocked out")


def _knock_out(mode: KnockoutMode, heads: int, head_dim: int, num_prefix_tokens: int
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``[1, N, A]`` projection input -> ``[heads, N, A]``: variant h has head h's slice zeroed or mean-ablated."""
    def edit(z: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != 1:
            raise AssertionError(f"a knock-out edits one intact input, got a batch of {z.shape[0]}")
        knocked = z.expand(heads, *z.shape[1:]).clone()  # (heads, N, A)
        for head in range(heads):
            part = slice(head * head_dim, (head + 1) * head_dim)
            knocked[head, :, part] = 0.0 if mode == "zero" else z[0, num_prefix_tokens:, part].mean(dim=0)
        return knocked
    return edit


def _edited_block(block: nn.Module, x: torch.Tensor, projection: nn.Linear,
                  edit: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Block forward on one intact input ``[1, N, D]`` whose projection input is replaced by ``edit``'s batch.

    The attention runs once; from the projection on, the batch of variants broadcasts against the
    intact residual stream, so the rest of the block (residual, MLP) runs once per variant.
    """
    owner = threading.get_ident()

    def replace(_module: nn.Module, args: tuple) -> Optional[tuple]:
        if threading.get_ident() != owner:  # another session's pass through the shared model is left alone
            return None
        return (edit(args[0]),)

    handle = projection.register_forward_pre_hook(replace)
    try:
        out = block(x)
    finally:
        handle.remove()
    return out


def _pooled_rows(model: nn.Module) -> Optional[list[int]]:
    """The token rows ``forward_head`` reads, when it reads only prefix rows: [0] (class token), [0, 1]
    (class and distillation tokens); None when it reads the patches (average or attention pooling)."""
    if getattr(model, "attn_pool", None) is not None or getattr(model, "global_pool", "") != "token":
        return None
    return [0, 1] if getattr(model, "dist_token", None) is not None else [0]


def _last_block(block: nn.Module, x: torch.Tensor, rows: Optional[list[int]], projection: Optional[nn.Linear] = None,
                edit: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """The last block on ``x`` ``[B, N, D]`` (with ``edit``: ``[1, N, D]``, knocked out as in ``_edited_block``),
    computed for the pooled ``rows`` only when that is possible: ``[B', len(rows), D]``, else ``[B', N, D]``."""
    plain = isinstance(block, (Block, ResPostBlock)) and type(block.attn) is Attention
    if rows is None or not plain:
        return block(x) if edit is None else _edited_block(block, x, projection, edit)
    attn = block.attn
    pre = block.norm1(x) if isinstance(block, Block) else x  # ResPostBlock normalises after the attention
    if edit is None:
        z = _projection_input(attn, pre, rows)  # (B, R, A)
    else:
        z = edit(_projection_input(attn, pre, None))[:, rows]  # (heads, R, A): the mean ablation needs every row
    out = attn.proj_drop(attn.proj(z))
    kept = x[:, rows]  # (B, R, D)
    if isinstance(block, Block):
        kept = kept + block.drop_path1(block.ls1(out))
        return kept + block.drop_path2(block.ls2(block.mlp(block.norm2(kept))))
    kept = kept + block.drop_path1(block.norm1(out))
    return kept + block.drop_path2(block.norm2(block.mlp(kept)))


def _projection_input(attn: Attention, x: torch.Tensor, rows: Optional[list[int]]) -> torch.Tensor:
    """timm ``Attention.forward`` up to its ``proj``, for the query ``rows`` only (None: all): ``[B, R, A]``."""
    batch, num_tokens, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, num_tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, H, N, hd) each
    q, k = attn.q_norm(q), attn.k_norm(k)
    if rows is not None:
        q = q[:, :, rows]  # (B, H, R, hd)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, R, hd)
    out = out.transpose(1, 2).reshape(batch, q.shape[2], attn.attn_dim)
    out = attn.norm(out)
    if attn.gate is not None:
        out = out * attn.gate(x if rows is None else x[:, rows]).sigmoid()
    return out
