"""The training module on tiny settings: pretrain, fine-tune, files, resume after a kill, SIGTERM, DDP, CLI errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.accuracy import eval_permutations, evaluate_checkpoint
from training.cli import main
from training.config import (EvaluateConfig, FinetuneConfig, HalveConfig, PretrainConfig, QuickstartConfig,
                             model_shape)
from vitviz.data import fixed_set
from vitviz.jigsaw import jigsaw_metrics, position_logits
from vitviz.models import load_model

REPO = Path(__file__).resolve().parent.parent
# 4x4 jigsaw grid at 16 px; the fine-tune keeps the 4 px patches at 32 px (an 8x8 grid).
TINY = dict(model="micro", patch_size=4, batch_size=32, eval_images=64, log_every=5, threads=1, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """train() sets torch's thread count; put back what the rest of the session uses."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _rows(run_dir: Path, name: str, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / name / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    config = PretrainConfig(name="jig", out_dir=str(root / "models"), run_dir=str(root / "runs"), data="photos",
                            image_size=16, steps=60, eval_every=30, lr=3e-3, **TINY)
    result = train_quietly(config, ["pretrain", "--steps", "60"])
    return config, result


def train_quietly(config, command):
    from training.train import train

    return train(config, command=["python", "-m", "training", *command])


def test_pretrain_writes_a_loadable_jigsaw_checkpoint_whose_loss_falls(pretrained):
    config, result = pretrained
    runs = Path(config.run_dir)
    losses = [r["loss"] for r in _rows(runs, "jig", "train")]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < losses[0] - 0.05
    assert result.steps == 60 and not result.interrupted
    assert sorted(p.name for p in Path(config.out_dir).iterdir()) == ["jig.json", "jig.safetensors"]
    assert sorted(p.name for p in (runs / "jig").iterdir()) == ["last.json", "last.safetensors", "metrics.jsonl", "resume.pt"]
    assert [r["step"] for r in _rows(runs, "jig", "val")] == [0, 30, 60]

    sidecar = json.loads((Path(config.out_dir) / "jig.json").read_text())
    assert sidecar["kind"] == "jigsaw" and sidecar["jigsaw"] == {"grid": [4, 4]}
    assert sidecar["architecture"] == dict(img_size=16, patch_size=4, embed_dim=64, depth=2, num_heads=2,
                                           mlp_ratio=4.0, num_classes=0, class_token=True, global_pool="token",
                                           pos_embed="none")
    assert sidecar["class_names"] == [] and set(sidecar["normalization"]) == {"mean", "std"}
    training = sidecar["training"]
    assert training["command"] == ["python", "-m", "training", "pretrain", "--steps", "60"]
    assert (training["dataset"], training["steps"], training["seed"], training["finished"]) == ("photos", 60, 0, True)
    assert training["config"]["lr"] == 3e-3 and training["config"]["embed_dim"] == 64
    assert set(sidecar["metrics"]) == {"train", "val"} and sidecar["code_version"]

    # The checkpoint, loaded as the app loads it, scores its validation set as the sidecar says.
    model = load_model(Path(config.out_dir) / "jig.safetensors", device="cpu")
    assert model.card.jigsaw_grid == (4, 4) and model.pos_embed is None
    images, _, _ = fixed_set("photos", "val", 16, 64, seed=0)
    permutations = eval_permutations(64, 16, seed=0)
    with torch.no_grad():
        metrics = jigsaw_metrics(position_logits(model, images, permutations), permutations)
    for key, value in metrics.items():
        assert value == pytest.approx(sidecar["metrics"]["val"][key], abs=1e-6)
    assert sidecar["metrics"]["val"]["patch_acc_hungarian"] > 0.0625  # above chance after 60 steps


def test_finetune_starts_from_the_jigsaw_blocks(pretrained, tmp_path):
    config, result = pretrained
    # With a zero learning rate nothing moves: the checkpoint shows exactly what --init loaded.
    frozen = FinetuneConfig(name="frozen", out_dir=str(tmp_path), run_dir=str(tmp_path / "runs"), data="shapes",
                            image_size=32, init=str(result.checkpoint), lr=0.0, min_lr=0.0, steps=2, eval_every=2,
                            **{**TINY, "model": "tiny"})
    train_quietly(frozen, ["finetune"])
    jig, cls = load_file(str(result.checkpoint)), load_file(str(tmp_path / "frozen.safetensors"))
    shared = [k for k in jig if not k.startswith("jigsaw_head.")]
    assert all(torch.equal(jig[k], cls[k]) for k in shared)
    assert set(cls) - set(shared) == {"pos_embed", "head.weight", "head.bias"}
    assert cls["pos_embed"].shape == (1, 1 + 64, 64) and cls["head.weight"].shape == (4, 64)
    sidecar = json.loads((tmp_path / "frozen.json").read_text())
    assert sidecar["training"]["init"] == str(result.checkpoint)
    assert sidecar["training"]["config"]["model"] == "tiny" and sidecar["architecture"]["embed_dim"] == 64


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """A folder data set a few steps can learn: reddish against bluish noisy images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colours")
    generator = torch.Generator().manual_seed(0)
    for name, channel in (("blue", 2), ("red", 0)):
        (root / name).mkdir()
        for i in range(20):
            pixels = torch.rand(24, 24, 3, generator=generator) * 0.6
            pixels[..., channel] += 0.4
            Image.fromarray((pixels * 255).byte().numpy()).save(root / name / f"{i}.png")
    return root


def test_finetune_learns_and_evaluate_reproduces_its_metrics(pretrained, colour_folder, tmp_path):
    config, result = pretrained
    finetune = FinetuneConfig(name="cls", out_dir=str(tmp_path), run_dir=str(tmp_path / "runs"),
                              data=f"folder:{colour_folder}", image_size=32, init=str(result.checkpoint), steps=30,
                              eval_every=15, **TINY)
    done = train_quietly(finetune, ["finetune"])
    losses = [r["loss"] for r in _rows(tmp_path / "runs", "cls", "train")]
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2
    model = load_model(done.checkpoint, device="cpu")
    assert model.card.class_names == ("blue", "red") and model.card.jigsaw_grid is None
    sidecar = model.card.sidecar
    assert sidecar["kind"] == "classifier" and set(sidecar["metrics"]) == {"val", "test"}
    assert sidecar["metrics"]["test"]["accuracy"] == 1.0 and sidecar["metrics"]["test"]["chance"] == 0.5
    _, _, metrics = evaluate_checkpoint(EvaluateConfig(checkpoint=str(done.checkpoint), split="val", images=64,
                                                       device="cpu"))
    assert metrics == pytest.approx(sidecar["metrics"]["val"])


def test_a_time_budget_ends_the_run(tmp_path):
    config = PretrainConfig(name="timed", out_dir=str(tmp_path), run_dir=str(tmp_path / "runs"), data="photos",
                            image_size=16, steps=0, minutes=0.02, eval_every=1000, **TINY)
    result = train_quietly(config, ["pretrain"])
    assert result.steps > 0 and result.elapsed_s >= 1.2
    assert _rows(tmp_path / "runs", "timed", "train")[-1]["lr"] < 0.2 * config.lr  # the cosine ran its course


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "training", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_RUN = ["pretrain", "--data", "photos", "--model", "micro", "--image-size", "16", "--patch-size", "4",
        "--batch-size", "16", "--eval-images", "32", "--eval-every", "20", "--log-every", "5", "--threads", "1"]


def _wait_for(path: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        assert process.poll() is None, f"the run ended early: {process.communicate()[1][-2000:]}"
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_resume_after_sigkill_continues_the_uninterrupted_run(tmp_path):
    steps = ["--steps", "100"]
    whole = _cli(tmp_path, *_RUN, *steps, "--name", "whole")  # side by side, one thread each
    killed = _cli(tmp_path, *_RUN, *steps, "--name", "killed")
    # Step 45 is logged after the step-40 checkpoint is complete.
    _wait_for(tmp_path / "runs/killed/metrics.jsonl", '"step": 45, "split": "train"', killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    saved = torch.load(tmp_path / "runs/killed/resume.pt", weights_only=True)
    assert 40 <= saved["step"] < 100
    resumed = _cli(tmp_path, *_RUN, *steps, "--name", "killed", "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    assert whole.wait() == 0, whole.stderr.read()

    sidecars = [json.loads((tmp_path / f"models/{n}.json").read_text()) for n in ("whole", "killed")]
    assert sidecars[0]["training"]["steps"] == sidecars[1]["training"]["steps"] == 100
    assert sidecars[1]["training"]["command"][-1] == "--resume"
    # The same random streams from the checkpoint on: the very same weights and losses.
    a, b = (load_file(str(tmp_path / f"runs/{n}/last.safetensors")) for n in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[(r["step"], r["loss"]) for r in _rows(tmp_path / "runs", n, "train")] for n in ("whole", "killed")]
    assert losses[0] == losses[1] and len(losses[0]) == 20


def test_sigterm_writes_the_last_checkpoint_then_exits(tmp_path):
    run = _cli(tmp_path, *_RUN, "--steps", "100000", "--eval-every", "100000", "--name", "cancelled")
    _wait_for(tmp_path / "runs/cancelled/metrics.jsonl", '"step": 20, "split": "train"', run)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 143
    assert "stopped by a signal" in run.stdout.read()
    state = torch.load(tmp_path / "runs/cancelled/resume.pt", weights_only=True)
    last = json.loads((tmp_path / "runs/cancelled/last.json").read_text())
    assert last["training"]["steps"] == state["step"] >= 20 and last["training"]["finished"] is False
    assert _rows(tmp_path / "runs", "cancelled", "val")[-1]["step"] == state["step"]


_DDP_WORKER = """
import os, sys
import torch
from safetensors.torch import save_file
from training.config import PretrainConfig
from training.train import train

config = PretrainConfig(name="ddp", out_dir="models", run_dir="runs", data="photos", model="micro", image_size=16,
                        patch_size=4, batch_size=16, steps=12, eval_every=6, eval_images=32, log_every=3,
                        threads=1, device="cpu")
result = train(config)
save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, f"rank{os.environ['RANK']}.safetensors")
"""


def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    (tmp_path / "worker.py").write_text(_DDP_WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "worker.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    start = load_file(str(tmp_path / "runs/ddp/last.safetensors"))  # written by rank 0 at the last step
    assert all(torch.equal(rank0[k], start[k]) for k in rank0)
    assert json.loads((tmp_path / "models/ddp.json").read_text())["training"]["world_size"] == 2
    assert done.stdout.count("ddp (jigsaw): done") == 1  # only rank 0 reports


@pytest.mark.parametrize("args, message", [
    (["pretrain", "--data", "nowhere/at/all"], "No folder at"),
    (["pretrain", "--image-size", "30", "--patch-size", "8"], "does not divide"),
    (["pretrain", "--key-drop", "1.5"], "--key-drop"),
    (["pretrain", "--seam-loss", "-1"], "--seam-loss is a weight of 0 or more"),
    (["pretrain", "--model", "huge"], "unknown model preset"),
    (["pretrain", "--resume", "--name", "never-ran"], "nothing to resume"),
    (["finetune", "--data", "procedural"], "has no labels"),
    (["finetune", "--init", "missing/jig.safetensors"], "No file at"),
    (["evaluate", "missing/model.safetensors"], "No file at"),
    (["pretrain", "--unknown-option", "3"], "unrecognized arguments: --unknown-option"),
    (["pretrain", "--steps", "many"], "invalid int value"),
])
def test_bad_input_gets_one_sentence_and_exit_code_2(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_init_takes_a_classifier_checkpoint_and_refuses_another_size(pretrained, tmp_path, capsys):
    from training.config import check_config

    _, result = pretrained
    classifier = FinetuneConfig(name="cls", out_dir=str(tmp_path), run_dir=str(tmp_path / "runs"), data="shapes",
                                image_size=32, steps=1, eval_every=1, **TINY)
    train_quietly(classifier, ["finetune"])
    settled = check_config(FinetuneConfig(init=str(tmp_path / "cls.safetensors"), data="digits", image_size=16))
    assert (settled.patch_size, settled.embed_dim, settled.depth) == (4, 64, 2)  # the checkpoint's (micro) size
    capsys.readouterr()
    code = main(["finetune", "--init", str(result.checkpoint), "--patch-size", "8", "--out-dir", str(tmp_path)])
    assert code == 2 and "differs from the --init checkpoint's 4" in capsys.readouterr().err


def test_pretraining_goes_on_from_a_jigsaw_checkpoint(pretrained, tmp_path, capsys):
    config, result = pretrained
    start = load_file(str(result.checkpoint))
    # With a zero learning rate nothing moves: the checkpoint shows exactly what --init loaded.
    common = dict(data="photos", init=str(result.checkpoint), lr=0.0, min_lr=0.0, steps=2, eval_every=2,
                  out_dir=str(tmp_path), run_dir=str(tmp_path / "runs"),
                  **{k: v for k, v in TINY.items() if k not in ("model", "patch_size")})
    train_quietly(PretrainConfig(name="same", image_size=16, seam_loss=1.0, **common), ["pretrain"])
    same = load_file(str(tmp_path / "same.safetensors"))
    assert set(same) == set(start) and all(torch.equal(start[k], same[k]) for k in start)
    card = json.loads((tmp_path / "same.json").read_text())
    assert card["training"]["init"] == str(result.checkpoint) and card["architecture"]["patch_size"] == 4
    assert card["metrics"]["val"]["patch_acc_hungarian"] == pytest.approx(
        _rows(Path(config.run_dir), "jig", "val")[-1]["patch_acc_hungarian"])  # the start's score, unchanged

    # A finer grid keeps every weight but the jigsaw head, which is new and sized for 6x6.
    train_quietly(PretrainConfig(name="finer", image_size=24, **common), ["pretrain"])
    finer = load_file(str(tmp_path / "finer.safetensors"))
    kept = [k for k in start if not k.startswith("jigsaw_head.")]
    assert all(torch.equal(start[k], finer[k]) for k in kept) and set(finer) == set(start)
    assert finer["jigsaw_head.weight"].shape == (36, 64)

    capsys.readouterr()
    assert main(["pretrain", "--init", "starter-shapes", "--out-dir", str(tmp_path)]) == 2
    assert "goes on from a jigsaw checkpoint; 'starter-shapes' is a classifier" in capsys.readouterr().err
    assert main(["pretrain", "--init", str(result.checkpoint), "--depth", "4", "--out-dir", str(tmp_path)]) == 2
    assert "--depth 4 differs from the --init checkpoint's 2" in capsys.readouterr().err


def test_resume_with_other_options_is_refused(pretrained, capsys):
    config, _ = pretrained
    args = ["pretrain", "--name", "jig", "--run-dir", config.run_dir, "--out-dir", config.out_dir, "--resume",
            "--data", "photos", "--model", "micro", "--image-size", "16", "--patch-size", "4", "--steps", "80"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "was started with" in err and "--steps 60 (now 80)" in err


def test_resume_may_change_the_threads_and_the_log_interval(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--name", "jig", "--data", "photos", "--model", "micro", "--image-size", "16",
            "--patch-size", "4", "--batch-size", "16", "--steps", "20", "--eval-every", "10", "--eval-images", "32",
            "--device", "cpu"]
    assert main([*args, "--threads", "1", "--log-every", "5"]) == 0
    assert main([*args, "--threads", "2", "--log-every", "7", "--resume"]) == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "models/jig.json").read_text())
    assert card["training"]["steps"] == 20 and card["training"]["config"]["threads"] == 2
    assert main([*args, "--threads", "2", "--steps", "30", "--resume"]) == 2  # what the run learns may not change
    assert "--steps 20 (now 30)" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    for command, config_class in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for name in config_class.__dataclass_fields__:
            assert f"--{name.replace('_', '-')}" in text


def test_quickstart_plans_a_coarse_pretext_then_a_finer_fine_tune_within_the_budget():
    from training.quickstart import starter_configs

    pretrain, finetune = starter_configs(QuickstartConfig(minutes=20))
    assert pretrain.patch_size == finetune.patch_size == 8
    assert (pretrain.image_size // 8, finetune.image_size // 8) == (4, 8)  # 4x4 pretext grid, 8x8 fine-tune
    assert pretrain.data == "photos:1+procedural:1" and pretrain.eval_data == "photos" and finetune.data == "shapes"
    # The scratch run repeats the fine-tune's steps: the three runs take about 2 fine-tune budgets + 1 pretrain.
    assert 18 <= pretrain.minutes + 2 * finetune.minutes < 20
    shape = model_shape(pretrain)
    parameters = shape["depth"] * 12 * shape["embed_dim"] ** 2  # the blocks, which dominate
    assert 3 * 4 * parameters < 25e6 * 0.9  # three float32 checkpoints fit the 25 MB bundle


def test_quickstart_at_16_px_patches_plans_7x7_grids_and_refuses_other_sizes():
    from training.config import ConfigError
    from training.quickstart import starter_configs

    pretrain, finetune = starter_configs(QuickstartConfig(minutes=90, patch_size=16))
    assert (pretrain.name, finetune.name) == ("starter-jigsaw-16", "starter-shapes-16")
    assert pretrain.patch_size == finetune.patch_size == 16
    assert pretrain.image_size // 16 == finetune.image_size // 16 == 7
    # photos at 7x7 are memorised; the seam loss on endless procedural images is what generalises
    assert (pretrain.data, pretrain.seam_loss, pretrain.eval_data) == ("procedural", 1.0, "photos")
    assert starter_configs(QuickstartConfig(minutes=90))[0].seam_loss == 0.0
    with pytest.raises(ConfigError, match="--patch-size 12 is not one of 8, 16"):
        starter_configs(QuickstartConfig(patch_size=12))


@pytest.mark.parametrize("config", [
    PretrainConfig(),
    PretrainConfig(name="jig", data="photos", minutes=2.5, key_drop=0.25, amp=False, patch_size=4, lr=3e-4),
    PretrainConfig(data="procedural", seam_loss=0.5, threads=2),
    FinetuneConfig(name="cls", init="/abs/jig.safetensors", steps=7, batch_size=5, eval_every=1, compile=True),
    FinetuneConfig(minutes=1.0, steps=0, data="folder:/data/pets", layer_decay=0.75),
    EvaluateConfig(checkpoint="starter-shapes", split="test", images=64, seed=3),
    QuickstartConfig(minutes=72.0, threads=1),
    QuickstartConfig(minutes=90.0, patch_size=16),
    HalveConfig(checkpoint="starter-jigsaw-16", device="cpu"),
])
def test_the_command_line_of_a_config_parses_back_to_it(config):
    from training.cli import parse, to_argv

    argv = to_argv(config)
    assert all(isinstance(a, str) for a in argv)
    command, parsed = parse(argv)
    assert parsed == config and type(parsed) is type(config)
    assert command == argv[0]


def test_minutes_with_steps_keeps_both_limits():
    from training.cli import parse, to_argv

    config = PretrainConfig(minutes=3.0)  # steps stays at its default: whichever limit comes first ends the run
    assert "--steps" in to_argv(config) and parse(to_argv(config))[1].steps == config.steps
    assert parse(["pretrain", "--minutes", "3"])[1].steps == 0  # --minutes alone: time is the only limit


def test_halve_stores_float16_and_records_the_metrics_before_and_after(pretrained, tmp_path, capsys):
    import shutil

    _, result = pretrained
    path = tmp_path / "jig.safetensors"
    shutil.copy(result.checkpoint, path)
    shutil.copy(result.checkpoint.with_suffix(".json"), tmp_path / "jig.json")
    original = load_file(str(path))
    trained = json.loads((tmp_path / "jig.json").read_text())["metrics"]

    assert main(["halve", str(path), "--device", "cpu"]) == 0
    stored = load_file(str(path))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    assert path.stat().st_size < 0.55 * sum(t.numel() * 4 for t in original.values())
    model = load_model(str(path), device="cpu")  # the views get float32, equal to the weights rounded to float16
    loaded = dict(model.named_parameters())
    for key, value in original.items():
        if key in loaded:
            assert loaded[key].dtype == torch.float32
            assert torch.equal(loaded[key].detach(), value.half().float())
    sidecar = json.loads((tmp_path / "jig.json").read_text())
    for split in ("train", "val"):  # before: training's own numbers, reproduced; after: the stored model's
        assert sidecar["storage"]["metrics_float32"][split] == pytest.approx(trained[split])
        _, _, now = evaluate_checkpoint(EvaluateConfig(checkpoint=str(path), split=split, images=64, device="cpu"))
        assert sidecar["metrics"][split] == pytest.approx(now)
    assert sidecar["storage"]["dtype"] == "float16" and "stored in float16" in capsys.readouterr().out

    assert main(["halve", str(path)]) == 2
    assert "already stored in float16" in capsys.readouterr().err


def test_jigsaw_pretraining_on_a_folder_of_your_own_photos(tmp_path):
    from PIL import Image

    photos = tmp_path / "holiday"
    rng = torch.Generator().manual_seed(0)
    for i in range(12):  # smooth random colour fields, any depth
        field = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=rng), size=(48, 64), mode="bilinear")
        array = (field[0].permute(1, 2, 0) * 255).byte().numpy()
        (photos / ("day2" if i % 2 else "")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(photos / ("day2" if i % 2 else "") / f"{i}.png")
    (photos / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    run = _cli(tmp_path, *(a if a != "photos" else "crops:holiday" for a in _RUN), "--steps", "20", "--name", "mine")
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    # the skipped file is one plain line of the log, not a Python warning
    assert f"note: 1 of 13 image files under {photos} could not be read and were skipped: cut.jpg" in out
    assert "UserWarning" not in err
    sidecar = json.loads((tmp_path / "models" / "mine.json").read_text())
    assert sidecar["training"]["dataset"] == f"crops:{photos}"
    model = load_model(tmp_path / "models" / "mine.safetensors", device="cpu")
    assert model.card.has_jigsaw_head and tuple(model.card.grid_size) == (4, 4)
