"""Positional embeddings: similarity against a direct computation, the sin-cos table's known properties."""

import math

import pytest
import torch

from vitviz.models import create_vit
from vitviz.positions import patch_pos_embed, position_similarity, resample_patch_pos_embed, sincos_table


def test_position_similarity_matches_a_loop():
    torch.manual_seed(0)
    pos = torch.randn(12, 7)
    sim = position_similarity(pos)
    for i in range(12):
        for j in range(12):
            expected = float(pos[i] @ pos[j]) / (float(pos[i].norm()) * float(pos[j].norm()))
            assert math.isclose(float(sim[i, j]), expected, abs_tol=1e-5)


def test_sincos_table_properties():
    gh, gw, dim = 5, 7, 32
    table = sincos_table((gh, gw), dim)
    assert table.shape == (gh * gw, dim) and float(table.abs().max()) <= 1
    # sin and cos of one angle: every position has the same norm, sqrt(dim / 2)
    assert torch.allclose(table.norm(dim=1), torch.full((gh * gw,), math.sqrt(dim / 2)), atol=1e-5)
    # position (0, 0) has every angle 0: sines 0, cosines 1
    assert torch.equal(table[0].sort().values, torch.tensor([0.0] * (dim // 2) + [1.0] * (dim // 2)))
    # sin(a)sin(b) + cos(a)cos(b) = cos(a - b): similarity depends only on the offset between positions
    sim = position_similarity(table).view(gh, gw, gh, gw)
    for dr, dc in [(0, 1), (1, 0), (2, 3)]:
        values = torch.stack([sim[r, c, r + dr, c + dc] for r in range(gh - dr) for c in range(gw - dc)])
        assert float(values.max() - values.min()) < 1e-5
    # and it is highest at the position itself
    assert torch.all(sim.reshape(gh * gw, gh * gw).argmax(dim=1) == torch.arange(gh * gw))
    with pytest.raises(ValueError, match="divisible by 4, got 30"):
        sincos_table((2, 2), 30)


@pytest.mark.parametrize("arch,prefix", [
    (dict(), 1),
    (dict(reg_tokens=3), 4),
    (dict(class_token=False, global_pool="avg"), 0),
    (dict(no_embed_class=True, reg_tokens=2), 0),
])
def test_patch_pos_embed_skips_prefix_tokens(arch, prefix):
    model = create_vit(dict(img_size=(16, 24), patch_size=8, embed_dim=16, depth=1, num_heads=2, **arch))
    table = patch_pos_embed(model)
    assert table.shape == (2 * 3, 16)
    assert torch.equal(table, model.pos_embed[0, prefix:].detach())


def test_model_without_position_embedding():
    assert patch_pos_embed(create_vit(dict(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, pos_embed="none"))) is None


def test_resample_keeps_a_grid_that_does_not_change_and_grows_another():
    pos = torch.randn(4 * 4, 8)
    assert torch.allclose(resample_patch_pos_embed(pos, (4, 4), (4, 4)), pos, atol=1e-5)
    grown = resample_patch_pos_embed(pos, (4, 4), (8, 6))
    assert grown.shape == (48, 8)
