"""Training jobs started from the app: each one a separate process running the training CLI, its state on disk.

Layout of the jobs root (``$VITVIZ_JOBS``, default ``<repo>/jobs/``)::

    models/              the checkpoints of ended jobs; vitviz.registry.checkpoint_dirs() lists this folder
    .lock                held (flock) while a process changes a job's status or starts a job
    <job id>/
        spec.json        the validated JobSpec and the exact command line
        status.json      state, process ids, times, exit code, error, cancel requests
        log.txt          the training process's stdout and stderr
        out/             the CLI's --out-dir: the best checkpoint so far, moved to models/ when the job ends
        run/<name>/      the CLI's --run-dir: metrics.jsonl, last checkpoint, resume state

How the queue moves. ``JobRunner.submit`` validates a spec, writes the job's folder as ``queued`` and
calls ``advance``, which starts the oldest queued job of every device that has none running. Starting
a job launches a supervisor, ``python -m training.jobs <job folder>``, in a session of its own, so it
outlives the app (and a Ctrl-C to it). The supervisor runs ``python -m training ...`` with its output
in log.txt, waits for it, moves its checkpoint into models/ (so the model picker only ever lists
weights that no longer change), writes the exit record (finished, failed or cancelled; exit code;
time) and then calls ``advance`` itself: the next job starts when one ends, whether or not any page is open.
Every runner also calls ``advance`` when it lists jobs, so a supervisor that died (an OOM kill, a
reboot) cannot stall the queue: a running job whose processes are all gone without an exit record
is marked failed ("lost"). Every status change happens under the root's lock, so two app sessions,
or an app and a supervisor, never start two jobs on one device nor lose each other's writes.

Cancel: a queued job is cancelled without ever starting; for a running one, the first cancel sends
SIGTERM to the training process, which writes its last checkpoint and exits; a second sends SIGKILL.

Nothing from the UI reaches a command line unchecked (``validate``): the app's own bounds come first
(a plain file name, step and batch limits, a starting checkpoint from the picker or a timm name, never a
path, an absolute data folder); then the spec becomes the training config it will run with, and training's own checks
(``training.config.check_config``) judge it, so the app and the CLI refuse the same things in the same
words. The command line is ``training.cli.to_argv`` of that config. The checkpoint goes to
``<root>/models`` and the run folder into the job's folder, so no choice in the UI makes a job write
anywhere else. Unix only (flock, signals, sessions).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Sequence

from vitviz.checkpoints import ModelLoadError
from vitviz.data import DataError
from vitviz.registry import (CHECKPOINT_NAME, JOBS_ENV, checkpoint_dirs, find_checkpoint, jobs_models_dir, jobs_root,
                             resolve)

from .cli import to_argv
from .config import (MODEL_PRESETS, ConfigError, FinetuneConfig, PretrainConfig, TrainConfig, check_config,
                     describe_start)

__all__ = [
    "Job",
    "JobRunner",
    "JobSpec",
    "JobSpecError",
    "JobStateError",
    "LIMITS",
    "MODEL_SIZES",
    "State",
    "Task",
    "jobs_root",
    "start_image_size",
]

_REPO = Path(__file__).resolve().parent.parent

Task = Literal["pretrain", "finetune"]
State = Literal["queued", "running", "finished", "failed", "cancelled"]
ACTIVE_STATES = ("queued", "running")

# The size presets a job may name: training's own (training.config.MODEL_PRESETS).
MODEL_SIZES = tuple(MODEL_PRESETS)
# The app's bounds on the numeric options, inclusive: what one person may ask of a shared machine.
LIMITS: dict[str, tuple[float, float]] = {
    "steps": (1, 100_000),
    "batch_size": (1, 1024),
    "lr": (1e-6, 1.0),
    "image_size": (8, 512),
    "eval_images": (8, 10_000),
    "seed": (0, 2**31 - 1),
    "train_blocks": (1, 100),
}
_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")
_NICE = 10  # the training process yields the CPU to the app's own sessions
_LOG_TAIL = 20


class JobSpecError(ValueError):
    """Job arguments that cannot run; ``field`` names the option, the message the value and the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class JobStateError(ValueError):
    """An action the job's state does not allow (e.g. cancelling a finished job), or an unknown job id."""


@dataclass(frozen=True)
class JobSpec:
    """What a job trains: the options the Train view offers, checked by ``JobRunner.validate``."""

    task: Task  # "pretrain" (jigsaw pretext) or "finetune" (classification)
    name: str  # checkpoint name: <jobs root>/models/NAME.safetensors + NAME.json
    data: str = "shapes"  # a bundled data set, a mixture like photos:1+procedural:1, folder:PATH, crops:PATH or upload:NAME
    init: str = ""  # a checkpoint's name (finetune: jigsaw or classifier, or a timm ViT name; pretrain: jigsaw); "" = random weights
    model: str = "micro"  # size preset when starting from random weights
    image_size: int = 32  # input side in pixels
    patch_size: int = 0  # 0 = 8, or the starting checkpoint's (the only one it fits)
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # images per step
    lr: float = 1e-3  # peak learning rate
    seed: int = 0  # seeds the weights, the data stream and the evaluation set
    device: str = "cpu"  # cpu, cuda, cuda:N or mps; one job at a time per device
    eval_images: int = 128  # size of the fixed evaluation set
    mode: str = "full"  # finetune: full, last (the last train_blocks blocks and the head) or probe (the head alone)
    train_blocks: int = 2  # finetune with mode "last": how many of the last blocks train
    augment: str = "device"  # finetune: device (the data set's crops and flips) or timm (the start model's transform)
    seam_loss: float = 0.0  # pretrain: weight of the seam loss (training.seams); 0 = off

    @property
    def eval_every(self) -> int:
        """Five evaluations (and checkpoints) a run: points on the validation curve, recent weights kept on cancel."""
        return max(1, self.steps // 5)

    @property
    def log_every(self) -> int:
        """About fifty points on the training curve."""
        return max(1, self.steps // 50)


@dataclass(frozen=True)
class Job:
    """One job as its folder describes it."""

    id: str
    folder: Path
    spec: JobSpec
    command: tuple[str, ...]
    state: State
    created: float  # seconds since the epoch
    started: Optional[float]
    ended: Optional[float]
    exit_code: Optional[int]
    error: str  # why it failed, in one line; "" otherwise
    note: str  # anything else the user should know about how it ended; usually ""
    cancel_requests: int
    place: Optional[int] = None  # a queued job's place on its device: 1 = next

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def checkpoint(self) -> Path:
        """Where the job's best weights (and their sidecar beside them) are once it has ended."""
        return self.folder.parent / "models" / f"{self.spec.name}.safetensors"

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "run" / self.spec.name / "metrics.jsonl"

    def metrics(self) -> list[dict[str, Any]]:
        """The training log's rows so far (``split`` train, val or final); a half-written last line is skipped."""
        try:
            lines = self.metrics_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def log_tail(self, lines: int = _LOG_TAIL) -> list[str]:
        return _tail(self.log_path, lines)

    @property
    def step(self) -> int:
        """The last step the metrics record."""
        rows = self.metrics()
        return max((int(r["step"]) for r in rows), default=0)


class JobRunner:
    """Submit, list and cancel jobs in one jobs root. Stateless: any number of runners, in any
    number of processes, share a root; a new one finds every job there (as after an app restart)."""

    def __init__(self, root: Optional[str | os.PathLike] = None):
        self.root = Path(root).expanduser() if root is not None else jobs_root()

    @property
    def models_dir(self) -> Path:
        return jobs_models_dir(self.root)

    def validate(self, spec: JobSpec) -> JobSpec:
        """The spec with its data path made absolute and its patch size settled, or ``JobSpecError``."""
        return _validate(spec, self.models_dir, self.root / "validate")

    def suggest_name(self, base: str) -> str:
        """``base-1``, ``base-2``, ...: the first name no checkpoint and no waiting or running job has."""
        active = {j.spec.name for j in self._read_all() if j.active}
        for n in range(1, 10_000):
            name = f"{base}-{n}"
            if name not in active and not any((d / f"{name}.safetensors").exists()
                                              for d in [*checkpoint_dirs(), self.models_dir]):
                return name
        raise ValueError(f"every name from {base}-1 to {base}-9999 is taken")

    def submit(self, spec: JobSpec) -> Job:
        """Validate ``spec``, queue it, and start it if its device is free."""
        spec = self.validate(spec)
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.name}-{secrets.token_hex(2)}"
        folder = self.root / job_id
        with self._locked():
            taken = [j for j in self._read_all() if j.active and j.spec.name == spec.name]
            if taken:
                raise JobSpecError("name", f"checkpoint name {spec.name!r} is already used by job {taken[0].id} "
                                           f"({taken[0].state}); choose another name")
            folder.mkdir(parents=True)
            command = _command(spec, folder)
            _write_json(folder / "spec.json", {"spec": asdict(spec), "command": command})
            _write_json(folder / "status.json", {"state": "queued", "created": time.time(), "cancel_requests": 0})
            self._advance()
        return self.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job, newest first, after moving the queue on; queued ones carry their place."""
        with self._locked():
            self._advance()
            jobs = self._read_all()
        return sorted(_with_places(jobs), key=lambda j: (j.created, j.id), reverse=True)

    def get(self, job_id: str) -> Job:
        for job in self.jobs():
            if job.id == job_id:
                return job
        raise JobStateError(f"no job {job_id!r} in {self.root}")

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job, or stop a running one: SIGTERM first (last checkpoint, then exit), SIGKILL after."""
        folder = self.root / job_id
        with self._locked():
            if not (folder / "status.json").is_file():
                raise JobStateError(f"no job {job_id!r} in {self.root}")
            self._advance()  # a job whose processes are gone is failed, not cancelled
            status = _read_json(folder / "status.json")
            if status["state"] not in ACTIVE_STATES:
                raise JobStateError(f"job {job_id} has already ended ({status['state']})")
            status["cancel_requests"] = status.get("cancel_requests", 0) + 1
            if status["state"] == "queued":
                status.update(state="cancelled", ended=time.time())
            elif _alive(status.get("train_pid"), status.get("train_pid_start")):
                os.kill(status["train_pid"], signal.SIGTERM if status["cancel_requests"] == 1 else signal.SIGKILL)
            # A running job without a training process yet: its supervisor reads the request before starting one.
            _write_json(folder / "status.json", status)
        return self.get(job_id)

    def advance(self) -> None:
        """Mark lost jobs failed and start the next queued job on every free device."""
        with self._locked():
            self._advance()

    def _advance(self) -> None:
        jobs = self._read_all()
        busy = set()
        for job in jobs:
            if job.state != "running":
                continue
            status = _read_json(job.folder / "status.json")
            if _alive(status.get("pid"), status.get("pid_start")) or \
                    _alive(status.get("train_pid"), status.get("train_pid_start")):
                busy.add(_device_key(job.spec.device))
            else:
                tail = _tail(job.log_path, 1)
                status.update(state="failed", ended=time.time(), note=_publish(job.folder, job.spec.name),
                              error="lost: its processes ended without recording an exit status"
                                    + (f"; last log line: {tail[0]}" if tail else ""))
                _write_json(job.folder / "status.json", status)
        for job in sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.created, j.id)):
            device = _device_key(job.spec.device)
            if device not in busy:
                self._launch(job)
                busy.add(device)

    def _launch(self, job: Job) -> None:
        with open(job.log_path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "training.jobs", str(job.folder)], cwd=_REPO,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=_child_env(self.root))
        # Reap it if it ends while this process lives (else a zombie would look alive); after this
        # process exits, init does.
        threading.Thread(target=process.wait, daemon=True).start()
        status = _read_json(job.folder / "status.json")
        status.update(state="running", started=time.time(), pid=process.pid, pid_start=_process_start(process.pid))
        _write_json(job.folder / "status.json", status)

    def _read_all(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        return [_read_job(f) for f in sorted(self.root.iterdir()) if (f / "status.json").is_file()]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# --- validation -----------------------------------------------------------------------------------


def _validate(spec: JobSpec, out_dir: Path, folder: Path) -> JobSpec:
    """The app's own bounds, then training's checks on the config the job would run (``folder`` stands in
    for the job's folder); the spec with its data spec normalised and its patch size settled."""
    if spec.task not in ("pretrain", "finetune"):
        raise JobSpecError("task", f"task {spec.task!r} is neither 'pretrain' (jigsaw) nor 'finetune' (classification)")
    if not isinstance(spec.name, str) or not CHECKPOINT_NAME.fullmatch(spec.name) or ".." in spec.name:
        raise JobSpecError("name", f"checkpoint name {spec.name!r} is not allowed: use up to 64 letters, digits, "
                                   "'.', '_' and '-', starting with a letter or digit (no '/', no '..')")
    for directory in [*checkpoint_dirs(), out_dir]:
        existing = directory / f"{spec.name}.safetensors"
        if existing.exists():
            raise JobSpecError("name", f"a checkpoint named {spec.name!r} already exists ({existing}); "
                                       "choose another name")
    for field in ("steps", "batch_size", "image_size", "eval_images", "seed", "train_blocks"):
        value = getattr(spec, field)
        low, high = LIMITS[field]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise JobSpecError(field, f"{field.replace('_', ' ')} {value!r} is out of range: "
                                      f"choose a whole number from {low:,} to {high:,}")
    low, high = LIMITS["lr"]
    if isinstance(spec.lr, bool) or not isinstance(spec.lr, (int, float)) or not math.isfinite(spec.lr) \
            or not low <= spec.lr <= high:
        raise JobSpecError("lr", f"learning rate {spec.lr!r} is out of range: choose a number from {low:g} to {high:g}")
    if not isinstance(spec.device, str) or not _DEVICE.fullmatch(spec.device):
        raise JobSpecError("device", f"device {spec.device!r} is not one of cpu, cuda, cuda:N, mps")
    if spec.task == "pretrain" and spec.mode != "full":
        raise JobSpecError("mode", f"jigsaw pretraining trains every weight; mode {spec.mode!r} is for fine-tuning")
    if spec.task == "pretrain" and spec.augment != "device":
        raise JobSpecError("augment", "jigsaw pretraining augments as its data set does; augment "
                                      f"{spec.augment!r} is for fine-tuning")
    if isinstance(spec.seam_loss, bool) or not isinstance(spec.seam_loss, (int, float)) \
            or not 0 <= spec.seam_loss <= 100:
        raise JobSpecError("seam_loss", f"seam loss weight {spec.seam_loss!r} is out of range: choose a number "
                                        "from 0 (off) to 100")
    if spec.task == "finetune" and spec.seam_loss:
        raise JobSpecError("seam_loss", f"the seam loss is a jigsaw pretext; weight {spec.seam_loss!r} is for "
                                        "jigsaw pretraining")
    if spec.init and find_checkpoint(spec.init) is None and not _timm_name(spec.init):  # names, never a path
        raise JobSpecError("init", f"starting checkpoint {spec.init!r} is not a checkpoint in "
                                   f"{', '.join(str(d) for d in checkpoint_dirs())} nor a timm ViT name")
    if not isinstance(spec.data, str) or not spec.data.strip():
        raise JobSpecError("data", "no data set chosen")
    data = spec.data.strip()
    source, _, path = data.partition(":")
    if source in ("folder", "crops") and not path.strip():
        raise JobSpecError("data", "no folder given: type the absolute path of the folder that holds the images")
    if source in ("folder", "crops") and not Path(path.strip()).expanduser().is_absolute():
        raise JobSpecError("data", f"dataset folder {path.strip()!r} is not an absolute path: "
                                   "the training process does not run where the app does")
    try:
        config = check_config(_config(replace(spec, data=data), folder))
    except ConfigError as e:
        raise JobSpecError(e.field or "task", str(e)) from None
    except DataError as e:
        raise JobSpecError("data", str(e)) from None
    except ModelLoadError as e:
        raise JobSpecError("init", str(e)) from None
    return replace(spec, data=config.data, patch_size=config.patch_size)


def _config(spec: JobSpec, folder: Path) -> TrainConfig:
    """The training config a spec runs with; every path it writes is inside the job's ``folder``."""
    common = dict(name=spec.name, data=spec.data, out_dir=str(folder / "out"), run_dir=str(folder / "run"),
                  image_size=spec.image_size, patch_size=spec.patch_size, steps=spec.steps,
                  batch_size=spec.batch_size, lr=float(spec.lr), seed=spec.seed, device=spec.device,
                  eval_images=spec.eval_images, eval_every=spec.eval_every, log_every=spec.log_every)
    checkpoint = find_checkpoint(spec.init) if spec.init else None
    # a checkpoint as a path (the same file whatever the job's environment), a timm name, or a size for random weights
    init = str(checkpoint.resolve()) if checkpoint is not None else spec.init
    start = dict(init=init) if init else dict(model=spec.model)
    if spec.task == "pretrain":  # check_config refuses a start that is not a jigsaw checkpoint
        return PretrainConfig(**common, seam_loss=float(spec.seam_loss), **start)
    return FinetuneConfig(**common, mode=spec.mode, train_blocks=spec.train_blocks, augment=spec.augment, **start)


def start_image_size(init: str) -> Optional[int]:
    """The input side a classifier checkpoint or a timm ViT was made for, which the Train view offers as the
    fine-tune's image size; None for a jigsaw checkpoint (whose fine-tunes use a finer grid), random weights,
    or a name that starts nothing."""
    if not init:
        return None
    try:
        start = describe_start(init)
    except (ConfigError, ModelLoadError):
        return None
    size = start.architecture["img_size"]
    return None if start.kind == "jigsaw" else int(size[0] if isinstance(size, (list, tuple)) else size)


def _timm_name(ref: str) -> bool:
    """Whether ``ref`` names a timm model (``NAME`` or ``timm:NAME``): never a path."""
    import timm

    source, target = resolve(ref)
    return source == "timm" and timm.is_model(str(target))


def _command(spec: JobSpec, folder: Path) -> list[str]:
    """The training command line of a validated spec: ``training.cli.to_argv`` of its config."""
    return [sys.executable, "-m", "training", *to_argv(_config(spec, folder))]


# --- state on disk --------------------------------------------------------------------------------


def _read_job(folder: Path) -> Job:
    doc = _read_json(folder / "spec.json")
    status = _read_json(folder / "status.json")
    return Job(
        id=folder.name,
        folder=folder,
        spec=JobSpec(**doc["spec"]),
        command=tuple(doc["command"]),
        state=status["state"],
        created=status["created"],
        started=status.get("started"),
        ended=status.get("ended"),
        exit_code=status.get("exit_code"),
        error=status.get("error", ""),
        note=status.get("note", ""),
        cancel_requests=status.get("cancel_requests", 0),
    )


def _with_places(jobs: Sequence[Job]) -> list[Job]:
    queued: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: (j.created, j.id)):
        if job.state == "queued":
            queued.setdefault(_device_key(job.spec.device), []).append(job)
    places = {job.id: i + 1 for line in queued.values() for i, job in enumerate(line)}
    return [replace(job, place=places.get(job.id)) for job in jobs]


def _device_key(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]


def _process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks (Linux ``/proc``): tells a live job from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: Optional[int], start: Optional[str]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds the pid now
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test is all there is
    return fields[0] != "Z" and (start is None or fields[19] == start)


def _child_env(root: Path) -> dict[str, str]:
    return {**os.environ, JOBS_ENV: str(root), "PYTHONUNBUFFERED": "1"}


# --- the supervisor process -----------------------------------------------------------------------


def _supervise(folder: Path) -> None:
    """Run the job's training command, record how it ended, then start the next job."""
    runner = JobRunner(folder.parent)
    command = _read_json(folder / "spec.json")["command"]
    os.nice(_NICE)
    with runner._locked():
        status = _read_json(folder / "status.json")
        if status.get("cancel_requests"):
            status.update(state="cancelled", ended=time.time())
            process = None
        else:
            print(f"$ {' '.join(command)}", flush=True)
            process = subprocess.Popen(command, cwd=_REPO, env=_child_env(folder.parent))
            status.update(train_pid=process.pid, train_pid_start=_process_start(process.pid))
        _write_json(folder / "status.json", status)
    if process is not None:
        code = process.wait()
        with runner._locked():
            note = _publish(folder, _read_json(folder / "spec.json")["spec"]["name"])
            status = _read_json(folder / "status.json")
            status.update(ended=time.time(), exit_code=code, note=note)
            if code == 0:
                status["state"] = "finished"
            elif status.get("cancel_requests"):
                status["state"] = "cancelled"
            else:
                status.update(state="failed", error=_failure(code, folder / "log.txt"))
            _write_json(folder / "status.json", status)
    runner.advance()


def _publish(folder: Path, name: str) -> str:
    """Move the job's checkpoint into the models folder, weights first (as ``save_checkpoint`` writes them).

    Returns a note for the user when the checkpoint has to stay where it is ("" otherwise).
    """
    weights = folder / "out" / f"{name}.safetensors"
    target = jobs_models_dir(folder.parent) / weights.name
    if not weights.is_file():
        return ""
    if target.exists():  # validation refused the name, so someone put a file there while the job ran
        return f"{target} appeared while the job ran; the new checkpoint stays at {weights}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(weights, target)
    os.replace(weights.with_suffix(".json"), target.with_suffix(".json"))
    return ""


def _failure(code: int, log: Path) -> str:
    try:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    except ValueError:  # not a signal this platform names
        how = f"killed by signal {-code}"
    tail = _tail(log, 1)
    return f"{how}: {tail[0]}" if tail else how


if __name__ == "__main__":
    _supervise(Path(sys.argv[1]))
