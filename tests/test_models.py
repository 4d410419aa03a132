"""The model registry: each source loads, equals the weights it was given, and bad files say why."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vitviz.checkpoints import save_checkpoint
from vitviz.hub import WeightsNotDownloaded
from vitviz.models import ModelLoadError, create_vit, load_model
from vitviz.registry import DEFAULT_MODEL, ModelEntry, default_model, list_models, model_version

ARCH = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)


def _sidecar(**extra):
    return dict(name="tiny", kind="classifier", architecture=ARCH, class_names=["a", "b", "c"],
                normalization=dict(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]),
                training=dict(dataset="shapes", steps=10), **extra)


@pytest.fixture
def tiny_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_vit(ARCH)
    path = save_checkpoint(model, tmp_path / "tiny", _sidecar())
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    return model.eval(), path


def test_random_weights_are_a_choice_and_a_missing_download_says_how_to_get_it():
    model = load_model("random:vit_tiny_patch16_224", device="cpu")
    card = model.card
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert (card.grid_size, card.patch_size, card.num_prefix_tokens, card.embed_dim, card.depth) == ((14, 14), 16, 1, 192, 12)
    assert card.num_classes == 1000 and card.class_names[1].startswith("goldfish") and card.label_set == "ImageNet-1k"
    assert "random init" in card.name and "random weights" in card.provenance and "random weights, as chosen" in card.notes[0]
    # the same name without the choice: pretrained weights or nothing, never a silent random model
    with pytest.raises(WeightsNotDownloaded, match=r"vit_tiny_patch16_224's pretrained weights \(about 23 MB\) are not "
                                                   r"downloaded yet: press Download, or run `python -m vitviz fetch"):
        load_model("vit_tiny_patch16_224", device="cpu")
    with pytest.raises(ModelLoadError, match="timm has no pretrained weights for vit_base_patch16_gap_224: pick random:"):
        load_model("vit_base_patch16_gap_224", device="cpu")


def test_timm_registers_and_no_class_token():
    card = load_model("random:vit_small_patch14_reg4_dinov2", device="cpu").card
    assert card.num_prefix_tokens == 5 and card.has_class_token and card.grid_size == (37, 37)


def test_unknown_names_and_non_vits():
    with pytest.raises(ModelLoadError, match="neither a checkpoint .* nor a timm model name"):
        load_model("no_such_model_xyz", device="cpu")
    with pytest.raises(ModelLoadError, match="not a timm VisionTransformer"):
        load_model("resnet18", device="cpu")


def test_checkpoint_by_name_reproduces_the_saved_model(tiny_checkpoint):
    original, path = tiny_checkpoint
    assert {p.name for p in path.parent.iterdir()} == {"tiny.safetensors", "tiny.json"}  # no temporary files left
    loaded = load_model("tiny", device="cpu")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), original(x))
    card = loaded.card
    assert card.source == "checkpoint" and card.class_names == ("a", "b", "c") and card.mean == (0.5, 0.5, 0.5)
    assert card.provenance == "vitviz classifier checkpoint trained on shapes for 10 steps"
    sources = {e.ref: e.source for e in list_models()}
    assert sources["tiny"] == "checkpoint"
    assert list(sources).index("tiny") < list(sources).index("random:vit_tiny_patch16_224")  # checkpoints come first


def test_jigsaw_head_saved_under_its_own_prefix(tmp_path):
    model = create_vit({**ARCH, "num_classes": 0, "pos_embed": "none"}, jigsaw_grid=(4, 4))
    path = save_checkpoint(model, tmp_path / "jig", _sidecar(jigsaw=dict(grid=[4, 4])) | {"architecture": {**ARCH, "num_classes": 0, "pos_embed": "none"}})
    loaded = load_model(path, device="cpu")
    assert loaded.card.jigsaw_grid == (4, 4) and torch.equal(loaded.jigsaw_head.weight, model.jigsaw_head.weight)


def test_bare_safetensors_infers_the_architecture(tmp_path):
    model = create_vit({**ARCH, "embed_dim": 128, "num_heads": 2, "class_token": False, "global_pool": "avg", "reg_tokens": 2}).eval()
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = load_model(path, device="cpu")
    assert loaded.card.num_prefix_tokens == 2 and not loaded.card.has_class_token
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(loaded(x), model(x), atol=1e-6)  # 128/64 = 2 heads: inference is exact here
    assert any("No sidecar" in note for note in loaded.card.notes)


def test_pth_state_dict_loads_with_weights_only(tmp_path):
    model = create_vit({**ARCH, "embed_dim": 64, "num_heads": 1}).eval()
    path = tmp_path / "plain.pth"
    torch.save({"model": model.state_dict()}, path)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(load_model(path, device="cpu")(x), model(x), atol=1e-6)


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["VITVIZ_PICKLE_CANARY"],))


def test_pth_with_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.setenv("VITVIZ_PICKLE_CANARY", str(canary))
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"patch_embed.proj.weight": _Payload()}, f)
    with pytest.raises(ModelLoadError, match="refused: it holds Python objects other than tensors"):
        load_model(path, device="cpu")
    assert not canary.exists()


def test_corrupt_truncated_and_foreign_files(tmp_path, tiny_checkpoint):
    _, good = tiny_checkpoint
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(2048))
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_model(corrupt, device="cpu")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_model(truncated, device="cpu")
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, foreign)
    with pytest.raises(ModelLoadError, match="not a ViT checkpoint: it has no patch_embed.proj.weight"):
        load_model(foreign, device="cpu")
    with pytest.raises(ModelLoadError, match="No file at"):
        load_model(tmp_path / "missing.safetensors", device="cpu")


@pytest.mark.parametrize("name, image_format", [("cat.jpg", "JPEG"), ("cat.pth", "JPEG"), ("cat.safetensors", "JPEG"),
                                                ("cat.png", "PNG"), ("cat.bin", "BMP"), ("cat.tif", "TIFF")])
def test_an_image_given_as_weights_is_named_as_an_image(tmp_path, name, image_format):
    from PIL import Image

    path = tmp_path / name
    Image.new("RGB", (8, 8), "orange").save(path, format=image_format)
    with pytest.raises(ModelLoadError) as error:
        load_model(path, device="cpu")
    assert str(error.value) == (f"{name} is a {image_format} image, not a model's weights: give a .safetensors or "
                                ".pth file here, and choose images under Image in the sidebar.")


def test_sidecar_that_does_not_match_its_weights(tmp_path):
    model = create_vit(ARCH)
    path = save_checkpoint(model, tmp_path / "odd", _sidecar() | {"architecture": {**ARCH, "depth": 3}})
    with pytest.raises(ModelLoadError, match=r"odd.safetensors does not fit its architecture: missing \d+ tensors \(e.g. blocks.2"):
        load_model(path, device="cpu")
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(path, device="cpu")


def test_a_checkpoint_saved_again_gets_a_new_version_and_is_readable(tiny_checkpoint):
    model, path = tiny_checkpoint
    first = model_version("tiny")
    assert first == model_version(path) and str(path) in first
    assert model_version("random:vit_tiny_patch16_224") == "" and model_version("vit_tiny_patch16_224") == "not downloaded" and model_version("missing-name") == ""
    assert os.stat(path).st_mode & 0o044 == 0o044 & ~_umask()  # group/other read as the umask allows
    os.utime(path, ns=(0, 0))  # an old file, then written again under the same name
    old = model_version("tiny")
    save_checkpoint(model, path, _sidecar())
    assert model_version("tiny") not in (first, old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_picker_lists_classifiers_before_jigsaw_models_in_each_folder(tmp_path, monkeypatch):
    jigsaw_arch = {**ARCH, "num_classes": 0, "pos_embed": "none"}
    for name in ("a-jigsaw", "z-jigsaw"):
        save_checkpoint(create_vit(jigsaw_arch, jigsaw_grid=(4, 4)), tmp_path / name,
                        dict(name=name, kind="jigsaw", architecture=jigsaw_arch, jigsaw=dict(grid=[4, 4])))
    for name in ("b-classifier", "c-classifier"):
        save_checkpoint(create_vit(ARCH), tmp_path / name, _sidecar() | {"name": name})
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    refs = [e.ref for e in list_models() if e.source == "checkpoint"]
    mine = [r for r in refs if r in ("a-jigsaw", "z-jigsaw", "b-classifier", "c-classifier")]
    assert mine == ["b-classifier", "c-classifier", "a-jigsaw", "z-jigsaw"]


def test_picker_sorts_by_name_not_by_file_name_or_time(tmp_path, monkeypatch):
    """'-' sorts before '.', so by file name shapes-scratch.safetensors would come before shapes.safetensors."""
    for index, name in enumerate(("shapes-scratch", "shapes")):
        path = save_checkpoint(create_vit(ARCH), tmp_path / name, _sidecar() | {"name": name})
        os.utime(path, (1_000_000 + index, 1_000_000 + index))  # shapes written last: newest
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    refs = [e.ref for e in list_models() if e.path is not None and e.path.parent == tmp_path]
    assert refs == ["shapes", "shapes-scratch"]


def test_the_default_model_is_starter_shapes_when_listed_else_the_first_classifier():
    def entry(ref, kind):
        return ModelEntry(ref, "checkpoint", f"{ref} ({kind})", kind)

    jigsaw, other, starter = entry("a-jigsaw", "jigsaw"), entry("b-classifier", "classifier"), entry(DEFAULT_MODEL, "classifier")
    assert default_model([jigsaw, other, starter]) == starter
    assert default_model([jigsaw, other]) == other
    assert default_model([jigsaw]) == jigsaw and default_model([]) is None
    if (Path(__file__).resolve().parent.parent / "models" / f"{DEFAULT_MODEL}.safetensors").exists():
        assert default_model().ref == "starter-shapes" and list_models()[0].ref == "starter-shapes"


def test_a_checkpoint_of_a_run_stopped_early_says_it_is_partial(tmp_path, monkeypatch):
    config = {"steps": 40}
    for name, steps in (("cut", 12), ("whole", 40)):
        training = dict(steps=steps, finished=steps == 40, config=config)
        save_checkpoint(create_vit(ARCH), tmp_path / name, _sidecar() | {"name": name, "training": training})
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    labels = {e.ref: e.label for e in list_models()}
    assert labels["cut"] == "cut (classifier, partial: stopped at step 12 of 40)"
    assert labels["whole"] == "whole (classifier)"


@pytest.mark.parametrize("name, block", [
    ("vit_small_patch16_18x2_224", "ParallelThingsBlock"),  # two attentions side by side per block
    ("vit_dwee_patch16_reg1_gap_256", "Block with DiffAttention"),  # differential attention
])
def test_blocks_whose_attention_cannot_be_recorded_are_refused_by_name(name, block):
    with pytest.raises(ModelLoadError, match=f"built from timm's {block}: .*vitviz opens ViTs whose blocks are"):
        load_model(f"random:{name}", device="cpu")


@pytest.mark.parametrize("name, block", [("vit_base_patch16_rpn_224", "ResPostBlock"),
                                         ("vit_pwee_patch16_reg1_gap_256", "ParallelScalingBlock")])
def test_other_recordable_blocks_load_and_give_one_map_per_block(name, block):
    from vitviz.attention import capture

    model = load_model(f"random:{name}", device="cpu")
    assert type(model.blocks[0]).__name__ == block
    images = torch.randn(1, 3, *model.card.image_size)
    logits, attentions = capture(model, images)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images))  # recording changes nothing
    n = model.card.num_prefix_tokens + model.card.grid_size[0] * model.card.grid_size[1]
    assert len(attentions) == model.card.depth
    assert attentions[0].shape == (1, model.card.num_heads, n, n)
    torch.testing.assert_close(attentions[-1].sum(-1), torch.ones(1, model.card.num_heads, n))


def test_a_distilled_deit_weights_file_is_read_with_its_distillation_token(tmp_path):
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_distilled_patch16_224").eval()
    path = tmp_path / "deit-distilled.pth"
    torch.save(reference.state_dict(), path)
    model = load_model(path, device="cpu")
    assert model.card.prefix_names == ("class token", "distillation token")
    assert model.card.prefix_labels == ("CLS", "DIST") and model.card.has_distillation_token
    assert model.card.num_prefix_tokens == 2 and model.card.grid_size == (14, 14)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():  # the eval output averages the class and distillation heads, as timm's does
        torch.testing.assert_close(model(images), reference(images), atol=1e-5, rtol=1e-5)


def test_prefix_tokens_are_named_for_registers_and_distillation_by_name():
    assert load_model("random:deit_tiny_distilled_patch16_224", device="cpu").card.prefix_names == (
        "class token", "distillation token")
    assert load_model("random:vit_small_patch14_reg4_dinov2", device="cpu").card.prefix_names == (
        "class token", "register 1", "register 2", "register 3", "register 4")
    assert load_model("random:vit_base_patch16_rpn_224", device="cpu").card.prefix_names == ()  # no class token
