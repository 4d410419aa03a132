"""The training loop for both tasks, read top to bottom.

``train(config)`` runs jigsaw pretraining (``PretrainConfig``) or classification fine-tuning
(``FinetuneConfig``). Under ``torchrun`` it runs data-parallel (DDP); only rank 0 evaluates and
writes. Files of a run named NAME:

- ``OUT_DIR/NAME.safetensors`` + ``NAME.json``: the best weights so far (by validation metric),
  with the final metrics once the run ends;
- ``RUN_DIR/NAME/last.safetensors`` + ``last.json``: the latest evaluated weights;
- ``RUN_DIR/NAME/resume.pt``: weights, optimizer, scheduler and EMA state for ``--resume``
  (tensors and plain values only, read back with ``weights_only=True``);
- ``RUN_DIR/NAME/metrics.jsonl``: one JSON object per log line (``split`` "train", "val" or "final").
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_model_data_config
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import vitviz
from vitviz.checkpoints import save_checkpoint
from vitviz.data import build_data, fixed_set
from vitviz.jigsaw import key_keep_mask, shuffle_permutation
from vitviz.models import create_vit

from .accuracy import (class_report, classifier_logits, classifier_scores, eval_permutations, evaluate_jigsaw,
                       normalize_images)
from .config import (ConfigError, FinetuneConfig, PretrainConfig, TrainConfig, check_config, describe_start,
                     model_shape, resolve_device)
from .finetune import ProbeFeatures, TimmAugmented, set_trainable, timm_train_transform
from .seams import SeamHead, SeamJigsaw
from .start import Start, run_architecture, start_weights

__all__ = ["RunResult", "train"]

MEAN, STD = tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
# The scheduler runs on progress through the budget (steps or minutes), in these units.
_SCHEDULE_UNITS = 10_000


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves behind."""

    checkpoint: Path
    steps: int
    elapsed_s: float
    images_per_s: float
    model: nn.Module  # the trained weights of the last step (raw, not the EMA), on this process's device
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics of the best weights
    interrupted: bool = False  # stopped by SIGTERM/SIGINT after writing its last checkpoint


def train(config: TrainConfig, command: Sequence[str] = ()) -> RunResult:
    """Train as ``config`` says; ``command`` (the argv) is recorded in the sidecar."""
    jigsaw = isinstance(config, PretrainConfig)
    kind = "jigsaw" if jigsaw else "classifier"
    config = check_config(config)  # before anything is loaded: one sentence for a bad option

    # distributed set-up: torchrun sets RANK, LOCAL_RANK and WORLD_SIZE
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, local_rank, world_size = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")) if ddp else (0, 0, 1)
    device = resolve_device(config.device, local_rank if ddp else None)
    if ddp:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0  # evaluates, logs and writes files
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) - 1))
    out_path = Path(config.out_dir) / f"{config.name}.safetensors"
    run_path = Path(config.run_dir) / config.name

    # data: each rank draws its own stream (see _reseed); the evaluation set is fixed by the seed
    with warnings.catch_warnings():  # build_data warns its notes (skipped files...): said once below, plainly
        warnings.simplefilter("ignore", UserWarning)
        train_data = build_data(config.data, "train", config.image_size, seed=config.seed, device=device)
    for note in train_data.notes if master else ():
        print(f"note: {note}", flush=True)
    eval_spec = config.eval_data or config.data

    # model: a timm VisionTransformer; jigsaw ones have no positional embedding and a jigsaw head
    config, architecture, start = _architecture(config, train_data.num_classes)
    grid = (config.image_size // config.patch_size,) * 2
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    vit = create_vit(architecture, jigsaw_grid=grid if jigsaw else None)
    mean, std, data_config = MEAN, STD, resolve_model_data_config(vit)
    if start is not None:  # its weights but the new parts; its normalisation and data config
        mean, std, data_config = start_weights(start, vit)
    vit.to(device)

    # what trains (fine-tunes): every weight, the last blocks and the head, or the head on frozen features
    mode = "full" if jigsaw else config.mode
    set_trainable(vit, mode, 0 if jigsaw else config.train_blocks)
    probe = ProbeFeatures(vit, mean, std, config.batch_size) if mode == "probe" else None
    if probe is not None:
        if ddp:
            raise ConfigError("--mode probe runs in one process, not under torchrun", "mode")
        probe_images, probe_labels, _ = fixed_set(config.data, "train", config.image_size, config.probe_images,
                                                  seed=config.seed)
        probe_features, probe_labels = probe(probe_images), probe_labels.to(device)  # (n, D), (n,): computed once
        augmentation = "none: the features of unaugmented training images, computed once"
    elif not jigsaw and config.augment == "timm":
        transform = timm_train_transform(data_config, config.image_size)
        train_data = TimmAugmented(train_data, transform)
        augmentation = f"timm: {transform}"
    else:
        augmentation = "device: the data set's own"
    # the seam loss trains a head of its own beside the ViT; only the ViT's weights are saved
    seam = SeamHead(vit.embed_dim).to(device) if jigsaw and config.seam_loss else None
    trained: nn.Module = vit if seam is None else SeamJigsaw(vit, seam)
    optimizer = create_optimizer_v2(trained, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay,
                                    layer_decay=getattr(config, "layer_decay", 0.0) or None)
    scheduler = CosineLRScheduler(optimizer, t_initial=_SCHEDULE_UNITS, lr_min=config.min_lr,
                                  warmup_t=round(config.warmup * _SCHEDULE_UNITS), warmup_lr_init=config.min_lr,
                                  t_in_epochs=False)
    ema = ModelEmaV3(vit, decay=config.ema_decay, use_warmup=True) if config.ema_decay else None
    eval_model = ema.module if ema is not None else vit
    net: nn.Module = trained  # a JigsawViT's forward takes (images, permutation, key_mask): one call DDP and compile wrap
    if config.compile:
        net = torch.compile(net)
    if ddp:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and config.amp
                else nullcontext())

    # resume: weights, optimizer, scheduler and EMA from RUN_DIR/NAME/resume.pt
    step, elapsed_before, best_score = 0, 0.0, -math.inf
    if config.resume:
        state = _read_resume(run_path / "resume.pt", config)
        vit.load_state_dict(state["model"])
        if seam is not None:
            seam.load_state_dict(state["seam"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        step, elapsed_before, best_score = int(state["step"]), float(state["elapsed"]), float(state["best_score"])
    start_step = step

    def sidecar(metrics: dict[str, Any], finished: bool) -> dict[str, Any]:
        return {
            "name": config.name,
            "kind": kind,
            "architecture": architecture,
            **({"jigsaw": {"grid": list(grid)}} if jigsaw else {}),
            "normalization": {"mean": list(mean), "std": list(std)},
            "class_names": list(train_data.class_names),
            "training": {
                "command": list(command), "dataset": config.data, "eval_dataset": eval_spec, "steps": step,
                "init": config.init or None, "mode": mode,
                "augmentation": augmentation.splitlines(), "seed": config.seed,
                "world_size": world_size, "device": str(device), "elapsed_s": round(elapsed, 1),
                "finished": finished, "config": asdict(config),
            },
            "metrics": metrics,
            "code_version": _code_version(),
        }

    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def eval_set(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed evaluation images of ``split`` and their labels; a probe keeps their features instead."""
        if split not in eval_sets:
            images, labels, _ = fixed_set(eval_spec, split, config.image_size, config.eval_images, seed=config.seed)
            eval_sets[split] = (images if probe is None else probe(images), labels)
        return eval_sets[split]

    @torch.no_grad()
    def classify(model: nn.Module, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n, C) on the CPU and labels (n,) of the evaluation set of ``split``."""
        inputs, labels = eval_set(split)
        if probe is not None:
            return model.head(inputs).float().cpu(), labels
        return classifier_logits(model, inputs, mean, std, config.batch_size), labels

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        if jigsaw:
            images, _ = eval_set(split)
            permutations = eval_permutations(len(images), grid[0] * grid[1], config.seed)
            return evaluate_jigsaw(model, images, permutations, mean, std, config.batch_size)
        return classifier_scores(*classify(model, split))

    score_key = "patch_acc_hungarian" if jigsaw else "accuracy"
    log = _MetricsLog(run_path / "metrics.jsonl", keep_until=step if config.resume else None) if master else None
    progress_bar = _Progress(config, start_step) if master else None
    stop = _StopSignal()
    rng = torch.Generator(device=train_data.device)  # the data stream and the shuffles
    loss_sum = torch.zeros((), device=device)
    seam_sum = torch.zeros((), device=device)
    images_per_step = config.batch_size * world_size
    t0 = time.perf_counter()
    t_log, step_log = t0, step
    elapsed = elapsed_before
    vit.train()
    while True:
        elapsed = elapsed_before + time.perf_counter() - t0
        progress = max(step / config.steps if config.steps else 0.0,
                       elapsed / (60 * config.minutes) if config.minutes else 0.0)
        stopping = progress >= 1.0 or stop.requested
        if ddp:  # every rank takes the same learning rate and stops at the same step
            agreed = torch.tensor([progress, float(stopping)], device=device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            progress, stopping = agreed[0].item(), bool(agreed[1].item())

        # learning rate: warm-up, then cosine decay over the budget
        scheduler.step_update(min(round(progress * _SCHEDULE_UNITS), _SCHEDULE_UNITS))

        # evaluate and checkpoint (and re-seed the random streams, so a resumed run continues exactly)
        at_boundary = step % config.eval_every == 0 or stopping
        if at_boundary or step == start_step:
            _reseed(rng, config.seed, rank, step)
        if master and at_boundary and (step != start_step or not config.resume):
            metrics = evaluate(eval_model, "val")
            log.write({"step": step, "split": "val", **metrics, "elapsed": round(elapsed, 2)})
            progress_bar.note_eval(step, metrics[score_key])
            card = sidecar({"val": metrics}, finished=False)
            if metrics[score_key] >= best_score:
                best_score = metrics[score_key]
                save_checkpoint(eval_model, out_path, card)
            save_checkpoint(eval_model, run_path / "last.safetensors", card)
            _write_resume(run_path / "resume.pt", {
                "step": step, "elapsed": elapsed, "best_score": best_score, "config": asdict(config),
                "model": vit.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), **({"ema": ema.state_dict()} if ema is not None else {}),
                **({"seam": seam.state_dict()} if seam is not None else {}),
            })
        if stopping:
            break

        # forward and backward
        if probe is None:
            images, labels = train_data.sample(config.batch_size, rng)  # (B, 3, S, S) in [0, 1], (B,)
            images = normalize_images(images, mean, std)
        with autocast:
            if probe is not None:  # the head alone, on a batch of the frozen model's features
                index = torch.randint(len(probe_labels), (config.batch_size,), generator=rng,
                                      device=rng.device).to(device)
                logits = vit.head(probe_features[index])  # (B, classes)
                targets = probe_labels[index]
            elif jigsaw:
                permutation = shuffle_permutation(grid[0] * grid[1], rng, batch_size=config.batch_size).to(device)
                key_mask = key_keep_mask(config.batch_size, vit.num_prefix_tokens, grid[0] * grid[1],
                                         config.key_drop, rng)
                logits = net(images, permutation, None if key_mask is None else key_mask.to(device))  # (B, N, N)
                if seam is not None:
                    logits, seam_loss = logits
                targets = permutation  # (B, N): token k's true grid position
            else:
                logits = net(images)  # (B, classes)
                targets = labels.to(device)
            loss = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(),
                                   label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        (loss if seam is None else loss + config.seam_loss * seam_loss).backward()

        # clip
        if config.grad_clip:
            nn.utils.clip_grad_norm_(trained.parameters(), config.grad_clip)

        # step
        optimizer.step()
        if ema is not None:
            ema.update(vit, step=step)
        step += 1
        loss_sum += loss.detach()
        if seam is not None:
            seam_sum += seam_loss.detach()

        # log (with the DDP agreement above, the only host-device syncs of the loop)
        if master and step % config.log_every == 0:
            mean_loss = (loss_sum / (step - step_log)).item()  # waits for the device, so the rate below is true
            now = time.perf_counter()
            row = {
                "step": step, "split": "train", "loss": mean_loss,
                **({"seam_loss": (seam_sum / (step - step_log)).item()} if seam is not None else {}),
                "accuracy": (logits.argmax(-1) == targets).float().mean().item(),
                "lr": max(group["lr"] for group in optimizer.param_groups),
                "images_per_s": images_per_step * (step - step_log) / (now - t_log),
                "elapsed": round(elapsed_before + now - t0, 2),
            }
            log.write(row)
            progress_bar.update(row, progress)
            loss_sum.zero_()
            seam_sum.zero_()
            t_log, step_log = now, step
    stop.restore()

    # final evaluation of the best weights, on the splits the summary reports
    total_images_per_s = images_per_step * (step - start_step) / max(time.perf_counter() - t0, 1e-9)
    result = RunResult(out_path, step, elapsed, total_images_per_s, vit, interrupted=stop.requested)
    if master:
        progress_bar.close()
        if not stop.requested:
            best = create_vit(architecture, jigsaw_grid=grid if jigsaw else None).to(device)
            best.load_state_dict(load_file(str(out_path), device=str(device)))
            report = None
            if jigsaw:
                result.metrics = {split: evaluate(best, split) for split in ("train", "val")}
            else:  # each split's logits once: its scores, and for val each class's accuracy and the confusion matrix
                outputs = {split: classify(best, split) for split in ("val", "test")}
                result.metrics = {split: classifier_scores(*outputs[split]) for split in outputs}
                report = {"split": "val", **class_report(*outputs["val"], train_data.class_names)}
            for split, metrics in result.metrics.items():
                log.write({"step": step, "split": "final", "eval_split": split, **metrics})
            card = sidecar(result.metrics, finished=True)
            if report is not None:
                card["class_report"] = report
            save_checkpoint(best, out_path, card)
        _print_summary(config, kind, result, run_path)
    if ddp:
        dist.destroy_process_group()
    return result


def _architecture(config: TrainConfig, num_classes: int) -> tuple[TrainConfig, dict[str, Any], Optional[Start]]:
    """The timm VisionTransformer keys of this run, the config with its model size filled in, and
    the model ``--init`` names (None without)."""
    if not config.init:
        shape = model_shape(config)
        pretrain = isinstance(config, PretrainConfig)  # jigsaw: no positions, and no class head
        architecture = dict(**shape, num_classes=0 if pretrain else num_classes, class_token=True,
                            global_pool="token", pos_embed="none" if pretrain else "learn")
        return replace(config, embed_dim=shape["embed_dim"], depth=shape["depth"], num_heads=shape["num_heads"]), architecture, None
    start = describe_start(config.init)  # check_config settled the size from it
    if isinstance(config, PretrainConfig):  # a jigsaw checkpoint, at this run's image size
        return config, {**start.architecture, "img_size": config.image_size}, start
    return config, run_architecture(start, model_shape(config), num_classes), start


def _reseed(rng: torch.Generator, seed: int, rank: int, step: int) -> None:
    """Seed the data stream and torch's global generator from (seed, rank, step)."""
    value = int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)
    rng.manual_seed(value)
    torch.manual_seed(value)


# Options that change how fast a run goes or how often it logs, not what it learns: a resume may change them.
_MAY_CHANGE_ON_RESUME = {"resume", "threads", "device", "compile", "log_every"}


def _read_resume(path: Path, config: TrainConfig) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--resume: nothing to resume, {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file; the user needs one sentence
        raise ConfigError(f"--resume: {path} is not a readable resume state ({str(e).splitlines()[0]})") from None
    saved = state.get("config", {})
    ours = asdict(config)
    differ = [k for k in ours if k not in _MAY_CHANGE_ON_RESUME and k in saved and saved[k] != ours[k]]
    if differ:
        changes = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} (now {ours[k]!r})" for k in differ)
        raise ConfigError(f"--resume: the run in {path.parent} was started with {changes}; resume with the same options")
    return state


def _write_resume(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _code_version() -> str:
    """vitviz's version and, in a git checkout, the commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(vitviz.__file__).parent,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{vitviz.__version__}+{commit}" if commit else vitviz.__version__


class _StopSignal:
    """SIGTERM (the app's cancel) and SIGINT ask the loop to write its last checkpoint and stop."""

    def __init__(self):
        self.requested = False
        self._previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: no handlers, the caller owns signals
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _MetricsLog:
    """Append-only JSONL; on resume, rows after the resumed step (written before the kill) are dropped."""

    def __init__(self, path: Path, keep_until: Optional[int]):
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if keep_until is not None and path.exists():
            rows = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= keep_until]
        path.write_text("".join(row + "\n" for row in rows))
        self._file = open(path, "a")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()


class _Progress:
    """One status line: step, loss, rate, time left; redrawn in place on a terminal."""

    def __init__(self, config: TrainConfig, start_step: int):
        self._name = config.name
        self._total = f"/{config.steps}" if config.steps else ""
        self._tty = sys.stderr.isatty()
        self._eval = ""
        self._start = start_step

    def note_eval(self, step: int, score: float) -> None:
        self._eval = f" | val {score:.3f} @{step}"

    def update(self, row: dict[str, Any], progress: float) -> None:
        left = row["elapsed"] * (1 - progress) / progress if progress > 0 else 0.0
        line = (f"{self._name} step {row['step']}{self._total} | loss {row['loss']:.4f} | "
                + (f"seam {row['seam_loss']:.4f} | " if "seam_loss" in row else "")
                + f"{row['images_per_s']:.0f} img/s | {_clock(row['elapsed'])} elapsed, {_clock(left)} left{self._eval}")
        sys.stderr.write(("\r" + line.ljust(110)) if self._tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._tty:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _print_summary(config: TrainConfig, kind: str, result: RunResult, run_path: Path) -> None:
    state = "stopped by a signal, last checkpoint written" if result.interrupted else "done"
    print(f"\n{config.name} ({kind}): {state}; {result.steps} steps in {_clock(result.elapsed_s)}, "
          f"{result.images_per_s:.0f} images/s")
    if result.metrics:
        columns = list(next(iter(result.metrics.values())))
        print("  " + "split".ljust(8) + "".join(c.rjust(22) for c in columns))
        for split, metrics in result.metrics.items():
            print("  " + split.ljust(8) + "".join(f"{metrics[c]:22.4f}" for c in columns))
    print(f"  best checkpoint: {result.checkpoint}; last checkpoint, resume state and metrics: {run_path}")
