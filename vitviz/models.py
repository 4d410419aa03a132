"""One registry for every model vitviz shows: bundled checkpoints, timm ViT names, local weights files.

``load_model(ref)`` returns a timm ``VisionTransformer`` on its device, in eval mode, with a
``ModelCard`` at ``model.card`` (the way timm keeps ``model.pretrained_cfg`` on the module).
A checkpoint is ``NAME.safetensors`` (weights whose keys load into the matching timm
``VisionTransformer``; a jigsaw head under ``jigsaw_head.``) plus ``NAME.json`` (the sidecar:
architecture, preprocessing, class names, training command, metrics). Nothing here touches the
network: timm weights are used only when already in the local cache.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .card import ModelCard, Source, model_card
from .devices import default_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODELS_ENV",
    "BUNDLED_MODELS_DIR",
    "ModelCard",
    "ModelEntry",
    "ModelLoadError",
    "TIMM_SUGGESTIONS",
    "checkpoint_dirs",
    "create_vit",
    "list_models",
    "load_model",
    "model_card",
    "model_version",
    "read_sidecar",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "vitviz-checkpoint/1"
MODELS_ENV = "VITVIZ_MODELS"
BUNDLED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# Offered in the picker after the checkpoints; any other timm ViT name can be typed in.
TIMM_SUGGESTIONS = (
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch32_224",
    "vit_small_patch8_224",
)
# Architecture keys a sidecar may carry; they are passed to timm's VisionTransformer as is.
_ARCH_KEYS = (
    "img_size", "patch_size", "num_classes", "global_pool", "embed_dim", "depth", "num_heads",
    "mlp_ratio", "qkv_bias", "class_token", "reg_tokens", "no_embed_class", "pre_norm", "fc_norm",
    "final_norm", "init_values", "qk_norm", "pos_embed", "dynamic_img_size",
)



class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message says why, for a person."""


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model picker."""

    ref: str  # what load_model takes
    source: Source
    label: str  # what the picker shows


def create_vit(architecture: dict[str, Any], jigsaw_grid: Optional[tuple[int, int]] = None) -> VisionTransformer:
    """Build a timm ``VisionTransformer`` from sidecar architecture keys, with a jigsaw head if asked.

    The jigsaw head maps each patch token to logits over ``gh*gw`` grid positions; it lives at
    ``model.jigsaw_head`` so its weights are saved under their own prefix.
    """
    unknown = set(architecture) - set(_ARCH_KEYS)
    if unknown:
        raise ModelLoadError(f"unknown architecture keys {sorted(unknown)}; known: {list(_ARCH_KEYS)}")
    arch = dict(architecture)
    for key in ("img_size", "patch_size"):
        if isinstance(arch.get(key), list):
            arch[key] = tuple(arch[key])
    model = VisionTransformer(**arch)
    if jigsaw_grid is not None:
        model.jigsaw_head = nn.Linear(model.embed_dim, jigsaw_grid[0] * jigsaw_grid[1])
    return model


def save_checkpoint(model: nn.Module, path: str | os.PathLike, sidecar: dict[str, Any]) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically (temporary file, then rename).

    The sidecar must hold ``architecture`` (timm VisionTransformer keys); ``format`` is added.
    Returns the weights path.
    """
    weights_path = Path(path).with_suffix(".safetensors")
    if "architecture" not in sidecar:
        raise ValueError("a checkpoint sidecar needs an 'architecture' entry")
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    sidecar = {"format": CHECKPOINT_FORMAT, **sidecar}
    tmp_weights = weights_path.with_name(weights_path.name + ".tmp")
    tmp_sidecar = weights_path.with_suffix(".json.tmp")
    save_file(state, str(tmp_weights), metadata={"format": CHECKPOINT_FORMAT})
    tmp_sidecar.write_text(json.dumps(sidecar, indent=2, default=_json_default))
    for tmp in (tmp_weights, tmp_sidecar):  # readable like any other file the user makes
        os.chmod(tmp, 0o666 & ~_umask())
    # Weights first: a sidecar never points at weights that are not complete.
    os.replace(tmp_weights, weights_path)
    os.replace(tmp_sidecar, weights_path.with_suffix(".json"))
    return weights_path


def read_sidecar(weights_path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar beside a checkpoint's weights; a missing or broken one raises ModelLoadError."""
    sidecar_path = Path(weights_path).with_suffix(".json")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{sidecar_path.name} is missing: a checkpoint needs its JSON sidecar") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{sidecar_path.name} is not valid JSON: {e}") from None
    if not isinstance(sidecar, dict) or "architecture" not in sidecar:
        raise ModelLoadError(f"{sidecar_path.name} is not a vitviz checkpoint sidecar (no 'architecture')")
    return sidecar


def checkpoint_dirs() -> list[Path]:
    """Folders searched for checkpoints: the bundled ``models/``, then ``$VITVIZ_MODELS`` if set, then
    the folder that training jobs started from the app write to (``vitviz.jobs.models_dir()``)."""
    from .jobs import models_dir  # vitviz.jobs imports nothing from vitviz at load time

    dirs = [BUNDLED_MODELS_DIR]
    extra = os.environ.get(MODELS_ENV, "").strip()
    if extra:
        dirs.extend(Path(p).expanduser() for p in extra.split(os.pathsep) if p)
    dirs.append(models_dir())
    return dirs


def list_models() -> list[ModelEntry]:
    """Checkpoints first (bundled, then user), then the suggested timm names. In each folder classifiers come
    before jigsaw models, by name: most views explain a classifier, so the first entry (the app's default) is one."""
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for directory in checkpoint_dirs():
        if not directory.is_dir():
            continue
        found = []  # (not a classifier, entry)
        for weights in sorted(directory.glob("*.safetensors")):
            if weights.stem in seen or not weights.with_suffix(".json").exists():
                continue
            seen.add(weights.stem)
            try:
                kind = read_sidecar(weights).get("kind", "checkpoint")
            except ModelLoadError:
                kind = "unreadable sidecar"
            found.append((kind != "classifier", ModelEntry(weights.stem, "checkpoint", f"{weights.stem} ({kind})")))
        entries.extend(entry for _, entry in sorted(found, key=lambda item: item[0]))  # a stable sort: by name within each group
    entries.extend(ModelEntry(name, "timm", f"{name} (timm)") for name in TIMM_SUGGESTIONS)
    return entries


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
    source, target = _resolve(ref_str)
    if source == "timm":
        model = _load_timm(target)
    elif source == "file":
        model = _load_file(target)
    else:
        model = _load_checkpoint(target)
    return model.to(device).eval()


def model_version(ref: str | os.PathLike) -> str:
    """Which file ``ref`` names now and its size and modification time;
    empty for a timm name. With the ref it keys caches, so a checkpoint trained again under the
    same name is loaded again."""
    source, target = _resolve(str(ref).strip())
    if source == "timm":
        return ""
    try:
        stat = target.stat()
    except OSError:
        return ""
    return f"{target}:{stat.st_size}-{stat.st_mtime_ns}"


def _resolve(ref: str) -> tuple[Source, Any]:
    """What ``ref`` names: ("timm", model name), ("file", weights path) or ("checkpoint", weights path)."""
    if ref.startswith("timm:"):
        return "timm", ref[len("timm:"):]
    path = Path(ref).expanduser()
    if path.suffix in (".safetensors", ".pth", ".pt", ".bin") or os.sep in ref:
        return "file", path
    checkpoint = _find_checkpoint(ref)
    return ("checkpoint", checkpoint) if checkpoint is not None else ("timm", ref)


def _find_checkpoint(name: str) -> Optional[Path]:
    for directory in checkpoint_dirs():
        candidate = directory / f"{name}.safetensors"
        if candidate.is_file():
            return candidate
    return None


def _load_checkpoint(weights_path: Path) -> VisionTransformer:
    sidecar = read_sidecar(weights_path)
    jigsaw = sidecar.get("jigsaw")
    jigsaw_grid = tuple(jigsaw["grid"]) if jigsaw else None
    model = create_vit(sidecar["architecture"], jigsaw_grid)
    state = _read_safetensors(weights_path)
    _load_state(model, state, weights_path.name)
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


def _load_timm(name: str) -> VisionTransformer:
    import timm

    name = name.strip()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5] if re.fullmatch(r"[\w.-]+", name) else []
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ModelLoadError(f"{name!r} is neither a checkpoint in {_dirs_text()} nor a timm model name.{hint}")
    cached = _cached_pretrained_file(name)
    notes: tuple[str, ...] = ()
    try:
        if cached is not None:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})
            provenance = f"timm {name}, pretrained weights from the local cache"
        else:
            model = timm.create_model(name, pretrained=False)
            provenance = f"timm {name}, random weights"
            notes = (f"No pretrained weights for {name} are in the local cache and vitviz never downloads: "
                     "this model has random weights.",)
    except Exception as e:  # timm raises many kinds for odd configs; the user needs one sentence
        raise ModelLoadError(f"timm could not build {name}: {e}") from None
    if not isinstance(model, VisionTransformer):
        raise ModelLoadError(f"{name} is a {type(model).__name__}, not a timm VisionTransformer")
    cfg = model.pretrained_cfg or {}
    model.card = _card_for(
        model,
        name=name,
        source="timm",
        provenance=provenance,
        mean=tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_DEFAULT_STD)),
        class_names=_timm_class_names(model.num_classes),
        notes=notes,
    )
    return model


def _cached_pretrained_file(name: str) -> Optional[Path]:
    """The pretrained weights file for ``name`` if it is already on disk, without any network call."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    url = getattr(cfg, "url", None)
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        if candidate.is_file():
            return candidate
    return None


def _timm_class_names(num_classes: int) -> tuple[str, ...]:
    if num_classes in (1000, 21843, 11821):
        from timm.data import ImageNetInfo

        info = ImageNetInfo({1000: "imagenet-1k", 21843: "imagenet-21k", 11821: "imagenet-12k"}[num_classes])
        return tuple(info.index_to_description(i) for i in range(num_classes))
    return tuple(f"class {i}" for i in range(num_classes))


def _load_file(path: Path) -> VisionTransformer:
    if not path.exists():
        raise ModelLoadError(f"No file at {path}.")
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a file.")
    if path.suffix == ".safetensors" and path.with_suffix(".json").exists():
        return _load_checkpoint(path)
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch_weights(path)
    architecture, notes = _infer_architecture(state, path.name)
    jigsaw_grid = None
    if "jigsaw_head.weight" in state:
        positions = state["jigsaw_head.weight"].shape[0]
        side = int(round(positions ** 0.5))
        jigsaw_grid = (side, side) if side * side == positions else None
    model = create_vit(architecture, jigsaw_grid)
    _load_state(model, state, path.name)
    class_count = architecture.get("num_classes", 0)
    model.card = _card_for(
        model,
        name=path.stem,
        source="file",
        provenance=f"weights file {path.name}, architecture inferred from its tensors",
        mean=tuple(IMAGENET_DEFAULT_MEAN),
        std=tuple(IMAGENET_DEFAULT_STD),
        class_names=_timm_class_names(class_count) if class_count else (),
        jigsaw_grid=jigsaw_grid,
        path=str(path),
        notes=notes + ("No sidecar: ImageNet normalisation assumed.",),
    )
    return model


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path.name} is not a readable safetensors file (corrupt or truncated?): {e}") from None


def _read_torch_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        # weights_only: tensors and plain containers only; a pickle that would run code is refused.
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e).split("\n")[0]
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "Unpickler" in str(e):
            raise ModelLoadError(
                f"{path.name} was refused: it holds Python objects other than tensors, and unpickling "
                f"them could run code. Save a plain state dict or use safetensors. ({text})"
            ) from None
        raise ModelLoadError(f"{path.name} is not a readable PyTorch weights file (corrupt or truncated?): {text}") from None
    for key in ("model_ema", "state_dict_ema", "model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path.name} does not hold a state dict of tensors")
    return obj


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
    reg_tokens = state["reg_token"].shape[1] if "reg_token" in state else 0
    pos = state.get("pos_embed")
    num_prefix = int(class_token) + reg_tokens
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
    )
    return architecture, tuple(notes)


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], filename: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {'; '.join(wrong[:2])})")
        raise ModelLoadError(f"{filename} does not fit its architecture: " + ", ".join(parts))
    model.load_state_dict(state)


def _card_for(model: VisionTransformer, **fields: Any) -> ModelCard:
    patch_embed = model.patch_embed
    return ModelCard(
        image_size=tuple(patch_embed.img_size),
        patch_size=int(patch_embed.patch_size[0]),
        grid_size=tuple(patch_embed.grid_size),
        num_prefix_tokens=int(model.num_prefix_tokens),
        has_class_token=model.cls_token is not None,
        embed_dim=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(model.blocks[0].attn.num_heads),
        num_parameters=sum(p.numel() for p in model.parameters()),
        **fields,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def _dirs_text() -> str:
    return ", ".join(str(d) for d in checkpoint_dirs())


def _json_default(value: Any) -> Any:
    if isinstance(value, (Path, torch.device)):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
