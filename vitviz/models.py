"""Loading a model: ``load_model(ref)`` for a checkpoint name, a timm ViT name or a weights file.

``load_model`` returns a timm ``VisionTransformer`` on its device, in eval mode, with a
``ModelCard`` at ``model.card`` (the way timm keeps ``model.pretrained_cfg`` on the module). Where
models live and what a reference names is ``vitviz.registry``; reading and writing checkpoint files
is ``vitviz.checkpoints``. Nothing here touches the network: timm weights are used only when
already in the local cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import Attention
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, ParallelScalingBlock, ResPostBlock, VisionTransformer
from torch import nn

from .card import ModelCard, model_card
from .checkpoints import ModelLoadError, load_state, read_sidecar, read_weights
from .convert import is_transformers_checkpoint, read_transformers_checkpoint
from .devices import default_device
from .hub import RANDOM_INIT, WeightsNotDownloaded, cached_weights, catalogue, hub_files
from .inputs import model_input
from .jigsaw import JigsawViT
from .registry import checkpoint_dirs, resolve

__all__ = [
    "ModelCard",
    "ModelLoadError",
    "create_vit",
    "load_model",
    "model_card",
    "model_input",
]

# Architecture keys a sidecar may carry; they are passed to timm's VisionTransformer as is.
_ARCH_KEYS = (
    "img_size", "patch_size", "num_classes", "global_pool", "embed_dim", "depth", "num_heads",
    "mlp_ratio", "qkv_bias", "class_token", "reg_tokens", "no_embed_class", "pre_norm", "fc_norm",
    "final_norm", "init_values", "qk_norm", "pos_embed", "dynamic_img_size", "distilled",
)


def create_vit(architecture: dict[str, Any], jigsaw_grid: Optional[tuple[int, int]] = None) -> VisionTransformer:
    """Build a timm ``VisionTransformer`` from sidecar architecture keys; a ``vitviz.jigsaw.JigsawViT``
    (a ``VisionTransformer`` owning a head over ``gh*gw`` grid positions, saved under ``jigsaw_head.``)
    when ``jigsaw_grid`` is given. ``ModelLoadError`` for a key timm's ``VisionTransformer`` lacks."""
    unknown = set(architecture) - set(_ARCH_KEYS)
    if unknown:
        raise ModelLoadError(f"unknown architecture keys {sorted(unknown)}; known: {list(_ARCH_KEYS)}")
    arch = dict(architecture)
    for key in ("img_size", "patch_size"):
        if isinstance(arch.get(key), list):
            arch[key] = tuple(arch[key])
    if arch.pop("distilled", False):  # DeiT's distillation token and second head (timm VisionTransformerDistilled)
        return VisionTransformerDistilled(**arch)
    if jigsaw_grid is not None:
        return JigsawViT(jigsaw_grid, **arch)
    return VisionTransformer(**arch)


def load_model(ref: str | os.PathLike, device: Optional[torch.device | str] = None) -> VisionTransformer:
    """Load a model by checkpoint name, timm name, or path to a weights file.

    Args:
        ref: a checkpoint name found by ``checkpoint_dirs``; a timm ViT name (optionally
            prefixed ``timm:``); or a path to ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin``.
        device: where to put it; ``default_device()`` when omitted.

    Returns:
        The model in eval mode on ``device``, with ``model.card`` (a ``ModelCard``).

    Raises:
        ModelLoadError: unknown name, unreadable or untrusted file, weights that do not fit.
    """
    device = torch.device(device) if device is not None else default_device()
    ref_str = str(ref).strip()
    if not ref_str:
        raise ModelLoadError("no model named")
    source, target = resolve(ref_str)
    if source == "timm":
        model = _load_timm(target)
    elif source == "file":
        model = _load_file(target)
    else:
        model = _load_checkpoint(target)
    return model.to(device).eval()


def _load_checkpoint(weights_path: Path) -> VisionTransformer:
    sidecar = read_sidecar(weights_path)
    jigsaw = sidecar.get("jigsaw")
    jigsaw_grid = tuple(jigsaw["grid"]) if jigsaw else None
    model = create_vit(sidecar["architecture"], jigsaw_grid)
    state = read_weights(weights_path)
    load_state(model, state, weights_path.name)
    norm = sidecar.get("normalization", {})
    model.card = _card_for(
        model,
        name=sidecar.get("name", weights_path.stem),
        source="checkpoint",
        provenance=_checkpoint_provenance(sidecar),
        mean=tuple(norm.get("mean", IMAGENET_DEFAULT_MEAN)),
        std=tuple(norm.get("std", IMAGENET_DEFAULT_STD)),
        class_names=tuple(sidecar.get("class_names", ())),
        jigsaw_grid=jigsaw_grid,
        path=str(weights_path),
        sidecar=sidecar,
    )
    return model


def _checkpoint_provenance(sidecar: dict[str, Any]) -> str:
    training = sidecar.get("training", {})
    what = sidecar.get("kind", "checkpoint")
    parts = [f"vitviz {what} checkpoint"]
    if training.get("dataset"):
        parts.append(f"trained on {training['dataset']}")
    if training.get("steps"):
        parts.append(f"for {training['steps']} steps")
    if training.get("init"):
        parts.append(f"from {training['init']}")
    return " ".join(parts)


def _load_timm(ref: str) -> VisionTransformer:
    """``random:NAME`` (random init, the user's choice), ``hf-hub:ORG/NAME``, or a timm name whose pretrained
    weights must already be cached (``WeightsNotDownloaded`` says how to get them; never a random fallback)."""
    import timm

    ref = ref.strip()
    if ref.startswith("hf-hub:"):
        return _load_hf_hub(ref)
    random_init = ref.startswith(RANDOM_INIT)
    name = ref[len(RANDOM_INIT):].strip() if random_init else ref
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5] if re.fullmatch(r"[\w.-]+", name) else []
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ModelLoadError(f"{name!r} is neither a checkpoint in {_dirs_text()} nor a timm model name.{hint}")
    if random_init:
        model = _create_timm(name, pretrained=False)
        return _timm_card(model, f"{name} (random init)", f"timm {name}, random weights (random init, as chosen)",
                          notes=("This model has random weights, as chosen (random init): its predictions and maps show an "
                                 "untrained network.",))
    cached = cached_weights(name) or _torch_hub_file(name)
    if cached is None:
        listed = next((entry for entry in catalogue() if entry.name == name), None)
        if listed is not None:
            raise WeightsNotDownloaded(name, listed.download_mb)
        untrained = _create_timm(name, pretrained=False)  # a ViT vitviz can open, before anyone downloads it
        _check_blocks(untrained, name)
        if not hub_files(name) and _torch_hub_file(name, present=False) is None:
            raise ModelLoadError(f"timm has no pretrained weights for {name}: pick {RANDOM_INIT}{name} (random init) "
                                 "to see the architecture untrained.")
        raise WeightsNotDownloaded(name, round(4 * sum(p.numel() for p in untrained.parameters()) / 1e6))
    model = _create_timm(name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})
    return _timm_card(model, name, f"timm {name}, pretrained weights from the local cache ({cached.name})")


def _create_timm(name: str, **kwargs: Any) -> VisionTransformer:
    import timm

    try:
        model = timm.create_model(name, **kwargs)
    except Exception as e:  # timm raises many kinds for odd configs; the user needs one sentence
        raise ModelLoadError(f"timm could not build {name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(model, VisionTransformer):
        kind = type(model).__name__
        raise ModelLoadError(f"{name} is {'an' if kind[0] in 'AEIOU' else 'a'} {kind}, not a timm VisionTransformer")
    return model


def _timm_card(model: VisionTransformer, name: str, provenance: str, notes: tuple[str, ...] = (),
               class_names: Optional[tuple[str, ...]] = None, label_set: Optional[str] = None) -> VisionTransformer:
    cfg = model.pretrained_cfg or {}
    names, labels = (class_names, label_set) if class_names is not None else _timm_class_names(model.num_classes)
    model.card = _card_for(
        model,
        name=name,
        source="timm",
        provenance=provenance,
        mean=tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_DEFAULT_STD)),
        class_names=names,
        label_set=labels or "",
        notes=notes,
    )
    return model


def _load_hf_hub(ref: str) -> VisionTransformer:
    """``hf-hub:ORG/NAME`` from the cache: a transformers ViT/DeiT (converted) or a timm repository."""
    import json

    weights = cached_weights(ref)
    if weights is None:
        raise WeightsNotDownloaded(ref, None)
    folder = weights.parent
    if is_transformers_checkpoint(folder):
        model, info = read_transformers_checkpoint(folder)
        return _transformers_card(model, info, ref[len("hf-hub:"):], f"Hugging Face {ref}, converted from transformers")
    config = json.loads((folder / "config.json").read_text())
    arch = config.get("architecture")
    if not arch:
        raise ModelLoadError(f"{ref}: its config.json names no timm architecture and is not a transformers ViT/DeiT")
    overlay = {**config.get("pretrained_cfg", {}), "file": str(weights)}
    model = _create_timm(arch, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=config.get("num_classes", 1000),
                         **config.get("model_args", {}))
    names = tuple(config.get("label_names") or ()) or None
    return _timm_card(model, ref, f"Hugging Face {ref} (timm), from the local cache", class_names=names,
                      label_set="its own labels" if names else None)


def _transformers_card(model: VisionTransformer, info: dict[str, Any], name: str, provenance: str) -> VisionTransformer:
    model.card = _card_for(model, name=name, source="file", provenance=provenance, mean=info["mean"], std=info["std"],
                           class_names=info["class_names"], label_set="its own labels" if info["class_names"] else "",
                           notes=(f"Converted from transformers' {info['architecture']} to timm's layout; its logits "
                                  "equal transformers' own.",))
    return model


def _torch_hub_file(name: str, present: bool = True) -> Optional[Path]:
    """Weights timm would fetch from a URL rather than the Hub, if already in torch's hub cache (``present``),
    or that URL's would-be path whether or not it is there (``present=False``); None without a URL."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    url = getattr(cfg, "url", None) if cfg is not None else None
    if not url:
        return None
    candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
    return candidate if candidate.is_file() or not present else None


_IMAGENET_LABEL_SETS = {1000: ("imagenet-1k", "ImageNet-1k"), 21843: ("imagenet-21k", "ImageNet-21k"),
                        11821: ("imagenet-12k", "ImageNet-12k")}


def _timm_class_names(num_classes: int) -> tuple[tuple[str, ...], str]:
    """Class names and the label set's name for a head of ``num_classes``: ImageNet's from timm's
    ``ImageNetInfo`` (shipped with timm, offline) for 1k, 12k and 21k heads, numbers otherwise."""
    if num_classes in _IMAGENET_LABEL_SETS:
        from timm.data import ImageNetInfo

        subset, label_set = _IMAGENET_LABEL_SETS[num_classes]
        info = ImageNetInfo(subset)
        return tuple(info.index_to_description(i) for i in range(num_classes)), label_set
    return tuple(f"class {i}" for i in range(num_classes)), ""


def _load_file(path: Path) -> VisionTransformer:
    if not path.exists():
        raise ModelLoadError(f"No file at {path}.")
    if path.is_dir() and is_transformers_checkpoint(path):
        model, info = read_transformers_checkpoint(path)
        return _transformers_card(model, info, path.name, f"transformers checkpoint {path}, converted")
    if not path.is_file():
        raise ModelLoadError(f"{path} is a folder but not a transformers ViT/DeiT checkpoint (config.json + "
                             "model.safetensors); give a weights file or such a folder.")
    if path.suffix == ".safetensors" and path.with_suffix(".json").exists():
        return _load_checkpoint(path)
    state = read_weights(path)
    architecture, notes = _infer_architecture(state, path.name)
    jigsaw_grid = None
    if "jigsaw_head.weight" in state:
        positions = state["jigsaw_head.weight"].shape[0]
        side = int(round(positions ** 0.5))
        jigsaw_grid = (side, side) if side * side == positions else None
    model = create_vit(architecture, jigsaw_grid)
    load_state(model, state, path.name)
    class_count = architecture.get("num_classes", 0)
    class_names, label_set = _timm_class_names(class_count) if class_count else ((), "")
    model.card = _card_for(
        model,
        name=path.stem,
        source="file",
        provenance=f"weights file {path.name}, architecture inferred from its tensors",
        mean=tuple(IMAGENET_DEFAULT_MEAN),
        std=tuple(IMAGENET_DEFAULT_STD),
        class_names=class_names,
        label_set=label_set,
        jigsaw_grid=jigsaw_grid,
        path=str(path),
        notes=notes + ("No sidecar: ImageNet normalisation assumed.",),
    )
    return model


def _infer_architecture(state: dict[str, torch.Tensor], filename: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A timm VisionTransformer configuration that fits a bare state dict."""
    state_keys = list(state)
    for prefix in ("module.", "_orig_mod."):
        if state_keys and all(k.startswith(prefix) for k in state_keys):
            for k in state_keys:
                state[k[len(prefix):]] = state.pop(k)
            state_keys = list(state)
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 4:
        raise ModelLoadError(f"{filename} is not a ViT checkpoint: it has no patch_embed.proj.weight")
    embed_dim, in_chans, patch_size, _ = proj.shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if depth == 0:
        raise ModelLoadError(f"{filename} is not a ViT checkpoint: it has no transformer blocks")
    class_token = "cls_token" in state
    distilled = "dist_token" in state
    reg_tokens = state["reg_token"].shape[1] if "reg_token" in state else 0
    pos = state.get("pos_embed")
    num_prefix = int(class_token) + int(distilled) + reg_tokens
    notes: list[str] = []
    if pos is None:
        raise ModelLoadError(f"{filename} has no pos_embed: only ViTs with learned absolute position embeddings can be read without a sidecar")
    num_pos = pos.shape[1]
    no_embed_class = False
    grid = int(round((num_pos - num_prefix) ** 0.5))
    if grid * grid != num_pos - num_prefix:
        grid = int(round(num_pos ** 0.5))
        no_embed_class = True
        if grid * grid != num_pos:
            raise ModelLoadError(f"{filename}: pos_embed of {num_pos} tokens is not a square grid")
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    num_classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    num_heads = max(1, embed_dim // 64)
    notes.append(f"Heads assumed to be embed_dim/64 = {num_heads} (not stored in a bare weights file).")
    architecture = dict(
        img_size=grid * patch_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=hidden / embed_dim,
        num_classes=num_classes,
        class_token=class_token,
        reg_tokens=reg_tokens,
        no_embed_class=no_embed_class,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        global_pool="token" if class_token else "avg",
        fc_norm="fc_norm.weight" in state,
        final_norm="norm.weight" in state or "fc_norm.weight" in state,
        pre_norm="norm_pre.weight" in state,
        init_values=1e-5 if "blocks.0.ls1.gamma" in state else None,
        **({"distilled": True} if distilled else {}),
    )
    return architecture, tuple(notes)


def _card_for(model: VisionTransformer, **fields: Any) -> ModelCard:
    _check_blocks(model, fields["name"])
    if fields["source"] != "timm":  # timm's data config for models timm did not build: the whole image, bicubic
        model.pretrained_cfg = dict(input_size=(3, *model.patch_embed.img_size), crop_pct=1.0, crop_mode="center",
                                    interpolation="bicubic", mean=tuple(fields["mean"]), std=tuple(fields["std"]))
    patch_embed = model.patch_embed
    first = model.blocks[0]
    attn = getattr(first, "attn", first)  # a ParallelScalingBlock is its own attention
    return ModelCard(
        image_size=tuple(patch_embed.img_size),
        patch_size=int(patch_embed.patch_size[0]),
        grid_size=tuple(patch_embed.grid_size),
        num_prefix_tokens=int(model.num_prefix_tokens),
        has_class_token=model.cls_token is not None,
        embed_dim=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(attn.num_heads),
        num_parameters=sum(p.numel() for p in model.parameters()),
        prefix_names=_prefix_names(model),
        **fields,
    )


def _prefix_names(model: VisionTransformer) -> tuple[str, ...]:
    """The prefix tokens in the order timm's ``_pos_embed`` puts them: class, distillation, registers."""
    names = ["class token"] if model.cls_token is not None else []
    if getattr(model, "dist_token", None) is not None:
        names.append("distillation token")
    reg_token = getattr(model, "reg_token", None)
    names += [f"register {i + 1}" for i in range(reg_token.shape[1] if reg_token is not None else 0)]
    assert len(names) == model.num_prefix_tokens, (names, model.num_prefix_tokens)
    return tuple(names)


# Blocks whose attention vitviz records as one [B, H, N, N] softmax map per block.
_RECORDABLE_BLOCKS = (Block, ResPostBlock, ParallelScalingBlock)
_WHY_NOT = {
    "ParallelThingsBlock": "several attention layers side by side in each block, so no one map per block",
    "DiffParallelScalingBlock": "differential attention (the difference of two softmax maps, not one distribution)",
    "DiffAttention": "differential attention (the difference of two softmax maps, not one distribution)",
}


def _check_blocks(model: VisionTransformer, name: str) -> None:
    """``ModelLoadError`` naming the block type when a block's attention cannot be recorded."""
    for block in model.blocks:
        kind = type(block)
        attn = getattr(block, "attn", None)
        if kind in (Block, ResPostBlock) and type(attn) is Attention or kind is ParallelScalingBlock:
            continue
        what = kind.__name__ if kind not in (Block, ResPostBlock) else f"{kind.__name__} with {type(attn).__name__}"
        why = _WHY_NOT.get(kind.__name__) or _WHY_NOT.get(type(attn).__name__) or "attention vitviz cannot record"
        raise ModelLoadError(f"{name} is built from timm's {what}: {why}. vitviz opens ViTs whose blocks are "
                             f"{', '.join(b.__name__ for b in _RECORDABLE_BLOCKS)} with standard attention.")


def _dirs_text() -> str:
    return ", ".join(str(d) for d in checkpoint_dirs())
