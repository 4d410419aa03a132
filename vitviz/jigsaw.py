"""The jigsaw pretext: shuffle an image's patches, predict where each one came from.

One implementation shared by training and the Jigsaw view (Zhai et al. 2022, "Position
Prediction as an Effective Pretraining Strategy"; Chen et al. 2022, "Jigsaw-ViT"). A jigsaw
model is a ``JigsawViT``: a timm ``VisionTransformer`` built with ``pos_embed='none'`` that owns its
``jigsaw_head`` (``nn.Linear(embed_dim, gh*gw)``) and the jigsaw forward: its patch tokens carry no
position, so the only way to place them is by what they show.

Convention everywhere: a permutation ``[B, N]`` says that shuffled token ``k`` carries the patch
from grid position ``permutation[b, k]`` (raster order); the logits ``[B, N, N]`` have one row
per shuffled token and one column per grid position, so the right answer for row ``k`` is
``permutation[b, k]``. A placement ``[B, N]`` (what a decoder returns) gives each token's position.

Shuffles: all patches, k of them or a region (``shuffle_permutation``); forward: ``position_logits``
(optionally with keys dropped); decoders: ``decode_argmax`` and ``solve`` (Hungarian); the view's
pictures: ``arrange_patches``, ``reassemble``, ``reassembly_steps``; scores: ``placement_metrics``
and ``jigsaw_metrics`` (per-patch accuracy, exact puzzle, displacement).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .inputs import normalize
from .card import model_card
from .checkpoints import ModelLoadError, read_sidecar
from .registry import ModelEntry, list_models
from .patches import a_grid, grid_shape, patchify, unpatchify

__all__ = [
    "arrange_patches",
    "best_jigsaw_checkpoint",
    "decode_argmax",
    "displacement",
    "JigsawViT",
    "jigsaw_checkpoints",
    "jigsaw_metrics",
    "key_keep_mask",
    "patches_placed",
    "pin_unmoved",
    "placement_confidence",
    "placement_metrics",
    "placed_correctly",
    "position_logits",
    "reassemble",
    "reassembly_steps",
    "region_positions",
    "shuffle_permutation",
    "solve",
    "solve_batch",
]


def shuffle_permutation(
    num_positions: int,
    generator: torch.Generator,
    *,
    batch_size: int = 1,
    positions: Optional[Sequence[int] | torch.Tensor] = None,
    num_shuffled: Optional[int] = None,
    derange: bool = False,
) -> torch.Tensor:
    """Seeded random permutations ``[batch_size, num_positions]`` (long, on the generator's device).

    Args:
        num_positions: N, the number of grid positions (gh*gw).
        generator: the source of randomness; the same seed gives the same permutations.
        batch_size: how many independent permutations.
        positions: the grid positions that may be shuffled (the Jigsaw view's "shuffle a region",
            see ``region_positions``); every other position keeps its patch. All when omitted.
        num_shuffled: how many of those positions are shuffled, drawn at random for each row (the
            view's "shuffle k patches"); all of them when omitted.
        derange: every shuffled position gets another position's patch, none lands back in place
            (so "k shuffled" means k out of place); needs at least 2 shuffled positions.
    """
    if num_positions < 1 or batch_size < 1:
        raise ValueError(f"need at least one position and one permutation, got {num_positions} and {batch_size}")
    device = generator.device
    if positions is None and num_shuffled is None and not derange:
        keys = torch.rand(batch_size, num_positions, generator=generator, device=device)
        return keys.argsort(dim=1)  # (B, N): a uniform random permutation per row
    pool = torch.arange(num_positions, device=device)
    if positions is not None:
        pool = torch.as_tensor(positions, dtype=torch.long, device=device).unique()
        if pool.numel() and (pool.min() < 0 or pool.max() >= num_positions):
            raise ValueError(f"positions {pool.tolist()} fall outside the grid's {num_positions} positions")
    k = pool.numel() if num_shuffled is None else num_shuffled
    if not 0 <= k <= pool.numel():
        raise ValueError(f"cannot shuffle {k} of {pool.numel()} positions")
    if derange and k < 2:
        raise ValueError(f"a shuffle that moves every patch needs at least 2 positions, got {k}")
    if k < pool.numel():
        pick = torch.rand(batch_size, pool.numel(), generator=generator, device=device).argsort(dim=1)[:, :k]
        chosen = pool[pick]  # (B, k): a random k of the pool per row
    else:
        chosen = pool.expand(batch_size, -1)  # (B, k)
    order = torch.rand(batch_size, k, generator=generator, device=device).argsort(dim=1)  # (B, k)
    if derange:  # rejection keeps the draw uniform over derangements; about e tries per row
        in_place = torch.arange(k, device=device)
        while (stuck := (order == in_place).any(dim=1)).any():
            order[stuck] = torch.rand(int(stuck.sum()), k, generator=generator, device=device).argsort(dim=1)
    permutation = torch.arange(num_positions, device=device).repeat(batch_size, 1)  # (B, N) identity
    return permutation.scatter(1, chosen, chosen.gather(1, order))  # chosen[j] gets the patch from chosen[order[j]]


def region_positions(grid_size: tuple[int, int], top: int, left: int, height: int, width: int) -> list[int]:
    """Raster indices of the grid positions in a rectangle, for ``shuffle_permutation(positions=...)``."""
    rows, cols = grid_size
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= rows and left + width <= cols):
        raise ValueError(f"region top={top} left={left} {height}x{width} does not fit a {rows}x{cols} grid")
    return [r * cols + c for r in range(top, top + height) for c in range(left, left + width)]


def key_keep_mask(
    batch_size: int,
    num_prefix_tokens: int,
    num_patches: int,
    drop_fraction: float,
    generator: torch.Generator,
) -> Optional[torch.Tensor]:
    """Which tokens stay visible as attention keys: bool ``[B, 1, 1, P+N]``, True = kept.

    ``round(drop_fraction * N)`` random patch tokens per image are hidden from the keys; prefix
    tokens are always kept and every token still makes a query, so each one gets a prediction.
    Returns None when nothing is dropped (attention then takes its fused path unchanged).
    """
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"the key drop fraction must be in [0, 1), got {drop_fraction}")
    num_drop = int(round(drop_fraction * num_patches))
    if num_drop == 0:
        return None
    device = generator.device
    ranks = torch.rand(batch_size, num_patches, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    keep_patches = ranks >= num_drop  # (B, N): exactly num_drop False per row
    keep_prefix = torch.ones(batch_size, num_prefix_tokens, dtype=torch.bool, device=device)
    return torch.cat([keep_prefix, keep_patches], dim=1)[:, None, None, :]  # (B, 1, 1, P+N)


class JigsawViT(VisionTransformer):
    """A timm ``VisionTransformer`` that owns a jigsaw head: ``forward(images, permutation, key_mask)``.

    Built with ``pos_embed='none'``: patch tokens carry no position, so the only way to place them is by
    what they show. It *is* a ``VisionTransformer`` (every view that opens a ViT opens it, and its
    weights keep the checkpoint keys: the ViT's own, plus ``jigsaw_head.``), and it owns the one
    jigsaw forward that training and the Jigsaw view share.

    Args:
        jigsaw_grid: ``(gh, gw)`` grid positions the head scores (the patch grid).
        **vit_args: timm ``VisionTransformer`` keyword arguments.
    """

    def __init__(self, jigsaw_grid: tuple[int, int], **vit_args):
        super().__init__(**vit_args)
        self.jigsaw_grid = (int(jigsaw_grid[0]), int(jigsaw_grid[1]))
        self.jigsaw_head = nn.Linear(self.embed_dim, self.jigsaw_grid[0] * self.jigsaw_grid[1])

    def forward(self, images: torch.Tensor, permutation: Optional[torch.Tensor] = None,
                key_mask: Optional[torch.Tensor] = None, return_tokens: bool = False):
        """Position logits ``[B, N, gh*gw]`` for normalised ``images`` ``[B, 3, H, W]`` whose patch tokens
        are shuffled by ``permutation`` (long ``[B, N]``), with ``key_mask`` (from ``key_keep_mask``,
        bool ``[B, 1, 1, P+N]``) as the attention mask if given; with ``return_tokens``, the pair
        ``(logits, tokens)``, where ``tokens`` ``[B, N, D]`` are the normed patch tokens the head reads.
        Without a permutation, the plain ``VisionTransformer`` forward (pooled features: the model has
        no class head).

        Patch tokens from ``patch_embed`` (no positional embedding), gathered in shuffled order, prefix
        tokens prepended, blocks, final norm, then ``jigsaw_head`` on the patch tokens.
        """
        if permutation is None:
            return super().forward(images)
        tokens = self.patch_embed(images)  # (B, N, D), raster order
        batch, num_patches, dim = tokens.shape
        tokens = tokens.gather(1, permutation[:, :, None].expand(batch, num_patches, dim))  # (B, N, D) shuffled
        x = self._pos_embed(tokens)  # (B, P+N, D): prefix tokens prepended; no positions when pos_embed is None
        x = self.norm_pre(self.patch_drop(x))
        for block in self.blocks:
            x = block(x, attn_mask=key_mask)
        tokens = self.norm(x)[:, self.num_prefix_tokens:]  # (B, N, D)
        logits = self.jigsaw_head(tokens)  # (B, N, gh*gw)
        return (logits, tokens) if return_tokens else logits


def position_logits(
    model: nn.Module,
    images: torch.Tensor,
    permutation: torch.Tensor,
    *,
    drop_fraction: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """A jigsaw checkpoint's position logits for images whose patches are shuffled by ``permutation``.

    Args:
        model: from ``vitviz.models.load_model`` for a checkpoint with a jigsaw head.
        images: float ``[B, 3, H, W]`` in [0, 1] at the model's input size (unshuffled; the
            model's normalisation is applied here).
        permutation: long ``[B, N]``; shuffled token ``k`` carries the patch from grid position
            ``permutation[b, k]``.
        drop_fraction: the share of patch tokens hidden from the attention keys (``key_keep_mask``).
        generator: which tokens are hidden; needed when ``drop_fraction > 0``.

    Returns:
        ``[B, N, N]``: row ``k`` scores the grid positions for shuffled token ``k``; its right
        answer is ``permutation[b, k]``.
    """
    card = model_card(model)
    if card.jigsaw_grid is None or not isinstance(model, JigsawViT):
        raise ValueError(f"{card.name} has no jigsaw head: position logits need a jigsaw checkpoint")
    if getattr(model, "pos_embed", None) is not None:
        raise ValueError(f"{card.name} has positional embeddings: a jigsaw model must be built with pos_embed='none'")
    if tuple(card.jigsaw_grid) != tuple(card.grid_size):
        raise ValueError(f"{card.name}: jigsaw head grid {card.jigsaw_grid} differs from the patch grid {card.grid_size}")
    if images.ndim != 4 or tuple(images.shape[-2:]) != tuple(card.image_size):
        raise ValueError(f"expected images [B, 3, {card.image_size[0]}, {card.image_size[1]}], got shape {tuple(images.shape)}")
    num_positions = card.grid_size[0] * card.grid_size[1]
    if permutation.shape != (images.shape[0], num_positions):
        raise ValueError(f"expected a permutation of shape {(images.shape[0], num_positions)}, got {tuple(permutation.shape)}")
    identity = torch.arange(num_positions, device=permutation.device)
    if not torch.equal(permutation.sort(dim=1).values, identity.expand_as(permutation)):
        raise ValueError(f"each row of the permutation must hold every position 0..{num_positions - 1} exactly once")
    if drop_fraction and generator is None:
        raise ValueError(f"dropping {drop_fraction} of the keys needs a generator to say which")
    key_mask = None
    if drop_fraction:
        key_mask = key_keep_mask(images.shape[0], card.num_prefix_tokens, num_positions, drop_fraction, generator)
    device = next(model.parameters()).device
    return model(normalize(images.to(device), model), permutation.to(device).long(),
                 None if key_mask is None else key_mask.to(device))


def decode_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Greedy decoding: each token's most likely position, ``[..., N, N] -> [..., N]``; positions may collide."""
    return logits.argmax(dim=-1)


def solve(logits: torch.Tensor) -> torch.Tensor:
    """The position of each token ``LongTensor[N]`` under the one-to-one assignment that
    maximises the summed log-softmax of ``logits [N, N]`` (rows: tokens, columns: positions)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"expected square logits [N, N], got shape {tuple(logits.shape)}")
    log_probs = F.log_softmax(logits.detach().double().cpu(), dim=-1).numpy()
    rows, columns = linear_sum_assignment(log_probs, maximize=True)
    assignment = np.empty(len(rows), dtype=np.int64)
    assignment[rows] = columns
    return torch.from_numpy(assignment).to(logits.device)


def solve_batch(logits: torch.Tensor) -> torch.Tensor:
    """``solve`` for each image of ``[B, N, N]`` logits: ``[B, N]``."""
    if logits.shape[0] == 0:
        return torch.empty(logits.shape[:2], dtype=torch.long, device=logits.device)
    return torch.stack([solve(item) for item in logits])


def pin_unmoved(logits: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Tell the decoders which patches were not shuffled: ``[..., N, N]`` logits with the other
    positions set to -inf.

    A token still at its own position (``permutation[k] == k``) may only stay there; a moved one may
    only go to a position some moved token came from. The model does not see this hint: it changes
    the decoding, not the logits' finite values.
    """
    num_positions = permutation.shape[-1]
    if logits.shape[-2:] != (num_positions, num_positions) or logits.shape[:-2] != permutation.shape[:-1]:
        raise ValueError(f"logits {tuple(logits.shape)} and permutation {tuple(permutation.shape)} do not match")
    slots = torch.arange(num_positions, device=permutation.device)
    unmoved = permutation == slots  # (..., N): per token, and per position (a token's slot is its position)
    allowed = torch.where(unmoved[..., :, None], slots == slots[:, None], ~unmoved[..., None, :])  # (..., N, N)
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def placement_confidence(logits: torch.Tensor, placement: torch.Tensor) -> torch.Tensor:
    """The model's probability for the position each token was given: ``[..., N]`` in [0, 1]."""
    probs = logits.float().softmax(dim=-1)  # (..., N, N)
    return probs.gather(-1, placement.to(logits.device)[..., None].long())[..., 0]


def displacement(placement: torch.Tensor, permutation: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """How far each token was put from where it belongs: Euclidean grid distance ``[..., N]``, in patches."""
    if placement.shape != permutation.shape:
        raise ValueError(f"placement {tuple(placement.shape)} and permutation {tuple(permutation.shape)} do not match")
    cols = grid_size[1]
    placement = placement.to(permutation.device)
    rows_apart = (placement // cols - permutation // cols).float()
    cols_apart = (placement % cols - permutation % cols).float()
    return torch.hypot(rows_apart, cols_apart)


def placement_metrics(
    placement: torch.Tensor,
    permutation: torch.Tensor,
    grid_size: Optional[tuple[int, int]] = None,
) -> dict[str, float]:
    """Per-patch accuracy, exact-puzzle rate and, given the grid, mean displacement (in patches)
    of one decoder's placements ``[B, N]`` against the right answers ``[B, N]``."""
    if placement.ndim != 2 or placement.shape != permutation.shape:
        raise ValueError(f"placement {tuple(placement.shape)} and permutation {tuple(permutation.shape)} must both be [B, N]")
    correct = placement.to(permutation.device) == permutation  # (B, N)
    metrics = {"patch_acc": correct.float().mean().item(), "puzzle_acc": correct.all(dim=1).float().mean().item()}
    if grid_size is not None:
        if grid_size[0] * grid_size[1] != permutation.shape[1]:
            raise ValueError(f"{a_grid(grid_size)} does not hold {permutation.shape[1]} positions")
        metrics["displacement"] = displacement(placement, permutation, grid_size).mean().item()
    return metrics


def jigsaw_metrics(
    logits: torch.Tensor,
    permutation: torch.Tensor,
    grid_size: Optional[tuple[int, int]] = None,
) -> dict[str, float]:
    """Per-patch accuracy and exact-puzzle rate of both decoders over a batch.

    Args:
        logits: ``[B, N, N]`` from ``position_logits`` (or ``jigsaw_logits``).
        permutation: ``[B, N]``, the right answers.
        grid_size: (gh, gw); when given, the mean displacement of each decoder is added.

    Returns:
        ``patch_acc_argmax``, ``puzzle_acc_argmax``, ``patch_acc_hungarian``,
        ``puzzle_acc_hungarian`` (fractions in [0, 1]), ``chance`` (1/N, per patch) and, with the
        grid, ``displacement_argmax`` and ``displacement_hungarian`` (grid distance, in patches).
    """
    if logits.ndim != 3 or logits.shape[:2] != permutation.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and permutation {tuple(permutation.shape)} do not match")
    permutation = permutation.to(logits.device)
    metrics: dict[str, float] = {}
    for decoder, predicted in (("argmax", decode_argmax(logits)), ("hungarian", solve_batch(logits))):
        for name, value in placement_metrics(predicted, permutation, grid_size).items():
            metrics[f"{name}_{decoder}"] = value
    metrics["chance"] = 1.0 / permutation.shape[1]
    return metrics


def arrange_patches(images: torch.Tensor, sources: torch.Tensor, patch_size: int, fill: float = 0.5) -> torch.Tensor:
    """Images ``[B, C, H, W]`` rebuilt from their own patches: position ``g`` shows the patch from
    grid position ``sources[b, g]``, or ``fill`` grey where that is -1.

    ``arrange_patches(images, permutation, p)`` is the shuffled image: slot ``k`` shows token ``k``.
    """
    patches = patchify(images, patch_size)  # (B, N, C*p*p)
    if sources.shape != patches.shape[:2]:
        raise ValueError(f"sources {tuple(sources.shape)} do not match the {tuple(patches.shape[:2])} patches")
    sources = sources.to(images.device).long()
    arranged = patches.gather(1, sources.clamp(min=0)[..., None].expand_as(patches))  # (B, N, C*p*p)
    arranged = arranged.masked_fill((sources < 0)[..., None], fill)
    return unpatchify(arranged, patch_size, grid_shape(images.shape[-2:], patch_size))


def reassemble(
    images: torch.Tensor,
    permutation: torch.Tensor,
    placement: torch.Tensor,
    patch_size: int,
    confidence: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image put back together by a decoder: token ``k`` (the patch from ``permutation[b, k]``)
    drawn at ``placement[b, k]``.

    Argmax placements can collide: the most confident token (``confidence [B, N]``; ties and no
    confidence: the lowest token index) takes the position, and positions nobody took stay grey.

    Returns:
        the image ``[B, C, H, W]`` and ``shown [B, N]``: the token drawn at each grid position, -1 if none.
    """
    batch, num_positions = permutation.shape
    placement = placement.to(permutation.device).long()
    if confidence is None:
        confidence = torch.zeros(batch, num_positions, device=permutation.device)
    order = torch.sort(confidence.to(permutation.device), dim=1, descending=True, stable=True).indices  # (B, N) tokens
    rank = order.argsort(dim=1)  # (B, N): each token's place in that order; 0 wins
    best = torch.full_like(placement, num_positions).scatter_reduce(1, placement, rank, reduce="amin")  # (B, N)
    shown = torch.where(best < num_positions, order.gather(1, best.clamp(max=num_positions - 1)), -1)
    sources = torch.where(shown >= 0, permutation.gather(1, shown.clamp(min=0)), -1)  # (B, N) grid positions
    return arrange_patches(images, sources, patch_size), shown


def placed_correctly(shown: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Per grid position ``[B, N]``: does the reassembled image show the patch that belongs there?"""
    positions = torch.arange(permutation.shape[1], device=permutation.device)
    return (shown >= 0) & (permutation.gather(1, shown.clamp(min=0)) == positions)


def reassembly_steps(placement: torch.Tensor, confidence: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """From the shuffled order to a one-to-one placement ``[N]``, one patch at a time.

    At each step the most confident token not yet where it was placed swaps with whatever token
    holds that position, so every frame is a whole image and at most N - 1 steps are needed.

    Returns:
        ``frames [S+1, N]``: the token at each grid position after each step (frame 0: the shuffled
        order, the last: the placement), and ``moved [S]``: the position filled at each step.
    """
    num_positions = placement.shape[-1]
    placement = placement.detach().cpu().long()
    if placement.ndim != 1 or not torch.equal(placement.sort().values, torch.arange(num_positions)):
        raise ValueError(f"steps need a one-to-one placement of {num_positions} tokens, got {placement.tolist()}")
    if confidence is None:
        confidence = torch.zeros(num_positions)
    order = torch.sort(confidence.detach().cpu(), descending=True, stable=True).indices.tolist()
    at = list(range(num_positions))  # at[position] = token there
    where = list(range(num_positions))  # where[token] = its position
    frames, moved = [torch.tensor(at)], []
    for token in order:
        target, source = int(placement[token]), where[token]
        if target == source:
            continue
        other = at[target]
        at[target], at[source] = token, other
        where[token], where[other] = target, source
        frames.append(torch.tensor(at))
        moved.append(target)
    return torch.stack(frames), torch.tensor(moved, dtype=torch.long)


def jigsaw_checkpoints() -> list[str]:
    """Names of the checkpoints in the model picker (``vitviz.registry.list_models``) that have a jigsaw head."""
    return [entry.ref for entry in list_models() if entry.kind == "jigsaw"]


def patches_placed(entry: ModelEntry) -> float:
    """How many patches of a photo it never saw a jigsaw checkpoint puts back, on average: its held-out (``val``)
    per-patch accuracy with Hungarian decoding, from its sidecar, times its number of patches. 0 when the sidecar
    records none. A count rather than the accuracy, so a 7x7 model that places half its 49 patches ranks above a
    4x4 one that places 13 of 16: it puts more of the photo back, at a size a person can recognise."""
    try:
        sidecar = read_sidecar(entry.path) if entry.path else {}
    except ModelLoadError:
        return 0.0
    grid = (sidecar.get("jigsaw") or {}).get("grid") or [0, 0]
    accuracy = ((sidecar.get("metrics") or {}).get("val") or {}).get("patch_acc_hungarian", 0.0)
    return float(accuracy) * int(grid[0]) * int(grid[1])


def best_jigsaw_checkpoint(entries: Optional[Sequence[ModelEntry]] = None) -> Optional[ModelEntry]:
    """The jigsaw checkpoint among ``entries`` (default: the picker's, ``vitviz.registry.list_models``) with the
    most ``patches_placed``; ties go to the first listed. None when there is no jigsaw checkpoint."""
    jigsaws = [e for e in (list_models() if entries is None else entries) if e.kind == "jigsaw"]
    return max(jigsaws, key=patches_placed, default=None)
