"""Deletion and insertion against hand computations on a toy model; mask metrics on hand-built maps."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from toys import toy_card
from vitviz import faithfulness as fa

WEIGHTS = torch.tensor([[1.0, -2.0], [3.0, 0.5]])  # one weight per patch of a 2x2 grid
VALUES = torch.tensor([[0.5, 1.0], [-0.4, 2.0]])  # each patch of the test image is this value, all channels
MAP = torch.tensor([[0.1, 0.9], [0.5, 0.3]])  # relevance order: (0, 1), (1, 0), (1, 1), (0, 0)
ORDER = [(0, 1), (1, 0), (1, 1), (0, 0)]


class PatchMeans(nn.Module):
    """Logits ``[s, 0]`` with s the weighted sum of the patch means: P(class 0) = sigmoid(s)."""

    def __init__(self, weights=WEIGHTS, patch=4):
        super().__init__()
        self.weights = nn.Parameter(weights.clone(), requires_grad=False)
        self.patch = patch
        self.card = toy_card((patch * weights.shape[0], patch * weights.shape[1]), patch, classes=2, embed_dim=1)

    def forward(self, x):
        means = F.avg_pool2d(x.mean(dim=1, keepdim=True), self.patch)[:, 0]  # (B, gh, gw)
        s = (means * self.weights).sum(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def image(values=VALUES, patch=4):
    return values.repeat_interleave(patch, 0).repeat_interleave(patch, 1).expand(1, 3, -1, -1).clone()


def sigmoid(s):
    return 1 / (1 + math.exp(-s))


def trapezoid(ys):
    """Area over equally spaced fractions 0..1, by hand."""
    h = 1 / (len(ys) - 1)
    return h * (ys[0] / 2 + sum(ys[1:-1]) + ys[-1] / 2)


def test_deletion_curve_and_auc_by_hand():
    model = PatchMeans().eval()
    curve = fa.deletion_curve(model, image(), MAP[None], 0)
    # s after deleting patches D (fill 0): the sum of w * v over the patches left.
    deleted, expected = set(), []
    for step in range(5):
        expected.append(sigmoid(sum(WEIGHTS[r, c].item() * VALUES[r, c].item()
                                    for r in range(2) for c in range(2) if (r, c) not in deleted)))
        if step < 4:
            deleted.add(ORDER[step])
    assert curve.kind == "deletion"
    torch.testing.assert_close(curve.fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(curve.probabilities[0], torch.tensor(expected))
    assert curve.probabilities[0, -1].item() == pytest.approx(0.5)  # everything deleted: s = 0
    assert curve.auc.item() == pytest.approx(trapezoid(expected), abs=1e-6)


def test_deletion_fills_with_the_dataset_mean():
    model = PatchMeans().eval()
    fill = fa.mean_fill(model, (0.7, 0.65, 0.6))  # one std above the toy normalisation mean in every channel
    torch.testing.assert_close(fill, torch.ones(3))
    torch.testing.assert_close(fa.mean_fill(model), torch.zeros(3))
    curve = fa.deletion_curve(model, image(), MAP[None], 0, fill=fill)
    # All deleted: every patch mean is 1, so s = sum of the weights.
    assert curve.probabilities[0, -1].item() == pytest.approx(sigmoid(WEIGHTS.sum().item()))
    first = WEIGHTS.sum().item() - WEIGHTS[0, 0].item() + WEIGHTS[0, 0].item() * VALUES[0, 0].item()
    assert curve.probabilities[0, -2].item() == pytest.approx(sigmoid(first))  # only (0, 0) still the image's


def test_insertion_curve_by_hand_on_the_blurred_copy():
    model = PatchMeans().eval()
    x = image()
    blurred_means = F.avg_pool2d(fa.blur(x, 2.0).mean(dim=1, keepdim=True), 4)[0, 0]  # sigma: half a 4-px patch
    curve = fa.insertion_curve(model, x, MAP[None], 0)
    revealed, expected = set(), []
    for step in range(5):
        expected.append(sigmoid(sum(WEIGHTS[r, c].item() * (VALUES if (r, c) in revealed else blurred_means)[r, c].item()
                                    for r in range(2) for c in range(2))))
        if step < 4:
            revealed.add(ORDER[step])
    assert curve.kind == "insertion"
    torch.testing.assert_close(curve.probabilities[0], torch.tensor(expected))
    assert curve.auc.item() == pytest.approx(trapezoid(expected), abs=1e-6)
    assert not torch.allclose(blurred_means, VALUES)  # the blurred start is not the image


def test_blur_is_a_reflected_gaussian_to_two_sigma():
    x = torch.randn(2, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    expected = gaussian_filter(x.numpy(), sigma=(0, 0, 1.5, 1.5), mode="mirror", truncate=2.0)
    torch.testing.assert_close(fa.blur(x, 1.5), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        fa.blur(x, 0.0)


def test_decile_steps_on_a_2x2_grid_give_the_patch_auc():
    """round(0.1k * 4) visits every count 0..4; repeated counts add no area, so the AUCs are equal."""
    model = PatchMeans().eval()
    by_patch = fa.deletion_curve(model, image(), MAP[None], 0, steps="patch")
    by_decile = fa.deletion_curve(model, image(), MAP[None], 0, steps="decile")
    assert by_decile.probabilities.shape == (1, 11)
    torch.testing.assert_close(by_decile.auc, by_patch.auc)


def test_step_counts():
    assert fa.step_counts(4).tolist() == [0, 1, 2, 3, 4]
    assert fa.step_counts(12, "decile").tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12]
    with pytest.raises(ValueError, match="'patch' or 'decile'"):
        fa.step_counts(4, "tenth")


def test_patch_ranks_most_relevant_first_ties_in_a_seeded_random_order():
    assert fa.patch_ranks(MAP[None])[0].tolist() == [[3, 0], [1, 2]]
    # ties keep the order of one seeded permutation of the grid: the same alone or in a batch, for every seed
    shuffle = torch.randperm(6, generator=torch.Generator().manual_seed(fa.TIE_SEED))
    flat = fa.patch_ranks(torch.zeros(1, 2, 3))[0].flatten()
    assert flat[shuffle].tolist() == [0, 1, 2, 3, 4, 5] and flat.tolist() != [0, 1, 2, 3, 4, 5]
    assert torch.equal(fa.patch_ranks(torch.zeros(3, 2, 3))[2], flat.view(2, 3))
    assert not torch.equal(fa.patch_ranks(torch.zeros(1, 2, 3), seed=1)[0], flat.view(2, 3))
    # only the tied patches move: the top one stays first, the tied rest follow the permutation
    partly = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]])
    ranks = fa.patch_ranks(partly)[0].flatten()
    assert ranks[3] == 0 and [int(i) for i in shuffle if i != 3] == ranks.argsort()[1:].tolist()
    with pytest.raises(ValueError, match="NaN"):
        fa.patch_ranks(torch.tensor([[[0.0, math.nan]]]))


def test_a_flat_map_scores_like_a_random_map_not_like_a_perfect_one():
    """Only the top-left patch matters to this model: ranked in raster order, a flat map would delete it first
    and match the perfect map exactly."""
    weights = torch.zeros(4, 4)
    weights[0, 0] = 6.0
    model = PatchMeans(weights).eval()
    x = image(torch.ones(4, 4))
    perfect = torch.zeros(1, 4, 4)
    perfect[0, 0, 0] = 1.0
    flat = torch.zeros(1, 4, 4)
    best = fa.deletion_curve(model, x, perfect, 0)
    blind = fa.deletion_curve(model, x, flat, 0)
    assert best.probabilities[0, 1] == pytest.approx(0.5)  # gone after the first step
    step = int(fa.patch_ranks(flat)[0, 0, 0]) + 1  # when the flat map's random order reaches the top-left patch
    assert step > 1 and blind.probabilities[0, step - 1] > 0.99 and blind.probabilities[0, step] == pytest.approx(0.5)
    assert blind.auc.item() > best.auc.item() + 0.1
    random_order = -fa.patch_ranks(flat).float()  # the same order written as a map without ties
    torch.testing.assert_close(fa.deletion_curve(model, x, random_order, 0).probabilities, blind.probabilities)
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, :4, :4] = True  # the top-left patch only
    assert fa.pointing_game(perfect, masks).item() and not fa.pointing_game(flat, masks).item()


def test_baseline_images_are_where_the_curves_end_and_start():
    model = PatchMeans().eval()
    x = image()
    fill = fa.mean_fill(model, (0.7, 0.65, 0.6))
    deleted, blurred = fa.baseline_images(model, x, fill=fill)
    torch.testing.assert_close(deleted, torch.ones_like(x))
    torch.testing.assert_close(blurred, fa.blur(x, 2.0))  # half a 4-px patch
    with torch.no_grad():
        p_deleted, p_blurred = (model(i).softmax(-1)[0, 0].item() for i in (deleted, blurred))
    assert fa.deletion_curve(model, x, MAP[None], 0, fill=fill).probabilities[0, -1].item() == pytest.approx(p_deleted)
    assert fa.insertion_curve(model, x, MAP[None], 0).probabilities[0, 0].item() == pytest.approx(p_blurred)


def test_curves_per_image_targets_and_batching_agree():
    model = PatchMeans().eval()
    x = torch.cat([image(), image(-VALUES)])
    maps = torch.stack([MAP, MAP.flip(0)])
    one_by_one = fa.insertion_curve(model, x, maps, [0, 1], batch_size=1)
    all_at_once = fa.insertion_curve(model, x, maps, [0, 1], batch_size=64)
    torch.testing.assert_close(one_by_one.probabilities, all_at_once.probabilities)
    alone = fa.insertion_curve(model, x[1:], maps[1:], 1)
    torch.testing.assert_close(all_at_once.probabilities[1], alone.probabilities[0])
    # Class 1's probability is one minus class 0's.
    class0 = fa.insertion_curve(model, x[1:], maps[1:], 0)
    torch.testing.assert_close(alone.probabilities, 1 - class0.probabilities)


def test_curve_inputs_are_checked():
    model = PatchMeans().eval()
    with pytest.raises(ValueError, match="out of range for 2 classes"):
        fa.deletion_curve(model, image(), MAP[None], 2)
    with pytest.raises(ValueError, match="do not match 1 images on a 2x2 grid"):
        fa.deletion_curve(model, image(), torch.zeros(1, 3, 3), 0)
    with pytest.raises(ValueError, match="fill"):
        fa.deletion_curve(model, image(), MAP[None], 0, fill=torch.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        fa.insertion_curve(model, image(), MAP[None], 0, batch_size=0)


def masks_bottom_right(size=8):
    masks = torch.zeros(1, size, size, dtype=torch.bool)
    masks[:, size // 2:, size // 2:] = True
    return masks


def test_mass_in_mask_counts_the_positive_mass_inside():
    masks = masks_bottom_right()
    patch_map = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    assert fa.mass_in_mask(patch_map, masks).item() == pytest.approx(0.75)
    # Negative values are not mass; a pixel map gives the same as its patch map.
    signed = torch.tensor([[[1.0, -5.0], [0.0, 3.0]]])
    assert fa.mass_in_mask(signed, masks).item() == pytest.approx(0.75)
    pixel_map = patch_map.repeat_interleave(4, 1).repeat_interleave(4, 2)
    assert fa.mass_in_mask(pixel_map, masks).item() == pytest.approx(0.75)
    # A mask over half a cell takes half that cell's mass.
    half = torch.zeros(1, 8, 8, dtype=torch.bool)
    half[:, 4:, 4:6] = True
    assert fa.mass_in_mask(patch_map, half).item() == pytest.approx(0.375)
    assert math.isnan(fa.mass_in_mask(-patch_map, masks).item())


def test_mask_fractions():
    half = torch.zeros(1, 8, 8, dtype=torch.bool)
    half[:, 4:, 4:6] = True
    assert fa.mask_fractions(half, (2, 2))[0].tolist() == [[0.0, 0.0], [0.0, 0.5]]
    with pytest.raises(ValueError, match="3x3 grid does not tile 8x8"):
        fa.mask_fractions(half, (3, 3))


def test_pointing_game_hits_when_the_argmax_patch_is_inside():
    masks = masks_bottom_right()
    hit = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    miss = torch.tensor([[[4.0, 0.0], [0.0, 3.0]]])
    assert fa.pointing_game(torch.cat([hit, miss]), masks.expand(2, -1, -1)).tolist() == [True, False]
    # A patch half inside counts at the default overlap, not at a stricter one.
    half = torch.zeros(1, 8, 8, dtype=torch.bool)
    half[:, 4:, 4:6] = True
    assert fa.pointing_game(hit, half).item()
    assert not fa.pointing_game(hit, half, min_overlap=0.75).item()
    with pytest.raises(ValueError, match="min_overlap"):
        fa.pointing_game(hit, half, min_overlap=0)
    with pytest.raises(ValueError, match="do not pair"):
        fa.pointing_game(hit, masks.expand(2, -1, -1))



# --- the evaluation command -----------------------------------------------------------------------

def test_evaluate_scores_a_model_that_reads_one_patch():
    """Every captum method finds the one patch read: all its mass in a mask over it, the pointing game won."""
    from vitviz.attributions import (FeatureAblation, GradientShap, IntegratedGradients, Occlusion, Saliency,
                                     SmoothGrad)
    from vitviz.explanation_benchmark import CENTRE, RANDOM, evaluate

    model = PatchMeans(torch.tensor([[0.0, 0.0], [0.0, 2.0]])).eval()
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = masks_bottom_right().expand(4, -1, -1)
    methods = [IntegratedGradients, Saliency, SmoothGrad, GradientShap, Occlusion, FeatureAblation]
    result = evaluate(model, images, torch.zeros(4, dtype=torch.long), masks, methods=methods, target="label",
                      ig_steps=4, samples=2, seed=0)
    rows = {row["method"]: row for row in result["rows"]}
    assert list(rows) == [m.name for m in methods] + [RANDOM, CENTRE]
    for method in methods:
        assert rows[method.name]["mass_in_mask"] == pytest.approx(1.0)
        assert rows[method.name]["pointing_game"] == 1.0
    assert rows[RANDOM]["mass_in_mask"] < 0.6
    assert result["items"][RANDOM]["pointing_game"] != [1.0] * 4


def tiny_classifier(path, class_names):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    torch.manual_seed(0)
    architecture = dict(img_size=32, patch_size=8, num_classes=len(class_names), embed_dim=16, depth=1, num_heads=2)
    return save_checkpoint(create_vit(architecture), path,
                           {"architecture": architecture, "kind": "classifier", "class_names": list(class_names)})


def test_evaluate_command_on_a_tiny_run(tmp_path, capsys):
    import csv
    import json

    from vitviz.data import SHAPES_CLASSES
    from vitviz.attributions import METHODS
    from vitviz.explanation_benchmark import CENTRE, COLUMNS, RANDOM, main

    weights = tiny_classifier(tmp_path / "tiny-shapes.safetensors", SHAPES_CLASSES)
    out = tmp_path / "results" / "tiny"
    assert main([str(weights), "--items", "2", "--ig-steps", "4", "--samples", "2", "--fill-items", "2",
                 "--batch-size", "16", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny-shapes: accuracy" in printed and "Relevance" in printed and "Cascading model randomisation" in printed

    with open(out.with_name("tiny.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["method"] for row in rows] == [*METHODS, RANDOM, CENTRE]
    assert list(rows[0]) == list(COLUMNS)
    for row in rows:
        for key in ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "mass_in_mask"):
            assert 0 <= float(row[key]) <= 1
        assert float(row["pointing_game"]) in (0.0, 0.5, 1.0)
        for key in ("rho_head", "rho_blocks", "rho_all"):  # NaN where every map went constant
            assert row[key] == "nan" or -1 <= float(row[key]) <= 1, row
    assert all(float(row["seconds_per_image"]) > 0 for row in rows[:-2])
    for baseline in rows[-2:]:  # maps that never look at the model stay as they were
        assert [float(baseline[key]) for key in ("rho_head", "rho_blocks", "rho_all")] == pytest.approx([1.0] * 3)

    document = json.loads(out.with_name("tiny.json").read_text())
    assert document["settings"]["items"] == 2 and document["settings"]["ig_steps"] == 4
    assert document["settings"]["randomisation_items"] == 2
    assert [label for label, _ in document["randomisation"]["Grad-CAM"]] == ["head", "head + block 0",
                                                                            "head + block 0 + embeddings"]
    assert len(document["agreement"]["matrix"]) == len(METHODS) + 2
    assert len(document["labels"]) == 2 and len(document["items"]["Saliency"]["insertion_auc"]) == 2
    saliency = next(row for row in document["rows"] if row["method"] == "Saliency")
    assert saliency["deletion_auc"] == pytest.approx(sum(document["items"]["Saliency"]["deletion_auc"]) / 2)
    assert float(rows[1]["deletion_auc"]) == pytest.approx(saliency["deletion_auc"])


def test_evaluate_command_refuses_a_missing_file_and_no_items(tmp_path, capsys):
    """(Models that are not shapes classifiers are scored on the sample photos: tests/test_explanation_benchmark.py.)"""
    from vitviz.explanation_benchmark import main

    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "absent.safetensors")])
    assert exit_.value.code == 2
    assert "cannot load" in capsys.readouterr().err

    weights = tiny_classifier(tmp_path / "tiny-shapes.safetensors", ("a", "b"))
    with pytest.raises(SystemExit) as exit_:
        main([str(weights), "--items", "0"])
    assert exit_.value.code == 2
    assert "--items must be at least 1" in capsys.readouterr().err
