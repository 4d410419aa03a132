"""Where an image enters a model: the shared checks and the image-to-model-input step."""

import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vitviz.images import fit_to_model, to_tensor
from vitviz.inputs import check_images, model_device, model_input, model_pixels, normalize, resolve_targets
from vitviz.checkpoints import save_checkpoint
from vitviz.models import create_vit, load_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 32x48 ViT with 8 px patches and 3 classes, loaded as the app loads models."""
    torch.manual_seed(0)
    arch = dict(img_size=(32, 48), patch_size=8, num_classes=3, embed_dim=16, depth=1, num_heads=2)
    path = tmp_path_factory.mktemp("inputs") / "tiny.safetensors"
    save_checkpoint(create_vit(arch), path, {"architecture": arch, "class_names": ["a", "b", "c"]})
    return load_model(path, device="cpu")


def test_model_input_is_the_fitted_image_normalised_on_the_models_device(tiny):
    image = Image.new("RGB", (90, 40), (200, 100, 50))
    image.paste((0, 0, 255), (40, 0, 50, 40))  # a stripe down the middle: the crop must be centred
    pixels = model_pixels(image, tiny)
    assert pixels.shape == (1, 3, 32, 48) and pixels.device == model_device(tiny)
    assert torch.equal(pixels[0], to_tensor(fit_to_model(image, (32, 48))))
    inputs = model_input(image, tiny)
    assert torch.equal(inputs, normalize(pixels, tiny))
    mean, std = torch.tensor(tiny.card.mean).view(3, 1, 1), torch.tensor(tiny.card.std).view(3, 1, 1)
    torch.testing.assert_close(inputs[0] * std + mean, pixels[0])


def test_check_images_detaches_and_names_what_is_wrong(tiny):
    x = torch.zeros(2, 3, 32, 48, requires_grad=True)
    checked = check_images(tiny, x)
    assert not checked.requires_grad and checked.shape == x.shape
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\], got torch.Size\(\[3, 32, 48\]\)"):
        check_images(tiny, torch.zeros(3, 32, 48))
    with pytest.raises(ValueError, match=r"got torch.Size\(\[1, 1, 32, 48\]\)"):
        check_images(tiny, torch.zeros(1, 1, 32, 48))
    with pytest.raises(ValueError, match="float images, got torch.uint8"):
        check_images(tiny, torch.zeros(1, 3, 32, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match="patch size 8 does not divide the image size 32x44"):
        check_images(tiny, torch.zeros(1, 3, 32, 44))
    with pytest.raises(ValueError, match="takes 32x48 images, not 48x32"):
        check_images(tiny, torch.zeros(1, 3, 48, 32))
    tiny.train()
    try:
        with pytest.raises(ValueError, match="tiny is in training mode.*model.eval()"):
            check_images(tiny, torch.zeros(1, 3, 32, 48))
    finally:
        tiny.eval()


def test_check_images_reads_a_plain_timm_model():
    dynamic = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                                dynamic_img_size=True).eval()
    assert check_images(dynamic, torch.zeros(1, 3, 40, 24)).shape == (1, 3, 40, 24)  # any size the patches tile
    with pytest.raises(ValueError, match="patch size 8 does not divide"):
        check_images(dynamic, torch.zeros(1, 3, 40, 25))
    with pytest.raises(ValueError, match=r"the model \(VisionTransformer\) is in training mode"):
        check_images(dynamic.train(), torch.zeros(1, 3, 40, 24))


def test_model_device_needs_a_parameter():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    with pytest.raises(ValueError, match="ReLU has no parameters"):
        model_device(nn.ReLU())


def test_resolve_targets_reads_ints_sequences_and_tensors():
    assert torch.equal(resolve_targets(2, 3, 5), torch.tensor([2, 2, 2]))
    assert torch.equal(resolve_targets([0, 4], 2, 5), torch.tensor([0, 4]))
    assert torch.equal(resolve_targets(torch.tensor(1), 2, 5), torch.tensor([1, 1]))
    got = resolve_targets(torch.tensor([3, 1], dtype=torch.int32), 2, 5)
    assert got.dtype == torch.long and torch.equal(got, torch.tensor([3, 1]))


@pytest.mark.parametrize("target, message", [
    (True, "class index, not True"),
    ([0, 1, 2], r"2 of them \(a sequence or a LongTensor \[2\]\), got \[0, 1, 2\]"),
    (torch.tensor([0.0, 1.0]), r"got torch.float32 \(2,\)"),
    (torch.tensor([True, False]), "got torch.bool"),
    ("predicted", "class index or 2 of them, not 'predicted'"),
    ([0, 5], "target class 5 is out of range for 5 classes"),
    (-1, "target class -1 is out of range for 5 classes"),
])
def test_resolve_targets_names_a_bad_target(target, message):
    with pytest.raises(ValueError, match=message):
        resolve_targets(target, 2, 5)


@pytest.mark.parametrize("ref", ["random:vit_base_patch16_224", "random:vit_small_patch14_reg4_dinov2",
                                 "random:deit_small_distilled_patch16_224", "starter-shapes"])
def test_model_input_is_timms_own_evaluation_transform(ref):
    """The image reaches the model exactly as in timm's evaluation: resolve_model_data_config + create_transform."""
    from timm.data import create_transform, resolve_model_data_config

    from vitviz.models import load_model, model_input
    from vitviz.samples import load_sample

    model = load_model(ref, device="cpu")
    config = resolve_model_data_config(model)
    reference = create_transform(**config, is_training=False)
    for name in ("astronaut", "chelsea", "rocket"):  # landscape, landscape, portrait
        image = load_sample(name)
        ours = model_input(image, model)
        assert ours.shape == (1, 3, *model.card.image_size)
        assert (ours[0] - reference(image)).abs().max() <= 1 / 255
    if ref.startswith("random:vit_base"):
        assert config["crop_pct"] == 0.9  # timm's crop: the model sees the central 90%, not the whole shorter side


def test_an_extreme_strip_reaches_the_model_bounded_and_centred():
    from PIL import Image

    from vitviz.inputs import MAX_ASPECT, _bounded
    from vitviz.models import load_model, model_input

    model = load_model("random:vit_base_patch16_224", device="cpu")
    strip = Image.new("RGB", (20000, 1), (200, 40, 10))
    assert _bounded(strip).size == (round(MAX_ASPECT), 1)  # cut to 4:1 before timm's resize
    pixels = model_input(strip, model)
    assert pixels.shape == (1, 3, 224, 224) and torch.isfinite(pixels).all()
