"""Where a run starts (``--init``): any ``vitviz.models.load_model`` reference that is a classifier backbone.

Jigsaw pretraining goes on from a jigsaw checkpoint: every weight, its jigsaw head too unless the run's grid
differs, under the run's own learning-rate schedule. A fine-tune starts from

- a **jigsaw checkpoint**: its patch embedding, class token, blocks and norms; the position table (a jigsaw model
  has none) and the head are new;
- a **classifier checkpoint**: every weight but its head, which is replaced by one for this run's classes;
- a **timm ViT name**: the same, from timm's pretrained weights when they are in the local cache (else random
  weights, as ``load_model`` says).

The patch size, width, depth and heads come from the start model; the image size is the run's, the position
table resampled to its grid (``timm.layers.resample_abs_pos_embed``) when it differs. The run normalises its
images with the start model's mean and std, and its ``--augment timm`` transform follows the start model's
data config (``timm.data.resolve_model_data_config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from timm.models.vision_transformer import VisionTransformer

from vitviz.checkpoints import ModelLoadError
from vitviz.models import load_model

__all__ = ["Start", "run_architecture", "start_weights", "vit_architecture"]

StartKind = Literal["jigsaw", "classifier", "timm"]


@dataclass(frozen=True)
class Start:
    """What ``--init`` names, known without loading its weights (``training.config.describe_start``)."""

    ref: str  # as given to --init
    kind: StartKind
    architecture: dict[str, Any]  # the start model's timm VisionTransformer keys
    path: Optional[Path] = None  # a checkpoint's weights file

    @property
    def what(self) -> str:
        """How messages name it: "checkpoint" or "model"."""
        return "model" if self.kind == "timm" else "checkpoint"


def vit_architecture(model: VisionTransformer) -> dict[str, Any]:
    """The ``vitviz.models.create_vit`` keys that rebuild ``model``'s shape (its weights aside)."""
    block = model.blocks[0]
    attn = block.attn
    architecture = dict(
        img_size=tuple(model.patch_embed.img_size),
        patch_size=int(model.patch_embed.patch_size[0]),
        num_classes=int(model.num_classes),
        global_pool=model.global_pool,
        embed_dim=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(attn.num_heads),
        mlp_ratio=block.mlp.fc1.out_features / model.embed_dim,
        qkv_bias=attn.qkv.bias is not None,
        qk_norm=not isinstance(attn.q_norm, torch.nn.Identity),
        init_values=1e-5 if hasattr(block.ls1, "gamma") else None,  # the value is a weight: any number builds it
        class_token=model.cls_token is not None,
        reg_tokens=int(model.num_reg_tokens),
        no_embed_class=bool(model.no_embed_class),
        pre_norm=not isinstance(model.norm_pre, torch.nn.Identity),
        fc_norm=not isinstance(model.fc_norm, torch.nn.Identity),
        final_norm=not (isinstance(model.norm, torch.nn.Identity) and isinstance(model.fc_norm, torch.nn.Identity)),
        pos_embed="learn" if model.pos_embed is not None else "none",
    )
    if getattr(model, "dist_token", None) is not None:
        architecture["distilled"] = True
    return architecture


def run_architecture(start: Start, shape: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """The timm keys of the model a run trains from ``start``: its size (``shape``, from ``model_shape``), this
    run's classes; a jigsaw start gains a learned position table and pools its class token."""
    if start.kind == "jigsaw":
        return {**start.architecture, **shape, "num_classes": num_classes, "global_pool": "token", "pos_embed": "learn"}
    return {**start.architecture, "img_size": shape["img_size"], "num_classes": num_classes}


def start_weights(start: Start, vit: VisionTransformer) -> tuple[tuple[float, ...], tuple[float, ...], dict[str, Any]]:
    """Load the start model's weights into ``vit`` (built from ``run_architecture``), all but what is new; returns
    the start model's normalisation (mean, std) and its timm data config."""
    try:
        model = load_model(start.path or start.ref, device="cpu")
    except ModelLoadError as e:
        raise ModelLoadError(f"starting {start.what} {start.ref!r} cannot be loaded: {e}") from None
    state = model.state_dict()
    if start.kind == "jigsaw":
        going_on = getattr(vit, "jigsaw_head", None) is not None  # jigsaw pretraining goes on from it
        if not going_on or state["jigsaw_head.weight"].shape != vit.jigsaw_head.weight.shape:  # another grid
            state = {k: v for k, v in state.items() if not k.startswith("jigsaw_head.")}
        fresh = {"jigsaw_head.weight", "jigsaw_head.bias"} if going_on else {"pos_embed", "head.weight", "head.bias"}
    else:
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist."))}
        fresh = {k for k in vit.state_dict() if k.startswith(("head.", "head_dist."))}
        if "pos_embed" in state and state["pos_embed"].shape != vit.pos_embed.shape:
            from timm.layers import resample_abs_pos_embed

            state["pos_embed"] = resample_abs_pos_embed(
                state["pos_embed"], new_size=list(vit.patch_embed.grid_size),
                old_size=list(model.patch_embed.grid_size),
                num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens)
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if unexpected or not set(missing) <= fresh:
        raise ModelLoadError(f"--init {start.ref} does not fit: missing {sorted(set(missing) - fresh)}, "
                             f"unexpected {unexpected}")
    from timm.data import resolve_model_data_config

    return model.card.mean, model.card.std, resolve_model_data_config(model)
