import pytest
import torch
import torch.nn.functional as F

from vitviz.patches import grid_shape, patchify, unpatchify


@pytest.mark.parametrize("shape,patch", [((2, 3, 32, 48), 8), ((1, 1, 14, 14), 7), ((3, 3, 224, 224), 16)])
def test_round_trip_is_exact(shape, patch):
    images = torch.randn(*shape)
    tokens = patchify(images, patch)
    rows, cols = shape[2] // patch, shape[3] // patch
    assert tokens.shape == (shape[0], rows * cols, shape[1] * patch * patch)
    assert torch.equal(unpatchify(tokens, patch, (rows, cols)), images)


def test_raster_order_and_layout_match_a_conv_patch_embedding():
    images = torch.randn(2, 3, 24, 16)
    weight = torch.randn(5, 3, 8, 8)
    conv = F.conv2d(images, weight, stride=8)  # (B, 5, 3, 2)
    by_tokens = patchify(images, 8) @ weight.flatten(1).T  # (B, 6, 5)
    assert torch.allclose(by_tokens, conv.flatten(2).transpose(1, 2), atol=1e-5)
    # token 1 is the patch at row 0, col 1
    assert torch.equal(patchify(images, 8)[:, 1].reshape(2, 3, 8, 8), images[:, :, 0:8, 8:16])


def test_bad_sizes_name_the_values():
    with pytest.raises(ValueError, match="patch size 7 does not divide the image size 32x32"):
        patchify(torch.zeros(1, 3, 32, 32), 7)
    with pytest.raises(ValueError, match="5 tokens do not fill a 2x2 grid"):
        unpatchify(torch.zeros(1, 5, 12), 2, (2, 2))
    assert grid_shape((224, 384), 16) == (14, 24)


def test_a_grid_takes_the_article_its_number_is_read_with():
    from vitviz.patches import a_grid

    assert [a_grid((n, n)) for n in (8, 14, 11, 18, 80, 16, 1, 37)] == [
        "an 8x8 grid", "a 14x14 grid", "an 11x11 grid", "an 18x18 grid", "an 80x80 grid", "a 16x16 grid",
        "a 1x1 grid", "a 37x37 grid"]
    assert a_grid((4, 8)) == "a 4x8 grid" and a_grid((8, 4)) == "an 8x4 grid"
