"""Sanity checks on models whose behaviour is known: a linear model's gradient x input must change as its
weights are re-initialised, an edge detector on the pixels must not; rank correlations against scipy."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from toys import toy_card
from vitviz.attributions import AttentionRollout
from vitviz.checkpoints import save_checkpoint
from vitviz.models import create_vit, load_model
from vitviz.sanity import (
    agreement,
    cascading_randomisation,
    centre_map,
    independent_randomisation,
    method_explainer,
    random_map,
    randomisation_parts,
    spearman,
)


class LinearViT(nn.Module):
    """A ViT's layout with nothing but linear maps: patch and position embeddings, linear blocks, a
    mean-pooled linear head. Its logit is linear in the input, so gradient x input is the input times a
    weight vector that every part of the model (but the position embedding and the biases) multiplies into."""

    def __init__(self, grid=8, patch=4, dim=32, depth=3, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, grid * grid, dim))
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.head = nn.Linear(dim, classes)
        self.card = toy_card((grid * patch, grid * patch), patch, classes, embed_dim=dim)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, K, D)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(tokens.mean(dim=1))


def gradient_x_input(target):
    """Gradient x input summed over each patch's pixels and channels, by hand."""

    def explain(model, images):
        inputs = images.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(inputs)[:, target].sum(), inputs)
        return F.avg_pool2d((gradient * inputs).sum(dim=1, keepdim=True), model.card.patch_size)[:, 0].detach()

    return explain


def edges(model, images):
    """A Sobel edge detector on the pixels, pooled to the patch grid: it never looks at the model's weights."""
    grey = images.mean(dim=1, keepdim=True)
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = F.conv2d(grey, kernel.view(1, 1, 3, 3), padding=1)
    gy = F.conv2d(grey, kernel.T.reshape(1, 1, 3, 3), padding=1)
    return F.avg_pool2d((gx ** 2 + gy ** 2).sqrt(), model.card.patch_size)[:, 0]


def images(batch=4, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    torch.manual_seed(0)
    arch = dict(img_size=32, patch_size=8, num_classes=4, embed_dim=32, depth=2, num_heads=2)
    path = tmp_path_factory.mktemp("vit") / "tiny.safetensors"
    save_checkpoint(create_vit(arch), path, {"architecture": arch, "class_names": ["a", "b", "c", "d"]})
    return load_model(path, device="cpu")


def test_gradient_x_input_of_a_linear_model_decorrelates_at_every_step():
    model = LinearViT().eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    steps = cascading_randomisation(model, images(), gradient_x_input(1))
    assert [label for label, _ in steps] == ["head", "head + block 2", "head + blocks 2-1", "head + blocks 2-0",
                                             "head + blocks 2-0 + embeddings"]
    assert all(abs(rho) < 0.5 for _, rho in steps), steps  # far from the trained map's ranking at once
    for key, value in model.state_dict().items():  # the model passed in is untouched
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_an_edge_detector_stays_at_one_whatever_is_randomised():
    model = LinearViT().eval()
    for steps in (cascading_randomisation(model, images(), edges), independent_randomisation(model, images(), edges)):
        assert [rho for _, rho in steps] == pytest.approx([1.0] * 5)


def test_the_independent_variant_randomises_one_part_at_a_time():
    model = LinearViT().eval()
    explain = gradient_x_input(1)
    steps = independent_randomisation(model, images(), explain)
    assert [label for label, _ in steps] == ["head", "block 2", "block 1", "block 0", "embeddings"]
    # every part but the position embedding is a factor of the logit's weight vector: each moves the map
    assert all(rho < 0.9 for _, rho in steps), steps
    # the same new head as the cascade's first step, on the same trained rest: the same number
    assert steps[0][1] == pytest.approx(cascading_randomisation(model, images(), explain)[0][1], abs=1e-12)


def test_a_class_agnostic_map_ignores_the_head_and_not_the_blocks(tiny_vit):
    """Attention rollout never reads the head: re-initialising it leaves the map as it was."""
    assert randomisation_parts(tiny_vit) == ["head", "block 1", "block 0", "embeddings"]
    explain = method_explainer(AttentionRollout, 0)
    cascade = cascading_randomisation(tiny_vit, images(2), explain)
    assert cascade[0] == ("head", pytest.approx(1.0))
    assert cascade[-2][1] < 0.9  # every block re-initialised: other attention, another map
    independent = dict(independent_randomisation(tiny_vit, images(2), explain))
    assert independent["head"] == pytest.approx(1.0) and independent["block 0"] < 0.95


def test_a_model_without_blocks_or_a_bad_map_is_named():
    with pytest.raises(ValueError, match="Linear has no blocks"):
        cascading_randomisation(nn.Linear(2, 2), images(), edges)
    with pytest.raises(ValueError, match=r"explain must return maps \[B, gh, gw\] for 4 images"):
        cascading_randomisation(LinearViT().eval(), images(), lambda m, x: x.mean(dim=(1, 2)))


def test_spearman_is_scipys_with_ties_and_nan_for_a_constant_map():
    generator = torch.Generator().manual_seed(3)
    first = torch.randint(0, 5, (3, 4, 4), generator=generator).float()  # many ties
    second = torch.rand(3, 4, 4, generator=generator)
    second[1] = first[1] * 2 + 1  # the same ranking
    rho = spearman(first, second)
    for b in range(3):
        assert rho[b].item() == pytest.approx(spearmanr(first[b].flatten(), second[b].flatten()).statistic)
    assert rho[1].item() == pytest.approx(1.0)
    assert math.isnan(spearman(torch.ones(1, 2, 2), torch.rand(1, 2, 2))[0].item())
    with pytest.raises(ValueError, match="one shape"):
        spearman(first, second[:, :2])


def test_agreement_is_the_batch_mean_rank_correlation_of_every_pair():
    generator = torch.Generator().manual_seed(4)
    maps = {name: torch.rand(2, 3, 3, generator=generator) for name in ("a", "b", "c")}
    maps["flat"] = torch.zeros(2, 3, 3)
    matrix = agreement(maps)
    assert matrix.shape == (4, 4) and torch.equal(matrix[:3, :3], matrix[:3, :3].T)
    assert matrix.diagonal()[:3].tolist() == pytest.approx([1.0] * 3)
    by_scipy = sum(spearmanr(maps["a"][b].flatten(), maps["c"][b].flatten()).statistic for b in range(2)) / 2
    assert matrix[0, 2].item() == pytest.approx(by_scipy)
    assert matrix[3].isnan().all()


def test_the_baselines():
    torch.testing.assert_close(random_map(3, (2, 5), seed=9), torch.rand(3, 2, 5, generator=torch.Generator().manual_seed(9)))
    centre = centre_map(2, (5, 7))
    assert centre.shape == (2, 5, 7) and centre[0, 2, 3] == 1.0  # the peak on the centre cell
    assert centre[1, 0, 0].item() == pytest.approx(math.exp(-(2 ** 2 + 3 ** 2) / (2 * (7 / 4) ** 2)))
    torch.testing.assert_close(centre, centre.flip(1).flip(2))  # symmetric about the centre
    even = centre_map(1, (4, 4))
    assert even[0, 1:3, 1:3].eq(even.max()).all()  # four cells share the centre of an even grid
