"""The CAM family (the grad-cam package) on tiny timm ViTs: the package called directly gives the same maps;
the reshape lays the patch tokens out as timm does, whatever the grid and the prefix tokens."""

import numpy as np
import pytest
import torch

from vitviz.attributions import (
    METHODS,
    AblationCAM,
    CAMAttribution,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    cam_reshape_transform,
)
from vitviz.checkpoints import save_checkpoint
from vitviz.models import create_vit, load_model

CAMS = (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, EigenCAM, ScoreCAM, AblationCAM)

# Tiny ViTs of every prefix layout, on square and non-square grids.
SHAPES = {
    "class token, 4x6 grid": dict(img_size=(32, 48)),
    "4 registers": dict(reg_tokens=4),
    "no class token": dict(class_token=False, global_pool="avg"),
    "distillation token": dict(distilled=True),
    "class token + 2 registers, 6x4 grid": dict(img_size=(48, 32), reg_tokens=2),
}


def tiny(path, **extra):
    """A 2-block ViT with 8 px patches and 4 classes, loaded the way the app loads models."""
    torch.manual_seed(0)
    arch = {**dict(img_size=32, patch_size=8, num_classes=4, embed_dim=24, depth=2, num_heads=2), **extra}
    model = create_vit(arch)
    with torch.no_grad():
        model.head.weight.mul_(40)  # spread the logits so the maps say something
        if extra.get("distilled"):
            model.head_dist.weight.mul_(40)
    save_checkpoint(model, path, {"architecture": arch, "class_names": ["a", "b", "c", "d"]})
    return load_model(path, device="cpu")


@pytest.fixture(scope="module", params=list(SHAPES))
def vit(request, tmp_path_factory):
    return tiny(tmp_path_factory.mktemp("vit") / "tiny.safetensors", **SHAPES[request.param])


@pytest.fixture(scope="module")
def plain_vit(tmp_path_factory):
    return tiny(tmp_path_factory.mktemp("vit") / "plain.safetensors")


def hand_reshape(prefix, grid):
    """What the package's ViT tutorial writes, for ``prefix`` leading tokens and a ``grid``."""
    gh, gw = grid

    def reshape(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), gh, gw, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape


def package_map(cls, model, images, targets, block=-1, **arguments):
    """The grad-cam class called directly on the model, as its documentation shows for a ViT."""
    import pytorch_grad_cam
    from pytorch_grad_cam.ablation_layer import AblationLayerVit
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if cls is AblationCAM:
        arguments["ablation_layer"] = AblationLayerVit()
    card = model.card
    cam = getattr(pytorch_grad_cam, cls.cam_name)(model, target_layers=[model.blocks[block].norm1],
                                                  reshape_transform=hand_reshape(card.num_prefix_tokens,
                                                                                 card.grid_size), **arguments)
    try:
        return torch.from_numpy(cam(images, [ClassifierOutputTarget(t) for t in targets]))
    finally:
        cam.activations_and_grads.release()


def test_the_reshape_lays_tokens_out_as_timm_does_on_every_grid_and_prefix(vit):
    """Against timm's own ``forward_intermediates`` (prefix tokens split off, NCHW on the grid)."""
    card = vit.card
    images = torch.randn(2, 3, *card.image_size, generator=torch.Generator().manual_seed(0))
    outputs = []
    handle = vit.blocks[-1].register_forward_hook(lambda module, inputs, output: outputs.append(output))
    with torch.no_grad():
        vit(images)
        expected = vit.forward_intermediates(images, indices=[len(vit.blocks) - 1], intermediates_only=True,
                                             output_fmt="NCHW")[0]
    handle.remove()
    assert outputs[0].shape[1] == card.num_prefix_tokens + card.grid_size[0] * card.grid_size[1]
    reshaped = cam_reshape_transform(card)(outputs[0])
    assert reshaped.shape == (2, card.embed_dim, *card.grid_size)
    torch.testing.assert_close(reshaped, expected)


def test_the_reshape_puts_each_token_on_its_grid_cell():
    """Token P + r*gw + c lands on cell (r, c); the P prefix tokens are dropped."""
    from toys import toy_card

    for prefix in (0, 1, 5):
        card = toy_card((24, 32), 8)  # a 3x4 grid
        card = type(card)(**{**card.__dict__, "num_prefix_tokens": prefix})
        tokens = torch.arange(2 * (prefix + 12) * 5, dtype=torch.float32).view(2, prefix + 12, 5)
        out = cam_reshape_transform(card)(tokens)
        for r in range(3):
            for c in range(4):
                torch.testing.assert_close(out[:, :, r, c], tokens[:, prefix + r * 4 + c])
        with pytest.raises(ValueError, match=r"expected tokens \[B, %d \+ 3\*4, D\]" % prefix):
            cam_reshape_transform(card)(tokens[:, 1:])


@pytest.mark.parametrize("cls", CAMS, ids=lambda c: c.name)
def test_each_cam_is_the_package_called_directly(vit, cls):
    card = vit.card
    images = torch.randn(2, 3, *card.image_size, generator=torch.Generator().manual_seed(1))
    targets = [1, 3]
    ours = cls(vit).attribute(images, torch.tensor(targets))
    expected = package_map(cls, vit, images, targets)  # (B, H, W), upsampled by the package
    assert ours.patch.shape == (2, *card.grid_size) and ours.pixel.shape == (2, *card.image_size)
    torch.testing.assert_close(ours.pixel, expected, atol=1e-5, rtol=0)
    assert ours.patch.min() >= 0 and ours.patch.amax(dim=(1, 2)).allclose(torch.ones(2))


@pytest.mark.parametrize("cls", CAMS, ids=lambda c: c.name)
def test_a_chosen_block_is_the_package_on_that_blocks_first_norm(plain_vit, cls):
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ours = cls(plain_vit).attribute(images, 2, block=0)
    torch.testing.assert_close(ours.pixel, package_map(cls, plain_vit, images, [2], block=0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"block 2 is not a block of .*which has 2 \(0 to 1, or -2 to -1"):
        cls(plain_vit).attribute(images, 2, block=2)


def hand_cam(model, images, target, weigh):
    """A CAM on the last block's first norm by hand: patch tokens A and the target logit's gradient G
    there, ``weigh(A, G) -> [B, K, D]`` per token and channel, summed over channels, ReLU, min-max."""
    card = model.card
    kept = []
    handle = model.blocks[-1].norm1.register_forward_hook(lambda module, inputs, output: kept.append(output))
    logits = model(images)
    handle.remove()
    (gradient,) = torch.autograd.grad(logits[:, target].sum(), kept[0])
    prefix = card.num_prefix_tokens
    tokens, gradient = kept[0][:, prefix:].detach(), gradient[:, prefix:]  # (B, K, D)
    cam = weigh(tokens, gradient).sum(dim=-1).clamp(min=0).view(len(images), *card.grid_size)
    low = cam.flatten(1).amin(1).view(-1, 1, 1)
    cam = cam - low
    return cam / (1e-7 + cam.flatten(1).amax(1).view(-1, 1, 1))


def test_grad_cam_and_layer_cam_patch_maps_by_hand(vit):
    images = torch.randn(2, 3, *vit.card.image_size, generator=torch.Generator().manual_seed(3))
    grad_cam = hand_cam(vit, images, 2, lambda a, g: g.mean(dim=1, keepdim=True) * a)  # mean gradient per channel
    layer_cam = hand_cam(vit, images, 2, lambda a, g: g.clamp(min=0) * a)  # each activation, its own gradient
    torch.testing.assert_close(GradCAM(vit).attribute(images, 2).patch, grad_cam, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(LayerCAM(vit).attribute(images, 2).patch, layer_cam, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", [GradCAM, ScoreCAM, AblationCAM], ids=lambda c: c.name)
def test_the_shared_model_is_left_as_it_was(plain_vit, cls):
    """No hook, no swapped layer, no parameter gradient left on the model every session shares."""
    plain_vit.zero_grad(set_to_none=True)  # the package called directly, in other tests, leaves gradients
    norm = plain_vit.blocks[-1].norm1
    before = {name: p.clone() for name, p in plain_vit.state_dict().items()}
    cls(plain_vit).attribute(torch.rand(1, 3, 32, 32), 1)
    assert plain_vit.blocks[-1].norm1 is norm
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in plain_vit.modules())
    assert all(p.grad is None for p in plain_vit.parameters())
    for name, value in plain_vit.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_progress_counts_one_pass_per_channel_for_score_cam(plain_vit):
    seen = []
    ScoreCAM(plain_vit).attribute(torch.rand(2, 3, 32, 32), 1, batch_size=8, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert len(seen) == 2 + 2 * 24 // 8  # the first pass, then 24 channels 8 at a time per image, then the end


def test_gradient_cams_refuse_inference_mode_and_the_others_run_there(plain_vit):
    images = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        with pytest.raises(ValueError, match="Grad-CAM needs gradients"):
            GradCAM(plain_vit).attribute(images, 1)
        inside = EigenCAM(plain_vit).attribute(images, 1)
    torch.testing.assert_close(inside.patch, EigenCAM(plain_vit).attribute(images, 1).patch)


def test_the_cams_join_the_registry_in_their_own_family():
    names = [cls.name for cls in CAMS]
    assert list(METHODS)[-len(CAMS):] == names
    assert names == ["Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "EigenCAM", "Score-CAM", "Ablation-CAM"]
    assert all(issubclass(cls, CAMAttribution) and cls.kind == "cam" for cls in CAMS)
    assert ScoreCAM.options_for(batch_size=64) == {"batch_size": 64} and GradCAM.options_for(batch_size=64) == {}


def test_torchcam_legrad_cannot_hook_a_timm_vit(plain_vit):
    """Why LeGrad is left out (README): torchcam 0.5 hooks a ``self_attention: nn.MultiheadAttention`` child
    of each block (torchvision's ViT); timm's blocks compute attention in their own ``Attention`` module."""
    from torchcam.methods import LeGrad

    with pytest.raises(TypeError, match="must expose `self_attention: nn.MultiheadAttention`"):
        LeGrad(plain_vit, [plain_vit.blocks[-1]], prefix_tokens=1, grid_shape=(4, 4),
               score_projection=lambda tokens: plain_vit.head(plain_vit.norm(tokens[:, 0])))
    assert not np.any([m._forward_hooks for m in plain_vit.modules()])
