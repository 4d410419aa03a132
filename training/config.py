"""Training configuration: plain dataclasses, one commented value per option.

The comment on each field is also its ``--help`` text (``field_help``), so the two never drift.
Also the model-size presets and the ``--device`` option's meaning.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, fields
from typing import Any, Optional

import torch

from vitviz.devices import default_device

__all__ = [
    "ConfigError",
    "EvaluateConfig",
    "FinetuneConfig",
    "MODEL_PRESETS",
    "PretrainConfig",
    "QuickstartConfig",
    "TrainConfig",
    "field_help",
    "model_shape",
    "resolve_device",
]


class ConfigError(ValueError):
    """An option value that cannot work; the message names it."""


# Model sizes: (embed_dim, depth, num_heads). The vit_* ones are timm's ViT-Ti/S/B widths.
MODEL_PRESETS: dict[str, tuple[int, int, int]] = {
    "micro": (64, 2, 2),  # seconds per run on a CPU: tests and smoke runs
    "tiny": (128, 4, 4),  # CPU: a few minutes gives a working jigsaw model
    "starter": (128, 4, 4),  # the bundled starter models: on a 2-core CPU more steps beat more depth
    "vit_tiny": (192, 12, 3),  # GPU
    "vit_small": (384, 12, 6),  # GPU
    "vit_base": (768, 12, 12),  # GPU
}


@dataclass
class TrainConfig:
    """What pretrain and finetune share."""

    # run and files
    name: str = "my-vit"  # checkpoint name: OUT_DIR/NAME.safetensors (best weights) + NAME.json (sidecar)
    out_dir: str = "models"  # where the checkpoint goes; the app lists models/ and $VITVIZ_MODELS
    run_dir: str = "runs"  # RUN_DIR/NAME/ holds the last checkpoint, resume state and metrics.jsonl
    resume: bool = False  # continue the run in RUN_DIR/NAME from its last checkpoint (same options)
    # data
    data: str = "shapes"  # dataset spec: photos, procedural, shapes, digits, cifar10, cifar100, folder:PATH, or a mixture like photos:1+procedural:1
    eval_data: str = ""  # dataset spec for evaluation; empty = the training data
    eval_images: int = 512  # size of the fixed evaluation set drawn from each split
    # model
    model: str = "tiny"  # size preset: micro, tiny, starter (CPU); vit_tiny, vit_small, vit_base (GPU)
    embed_dim: int = 0  # token width; 0 = from the preset
    depth: int = 0  # number of transformer blocks; 0 = from the preset
    num_heads: int = 0  # attention heads per block; 0 = from the preset
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of the token width
    image_size: int = 64  # input side in pixels (square)
    patch_size: int = 8  # patch side in pixels; must divide the image size
    # optimisation
    batch_size: int = 64  # images per optimizer step (per process under torchrun)
    steps: int = 1000  # optimizer steps; 0 = no step limit (needs --minutes)
    minutes: float = 0.0  # time budget in minutes, 0 = none; with --steps too, whichever comes first ends the run
    opt: str = "adamw"  # any timm optimizer name (timm.optim.create_optimizer_v2)
    lr: float = 1e-3  # peak learning rate, reached after the warm-up
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    warmup: float = 0.2  # warm-up length as a fraction of the budget (a ViT given only a few dozen warm-up steps stalls)
    weight_decay: float = 0.05  # decoupled weight decay (not on biases and norms)
    grad_clip: float = 1.0  # clip the gradient norm to this; 0 = off
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    ema_decay: float = 0.0  # keep an exponential moving average of the weights (e.g. 0.999) and evaluate and save it; 0 = off
    # evaluation, logging, checkpoints
    eval_every: int = 200  # evaluate on the validation split and write the checkpoints every this many steps
    log_every: int = 10  # log training loss, learning rate and speed every this many steps
    # system
    seed: int = 0  # seeds the weights, the data stream and the evaluation set
    device: str = "auto"  # auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps
    amp: bool = True  # bf16 autocast on CUDA (ignored elsewhere)
    compile: bool = False  # torch.compile the model (worth it on a GPU for long runs)
    threads: int = 0  # CPU threads for torch; 0 = all cores but one (on a busy 2-core machine two threads run ~10x slower than one)


@dataclass
class PretrainConfig(TrainConfig):
    """Jigsaw pretext: shuffled patch tokens without positions, predict each one's grid position."""

    name: str = "my-jigsaw"  # checkpoint name: OUT_DIR/NAME.safetensors (best weights) + NAME.json (sidecar)
    data: str = "photos:1+procedural:1"  # dataset spec: photos, procedural, shapes, digits, cifar10, cifar100, folder:PATH, or a mixture like photos:1+procedural:1
    image_size: int = 32  # input side in pixels; a coarser grid than the fine-tune's is fine (the blocks see no positions)
    lr: float = 2e-3  # peak learning rate, reached after the warm-up
    key_drop: float = 0.0  # fraction of patch tokens hidden from the attention keys (harder puzzles); in [0, 1)


@dataclass
class FinetuneConfig(TrainConfig):
    """Classification with learned positional embeddings and a class head, from a jigsaw checkpoint or scratch."""

    name: str = "my-classifier"  # checkpoint name: OUT_DIR/NAME.safetensors (best weights) + NAME.json (sidecar)
    init: str = ""  # jigsaw checkpoint (name or path) whose patch embedding, class token, blocks and norms start the model; empty = random weights
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    layer_decay: float = 0.0  # layer-wise learning-rate decay (e.g. 0.75: earlier blocks learn slower); 0 = off


@dataclass
class QuickstartConfig:
    """The starter models: starter-jigsaw, then starter-shapes fine-tuned from it and starter-shapes-scratch."""

    minutes: float = 20.0  # total time budget for the three runs and their evaluations
    out_dir: str = "models"  # where the three checkpoints go
    run_dir: str = "runs"  # where their last checkpoints, resume states and metrics go
    model: str = "starter"  # size preset shared by the three models
    seed: int = 0  # seeds all three runs
    device: str = "auto"  # auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps
    threads: int = 0  # CPU threads for torch; 0 = all cores but one


@dataclass
class EvaluateConfig:
    """A checkpoint's metrics on one split of a dataset."""

    checkpoint: str = ""  # the checkpoint to evaluate: a name in models/ or $VITVIZ_MODELS, or a .safetensors path
    data: str = ""  # dataset spec; empty = the data the checkpoint was evaluated on while training
    split: str = "val"  # train, val or test
    images: int = 512  # size of the fixed evaluation set
    batch_size: int = 256  # images per forward pass
    seed: int = -1  # seeds the evaluation set and its shuffles; -1 = the checkpoint's training seed (reproduces its sidecar metrics)
    device: str = "auto"  # auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps


def field_help(cls: type) -> dict[str, str]:
    """Each field's trailing comment in the class source, nearest subclass first."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not hasattr(klass, "__dataclass_fields__"):
            continue
        for line in inspect.getsource(klass).splitlines():
            match = re.match(r"\s+(\w+): [^=]+=.*?  # (.+)$", line)
            if match:
                helps[match.group(1)] = match.group(2)
    missing = [f.name for f in fields(cls) if f.name not in helps]
    assert not missing, f"fields without a comment: {missing}"
    return helps


def model_shape(config: TrainConfig) -> dict[str, Any]:
    """The timm VisionTransformer size keys for a config: the preset, with explicit values winning."""
    if config.model not in MODEL_PRESETS:
        raise ConfigError(f"unknown model preset {config.model!r}; choose from {', '.join(MODEL_PRESETS)}")
    embed_dim, depth, num_heads = MODEL_PRESETS[config.model]
    embed_dim = config.embed_dim or embed_dim
    num_heads = config.num_heads or num_heads
    if embed_dim % num_heads:
        raise ConfigError(f"--embed-dim {embed_dim} is not divisible by --num-heads {num_heads}")
    if config.image_size <= 0 or config.patch_size <= 0 or config.image_size % config.patch_size:
        raise ConfigError(f"--patch-size {config.patch_size} does not divide --image-size {config.image_size}")
    return dict(img_size=config.image_size, patch_size=config.patch_size, embed_dim=embed_dim,
                depth=config.depth or depth, num_heads=num_heads, mlp_ratio=config.mlp_ratio)


def resolve_device(name: str, local_rank: Optional[int] = None) -> torch.device:
    """``auto`` = the best device here (CUDA, else MPS, else CPU); under torchrun, CUDA device ``local_rank``."""
    if name == "auto":
        try:
            device = default_device()
        except ValueError as e:  # a bad VITVIZ_DEVICE
            raise ConfigError(str(e)) from None
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"--device {name!r} is not a device name (auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} but CUDA is not available on this machine")
    if device.type == "cuda" and local_rank is not None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device
