"""Training jobs with real training processes: run, queue, cancel, crash, recovery, refused arguments."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from training.jobs import JobRunner, JobSpec, JobSpecError, JobStateError
from vitviz.checkpoints import read_sidecar, save_checkpoint
from vitviz.models import create_vit, load_model
from vitviz.registry import list_models

# A micro ViT on 32 px digits (the quickest data to make): each run is mostly its start-up.
TINY = dict(data="digits", image_size=32, batch_size=16, eval_images=32, device="cpu")


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("VITVIZ_JOBS", str(tmp_path / "jobs"))
    runner = JobRunner()
    yield runner
    # a failed test leaves no training process behind
    for job in runner.jobs():
        for _ in range(2 if job.state == "running" else int(job.state == "queued")):
            try:
                runner.cancel(job.id)
            except JobStateError:
                pass


def wait_for(condition, what: str, timeout: float = 180):
    """Poll until ``condition()`` is truthy; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}")


def submit_and_exit(spec: JobSpec) -> str:
    """Submit from a process that exits at once, as an app that is then stopped; returns the job id."""
    code = ("import json, sys; from training.jobs import JobRunner, JobSpec; "
            "print(JobRunner().submit(JobSpec(**json.loads(sys.argv[1]))).id)")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(asdict(spec))], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def status_on_disk(job) -> dict:
    """The job's status as its folder holds it, read without any runner (which would move the queue)."""
    return json.loads((job.folder / "status.json").read_text())


def test_a_job_trains_the_next_waits_then_runs_and_cancel_keeps_a_checkpoint(runner):
    # the first job is launched by a process that is gone before the job ends
    first = runner.get(submit_and_exit(JobSpec(task="finetune", name="digits-a", steps=20, **TINY)))
    second = runner.submit(JobSpec(task="pretrain", name="jigsaw-b", steps=5000, **TINY))
    assert first.state == "running" and second.state == "queued" and second.place == 1

    # progress: metrics rows appear while the first one runs
    rows = wait_for(lambda: [r for r in runner.get(first.id).metrics() if r["split"] == "train"], "training rows")
    assert runner.get(first.id).state == "running" and rows[0]["step"] > 0 and rows[0]["loss"] > 0

    # the first one's supervisor starts the second: no runner looks in the meantime
    wait_for(lambda: status_on_disk(second)["state"] == "running", "the queued job to start")
    assert status_on_disk(first)["state"] == "finished" and status_on_disk(first)["exit_code"] == 0

    # its checkpoint is in the model picker, with its metrics
    assert "digits-a (classifier)" in [e.label for e in list_models()]
    model = load_model("digits-a", device="cpu")
    assert len(model.card.class_names) == 10
    assert model.card.sidecar["training"]["steps"] == 20 and model.card.sidecar["training"]["finished"]
    assert set(model.card.sidecar["metrics"]) == {"val", "test"}
    assert Path(model.card.path) == runner.models_dir / "digits-a.safetensors"

    # cancel the second mid-run: SIGTERM, it writes its last checkpoint and exits
    second_job = runner.get(second.id)
    wait_for(lambda: any(r["split"] == "train" for r in second_job.metrics()), "the second job's training rows")
    assert runner.cancel(second.id).state == "running"  # stopping, not yet stopped
    ended = wait_for(lambda: (j := runner.get(second.id)).state != "running" and j, "the cancelled job to end")
    assert ended.state == "cancelled" and ended.exit_code == 143, ended.log_tail()
    sidecar = read_sidecar(ended.checkpoint)
    assert sidecar["kind"] == "jigsaw" and not sidecar["training"]["finished"]
    assert sidecar["training"]["steps"] < 5000
    assert load_model("jigsaw-b", device="cpu").card.has_jigsaw_head

    # a new runner, as after a restart of the app, finds both as they ended
    again = {j.id: (j.state, j.exit_code) for j in JobRunner(runner.root).jobs()}
    assert again == {first.id: ("finished", 0), second.id: ("cancelled", 143)}


def test_a_second_cancel_kills_a_job_that_does_not_stop(runner):
    job = runner.submit(JobSpec(task="finetune", name="stuck", steps=5000, **TINY))
    # in its loop, where SIGTERM asks for a clean stop (before it, SIGTERM's default action kills at once)
    wait_for(lambda: any(r["split"] == "train" for r in runner.get(job.id).metrics()), "training rows")
    os.kill(status_on_disk(job)["train_pid"], signal.SIGSTOP)  # a hung process: the SIGTERM stays pending
    runner.cancel(job.id)
    runner.cancel(job.id)
    ended = wait_for(lambda: (j := runner.get(job.id)).state != "running" and j, "the killed job to end")
    assert ended.state == "cancelled" and ended.exit_code == -signal.SIGKILL and ended.cancel_requests == 2
    with pytest.raises(JobStateError, match=f"job {job.id} has already ended \\(cancelled\\)"):
        runner.cancel(job.id)


def test_a_crashed_job_shows_its_error_and_log(runner, tmp_path):
    folder = tmp_path / "pets"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        (folder / name / "1.png").write_bytes(b"not an image at all")
    job = runner.submit(JobSpec(task="finetune", name="pets", steps=10, **{**TINY, "data": f"folder:{folder}"}))
    ended = wait_for(lambda: (j := runner.get(job.id)).state != "running" and j, "the job to end")
    assert ended.state == "failed" and ended.exit_code == 2
    message = f"python -m training finetune: error: None of the 2 image files under {folder} could be read"
    assert ended.error.startswith(f"exit code 2: {message}")
    assert any(line.startswith(message) for line in ended.log_tail())
    assert not ended.checkpoint.exists()


def test_a_job_whose_processes_vanished_is_marked_lost_and_the_queue_moves_on(runner):
    job = runner.submit(JobSpec(task="finetune", name="lost", steps=5000, **TINY))
    later = runner.submit(JobSpec(task="finetune", name="later", steps=5000, **TINY))
    assert runner.get(later.id).place == 1
    # kill the supervisor and the training process without letting either record anything
    status = wait_for(lambda: (s := status_on_disk(job)).get("train_pid") and s, "the training process")
    os.kill(status["pid"], signal.SIGKILL)
    os.kill(status["train_pid"], signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{status['train_pid']}").exists() or
             Path(f"/proc/{status['train_pid']}/stat").read_text().split(")")[1].split()[0] == "Z", "the kill")
    jobs = {j.id: j for j in JobRunner(runner.root).jobs()}
    assert jobs[job.id].state == "failed" and jobs[job.id].error.startswith("lost: its processes ended without")
    assert jobs[later.id].state == "running"
    runner.cancel(later.id)
    runner.cancel(later.id)  # no need to wait for a clean stop here
    wait_for(lambda: runner.get(later.id).state == "cancelled", "the cancel")


def test_cancelling_a_queued_job_never_starts_it(runner):
    running = runner.submit(JobSpec(task="finetune", name="runs", steps=5000, **TINY))
    queued = runner.submit(JobSpec(task="finetune", name="waits", steps=5000, **TINY))
    third = runner.submit(JobSpec(task="finetune", name="waits-too", steps=5000, **TINY))
    assert (runner.get(queued.id).place, runner.get(third.id).place) == (1, 2)
    assert runner.cancel(queued.id).state == "cancelled"
    assert runner.get(third.id).place == 1
    assert runner.cancel(third.id).state == "cancelled"
    runner.cancel(running.id)
    runner.cancel(running.id)
    wait_for(lambda: not any(j.active for j in runner.jobs()), "every job to end")
    assert runner.get(queued.id).state == "cancelled" and not queued.log_path.exists()  # never launched


# --- arguments ------------------------------------------------------------------------------------


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """A jigsaw checkpoint (patch 4) and a classifier one in a user models folder."""
    folder = tmp_path / "user-models"
    jigsaw = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=0, pos_embed="none")
    save_checkpoint(create_vit(jigsaw, jigsaw_grid=(4, 4)), folder / "my-jigsaw",
                    dict(name="my-jigsaw", kind="jigsaw", architecture=jigsaw, jigsaw=dict(grid=[4, 4])))
    classifier = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    save_checkpoint(create_vit(classifier), folder / "my-classifier",
                    dict(name="my-classifier", kind="classifier", architecture=classifier))
    monkeypatch.setenv("VITVIZ_MODELS", str(folder))
    return folder


@pytest.mark.parametrize("changes, field, message", [
    (dict(name="../evil"), "name", "checkpoint name '../evil' is not allowed: use up to 64 letters, digits, '.', '_' "
                                   "and '-', starting with a letter or digit (no '/', no '..')"),
    (dict(name="/tmp/x"), "name", "checkpoint name '/tmp/x' is not allowed"),
    (dict(name="a/b"), "name", "checkpoint name 'a/b' is not allowed"),
    (dict(name="a..b"), "name", "checkpoint name 'a..b' is not allowed"),
    (dict(name="my-classifier"), "name", "a checkpoint named 'my-classifier' already exists ("),
    (dict(steps=0), "steps", "steps 0 is out of range: choose a whole number from 1 to 100,000"),
    (dict(steps=100_001), "steps", "steps 100001 is out of range: choose a whole number from 1 to 100,000"),
    (dict(steps=2.5), "steps", "steps 2.5 is out of range"),
    (dict(batch_size=0), "batch_size", "batch size 0 is out of range: choose a whole number from 1 to 1,024"),
    (dict(lr=0.0), "lr", "learning rate 0.0 is out of range: choose a number from 1e-06 to 1"),
    (dict(lr=float("nan")), "lr", "learning rate nan is out of range"),
    (dict(image_size=36), "image_size", "image size 36 is not a multiple of the patch size 8"),
    (dict(device="cuda:x"), "device", "device 'cuda:x' is not one of cpu, cuda, cuda:N, mps"),
    (dict(model="huge"), "model", "model size 'huge' is not one of micro, tiny, starter"),
    (dict(task="segment"), "task", "task 'segment' is neither 'pretrain' (jigsaw) nor 'finetune' (classification)"),
    # Data specs are judged by vitviz.data.check_spec, in the words the CLI and build_data use too.
    (dict(data="imagenet"), "data", "Unknown data source 'imagenet'; choose from photos, procedural, textured, shapes, digits"),
    (dict(data="photos"), "data", "The data 'photos' has no labels to fine-tune on; choose shapes, digits"),
    (dict(data="shapes:1+digits:1"), "data", "The mixture 'shapes:1+digits:1' has no labels to fine-tune on: its "
                                             "parts do not share one set of classes"),
    (dict(data="shapes:-1"), "data", "In the data part 'shapes:-1', the weight must be a positive number, not -1"),
    (dict(data="folder:/no/such/folder"), "data", "No folder at /no/such/folder"),
    (dict(data="folder:relative/path"), "data", "dataset folder 'relative/path' is not an absolute path"),
    (dict(init="nothing-here"), "init", "starting checkpoint 'nothing-here' is not a checkpoint in "),
    (dict(init="resnet50"), "init", "starting model resnet50 is a ResNet, not a timm VisionTransformer"),
    (dict(init="/abs/model.safetensors"), "init", "starting checkpoint '/abs/model.safetensors' is not a checkpoint"),
    (dict(data="upload:nothing"), "data", "No uploaded data set named 'nothing' in "),
    (dict(mode="sideways"), "mode", "--mode 'sideways' is not one of full, last, probe"),
    (dict(mode="probe", augment="timm"), "augment", "--augment timm does not apply to --mode probe"),
    (dict(train_blocks=0), "train_blocks", "train blocks 0 is out of range: choose a whole number from 1 to 100"),
    (dict(init="my-classifier", mode="last", train_blocks=2), "train_blocks",
     "--train-blocks 2 is more than the model's 1 blocks (choose 1 to 1, or --mode full)"),
    (dict(task="pretrain", data="photos", mode="probe"), "mode",
     "jigsaw pretraining trains every weight; mode 'probe' is for fine-tuning"),
    (dict(task="pretrain", data="photos", augment="timm"), "augment",
     "jigsaw pretraining augments as its data set does; augment 'timm' is for fine-tuning"),
    (dict(init="../my-jigsaw"), "init", "starting checkpoint '../my-jigsaw' is not a checkpoint in "),
    (dict(init="my-jigsaw", image_size=30), "image_size",
     "image size 30 is not a multiple of the patch size 4 of the starting checkpoint 'my-jigsaw'"),
    (dict(task="pretrain", data="photos", seam_loss=-1.0), "seam_loss",
     "seam loss weight -1.0 is out of range: choose a number from 0 (off) to 100"),
    (dict(seam_loss=1.0), "seam_loss", "the seam loss is a jigsaw pretext; weight 1.0 is for jigsaw pretraining"),
    (dict(task="pretrain", data="photos", init="my-classifier"), "init",
     "jigsaw pretraining goes on from a jigsaw checkpoint; 'my-classifier' is a classifier checkpoint (fine-tune from"),
    (dict(task="pretrain", data="photos", init="vit_tiny_patch16_224"), "init",
     "jigsaw pretraining goes on from a jigsaw checkpoint; 'vit_tiny_patch16_224' is a timm model"),
])
def test_bad_arguments_are_refused_before_launch(runner, checkpoints, changes, field, message):
    spec = JobSpec(**{**dict(task="finetune", name="new-model"), **changes})
    with pytest.raises(JobSpecError) as refused:
        runner.submit(spec)
    assert str(refused.value).startswith(message) and refused.value.field == field
    assert not runner.root.exists() or not runner.jobs()


def test_a_folder_must_hold_class_folders(runner, tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    with pytest.raises(JobSpecError, match=r"has no class sub-folders \(it holds 1 files directly\)"):
        runner.validate(JobSpec(task="pretrain", name="x", data=f"folder:{tmp_path / 'flat'}"))
    with pytest.raises(JobSpecError, match="is a file, not a folder"):
        runner.validate(JobSpec(task="pretrain", name="x", data=f"folder:{tmp_path / 'flat' / 'a.png'}"))


def test_a_name_in_use_by_a_waiting_job_is_refused(runner):
    first = runner.submit(JobSpec(task="finetune", name="same", steps=5000, **TINY))
    with pytest.raises(JobSpecError, match=f"checkpoint name 'same' is already used by job {first.id} \\(running\\)"):
        runner.submit(JobSpec(task="finetune", name="same", steps=10, **TINY))
    runner.cancel(first.id)
    runner.cancel(first.id)
    wait_for(lambda: runner.get(first.id).state == "cancelled", "the cancel")


def test_the_command_writes_only_into_the_jobs_folders(runner, checkpoints, tmp_path):
    spec = runner.validate(JobSpec(task="finetune", name="from-jigsaw", init="my-jigsaw", image_size=24))
    assert spec.patch_size == 4  # the starting checkpoint's
    job_folder = runner.root / "job-1"
    from training.jobs import _command

    command = _command(spec, job_folder)
    assert command[:4] == [sys.executable, "-m", "training", "finetune"]
    options = dict(zip(command[4::2], command[5::2]))
    assert options["--out-dir"] == str(job_folder / "out") and options["--run-dir"] == str(job_folder / "run")
    assert options["--init"] == str((checkpoints / "my-jigsaw.safetensors").resolve())
    assert options["--patch-size"] == "4" and options["--name"] == "from-jigsaw"


def test_a_pretraining_job_passes_its_seam_loss_on(runner, tmp_path):
    from training.jobs import _command

    spec = runner.validate(JobSpec(task="pretrain", name="seams", data="procedural", seam_loss=1.0))
    options = dict(zip(*(lambda c: (c[4::2], c[5::2]))(_command(spec, tmp_path))))
    assert options["--seam-loss"] == "1.0" and options["--data"] == "procedural"
    plain = _command(runner.validate(JobSpec(task="pretrain", name="plain", data="procedural")), tmp_path)
    assert "--seam-loss" not in plain and "--init" not in plain  # the defaults, left out


def test_a_pretraining_job_goes_on_from_a_jigsaw_checkpoint(runner, checkpoints, tmp_path):
    from training.jobs import _command

    spec = runner.validate(JobSpec(task="pretrain", name="more", data="procedural", init="my-jigsaw", image_size=24))
    assert spec.patch_size == 4  # the checkpoint's
    options = dict(zip(*(lambda c: (c[4::2], c[5::2]))(_command(spec, tmp_path))))
    assert options["--init"] == str((checkpoints / "my-jigsaw.safetensors").resolve())
    assert options["--patch-size"] == "4" and "--model" not in options


def test_a_classifier_checkpoint_or_a_timm_name_starts_a_fine_tune(runner, checkpoints):
    from training.jobs import _command, start_image_size

    spec = runner.validate(JobSpec(task="finetune", name="from-timm", init="vit_tiny_patch16_224", image_size=32,
                                   mode="probe"))
    assert spec.patch_size == 16  # the timm model's
    options = dict(zip(*[iter(_command(spec, runner.root / "job-1")[4:])] * 2))
    assert options["--init"] == "vit_tiny_patch16_224" and options["--mode"] == "probe"
    spec = runner.validate(JobSpec(task="finetune", name="from-classifier", init="my-classifier", image_size=24,
                                   mode="last", train_blocks=1, augment="timm"))
    options = dict(zip(*[iter(_command(spec, runner.root / "job-2")[4:])] * 2))
    assert options["--init"] == str((checkpoints / "my-classifier.safetensors").resolve())
    assert (options["--mode"], options["--train-blocks"], options["--augment"]) == ("last", "1", "timm")
    # the image size the Train view offers for each start
    assert [start_image_size(r) for r in ("my-classifier", "vit_tiny_patch16_224", "my-jigsaw", "", "nothing")] == \
        [16, 224, None, None, None]


def test_a_zip_of_your_images_trains_end_to_end_through_the_job_runner(runner, checkpoints):
    from test_upload import make_zip, three_classes
    from vitviz.data import import_zip
    from vitviz.registry import uploads_dir

    import_zip(make_zip(three_classes((15, 15, 15))), "colours", uploads_dir())
    common = dict(task="finetune", data="upload:colours", init="my-classifier", image_size=16, batch_size=16,
                  eval_images=64, device="cpu")
    probe = runner.submit(JobSpec(name="colours-probe", mode="probe", steps=40, **common))
    last = runner.submit(JobSpec(name="colours-last", mode="last", train_blocks=1, augment="timm", steps=10, **common))
    wait_for(lambda: not any(j.active for j in runner.jobs()), "both jobs to end", timeout=300)
    for job, mode in ((probe, "probe"), (last, "last")):
        ended = runner.get(job.id)
        assert ended.state == "finished", ended.log_tail()
        model = load_model(job.spec.name, device="cpu")  # in the model picker, with its classes
        assert model.card.class_names == ("blue", "green", "red") and model.card.num_classes == 3
        sidecar = model.card.sidecar
        assert sidecar["training"]["mode"] == mode and sidecar["training"]["dataset"] == "upload:colours"
        report = sidecar["class_report"]
        assert report["class_names"] == ["blue", "green", "red"] and report["support"] == [3, 3, 3]
        assert sum(map(sum, report["confusion"])) == 9
        assert sum(report["confusion"][c][c] for c in range(3)) / 9 == pytest.approx(sidecar["metrics"]["val"]["accuracy"])
    rows = [r for r in runner.get(probe.id).metrics() if r["split"] == "val"]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert "my-classifier" in {e.ref for e in list_models()} and "colours-probe (classifier)" in \
        [e.label for e in list_models()]
