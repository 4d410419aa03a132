"""The explanation benchmark on any classifier: models that are not shapes classifiers are scored on the sample
photos (no masks, so no localization), and what cannot be scored is refused in one line.

Each figure checked here is recomputed for one item through ``vitviz.faithfulness`` directly, from the photo
loaded by hand, not from the benchmark's own items.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import timm
import torch
from safetensors.torch import save

from hubserver import StandInHub
from vitviz import faithfulness, hub
from vitviz.attributions import METHODS, method_by_name
from vitviz.explanation_benchmark import CENTRE, COLUMNS, LOCALIZATION_SKIPPED, RANDOM, main, photo_items
from vitviz.inputs import model_input, model_pixels
from vitviz.models import load_model
from vitviz.samples import NATURAL_PHOTOS, load_sample

FAST = ("saliency", "attention-rollout")  # one backward pass or none
# At 160 px (a 10x10 grid) one item costs about 2 s a map on one core, mostly ROAD's imputation: one item each.
SCORES = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf")


def run(argv, out, capsys):
    """``main`` on CPU, writing to ``out``: what it printed, the CSV rows and the JSON document."""
    assert main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out.with_name(out.name + ".csv")) as f:
        rows = list(csv.DictReader(f))
    return printed, rows, json.loads(out.with_name(out.name + ".json").read_text())


def check_table(rows, methods, document):
    """The rows of each method and both baselines, scores in [0, 1], localization skipped, means of the items."""
    assert [row["method"] for row in rows] == [*methods, RANDOM, CENTRE]
    assert list(rows[0]) == list(COLUMNS)
    for row in rows:
        for key in SCORES:
            assert 0 <= float(row[key]) <= 1, (row["method"], key, row[key])
            values = document["items"][row["method"]][key]
            assert float(row[key]) == pytest.approx(sum(values) / len(values))
        assert math.isnan(float(row["mass_in_mask"])) and math.isnan(float(row["pointing_game"]))
        assert "mass_in_mask" not in document["items"][row["method"]]
    assert all(float(row["seconds_per_image"]) > 0 for row in rows[:len(methods)])


def recompute(model, photo, slug):
    """Deletion and insertion AUC of ``slug``'s map of the model's top-1 class on the whole ``photo``, by hand."""
    image = model_input(load_sample(photo), model)  # (1, 3, H, W)
    with torch.no_grad():
        target = int(model(image).argmax())
    patch = method_by_name(slug)(model).attribute(image, target).patch  # (1, gh, gw)
    deletion = faithfulness.deletion_curve(model, image, patch, target)  # fills with the normalisation mean
    insertion = faithfulness.insertion_curve(model, image, patch, target)
    return target, deletion.auc.item(), insertion.auc.item()


def test_a_random_init_timm_vit_is_scored_on_the_sample_photos(tmp_path, capsys):
    out = tmp_path / "random"
    printed, rows, document = run(["random:test_vit", "--items", "1", "--methods", ",".join(FAST)], out, capsys)
    assert LOCALIZATION_SKIPPED in printed and "maps explain the model's top-1 prediction" in printed
    assert "Cascading model randomisation on 1 items" in printed
    check_table(rows, ["Saliency", "Attention rollout"], document)
    assert document["item_sources"] == [NATURAL_PHOTOS[0]] and document["labels"] is None
    assert document["settings"]["data"] == "sample photos" and document["accuracy"] is None
    # test_vit has 6 blocks: head, then blocks 5 to 0, then the embeddings
    labels = [label for label, _ in document["randomisation"]["Saliency"]]
    assert labels[:2] == ["head", "head + block 5"] and labels[-2:] == ["head + blocks 5-0", "head + blocks 5-0 + embeddings"]

    # --seed 0 drew the random weights: the same seed gives the same model, and the same figures by hand
    torch.manual_seed(0)
    model = load_model("random:test_vit", device="cpu")
    for slug, name in zip(FAST, ("Saliency", "Attention rollout")):
        target, deletion, insertion = recompute(model, NATURAL_PHOTOS[0], slug)
        assert document["targets"][0] == target
        assert document["items"][name]["deletion_auc"][0] == pytest.approx(deletion, rel=1e-4)
        assert document["items"][name]["insertion_auc"][0] == pytest.approx(insertion, rel=1e-4)


NAME = "test_vit.r160_in1k"  # timm's 160 px test ViT, with a pretrained tag (timm/test_vit.r160_in1k on the Hub)


def test_a_timm_model_with_cached_weights_is_scored_from_them(tmp_path, monkeypatch, capsys):
    """The ImageNet path: a tagged timm name whose weights were fetched (from a stand-in Hub) and are cached."""
    torch.manual_seed(1)
    served = timm.create_model(NAME.split(".")[0], pretrained=False).eval()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = save({key: value.contiguous() for key, value in served.state_dict().items()})
    with StandInHub({(f"timm/{NAME}", "model.safetensors"): data}) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        hub.download_weights(NAME)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    printed, rows, document = run([NAME, "--items", "1", "--methods", "saliency", "--randomisation-items", "0"],
                                  tmp_path / "cached", capsys)
    assert printed.startswith(f"{NAME}: 1 sample-photo items (the whole photos {NATURAL_PHOTOS[0]})")
    check_table(rows, ["Saliency"], document)
    assert "pretrained weights from the local cache" in document["settings"]["provenance"]
    assert document["settings"]["deletion_fill_pixel_mean"] == [0.5, 0.5, 0.5]  # its own normalisation mean
    model = load_model(NAME, device="cpu")
    with torch.no_grad():  # the served weights, not a random draw
        torch.testing.assert_close(model(torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))),
                                   served(torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))))
    target, deletion, insertion = recompute(model, NATURAL_PHOTOS[0], "saliency")
    assert document["predicted_classes"] == [model.card.class_names[target]]
    assert document["items"]["Saliency"]["deletion_auc"] == pytest.approx([deletion], rel=1e-4)
    assert document["items"]["Saliency"]["insertion_auc"] == pytest.approx([insertion], rel=1e-4)


def tiny_checkpoint(path, class_names, size=32):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    torch.manual_seed(0)
    architecture = dict(img_size=size, patch_size=8, num_classes=len(class_names), embed_dim=16, depth=1, num_heads=2)
    return save_checkpoint(create_vit(architecture), path,
                           {"architecture": architecture, "kind": "classifier", "class_names": list(class_names)})


def test_our_own_checkpoint_of_other_classes_gets_every_method_on_photos(tmp_path, capsys):
    digits = [str(d) for d in range(10)]
    weights = tiny_checkpoint(tmp_path / "tiny-digits.safetensors", digits)
    printed, rows, document = run([str(weights), "--items", "2", "--ig-steps", "4", "--samples", "2",
                                   "--batch-size", "16"], tmp_path / "digits", capsys)
    assert printed.startswith("tiny-digits: 2 sample-photo items") and LOCALIZATION_SKIPPED in printed
    check_table(rows, list(METHODS), document)
    assert set(document["predicted_classes"]) <= set(digits)
    assert len(document["agreement"]["matrix"]) == len(METHODS) + 2
    assert [label for label, _ in document["randomisation"]["Grad-CAM"]] == ["head", "head + block 0",
                                                                            "head + block 0 + embeddings"]


def test_photo_items_are_whole_photos_then_seeded_crops(tmp_path):
    model = load_model(str(tiny_checkpoint(tmp_path / "tiny.safetensors", ["a", "b"])), device="cpu")
    count = len(NATURAL_PHOTOS) + 2
    images, sources = photo_items(model, count, seed=3)
    assert images.shape == (count, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert sources[:len(NATURAL_PHOTOS)] == list(NATURAL_PHOTOS)
    torch.testing.assert_close(images[1:2], model_pixels(load_sample(NATURAL_PHOTOS[1]), model))
    # the crops: square, a quarter to all of the photo's largest square, and exactly the pixels named
    for index in (len(NATURAL_PHOTOS), len(NATURAL_PHOTOS) + 1):
        name, box = sources[index].split(", crop ")
        assert name == NATURAL_PHOTOS[index % len(NATURAL_PHOTOS)]
        side, corner = box.split(" px at ")
        left, top = (int(v) for v in corner.strip("()").split(", "))
        photo = load_sample(name)
        assert 0.5 * min(photo.size) - 1 <= int(side) <= min(photo.size)
        crop = photo.crop((left, top, left + int(side), top + int(side)))
        torch.testing.assert_close(images[index:index + 1], model_pixels(crop, model))
    again, same = photo_items(model, count, seed=3)
    assert same == sources and torch.equal(again, images)
    assert photo_items(model, count, seed=4)[1][-2:] != sources[-2:]


def refusal(argv, capsys) -> str:
    """The one line ``main`` writes to stderr as it exits with status 2."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--device", "cpu"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m vitviz.explanation_benchmark: error: "), err
    return err


def test_models_that_cannot_be_scored_are_refused_in_one_sentence(tmp_path, monkeypatch, capsys):
    assert "starter-jigsaw has no classifier head (its only head is the jigsaw head" in refusal(["starter-jigsaw"],
                                                                                                capsys)
    assert ("vit_small_patch16_224.dino (random init) has no classifier head (it gives features only"
            in refusal(["random:vit_small_patch16_224.dino"], capsys))

    # weights not downloaded: an empty cache, no downloads
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("vit_small_patch16_224.augreg_in21k_ft_in1k", "hf-hub:timm/vit_small_patch16_224.augreg_in21k_ft_in1k"):
        err = refusal([name], capsys)
        assert f"{name}'s pretrained weights" in err and f"run `python -m vitviz fetch {name}`" in err
    # a self-supervised model is refused for having no head before anyone downloads it
    err = refusal(["vit_small_patch16_224.dino"], capsys)
    assert "vit_small_patch16_224.dino has no classifier head" in err and "fetch" not in err

    weights = tiny_checkpoint(tmp_path / "tiny-digits.safetensors", [str(d) for d in range(10)])
    assert "--target label needs labelled items" in refusal([str(weights), "--target", "label"], capsys)
    assert "cannot load" in refusal([str(tmp_path / "absent.safetensors")], capsys)
