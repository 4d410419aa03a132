"""Fine-tuning your own classes: what each mode trains, where a run can start, timm's augmentation, the class report,
and upload:NAME on the command line."""

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_upload import make_zip, three_classes
from training.accuracy import class_report, classifier_logits
from training.cli import main, parse, to_argv
from training.config import ConfigError, FinetuneConfig, check_config, describe_start
from training.finetune import ProbeFeatures, TimmAugmented, set_trainable, timm_train_transform
from training.start import run_architecture, start_weights, vit_architecture
from vitviz.checkpoints import save_checkpoint
from vitviz.data import build_data, fixed_set, import_zip
from vitviz.models import create_vit, load_model

CLASSIFIER = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=4)
JIGSAW = dict(img_size=16, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=0, pos_embed="none")
RUN = dict(image_size=32, batch_size=16, eval_images=64, log_every=5, threads=1, device="cpu", lr=3e-3)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A jobs root holding the upload 'colours' (3 classes of 12), and a tiny classifier and jigsaw checkpoint."""
    root = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VITVIZ_JOBS", str(root / "jobs"))
        patch.setenv("VITVIZ_MODELS", str(root / "models"))
        from vitviz.registry import uploads_dir

        import_zip(make_zip(three_classes((12, 12, 12))), "colours", uploads_dir())
        torch.manual_seed(0)
        save_checkpoint(create_vit(CLASSIFIER), root / "models" / "tiny-classifier",
                        dict(name="tiny-classifier", kind="classifier", architecture=CLASSIFIER,
                             class_names=["a", "b", "c", "d"], normalization={"mean": [0.5] * 3, "std": [0.25] * 3}))
        save_checkpoint(create_vit(JIGSAW, jigsaw_grid=(2, 2)), root / "models" / "tiny-jigsaw",
                        dict(name="tiny-jigsaw", kind="jigsaw", architecture=JIGSAW, jigsaw=dict(grid=[2, 2])))
        yield root


def finetune(world, name: str, **options):
    from training.train import train

    config = FinetuneConfig(name=name, data="upload:colours", out_dir=str(world / "out"), run_dir=str(world / "runs"),
                            **{**RUN, **options})
    result = train(config, command=["python", "-m", "training", "finetune", "--name", name])
    sidecar = json.loads((world / "out" / f"{name}.json").read_text())
    return result, load_file(str(world / "out" / f"{name}.safetensors")), sidecar


def start_state() -> dict:
    return load_model("tiny-classifier", device="cpu").state_dict()


def changed(before: dict, after: dict) -> set:
    return {k for k in after if k in before and before[k].shape == after[k].shape and not torch.equal(before[k], after[k])}


def val_rows(world, name: str) -> list[dict]:
    rows = [json.loads(line) for line in (world / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "val"]


# --- the modes ------------------------------------------------------------------------------------


def test_a_probe_trains_the_head_alone_on_features_computed_once(world, monkeypatch):
    from timm.models.vision_transformer import VisionTransformer

    calls, sets = [], []
    forward_features, probe = VisionTransformer.forward_features, ProbeFeatures.__call__
    monkeypatch.setattr(VisionTransformer, "forward_features", lambda self, x, **kw: calls.append(len(x)) or
                        forward_features(self, x, **kw))
    monkeypatch.setattr(ProbeFeatures, "__call__", lambda self, images: sets.append(len(images)) or probe(self, images))
    result, weights, sidecar = finetune(world, "probe", init="tiny-classifier", mode="probe", steps=60, eval_every=20)

    train_size, val_size = len(build_data("upload:colours", "train", 32).labels), 3 * 2  # 20% of 12 per class
    assert sets == [train_size, val_size, val_size]  # the train, val and test sets (an upload's test is its val)
    assert sum(calls) == train_size + val_size  # each image through the model once, for 4 evaluations and the end
    assert changed(start_state(), weights) == set()  # the whole backbone as it started
    assert weights["head.weight"].shape == (3, 32)  # a new head for the 3 classes
    assert sidecar["class_names"] == ["blue", "green", "red"] and sidecar["training"]["mode"] == "probe"
    assert sidecar["normalization"] == {"mean": [0.5] * 3, "std": [0.25] * 3}  # the start model's
    rows = val_rows(world, "probe")
    assert len(rows) == 4 and rows[-1]["loss"] < rows[0]["loss"]

    # the class report is the saved model's, on the validation set
    model = load_model(world / "out" / "probe.safetensors", device="cpu")
    images, labels, _ = fixed_set("upload:colours", "val", 32, 64, seed=0)
    logits = classifier_logits(model, images, model.card.mean, model.card.std)
    assert sidecar["class_report"] == {"split": "val", **class_report(logits, labels, ["blue", "green", "red"])}
    assert sidecar["class_report"]["support"] == [2, 2, 2]
    assert sidecar["metrics"]["val"]["accuracy"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_last_blocks_train_only_those_blocks_the_final_norm_and_the_head(world):
    _, weights, sidecar = finetune(world, "last-1", init="tiny-classifier", mode="last", train_blocks=1, steps=10,
                                   eval_every=10)
    moved = changed(start_state(), weights)
    assert moved and all(k.startswith(("blocks.2.", "norm.")) for k in moved)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in moved if k.startswith("blocks.")} == {"blocks.2"}
    assert sidecar["training"]["mode"] == "last" and sidecar["training"]["config"]["train_blocks"] == 1


def test_full_fine_tune_from_a_jigsaw_checkpoint_with_timm_augmentation_trains_everything(world):
    _, weights, sidecar = finetune(world, "full-jigsaw", init="tiny-jigsaw", mode="full", augment="timm", steps=10,
                                   eval_every=10)
    jigsaw = load_model("tiny-jigsaw", device="cpu").state_dict()
    assert {k for k in jigsaw if not k.startswith("jigsaw_head.")} <= changed(jigsaw, weights) | {"pos_embed"}
    assert weights["pos_embed"].shape == (1, 1 + 16, 32)  # a new learned position table for the 4x4 grid at 32 px
    augmentation = "\n".join(sidecar["training"]["augmentation"])
    assert augmentation.startswith("timm: Compose(") and "RandomResizedCropAndInterpolation(size=(32, 32), " \
                                                         "scale=(0.25, 1.0)" in augmentation


def test_set_trainable_names_what_each_mode_trains():
    vit = create_vit({**CLASSIFIER, "global_pool": "avg"})  # an average-pooled model: its fc_norm trains in "last"
    assert set_trainable(vit, "probe") == ["head.weight", "head.bias"]
    assert set_trainable(vit, "last", 2) == [n for n, _ in vit.named_parameters()
                                             if n.startswith(("blocks.1.", "blocks.2.", "fc_norm.", "head."))]
    assert len(set_trainable(vit, "full")) == len(list(vit.parameters()))


# --- where a run starts ---------------------------------------------------------------------------


def test_a_classifier_start_keeps_all_but_its_head_and_resamples_its_positions(world):
    from timm.layers import resample_abs_pos_embed

    start = describe_start("tiny-classifier")
    assert start.kind == "classifier" and start.path.name == "tiny-classifier.safetensors"
    architecture = run_architecture(start, dict(img_size=48), num_classes=3)
    vit = create_vit(architecture)
    mean, std, _ = start_weights(start, vit)
    assert (mean, std) == ((0.5,) * 3, (0.25,) * 3)  # the start model's normalisation
    old, new = load_model("tiny-classifier", device="cpu").state_dict(), vit.state_dict()
    assert new["pos_embed"].shape == (1, 1 + 36, 32)  # a 6x6 grid at 48 px
    assert torch.equal(new["pos_embed"], resample_abs_pos_embed(old["pos_embed"], new_size=[6, 6], old_size=[4, 4],
                                                                num_prefix_tokens=1))
    assert all(torch.equal(new[k], old[k]) for k in new if not k.startswith(("head.", "pos_embed")))
    assert new["head.weight"].shape == (3, 32)


def test_a_timm_vit_starts_a_probe_with_its_own_normalisation(world):
    result, weights, sidecar = finetune(world, "from-timm", init="random:vit_tiny_patch16_224", mode="probe", steps=5,
                                        eval_every=5)
    model = load_model(world / "out" / "from-timm.safetensors", device="cpu")
    assert model.card.patch_size == 16 and model.card.grid_size == (2, 2) and model.card.embed_dim == 192
    assert model.card.class_names == ("blue", "green", "red")
    assert model.card.mean == model.card.std == (0.5, 0.5, 0.5)  # vit_tiny_patch16_224's data config
    assert sidecar["training"]["init"] == "random:vit_tiny_patch16_224"


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "deit_small_distilled_patch16_224",
                                  "vit_small_patch14_reg4_dinov2", "vit_medium_patch16_gap_256",
                                  "vit_base_patch16_siglip_224"])
def test_a_timm_vit_is_rebuilt_from_its_architecture(name):
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
        rebuilt = create_vit(vit_architecture(model))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert repr(rebuilt) == repr(model)


@pytest.mark.parametrize("init, message", [
    ("resnet50", "starting model resnet50 is a ResNet, not a timm VisionTransformer"),
    ("vit_base_patch16_clip_224", "starting model vit_base_patch16_clip_224 has a layer vitviz cannot save and load "
                                  "back as it is ((norm_pre): LayerNorm((768,), eps=1e-05"),
    ("no-such-model", "starting model 'no-such-model' is neither a checkpoint in "),
    ("missing/start.safetensors", "No file at missing/start.safetensors"),
])
def test_what_cannot_start_a_fine_tune_is_refused_in_one_sentence(world, init, message):
    with pytest.raises(ConfigError) as refused:
        check_config(FinetuneConfig(init=init, data="upload:colours"))
    assert str(refused.value).startswith(message) and refused.value.field == "init"


@pytest.mark.parametrize("options, field, message", [
    (dict(mode="sideways"), "mode", "--mode 'sideways' is not one of full, last, probe"),
    (dict(augment="heavy"), "augment", "--augment 'heavy' is not one of device, timm"),
    (dict(mode="probe", augment="timm"), "augment", "--augment timm does not apply to --mode probe: a probe computes "
                                                    "its features once, from unaugmented images"),
    (dict(mode="last", train_blocks=0), "train_blocks", "--train-blocks must be at least 1, got 0"),
    (dict(mode="last", train_blocks=4, init="tiny-classifier"), "train_blocks",
     "--train-blocks 4 is more than the model's 3 blocks (choose 1 to 3, or --mode full)"),
    (dict(probe_images=0), "probe_images", "--probe-images must be positive, got 0"),
    (dict(init="tiny-classifier", patch_size=4), "patch_size",
     "--patch-size 4 differs from the --init checkpoint's 8; the model size comes from the checkpoint"),
    (dict(init="random:vit_tiny_patch16_224", image_size=40), "image_size",
     "image size 40 is not a multiple of the patch size 16 of the starting model 'random:vit_tiny_patch16_224'"),
    (dict(init="deit_tiny_distilled_patch16_224", mode="probe", image_size=32), "mode",
     "starting model 'deit_tiny_distilled_patch16_224' is distilled (two heads): train it with --mode last or full"),
])
def test_bad_fine_tune_options_are_refused_naming_the_option(world, options, field, message):
    with pytest.raises(ConfigError) as refused:
        check_config(FinetuneConfig(data="upload:colours", **options))
    assert str(refused.value) == message or str(refused.value).startswith(message)
    assert refused.value.field == field


# --- augmentation and the report ------------------------------------------------------------------


def test_timm_augmentation_is_a_function_of_the_generator_and_leaves_the_global_generators_alone(world):
    import timm

    data = TimmAugmented(build_data("upload:colours", "train", 32),
                         timm_train_transform(timm.data.resolve_data_config({}, model=create_vit(CLASSIFIER)), 32))
    random.seed(7)
    torch.manual_seed(7)
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    a_images, a_labels = data.sample(8, torch.Generator().manual_seed(1))
    b_images, b_labels = data.sample(8, torch.Generator().manual_seed(1))
    c_images, _ = data.sample(8, torch.Generator().manual_seed(2))
    assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels) and not torch.equal(a_images, c_images)
    assert random.getstate() == python_state and torch.equal(torch.get_rng_state(), torch_state)
    assert a_images.shape == (8, 3, 32, 32) and a_images.min() >= 0 and a_images.max() <= 1
    plain, _ = data.data._draw(8, torch.Generator().manual_seed(1), augment=False)
    assert not torch.equal(a_images, plain)  # augmented: cropped, maybe flipped, jittered


def test_class_report_counts_each_true_and_predicted_class():
    logits = torch.tensor([[3., 0, 0], [0, 2, 0], [0, 2, 1], [1, 0, 0], [0, 0, 5]])  # predicted 0, 1, 1, 0, 2
    labels = torch.tensor([0, 1, 2, 0, 2])
    report = class_report(logits, labels, ["a", "b", "c"])
    assert report["confusion"] == [[2, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert report["support"] == [2, 1, 2] and report["per_class_accuracy"] == [1.0, 1.0, 0.5]
    assert class_report(logits[:2], labels[:2], ["a", "b", "c"])["per_class_accuracy"] == [1.0, 1.0, None]


def test_the_class_accuracy_figure_draws_the_report():
    from vitviz import plots

    fig = plots.class_accuracy([[2, 0, 0], [0, 1, 0], [0, 1, 1]], ["a", "b", "c"])
    bars, heatmap = fig.data
    assert list(bars.x) == [1.0, 1.0, 0.5] and list(bars.y) == ["a", "b", "c"]
    assert heatmap.z.tolist() == [[2, 0, 0], [0, 1, 0], [0, 1, 1]] and list(heatmap.x) == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"the confusion matrix is \(2, 2\), but there are 3 class names"):
        plots.class_accuracy([[1, 0], [0, 1]], ["a", "b", "c"])


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    FinetuneConfig(data="upload:pets", init="random:vit_small_patch16_224", mode="last", train_blocks=3, augment="timm"),
    FinetuneConfig(data="upload:pets:2+shapes:1", init="starter-shapes", mode="probe", probe_images=100, steps=50),
])
def test_the_new_options_round_trip_through_the_command_line(config):
    command, parsed = parse(to_argv(config))
    assert command == "finetune" and parsed == config


def test_the_cli_fine_tunes_on_an_upload_and_names_a_missing_one(world, capsys):
    out = world / "cli"
    args = ["finetune", "--data", "upload:colours", "--init", "tiny-classifier", "--mode", "probe", "--steps", "5",
            "--eval-every", "5", "--image-size", "32", "--eval-images", "16", "--threads", "1", "--device", "cpu",
            "--name", "cli-probe", "--out-dir", str(out), "--run-dir", str(out / "runs")]
    assert main(args) == 0
    assert json.loads((out / "cli-probe.json").read_text())["training"]["dataset"] == "upload:colours"
    capsys.readouterr()
    assert main([*args[:2], "upload:pets", *args[3:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training finetune: error: No uploaded data set named 'pets' in ")
    assert "(there are: colours)" in err and err.count("\n") == 1
