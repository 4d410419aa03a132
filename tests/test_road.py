"""ROAD (Rong et al. 2022): noisy linear imputation and the remove-and-debias curves, on cases worked by hand."""

import math

import pytest
import torch
from torch import nn

from toys import toy_card
from vitviz.faithfulness import noisy_linear_imputation, road_curve


def one_channel(rows):
    """A ``[1, 3, H, W]`` image whose three channels are ``rows``."""
    return torch.tensor(rows, dtype=torch.float32).expand(1, 3, -1, -1).clone()


def test_a_missing_centre_is_the_weighted_mean_of_its_eight_neighbours():
    image = one_channel([[0, 0, 0], [0, 99, 6], [0, 0, 12]])
    missing = torch.zeros(1, 3, 3, dtype=torch.bool)
    missing[0, 1, 1] = True
    filled = noisy_linear_imputation(image, missing, noise=0.0)
    # right neighbour 6 at weight 1/6, diagonal 12 at weight 1/12; the weights sum to 1
    assert filled[0, :, 1, 1].tolist() == pytest.approx([6 / 6 + 12 / 12] * 3)
    filled[0, :, 1, 1] = 99
    torch.testing.assert_close(filled, image)  # known pixels unchanged


def test_a_missing_corner_uses_the_neighbours_inside_the_image():
    image = one_channel([[99, 1], [2, 3]])
    missing = torch.tensor([[[True, False], [False, False]]])
    filled = noisy_linear_imputation(image, missing, noise=0.0)
    # right 1 and below 2 at 1/6, diagonal 3 at 1/12, over the weights present: 5/12
    assert filled[0, 0, 0, 0].item() == pytest.approx((1 / 6 + 2 / 6 + 3 / 12) / (5 / 12))


def test_missing_neighbours_are_solved_together():
    """A 1x4 strip [1, ?, ?, 10]: x1 = (1 + x2) / 2 and x2 = (x1 + 10) / 2, so x1 = 4 and x2 = 7."""
    image = one_channel([[1, 50, 50, 10]])
    missing = torch.tensor([[[False, True, True, False]]])
    filled = noisy_linear_imputation(image, missing, noise=0.0)
    assert filled[0, 0, 0].tolist() == pytest.approx([1, 4, 7, 10])


def test_the_linear_fill_matches_grad_cams_imputer_on_a_random_image():
    """The code the ROAD paper published, as the grad-cam package ships it (mask 1 = keep)."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 9, 11, generator=generator)
    missing = torch.rand(1, 9, 11, generator=generator) < 0.6
    ours = noisy_linear_imputation(image, missing, noise=0.0)
    theirs = NoisyLinearImputer(noise=0.0)(image[0], (~missing[0]).float())
    torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=1e-5)


def test_noise_is_added_to_the_filled_pixels_only_and_is_seeded():
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    missing = torch.zeros(2, 16, 16, dtype=torch.bool)
    missing[:, 4:12, 4:12] = True
    plain = noisy_linear_imputation(image, missing, noise=0.0)
    noisy = noisy_linear_imputation(image, missing, noise=0.5, generator=torch.Generator().manual_seed(7))
    draws = torch.randn(image.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(noisy, torch.where(missing[:, None], plain + 0.5 * draws, image))


def test_bad_masks_are_named():
    image = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="every pixel missing"):
        noisy_linear_imputation(image, torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"bool \[B, H, W\] mask"):
        noisy_linear_imputation(image, torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="noise must be non-negative"):
        noisy_linear_imputation(image, torch.zeros(1, 4, 4, dtype=torch.bool), noise=-1.0)


class CentrePixel(nn.Module):
    """Two classes on a 3x3 image of 1-pixel patches: logits (w * centre of channel 0, 0)."""

    def __init__(self, weight=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.card = toy_card((3, 3), 1, classes=2)

    def forward(self, x):
        centre = self.weight * x[:, 0, 1, 1]
        return torch.stack([centre, torch.zeros_like(centre)], dim=1)


def sigmoid(value):
    return 1 / (1 + math.exp(-value))


def test_road_removes_the_most_relevant_patch_first_and_imputes_it():
    model = CentrePixel().eval()
    image = one_channel([[0, 0, 0], [0, 4, 6], [0, 0, 12]])
    maps = torch.arange(9, dtype=torch.float32).view(1, 3, 3)
    maps[0, 1, 1] = 100  # the centre is the most relevant
    curve = road_curve(model, image, maps, 0, order="morf", steps="patch", noise=0.0)
    assert curve.kind == "road-morf"
    torch.testing.assert_close(curve.fractions, torch.arange(9) / 9)  # 0 to 8 of 9: never all of them
    assert curve.probabilities[0, 0].item() == pytest.approx(sigmoid(0.5 * 4))  # the image as it is
    assert curve.probabilities[0, 1].item() == pytest.approx(sigmoid(0.5 * 2.0))  # centre filled: 6/6 + 12/12

    noisy = road_curve(model, image, maps, 0, order="morf", steps="patch", noise=0.3, seed=5)
    field = torch.randn(1, 3, 3, 3, generator=torch.Generator().manual_seed(5))  # one field per image
    assert noisy.probabilities[0, 1].item() == pytest.approx(sigmoid(0.5 * (2.0 + 0.3 * field[0, 0, 1, 1].item())))
    assert noisy.probabilities[0, 0].item() == pytest.approx(sigmoid(0.5 * 4))  # nothing removed, no noise


def test_road_lerf_removes_the_least_relevant_first():
    model = CentrePixel().eval()
    image = one_channel([[0, 0, 0], [0, 4, 6], [0, 0, 12]])
    maps = -torch.arange(9, dtype=torch.float32).view(1, 3, 3)  # raster order is least relevant last
    maps[0, 1, 1] = -100  # the centre is the least relevant: LeRF removes it first
    lerf = road_curve(model, image, maps, 0, order="lerf", steps="patch", noise=0.0)
    assert lerf.kind == "road-lerf"
    assert lerf.probabilities[0, 1].item() == pytest.approx(sigmoid(0.5 * 2.0))
    morf = road_curve(model, image, maps, 0, order="morf", steps="patch", noise=0.0)
    # MoRF removes patch (0, 0) first: the centre the model reads is left as it is
    assert morf.probabilities[0, 1].item() == pytest.approx(sigmoid(0.5 * 4))


def test_a_linear_ramp_is_restored_so_removing_it_changes_nothing():
    """Unlike deletion's constant fill, the imputation rebuilds a ramp exactly where each removed pixel's
    neighbours are placed symmetrically (the middle column): the curve stays flat while it is removed."""
    model = CentrePixel(weight=1.0).eval()
    ramp = torch.arange(3, dtype=torch.float32).view(1, 3).expand(3, 3)  # v(y, x) = x
    image = ramp.expand(1, 3, 3, 3).clone()
    maps = torch.zeros(1, 3, 3)
    maps[0, :, 1] = torch.tensor([3.0, 2.0, 1.0])  # the middle column first, top to bottom
    curve = road_curve(model, image, maps, 0, steps="patch", noise=0.0)
    torch.testing.assert_close(curve.probabilities[:, :4], torch.full((1, 4), sigmoid(1.0)))


def test_road_deciles_stop_at_ninety_percent_and_auc_is_the_mean_height():
    model = CentrePixel().eval()
    image = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    maps = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(3))
    curve = road_curve(model, image, maps, [0, 1], steps="decile")
    counts = [round(9 * k / 10) for k in range(10)]
    torch.testing.assert_close(curve.fractions, torch.tensor(counts, dtype=torch.float32) / 9)
    span = counts[-1] / 9
    heights = curve.probabilities
    by_hand = sum((curve.fractions[t + 1] - curve.fractions[t]) * (heights[:, t] + heights[:, t + 1]) / 2
                  for t in range(len(counts) - 1)) / span
    torch.testing.assert_close(curve.auc, by_hand)
    with pytest.raises(ValueError, match="order must be 'morf' or 'lerf'"):
        road_curve(model, image, maps, 0, order="both")


def test_all_curves_are_the_four_curves_called_one_by_one():
    from vitviz.faithfulness import all_curves, deletion_curve, insertion_curve

    model = CentrePixel().eval()
    image = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    maps = torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(5))
    seen = []
    curves = all_curves(model, image, maps, 1, road_noise=0.2, seed=3, progress=seen.append)
    assert list(curves) == ["deletion", "insertion", "road-morf", "road-lerf"]
    expected = [deletion_curve(model, image, maps, 1), insertion_curve(model, image, maps, 1),
                road_curve(model, image, maps, 1, order="morf", noise=0.2, seed=3),
                road_curve(model, image, maps, 1, order="lerf", noise=0.2, seed=3)]
    for curve, one in zip(curves.values(), expected):
        torch.testing.assert_close(curve.probabilities, one.probabilities)
    assert seen == sorted(seen) and seen[-1] == 1.0
