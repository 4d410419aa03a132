"""The jigsaw pretext library: shuffles, the shuffled forward, position logits, decoders and metrics."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from vitviz.jigsaw import (
    decode_argmax,
    jigsaw_logits,
    jigsaw_metrics,
    key_keep_mask,
    position_logits,
    region_positions,
    shuffle_permutation,
    solve,
    solve_batch,
)
from vitviz.models import create_vit, load_model, save_checkpoint
from vitviz.patches import patchify, unpatchify


def _jigsaw_vit(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, seed=0):
    torch.manual_seed(seed)
    grid = image_size // patch_size
    arch = dict(img_size=image_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                num_classes=0, pos_embed="none")
    return create_vit(arch, jigsaw_grid=(grid, grid)).eval(), arch


def test_shuffle_permutation_rows_are_seeded_uniform_permutations():
    perms = shuffle_permutation(4, torch.Generator().manual_seed(1), batch_size=24_000)
    assert perms.shape == (24_000, 4) and perms.dtype == torch.long
    assert torch.equal(perms.sort(dim=1).values, torch.arange(4).expand(24_000, 4))
    assert torch.equal(perms, shuffle_permutation(4, torch.Generator().manual_seed(1), batch_size=24_000))
    # All 24 orders of 4 positions appear about equally often (1000 each expected).
    counts = torch.unique(perms, dim=0, return_counts=True)[1]
    assert len(counts) == 24 and counts.min() > 850 and counts.max() < 1150


def test_shuffle_permutation_of_chosen_positions_keeps_the_others():
    chosen = region_positions((4, 4), top=1, left=1, height=2, width=2)
    assert chosen == [5, 6, 9, 10]
    perms = shuffle_permutation(16, torch.Generator().manual_seed(0), batch_size=200, positions=chosen)
    others = [i for i in range(16) if i not in chosen]
    assert torch.equal(perms[:, others], torch.tensor(others).expand(200, -1))
    assert torch.equal(perms[:, chosen].sort(dim=1).values, torch.tensor(chosen).expand(200, -1))
    assert (perms[:, chosen] != torch.tensor(chosen)).any(dim=1).float().mean() > 0.9  # they do move
    with pytest.raises(ValueError, match="outside"):
        shuffle_permutation(16, torch.Generator(), positions=[3, 16])
    with pytest.raises(ValueError, match="does not fit"):
        region_positions((4, 4), top=3, left=0, height=2, width=1)


def test_jigsaw_logits_see_the_patches_in_shuffled_order():
    """Against an independent computation: shuffle the pixels, then run timm's own forward."""
    model, _ = _jigsaw_vit()
    images = torch.rand(3, 3, 16, 16)
    perms = shuffle_permutation(16, torch.Generator().manual_seed(3), batch_size=3)
    patches = patchify(images, 4)  # (B, N, 3*4*4)
    shuffled = torch.stack([patches[b, perms[b]] for b in range(3)])  # token k = patch at perms[b, k]
    shuffled_images = unpatchify(shuffled, 4, (4, 4))
    with torch.no_grad():
        expected = model.jigsaw_head(model.forward_features(shuffled_images)[:, 1:])  # no positions: raster = shuffled
        got = jigsaw_logits(model, images, perms)
    assert got.shape == (3, 16, 16)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_key_keep_mask_drops_exactly_the_fraction_and_hides_those_keys():
    mask = key_keep_mask(5, 1, 16, 0.25, torch.Generator().manual_seed(0))
    assert mask.shape == (5, 1, 1, 17) and mask.dtype == torch.bool
    assert mask[:, 0, 0, 0].all()  # the class token always stays
    assert torch.equal((~mask[:, 0, 0, 1:]).sum(dim=1), torch.full((5,), 4))
    assert key_keep_mask(5, 1, 16, 0.0, torch.Generator()) is None
    # A dropped token's content reaches no other token; a kept one's does.
    model, _ = _jigsaw_vit()
    images = torch.rand(1, 3, 16, 16)
    perm = torch.arange(16)[None]
    mask = key_keep_mask(1, 1, 16, 0.5, torch.Generator().manual_seed(5))
    dropped = int((~mask[0, 0, 0, 1:]).nonzero()[0])
    kept = int(mask[0, 0, 0, 1:].nonzero()[0])
    with torch.no_grad():
        base = jigsaw_logits(model, images, perm, mask)
        for token, should_change in ((dropped, False), (kept, True)):
            changed = images.clone()
            r, c = divmod(token, 4)
            changed[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = torch.rand(1, 3, 4, 4)
            out = jigsaw_logits(model, changed, perm, mask)
            others = [i for i in range(16) if i != token]
            assert torch.allclose(out[0, others], base[0, others], atol=1e-6) != should_change
            assert not torch.allclose(out[0, token], base[0, token])  # its own prediction does change


@pytest.fixture
def oracle_model(tmp_path):
    """A jigsaw checkpoint whose right answer is known: patch g shows a 1 at pixel g, the
    embedding reads it out as the one-hot e_g, blocks are identities, the head is the identity."""
    model, arch = _jigsaw_vit(image_size=8, patch_size=4, embed_dim=4, depth=1, num_heads=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.blocks[0].norm1, model.blocks[0].norm2, model.norm):
            norm.weight.fill_(1.0)
        for g in range(4):
            model.patch_embed.proj.weight[g, 0, 0, g] = 1.0  # channel 0, row 0, column g of the patch
        model.jigsaw_head.weight.copy_(torch.eye(4))
    sidecar = {"name": "oracle", "kind": "jigsaw", "architecture": arch, "jigsaw": {"grid": [2, 2]},
               "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}}
    return load_model(save_checkpoint(model, tmp_path / "oracle.safetensors", sidecar), device="cpu")


def _oracle_images(batch):
    images = torch.zeros(batch, 3, 8, 8)
    for g in range(4):
        r, c = divmod(g, 2)
        images[:, 0, 4 * r, 4 * c + g] = 1.0
    return images


def test_position_logits_row_k_answers_permutation_k(oracle_model):
    perms = torch.stack([torch.tensor(p) for p in itertools.permutations(range(4))])  # all 24, (24, 4)
    with torch.no_grad():
        logits = position_logits(oracle_model, _oracle_images(24), perms)
    assert logits.shape == (24, 4, 4)
    assert torch.equal(decode_argmax(logits), perms)
    assert jigsaw_metrics(logits, perms)["puzzle_acc_hungarian"] == 1.0


def test_position_logits_refuses_what_it_cannot_score(oracle_model, tmp_path):
    images = _oracle_images(2)
    with pytest.raises(ValueError, match="exactly once"):
        position_logits(oracle_model, images, torch.tensor([[0, 1, 2, 2], [0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="permutation of shape"):
        position_logits(oracle_model, images, torch.arange(4)[None])
    with pytest.raises(ValueError, match="expected images"):
        position_logits(oracle_model, torch.zeros(2, 3, 16, 16), torch.arange(4).repeat(2, 1))
    arch = dict(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=1, num_classes=3)
    plain = load_model(save_checkpoint(create_vit(arch), tmp_path / "plain.safetensors",
                                       {"kind": "classifier", "architecture": arch}), device="cpu")
    with pytest.raises(ValueError, match="no jigsaw head"):
        position_logits(plain, images, torch.arange(4).repeat(2, 1))


def _score(log_probs, assignment):
    return log_probs[torch.arange(len(assignment)), assignment].sum().item()


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_solve_finds_the_best_permutation_found_by_brute_force(n):
    generator = torch.Generator().manual_seed(n)
    for _ in range(5):
        logits = torch.randn(n, n, generator=generator) * 3
        log_probs = F.log_softmax(logits.double(), dim=-1)
        best = max(_score(log_probs, torch.tensor(p)) for p in itertools.permutations(range(n)))
        got = solve(logits)
        assert got.dtype == torch.long and sorted(got.tolist()) == list(range(n))
        assert _score(log_probs, got) == pytest.approx(best, abs=1e-9)


def test_solve_untangles_collisions_that_argmax_makes():
    # Tokens 0 and 1 both prefer position 0; token 0 much more so. Right answer: [0, 1, 2].
    logits = torch.tensor([[5.0, 0.0, 0.0], [2.0, 1.5, -3.0], [0.0, -1.0, 3.0]])
    assert decode_argmax(logits).tolist() == [0, 0, 2]
    assert solve(logits).tolist() == [0, 1, 2]
    batch = torch.stack([logits, logits[[2, 0, 1]]])  # second image: tokens in another order
    answers = torch.tensor([[0, 1, 2], [2, 0, 1]])
    assert torch.equal(solve_batch(batch), answers)
    metrics = jigsaw_metrics(batch, answers)
    assert metrics["patch_acc_argmax"] == pytest.approx(4 / 6)
    assert metrics["puzzle_acc_argmax"] == 0.0
    assert metrics["patch_acc_hungarian"] == 1.0 and metrics["puzzle_acc_hungarian"] == 1.0
    assert metrics["chance"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="square"):
        solve(torch.zeros(3, 4))
