"""Training configuration: plain dataclasses, one commented value per option.

The comment on each field is also its ``--help`` text (``field_help``), so the two never drift.
Also the model-size presets and the ``--device`` option's meaning.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Optional

import torch

from vitviz.checkpoints import ModelLoadError
from vitviz.devices import default_device

from .start import Start, vit_architecture

__all__ = [
    "ConfigError",
    "EvaluateConfig",
    "FinetuneConfig",
    "HalveConfig",
    "MODEL_PRESETS",
    "PretrainConfig",
    "QuickstartConfig",
    "TrainConfig",
    "check_config",
    "describe_start",
    "field_help",
    "init_sidecar",
    "model_shape",
    "resolve_device",
]


DEFAULT_PATCH_SIZE = 8  # a fine-tune's patch side when neither --patch-size nor --init gives one


class ConfigError(ValueError):
    """An option value that cannot work; the message names it, ``field`` the option (None for several)."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


# Model sizes as timm's VisionTransformer keyword arguments. The vit_* ones are timm's ViT-Ti/S/B widths.
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "micro": dict(embed_dim=64, depth=2, num_heads=2),  # seconds per run on a CPU: tests and smoke runs
    "tiny": dict(embed_dim=128, depth=4, num_heads=4),  # CPU: a few minutes gives a working jigsaw model
    "starter": dict(embed_dim=128, depth=4, num_heads=4),  # the bundled starter models: on a 2-core CPU more steps beat more depth
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),  # GPU
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),  # GPU
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),  # GPU
}


@dataclass
class TrainConfig:
    """What pretrain and finetune share."""

    # run and files
    name: str = "my-vit"  # checkpoint name: OUT_DIR/NAME.safetensors (best weights) + NAME.json (sidecar)
    out_dir: str = "models"  # where the checkpoint goes; the app lists models/ and $VITVIZ_MODELS
    run_dir: str = "runs"  # RUN_DIR/NAME/ holds the last checkpoint, resume state and metrics.jsonl
    resume: bool = False  # continue the run in RUN_DIR/NAME from its last checkpoint (same options; --threads, --device, --compile and --log-every may change)
    # data
    data: str = "shapes"  # dataset spec: photos, procedural, shapes, digits, cifar10, cifar100, folder:PATH, crops:PATH, upload:NAME, or a mixture like photos:1+procedural:1
    eval_data: str = ""  # dataset spec for evaluation; empty = the training data
    eval_images: int = 512  # size of the fixed evaluation set drawn from each split
    # model
    model: str = "tiny"  # size preset: micro, tiny, starter (CPU); vit_tiny, vit_small, vit_base (GPU)
    embed_dim: int = 0  # token width; 0 = from the preset
    depth: int = 0  # number of transformer blocks; 0 = from the preset
    num_heads: int = 0  # attention heads per block; 0 = from the preset
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of the token width
    image_size: int = 64  # input side in pixels (square)
    patch_size: int = 0  # patch side in pixels; must divide the image size; 0 = the --init checkpoint's, else 8
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
    data: str = "photos:1+procedural:1"  # dataset spec: photos, procedural, shapes, digits, cifar10, cifar100, folder:PATH, crops:PATH, or a mixture like photos:1+procedural:1
    image_size: int = 32  # input side in pixels; a coarser grid than the fine-tune's is fine (the blocks see no positions)
    lr: float = 2e-3  # peak learning rate, reached after the warm-up
    key_drop: float = 0.0  # fraction of patch tokens hidden from the attention keys (harder puzzles); in [0, 1)
    seam_loss: float = 0.0  # weight of the seam loss (which patch lies right of and below each one), added to the position loss; 0 = off
    init: str = ""  # a jigsaw checkpoint to go on from (name or .safetensors path): its weights under a new learning-rate schedule, its model size (its jigsaw head too when the grid is the same); empty = random weights


@dataclass
class FinetuneConfig(TrainConfig):
    """Classification with learned positional embeddings and a class head, from a jigsaw checkpoint or scratch."""

    name: str = "my-classifier"  # checkpoint name: OUT_DIR/NAME.safetensors (best weights) + NAME.json (sidecar)
    init: str = ""  # the starting model (name or .safetensors path): a jigsaw checkpoint gives its blocks (positions and head new), a classifier checkpoint or a timm ViT name everything but its head; empty = random weights
    mode: str = "full"  # what trains: full (every weight), last (the last --train-blocks blocks, the final norm and the head) or probe (the head alone, on the frozen model's features, computed once)
    train_blocks: int = 2  # with --mode last: how many of the last blocks train
    probe_images: int = 4096  # with --mode probe: training images whose features are computed (a finite data set gives at most all of its own)
    augment: str = "device"  # training augmentation: device (the data set's own crops and flips, made on the device) or timm (timm.data.create_transform(is_training=True) for the starting model's data config, per image on the CPU)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    layer_decay: float = 0.0  # layer-wise learning-rate decay (e.g. 0.75: earlier blocks learn slower); 0 = off


@dataclass
class QuickstartConfig:
    """The starter models: a jigsaw model, then a shapes classifier fine-tuned from it and one from scratch."""

    minutes: float = 20.0  # total time budget for the three runs and their evaluations
    patch_size: int = 8  # 8: starter-jigsaw (32 px, 4x4 grid) and starter-shapes(-scratch) at 64 px; 16: the starter-*-16 models at 112 px (7x7 grid)
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


@dataclass
class HalveConfig:
    """Store a checkpoint's weights in float16: half the file; the views load them back as float32."""

    checkpoint: str = ""  # the checkpoint to store in float16: a name in models/ or $VITVIZ_MODELS, or a .safetensors path
    device: str = "auto"  # where it is evaluated before and after: auto (CUDA, else MPS, else CPU), cpu, cuda, mps


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
        raise ConfigError(f"model size {config.model!r} is not one of {', '.join(MODEL_PRESETS)} "
                          "(unknown model preset)", "model")
    preset = MODEL_PRESETS[config.model]
    embed_dim = config.embed_dim or preset["embed_dim"]
    num_heads = config.num_heads or preset["num_heads"]
    if embed_dim % num_heads:
        raise ConfigError(f"--embed-dim {embed_dim} is not divisible by --num-heads {num_heads}", "num_heads")
    patch_size = config.patch_size or DEFAULT_PATCH_SIZE
    if config.image_size <= 0 or patch_size <= 0 or config.image_size % patch_size:
        raise ConfigError(f"image size {config.image_size} is not a multiple of the patch size {patch_size} "
                          "(the patch size does not divide it)", "image_size")
    return dict(img_size=config.image_size, patch_size=patch_size, embed_dim=embed_dim,
                depth=config.depth or preset["depth"], num_heads=num_heads, mlp_ratio=config.mlp_ratio)


def check_config(config: TrainConfig) -> TrainConfig:
    """Training's own checks, before any data or weights are loaded; the config with what they settle.

    Checks the budget and every bounded option, the model size, the data specs (``vitviz.data.check_spec``:
    labels are needed to fine-tune), a fine-tune's mode and augmentation and, for ``--init``, that it names a
    readable jigsaw or classifier checkpoint or a timm ViT (``training.start.describe_start``) whose size agrees
    with the options given. Settles the patch size (0 = the ``--init`` model's, else 8) and the width, depth and
    heads of an ``--init`` model. ``train`` and the app's job runner both call it.

    Raises:
        ConfigError: the option (``field``) and why, in one sentence.
        DataError: a data spec that cannot work (``vitviz.data``).
    """
    from vitviz.data import check_spec

    if config.steps < 0 or config.minutes < 0 or not (config.steps or config.minutes):
        raise ConfigError(f"a run needs a budget: --steps {config.steps} and --minutes {config.minutes} "
                          "(one must be positive)", "steps")
    for name in ("batch_size", "eval_every", "log_every", "eval_images"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}", name)
    if not 0.0 <= config.warmup < 1.0:
        raise ConfigError(f"--warmup is a fraction of the budget in [0, 1), got {config.warmup}", "warmup")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ConfigError(f"--ema-decay must be in [0, 1), got {config.ema_decay}", "ema_decay")
    if not config.name or "/" in config.name or config.name.startswith("."):
        raise ConfigError(f"--name {config.name!r} must be a plain file name", "name")
    if isinstance(config, PretrainConfig):
        if not 0.0 <= config.key_drop < 1.0:
            raise ConfigError(f"--key-drop is a fraction in [0, 1), got {config.key_drop}", "key_drop")
        if not (config.seam_loss >= 0.0 and math.isfinite(config.seam_loss)):
            raise ConfigError(f"--seam-loss is a weight of 0 or more, got {config.seam_loss}", "seam_loss")
    if isinstance(config, FinetuneConfig):
        _check_finetune_options(config)
    labeled = isinstance(config, FinetuneConfig)
    config = replace(config, data=check_spec(config.data, labeled=labeled),
                     eval_data=check_spec(config.eval_data, labeled=labeled) if config.eval_data else "")
    if isinstance(config, (FinetuneConfig, PretrainConfig)) and config.init:
        config = _settle_init(config)
    depth = model_shape(config)["depth"]
    if isinstance(config, FinetuneConfig) and config.mode == "last" and config.train_blocks > depth:
        raise ConfigError(f"--train-blocks {config.train_blocks} is more than the model's {depth} blocks "
                          f"(choose 1 to {depth}, or --mode full)", "train_blocks")
    return replace(config, patch_size=config.patch_size or DEFAULT_PATCH_SIZE)


def _check_finetune_options(config: FinetuneConfig) -> None:
    modes = ("full", "last", "probe")
    if config.mode not in modes:
        raise ConfigError(f"--mode {config.mode!r} is not one of {', '.join(modes)}", "mode")
    if config.augment not in ("device", "timm"):
        raise ConfigError(f"--augment {config.augment!r} is not one of device, timm", "augment")
    if config.mode == "probe" and config.augment == "timm":
        raise ConfigError("--augment timm does not apply to --mode probe: a probe computes its features once, "
                          "from unaugmented images", "augment")
    if config.train_blocks < 1:
        raise ConfigError(f"--train-blocks must be at least 1, got {config.train_blocks}", "train_blocks")
    if config.probe_images < 1:
        raise ConfigError(f"--probe-images must be positive, got {config.probe_images}", "probe_images")


def init_sidecar(init: str) -> tuple[Path, dict[str, Any]]:
    """The weights file and sidecar that ``--init`` names (a checkpoint name or a ``.safetensors`` path)."""
    from vitviz.checkpoints import read_sidecar
    from vitviz.registry import checkpoint_dirs, resolve

    source, target = resolve(init)
    if source == "timm":
        raise ConfigError(f"starting checkpoint {init!r} is not a checkpoint in "
                          f"{', '.join(str(d) for d in checkpoint_dirs())}", "init")
    path = Path(target)
    if not path.is_file():
        raise ConfigError(f"No file at {path}: --init takes a checkpoint name or its .safetensors file", "init")
    try:
        return path, read_sidecar(path)
    except ModelLoadError as e:
        raise ConfigError(f"starting checkpoint {init!r} cannot be read: {e}", "init") from None


def describe_start(init: str) -> Start:
    """What ``init`` names, from a checkpoint's sidecar or a timm model built on the meta device (no weights read).

    Raises:
        ConfigError: (field "init") a missing or unreadable checkpoint, one that is neither jigsaw nor classifier,
            a name that is neither a checkpoint nor a timm ViT, or a timm model vitviz could not save and reload.
    """
    import timm
    from timm.models.vision_transformer import VisionTransformer

    from vitviz.models import create_vit
    from vitviz.registry import checkpoint_dirs, resolve

    source, target = resolve(init)
    if source != "timm":
        path, sidecar = init_sidecar(init)
        kind = sidecar.get("kind", "non-vitviz")
        if kind not in ("jigsaw", "classifier"):
            raise ConfigError(f"starting checkpoint {path.stem!r} is a {kind} checkpoint; a fine-tune starts from a "
                              "jigsaw or classifier checkpoint, a timm ViT, or random weights", "init")
        return Start(init, kind, dict(sidecar["architecture"]), path)
    name = str(target).removeprefix("random:")  # random init, or timm's pretrained weights (which load_model needs cached)
    if not timm.is_model(name):
        raise ConfigError(f"starting model {init!r} is neither a checkpoint in "
                          f"{', '.join(str(d) for d in checkpoint_dirs())} nor a timm model name", "init")
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
        if not isinstance(model, VisionTransformer):
            kind = type(model).__name__
            raise ConfigError(f"starting model {name} is {'an' if kind[0] in 'AEIOU' else 'a'} {kind}, not a timm "
                              "VisionTransformer", "init")
        architecture = vit_architecture(model)
        rebuilt = create_vit(architecture)
    ours, theirs = repr(rebuilt).splitlines(), repr(model).splitlines()
    if ours != theirs:  # e.g. another activation or norm: the saved model would not be the one trained
        first = next((t.strip() for o, t in zip(ours, theirs) if o != t), theirs[-1].strip())
        raise ConfigError(f"starting model {name} has a layer vitviz cannot save and load back as it is ({first})",
                          "init")
    return Start(init, "timm", architecture)


def _settle_init(config: FinetuneConfig | PretrainConfig) -> FinetuneConfig | PretrainConfig:
    start = describe_start(config.init)
    what, name = start.what, start.path.stem if start.path else start.ref
    if isinstance(config, PretrainConfig) and start.kind != "jigsaw":
        raise ConfigError(f"jigsaw pretraining goes on from a jigsaw checkpoint; {name!r} is a {start.kind} {what} "
                          "(fine-tune from it with: python -m training finetune --init)", "init")
    source = start.architecture
    wanted = {"patch_size": config.patch_size, "embed_dim": config.embed_dim, "depth": config.depth,
              "num_heads": config.num_heads}
    for key, value in wanted.items():
        if value and value != source[key]:
            raise ConfigError(f"--{key.replace('_', '-')} {value} differs from the --init {what}'s {source[key]}; "
                              f"the model size comes from the {what}", key)
    mlp_ratio = source.get("mlp_ratio", 4.0)
    if config.mlp_ratio not in (mlp_ratio, TrainConfig.mlp_ratio):  # the default follows the --init model
        raise ConfigError(f"--mlp-ratio {config.mlp_ratio} differs from the --init {what}'s {mlp_ratio}", "mlp_ratio")
    if getattr(config, "mode", "full") == "probe" and source.get("distilled"):
        raise ConfigError(f"starting {what} {name!r} is distilled (two heads): train it with --mode last or full",
                          "mode")
    patch_size = int(source["patch_size"])
    if config.image_size % patch_size:
        raise ConfigError(f"image size {config.image_size} is not a multiple of the patch size {patch_size} of the "
                          f"starting {what} {name!r} (the patch size does not divide it)", "image_size")
    return replace(config, patch_size=patch_size, embed_dim=source["embed_dim"], depth=source["depth"],
                   num_heads=source["num_heads"], mlp_ratio=mlp_ratio)


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
