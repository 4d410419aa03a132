"""Checkpoint files: a ``NAME.safetensors`` of weights and its ``NAME.json`` sidecar, and bare weights files.

A checkpoint's weights are keys that load into the matching timm ``VisionTransformer`` (a jigsaw
head under ``jigsaw_head.``); the sidecar holds the architecture (timm ``VisionTransformer`` keys),
normalisation, class names, training command, data set, steps, metrics and code version. Both are
written atomically (temporary file, then rename), weights first. Bare ``.pth``/``.pt``/``.bin`` files
are read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "ModelLoadError",
    "WEIGHTS_SUFFIXES",
    "load_state",
    "read_sidecar",
    "read_weights",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "vitviz-checkpoint/1"
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message says why, for a person."""


def save_checkpoint(model: nn.Module, path: str | os.PathLike, sidecar: dict[str, Any],
                    dtype: torch.dtype | None = None) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically (temporary file, then rename).

    The sidecar must hold ``architecture`` (timm VisionTransformer keys); ``format`` is added. ``dtype``
    (e.g. ``torch.float16``: half the file) casts the floating-point tensors; loading casts them back to the
    model's float32. Returns the weights path.
    """
    weights_path = Path(path).with_suffix(".safetensors")
    if "architecture" not in sidecar:
        raise ValueError("a checkpoint sidecar needs an 'architecture' entry")
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
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


# The first bytes of the files most often given by mistake where weights belong: images. A safetensors file
# starts with its header's length (8 bytes, little-endian) and then "{", so BMP and TIFF are also checked
# for the zeros or offsets they carry where a safetensors file has its "{".
_IMAGE_SIGNATURES = (
    ("a JPEG image", lambda h: h.startswith(b"\xff\xd8\xff")),
    ("a PNG image", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    ("a GIF image", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ("a WebP image", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ("a BMP image", lambda h: h[:2] == b"BM" and h[6:10] == b"\0\0\0\0"),
    ("a TIFF image", lambda h: h[:4] in (b"II*\0", b"MM\0*") and h[4:8] != b"\0\0\0\0"),
)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt``/``.bin`` state dict read without
    running any pickled code; ``ModelLoadError`` saying why for anything else (an image given as weights
    is named as one)."""
    _refuse_images(path)
    return _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch_weights(path)


def _refuse_images(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return  # the readers below say why
    what = next((name for name, matches in _IMAGE_SIGNATURES if matches(head)), None)
    if what is not None:
        raise ModelLoadError(f"{path.name} is {what}, not a model's weights: give a .safetensors or .pth file "
                             "here, and choose images under Image in the sidebar.")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path.name} is not a readable safetensors file: it is damaged, cut short or another "
                             f"kind of file (the reader said: {e}).") from None


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
        raise ModelLoadError(f"{path.name} is not a readable PyTorch weights file: it is damaged, cut short or "
                             f"another kind of file (the reader said: {text}).") from None
    for key in ("model_ema", "state_dict_ema", "model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path.name} does not hold a state dict of tensors")
    return obj


def load_state(model: nn.Module, state: dict[str, torch.Tensor], filename: str) -> None:
    """Load ``state`` into ``model`` exactly; ``ModelLoadError`` naming missing, unexpected and mis-shaped tensors."""
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def _json_default(value: Any) -> Any:
    if isinstance(value, (Path, torch.device)):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
