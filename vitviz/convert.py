"""Hugging Face ``transformers`` ViT and DeiT checkpoints as timm ``VisionTransformer``s.

A checkpoint is a folder (or a Hub repository) holding ``config.json`` (``model_type`` "vit" or
"deit") and ``model.safetensors``, as ``save_pretrained`` writes them; a ``preprocessor_config.json``
beside them gives the normalisation. The weights are renamed to timm's keys (query, key and value
stacked into ``qkv``), the layer-norm epsilon and biases are taken from the config, and the result is
a timm model whose logits equal ``transformers``' own: ``ViTForImageClassification`` and ``ViTModel``
as a ``VisionTransformer``; ``DeiTForImageClassificationWithTeacher`` as timm's
``VisionTransformerDistilled`` (both average the class and distillation heads). Only safetensors are
read, so no pickled code ever runs.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import ModelLoadError, read_weights

__all__ = ["is_transformers_checkpoint", "read_transformers_checkpoint"]

_MODEL_TYPES = ("vit", "deit")


def is_transformers_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a ``transformers`` ViT/DeiT ``config.json`` (it may still lack weights)."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in _MODEL_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def read_transformers_checkpoint(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The timm model a ``transformers`` ViT/DeiT checkpoint folder describes, with its weights loaded.

    Returns:
        ``(model, info)``: a timm ``VisionTransformer`` (or ``VisionTransformerDistilled``) in eval mode, and
        ``info`` with ``class_names``, ``mean``, ``std`` and ``architecture`` (the transformers class).

    Raises:
        ModelLoadError: no or unreadable ``config.json`` or ``model.safetensors``, another model type, or
            weights that do not fit.
    """
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{folder} has no readable config.json ({e})") from None
    kind = config.get("model_type")
    if kind not in _MODEL_TYPES:
        raise ModelLoadError(f"{folder}/config.json describes a {kind!r} model; vitviz converts transformers "
                             f"ViT and DeiT checkpoints ({', '.join(_MODEL_TYPES)})")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{folder} has no model.safetensors (save the checkpoint with safe_serialization, "
                             "the default of save_pretrained)")
    state = read_weights(weights)
    prefix = kind + "."
    if not any(k.startswith(prefix) for k in state):  # a bare ViTModel / DeiTModel saves its keys unprefixed
        state = {prefix + k: v for k, v in state.items()}
    distilled = kind == "deit" and f"{prefix}embeddings.distillation_token" in state
    labels = config.get("id2label") or {}
    head = "cls_classifier.weight" if distilled else "classifier.weight"
    num_classes = state[head].shape[0] if head in state else 0
    image_size, patch_size = config.get("image_size", 224), config.get("patch_size", 16)
    args = dict(img_size=image_size, patch_size=patch_size, in_chans=config.get("num_channels", 3),
                embed_dim=config["hidden_size"], depth=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
                mlp_ratio=config["intermediate_size"] / config["hidden_size"], qkv_bias=config.get("qkv_bias", True),
                num_classes=num_classes, global_pool="token",
                norm_layer=partial(nn.LayerNorm, eps=config.get("layer_norm_eps", 1e-12)))
    if config.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError(f"{folder}: hidden_act {config.get('hidden_act')!r} is not the exact GELU timm's ViT uses")
    model = (VisionTransformerDistilled if distilled else VisionTransformer)(**args)
    timm_state = _timm_state(state, prefix, config["num_hidden_layers"], distilled)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(timm_state), set(timm_state) - expected
    if missing or unexpected:
        raise ModelLoadError(f"{folder}: the converted weights do not fit: missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(unexpected)[:3]}")
    model.load_state_dict(timm_state)
    mean, std = _normalisation(folder)
    names = tuple(labels.get(str(i), f"class {i}") for i in range(num_classes))
    return model.eval(), dict(class_names=names, mean=mean, std=std, architecture=(config.get("architectures") or [kind])[0])


def _timm_state(state: dict[str, torch.Tensor], prefix: str, depth: int, distilled: bool) -> dict[str, torch.Tensor]:
    """transformers' ViT/DeiT keys renamed to timm's; query, key and value stacked into qkv."""
    emb, out = prefix + "embeddings.", {}
    out["cls_token"] = state[emb + "cls_token"]
    if distilled:
        out["dist_token"] = state[emb + "distillation_token"]
    out["pos_embed"] = state[emb + "position_embeddings"]
    out["patch_embed.proj.weight"] = state[emb + "patch_embeddings.projection.weight"]
    out["patch_embed.proj.bias"] = state[emb + "patch_embeddings.projection.bias"]
    for i in range(depth):
        src, dst = f"{prefix}encoder.layer.{i}.", f"blocks.{i}."
        attention = src + "attention.attention."
        for part in ("weight", "bias"):
            pieces = [state.get(f"{attention}{name}.{part}") for name in ("query", "key", "value")]
            if all(p is not None for p in pieces):
                out[f"{dst}attn.qkv.{part}"] = torch.cat(pieces, dim=0)
            out[f"{dst}attn.proj.{part}"] = state[f"{src}attention.output.dense.{part}"]
            out[f"{dst}norm1.{part}"] = state[f"{src}layernorm_before.{part}"]
            out[f"{dst}norm2.{part}"] = state[f"{src}layernorm_after.{part}"]
            out[f"{dst}mlp.fc1.{part}"] = state[f"{src}intermediate.dense.{part}"]
            out[f"{dst}mlp.fc2.{part}"] = state[f"{src}output.dense.{part}"]
    for part in ("weight", "bias"):
        out[f"norm.{part}"] = state[f"{prefix}layernorm.{part}"]
        heads = (("cls_classifier", "head"), ("distillation_classifier", "head_dist")) if distilled \
            else (("classifier", "head"),)
        for src, dst in heads:
            if f"{src}.{part}" in state:
                out[f"{dst}.{part}"] = state[f"{src}.{part}"]
    return out


def _normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``image_mean`` and ``image_std`` of ``preprocessor_config.json``; transformers' ViT default (0.5) without it."""
    try:
        pre = json.loads((folder / "preprocessor_config.json").read_text())
        return tuple(pre["image_mean"]), tuple(pre["image_std"])
    except (OSError, ValueError, KeyError):
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
