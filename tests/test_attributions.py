"""Attribution methods on models whose right answer is known, and on a tiny ViT against the attention maths."""

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from toys import toy_card
from vitviz import attention
from vitviz.attributions import (
    METHODS,
    SETTINGS,
    AttentionAttribution,
    AttentionRollout,
    CAMAttribution,
    FeatureAblation,
    GradientAttribution,
    GradientRollout,
    GradientShap,
    IntegratedGradients,
    Occlusion,
    PerturbationAttribution,
    Relevance,
    Saliency,
    SmoothGrad,
    method_by_name,
    setting_users,
)
from vitviz.checkpoints import save_checkpoint
from vitviz.models import create_vit, load_model

CAPTUM_METHODS = (IntegratedGradients, Saliency, SmoothGrad, GradientShap, Occlusion, FeatureAblation)
FAST = {cls: cls.options_for(path_points=8, draws=4) for cls in METHODS.values()}  # few passes for the many-pass methods


class OnePatch(nn.Module):
    """A classifier that reads patch (row, col) alone, through a small MLP: every faithful map puts
    all its mass on that patch. The grid is 3x4 so rows and columns cannot be confused."""

    def __init__(self, row=1, col=2, patch=4, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.row, self.col, self.patch = row, col, patch
        self.hidden = nn.Linear(3 * patch * patch, 16)
        self.out = nn.Linear(16, classes)
        self.card = toy_card((3 * patch, 4 * patch), patch, classes)

    def forward(self, x):
        p = self.patch
        window = x[:, :, self.row * p:(self.row + 1) * p, self.col * p:(self.col + 1) * p]
        return self.out(torch.tanh(3 * self.hidden(window.flatten(1))))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """A 2-block ViT, 32 px, 8 px patches (4x4 grid), 4 classes, loaded the way the app loads models."""
    torch.manual_seed(0)
    arch = dict(img_size=32, patch_size=8, num_classes=4, embed_dim=32, depth=2, num_heads=2)
    model = create_vit(arch)
    with torch.no_grad():
        model.head.weight.mul_(40)  # random init gives near-equal logits; spread them so the maps say something
    path = tmp_path_factory.mktemp("vit") / "tiny.safetensors"
    save_checkpoint(model, path, {"architecture": arch, "class_names": ["a", "b", "c", "d"]})
    return load_model(path, device="cpu")


def images(batch=2, size=(12, 16), seed=1):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", CAPTUM_METHODS, ids=lambda c: c.name)
def test_every_captum_method_puts_all_its_mass_on_the_one_patch_read(cls):
    model = OnePatch().eval()
    maps = cls(model).attribute(images(), torch.tensor([0, 2]), **FAST.get(cls, {}))
    assert maps.patch.shape == (2, 3, 4) and maps.pixel.shape == (2, 12, 16)
    inside = maps.patch[:, 1, 2].abs()
    assert (inside > 1e-4).all()
    outside = maps.patch.clone()
    outside[:, 1, 2] = 0
    # Zero up to float rounding (batched forward passes round differently).
    assert outside.abs().max() < 1e-5 * inside.min()
    pixel_outside = maps.pixel.clone()
    pixel_outside[:, 4:8, 8:12] = 0
    assert pixel_outside.abs().max() < 1e-5 * inside.min()
    assert torch.equal(maps.target, torch.tensor([0, 2]))


def test_attention_methods_refuse_a_model_without_attention():
    with pytest.raises(ValueError, match="no transformer blocks"):
        AttentionRollout(OnePatch().eval()).attribute(images(), 0)


@pytest.mark.parametrize("baseline", ["mean", "black"])
def test_integrated_gradients_is_complete(tiny_vit, baseline):
    """The attributions add up to f(x) - f(baseline) for the target logit (Sundararajan et al.'s completeness)."""
    x = images(2, (32, 32), seed=3)
    card = tiny_vit.card
    if baseline == "black":
        reference = ((0 - torch.tensor(card.mean)) / torch.tensor(card.std)).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    else:
        reference = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        differences = tiny_vit(x) - tiny_vit(reference)  # (2, 4)
    target = differences.abs().argmax(dim=1)  # the class whose logit moves most: the check is not vacuous
    difference = differences.gather(1, target[:, None])[:, 0]
    assert difference.abs().min() > 0.1
    maps = IntegratedGradients(tiny_vit).attribute(x, target, baseline=baseline, n_steps=64, internal_batch_size=16)
    torch.testing.assert_close(maps.patch.sum(dim=(1, 2)), difference, rtol=0.01, atol=1e-3)
    torch.testing.assert_close(maps.pixel.sum(dim=(1, 2)), difference, rtol=0.01, atol=1e-3)


def test_feature_ablation_is_the_logit_drop_of_each_patch_by_hand(tiny_vit):
    x = images(1, (32, 32), seed=4)
    maps = FeatureAblation(tiny_vit).attribute(x, 2, perturbations_per_eval=5)
    expected = torch.empty(4, 4)
    with torch.no_grad():
        full = tiny_vit(x)[0, 2]
        for r in range(4):
            for c in range(4):
                ablated = x.clone()
                ablated[:, :, 8 * r:8 * (r + 1), 8 * c:8 * (c + 1)] = 0  # the "mean" baseline
                expected[r, c] = full - tiny_vit(ablated)[0, 2]
    torch.testing.assert_close(maps.patch[0], expected, rtol=1e-4, atol=1e-5)
    # Each pixel carries its patch's drop.
    torch.testing.assert_close(maps.pixel[0], expected.repeat_interleave(8, 0).repeat_interleave(8, 1),
                               rtol=1e-4, atol=1e-5)
    occlusion = Occlusion(tiny_vit).attribute(x, 2)
    torch.testing.assert_close(occlusion.patch, maps.patch, rtol=1e-4, atol=1e-5)


def test_occlusion_with_a_half_patch_stride_slides_overlapping_windows(tiny_vit):
    x = images(1, (32, 32), seed=5)
    seen = []
    maps = Occlusion(tiny_vit).attribute(x, 0, stride=4, perturbations_per_eval=7, progress=seen.append)
    assert maps.pixel.shape == (1, 32, 32)
    # 7x7 windows: pixels of one patch are covered by different windows, so they differ within a patch.
    assert maps.pixel[0, :8, :8].unique().numel() > 1
    torch.testing.assert_close(maps.patch[0, 0, 0], maps.pixel[0, :8, :8].mean())
    assert seen == sorted(seen) and seen[-1] == 1.0
    with pytest.raises(ValueError, match="stride 9"):
        Occlusion(tiny_vit).attribute(x, 0, stride=9)


@pytest.mark.parametrize("cls, reference", [
    (AttentionRollout, lambda m, x, t: attention.class_map(attention.rollout(attention.capture(m, x)[1]), (4, 4), 1, True)),
    (GradientRollout, lambda m, x, t: attention.grad_rollout(m, x, t)),
    (Relevance, lambda m, x, t: attention.relevance(m, x, t)),
], ids=["rollout", "grad_rollout", "relevance"])
def test_attention_methods_are_the_attention_maps(tiny_vit, cls, reference):
    x = images(2, (32, 32), seed=6)
    target = torch.tensor([3, 0])
    maps = cls(tiny_vit).attribute(x, target)
    expected = reference(tiny_vit, x, target)
    assert maps.kind == "attention"
    torch.testing.assert_close(maps.patch, expected)
    torch.testing.assert_close(maps.pixel, expected.repeat_interleave(8, 1).repeat_interleave(8, 2))


def test_gradient_maps_sum_the_pixels_of_each_patch(tiny_vit):
    maps = Saliency(tiny_vit).attribute(images(1, (32, 32)), 1)
    assert (maps.pixel >= 0).all()  # absolute gradients
    torch.testing.assert_close(maps.patch[0, 2, 1], maps.pixel[0, 16:24, 8:16].sum())


def test_each_image_gets_its_own_target(tiny_vit):
    x = images(2, (32, 32), seed=7)
    together = IntegratedGradients(tiny_vit).attribute(x, [2, 0], n_steps=8)
    first = IntegratedGradients(tiny_vit).attribute(x[:1], 2, n_steps=8)
    second = IntegratedGradients(tiny_vit).attribute(x[1:], 0, n_steps=8)
    torch.testing.assert_close(together.patch, torch.cat([first.patch, second.patch]), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(first.patch, IntegratedGradients(tiny_vit).attribute(x[:1], 0, n_steps=8).patch)


def test_progress_reports_the_share_of_forward_rows_done(tiny_vit):
    seen = []
    IntegratedGradients(tiny_vit).attribute(images(1, (32, 32)), 0, n_steps=8, internal_batch_size=2,
                                            progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.0]


@pytest.mark.parametrize("cls", [SmoothGrad, GradientShap], ids=lambda c: c.name)
def test_noisy_methods_are_reproducible_and_leave_the_global_generators_alone(tiny_vit, cls):
    x = images(1, (32, 32), seed=8)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = cls(tiny_vit).attribute(x, 1, seed=3, **FAST[cls])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    again = cls(tiny_vit).attribute(x, 1, seed=3, **FAST[cls])
    other = cls(tiny_vit).attribute(x, 1, seed=4, **FAST[cls])
    assert torch.equal(first.patch, again.patch)
    assert not torch.allclose(first.patch, other.patch)


def test_gradient_shap_in_chunks_is_the_average_of_one_pass(tiny_vit):
    """With one baseline the draws are only the points on the path, taken from numpy's seeded stream in
    the same order whether in one pass or in chunks: chunked maps equal the one-pass maps, and their
    sum comes close to f(x) - f(baseline) like Integrated Gradients'."""
    x = images(1, (32, 32), seed=9)
    whole = GradientShap(tiny_vit).attribute(x, 2, baselines=("mean",), n_samples=64, internal_batch_size=64)
    chunked = GradientShap(tiny_vit).attribute(x, 2, baselines=("mean",), n_samples=64, internal_batch_size=8)
    torch.testing.assert_close(chunked.patch, whole.patch, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        difference = (tiny_vit(x) - tiny_vit(torch.zeros_like(x)))[0, 2]
    assert abs(difference) > 0.5
    torch.testing.assert_close(chunked.patch.sum(), difference, rtol=0.1, atol=0)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_gives_finite_maps_through_the_registry(tiny_vit, name):
    cls = METHODS[name]
    assert cls.name == name and method_by_name(name.lower().replace(" ", "-")) is cls
    maps = cls(tiny_vit).attribute(images(2, (32, 32)), 1, **FAST.get(cls, {}))
    assert maps.method == name
    assert maps.patch.shape == (2, 4, 4) and maps.pixel.shape == (2, 32, 32)
    assert torch.isfinite(maps.patch).all() and maps.patch.abs().sum() > 0
    scaled = maps.scaled()
    torch.testing.assert_close(scaled.patch.flatten(1).abs().amax(dim=1), torch.ones(2))


def test_scaled_leaves_a_zero_map_at_zero():
    maps = Saliency(OnePatch().eval()).attribute(images(1), 0)
    zero = type(maps)(maps.method, maps.kind, maps.target, torch.zeros(1, 3, 4), torch.zeros(1, 12, 16))
    assert torch.equal(zero.scaled().patch, torch.zeros(1, 3, 4))


def test_bad_inputs_are_named():
    model = OnePatch().eval()
    method = IntegratedGradients(model)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        method.attribute(images(), 3)
    with pytest.raises(ValueError, match="class index"):
        method.attribute(images(), True)
    with pytest.raises(ValueError, match="2 of them"):
        method.attribute(images(), [0, 1, 2])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        method.attribute(torch.zeros(3, 12, 16), 0)
    with pytest.raises(ValueError, match="patch size 4 does not divide"):
        method.attribute(torch.zeros(1, 3, 12, 15), 0)
    with pytest.raises(ValueError, match="n_steps"):
        method.attribute(images(), 0, n_steps=0)
    with pytest.raises(ValueError, match="baseline"):
        method.attribute(images(), 0, baseline="white")
    with pytest.raises(ValueError, match="does not broadcast"):
        method.attribute(images(), 0, baseline=torch.zeros(5, 5))
    with pytest.raises(ValueError, match="unknown attribution method 'lime'"):
        method_by_name("lime")
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        Saliency(model).attribute(images(), 0)
    with pytest.raises(ValueError, match="ModelCard"):
        Saliency(nn.Linear(2, 2))


# --- options declared by each method ---------------------------------------------------------------

FAMILIES = {"gradient": GradientAttribution, "perturbation": PerturbationAttribution, "attention": AttentionAttribution,
            "cam": CAMAttribution}


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_declares_its_family_and_options_as_attribute_takes_them(name):
    cls = METHODS[name]
    assert issubclass(cls, FAMILIES[cls.kind])
    parameters = inspect.signature(cls.attribute).parameters
    for option in cls.options:
        assert parameters[option.name].kind is inspect.Parameter.KEYWORD_ONLY, option
        assert parameters[option.name].default == option.default, option
        assert option.low <= option.default <= option.high, option
        assert option.setting is None or option.setting in SETTINGS, option


def test_shared_settings_reach_each_method_under_its_own_keyword():
    assert FAST[IntegratedGradients] == {"n_steps": 8}
    assert FAST[SmoothGrad] == {"nt_samples": 4} and FAST[GradientShap] == {"n_samples": 4}
    assert FAST[Saliency] == FAST[Relevance] == {}
    assert Occlusion.options_for(path_points=8, batch_size=32) == {"perturbations_per_eval": 32}
    assert [cls for cls, _ in setting_users("draws")] == [SmoothGrad, GradientShap]
    assert {(o.low, o.high, o.default) for _, o in setting_users("draws")} == {(2, 100, 20)}
    with pytest.raises(ValueError, match="unknown setting 'steps'"):
        Saliency.options_for(steps=8)
    with pytest.raises(ValueError, match="unknown setting 'steps'"):
        setting_users("steps")


@pytest.mark.parametrize("name", ["Saliency", "Integrated Gradients", "Gradient rollout", "Relevance", "Occlusion"])
def test_maps_do_not_depend_on_the_callers_grad_mode(name, tiny_vit):
    model = tiny_vit
    images = torch.rand(1, 3, *model.card.image_size)
    method = METHODS[name](model)
    options = FAST.get(METHODS[name], {})
    outside = method.attribute(images, 2, **options)
    with torch.no_grad():
        inside = method.attribute(images, 2, **options)
    torch.testing.assert_close(outside.patch, inside.patch)
    if METHODS[name].needs_gradients:
        with torch.inference_mode(), pytest.raises(ValueError, match=f"{name} needs gradients"):
            method.attribute(images, 2, **options)
    else:  # a perturbation method needs no autograd: it works there too
        with torch.inference_mode():
            torch.testing.assert_close(method.attribute(images, 2, **options).patch, outside.patch)


def test_each_method_states_its_cost_in_forward_passes(tiny_vit):
    """What the page multiplies by one forward's seconds: counted the way each method runs the model."""
    card = tiny_vit.card  # 32 px, 8 px patches: a 4x4 grid
    assert METHODS["Integrated Gradients"].passes(card, n_steps=8) == 8 * 3  # a backward counts as two forwards
    assert METHODS["Saliency"].passes(card) == 3 and METHODS["Relevance"].passes(card) == 3
    assert METHODS["Attention rollout"].passes(card) == 1
    assert METHODS["Occlusion"].passes(card) == 1 + 16 and METHODS["Occlusion"].passes(card, stride=4) == 1 + 7 * 7
    assert METHODS["Feature ablation"].passes(card) == 1 + 16
    counted = []  # and the count is what attribute really runs: every image the forward function sees
    method = METHODS["Occlusion"](tiny_vit)
    forward = method.forward_func
    method.forward_func = lambda x: counted.append(len(x)) or forward(x)
    method.attribute(torch.rand(1, 3, 32, 32), 1, perturbations_per_eval=5)
    assert sum(counted) == METHODS["Occlusion"].passes(card)
