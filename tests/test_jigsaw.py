"""The jigsaw pretext library: shuffles, the shuffled forward, position logits, decoders and metrics."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from vitviz.jigsaw import (
    arrange_patches,
    decode_argmax,
    displacement,
    jigsaw_checkpoints,
    jigsaw_metrics,
    key_keep_mask,
    pin_unmoved,
    placed_correctly,
    placement_confidence,
    placement_metrics,
    position_logits,
    reassemble,
    reassembly_steps,
    region_positions,
    shuffle_permutation,
    solve,
    solve_batch,
)
from vitviz.inputs import normalize
from vitviz.checkpoints import save_checkpoint
from vitviz.models import create_vit, load_model
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
        got = model(images, perms)
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
        base = model(images, perm, mask)
        for token, should_change in ((dropped, False), (kept, True)):
            changed = images.clone()
            r, c = divmod(token, 4)
            changed[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = torch.rand(1, 3, 4, 4)
            out = model(changed, perm, mask)
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


# --- the Jigsaw view's library: partial shuffles, reassembly, confidence, displacement, steps ---------


def test_a_full_shuffle_is_the_argsort_of_uniform_keys():
    """Training's evaluation sets depend on this draw staying as it is."""
    keys = torch.rand(3, 16, generator=torch.Generator().manual_seed(7))
    assert torch.equal(shuffle_permutation(16, torch.Generator().manual_seed(7), batch_size=3), keys.argsort(dim=1))


def test_shuffling_k_patches_moves_exactly_k_and_is_reproducible_per_seed():
    def draw(seed, **kwargs):
        return shuffle_permutation(16, torch.Generator().manual_seed(seed), batch_size=50, **kwargs)

    for k in (2, 5, 16):
        perms = draw(1, num_shuffled=k, derange=True)
        assert torch.equal(perms, draw(1, num_shuffled=k, derange=True))
        assert not torch.equal(perms, draw(2, num_shuffled=k, derange=True))
        assert torch.equal(perms.sort(dim=1).values, torch.arange(16).expand(50, 16))
        assert torch.equal((perms != torch.arange(16)).sum(dim=1), torch.full((50,), k))
    # Without derange, k positions are shuffled uniformly: some patches land back in place.
    loose = draw(1, num_shuffled=5)
    moved = (loose != torch.arange(16)).sum(dim=1)
    assert moved.max() <= 5 and moved.min() < 5
    # Different rows pick different positions.
    assert len({tuple((row != torch.arange(16)).nonzero().flatten().tolist()) for row in draw(3, num_shuffled=4)}) > 10
    for bad in (dict(num_shuffled=17), dict(num_shuffled=-1), dict(num_shuffled=1, derange=True)):
        with pytest.raises(ValueError, match="shuffle|positions"):
            draw(0, **bad)


def test_derangements_are_drawn_uniformly():
    perms = shuffle_permutation(3, torch.Generator().manual_seed(0), batch_size=4000, derange=True)
    rows, counts = torch.unique(perms, dim=0, return_counts=True)
    assert rows.tolist() == [[1, 2, 0], [2, 0, 1]]  # the only two derangements of three
    assert 1800 < counts.min() <= counts.max() < 2200


def test_shuffling_a_region_is_reproducible_and_stays_inside_it():
    region = region_positions((4, 4), top=0, left=2, height=3, width=2)  # positions 2, 3, 6, 7, 10, 11
    perms = shuffle_permutation(16, torch.Generator().manual_seed(4), batch_size=30, positions=region, derange=True)
    assert torch.equal(perms, shuffle_permutation(16, torch.Generator().manual_seed(4), batch_size=30,
                                                  positions=region, derange=True))
    outside = [i for i in range(16) if i not in region]
    assert torch.equal(perms[:, outside], torch.tensor(outside).expand(30, -1))
    assert (perms[:, region] != torch.tensor(region)).all()
    # k of the region: exactly k of its positions move, none outside.
    some = shuffle_permutation(16, torch.Generator().manual_seed(4), batch_size=30, positions=region,
                               num_shuffled=3, derange=True)
    assert torch.equal((some != torch.arange(16)).sum(dim=1), torch.full((30,), 3))
    assert torch.equal(some[:, outside], torch.tensor(outside).expand(30, -1))


def test_position_logits_drop_keys_as_the_seeded_mask_says(tmp_path):
    model, arch = _jigsaw_vit()  # 16 positions: many ways to drop 8 of them
    sidecar = {"kind": "jigsaw", "architecture": arch, "jigsaw": {"grid": [4, 4]}}
    model = load_model(save_checkpoint(model, tmp_path / "random-jigsaw.safetensors", sidecar), device="cpu")
    images = torch.rand(2, 3, 16, 16)
    perms = shuffle_permutation(16, torch.Generator().manual_seed(0), batch_size=2)
    with torch.no_grad():
        got = position_logits(model, images, perms, drop_fraction=0.5, generator=torch.Generator().manual_seed(9))
        mask = key_keep_mask(2, 1, 16, 0.5, torch.Generator().manual_seed(9))
        expected = model(normalize(images, model), perms, mask)
        other_seed = position_logits(model, images, perms, drop_fraction=0.5, generator=torch.Generator().manual_seed(1))
        no_drop = position_logits(model, images, perms)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, no_drop) and not torch.allclose(got, other_seed)
    with pytest.raises(ValueError, match="needs a generator"):
        position_logits(model, images, perms, drop_fraction=0.5)


def _pixel_shuffle(images, sources, p):
    """Independent of patchify: copy each patch's pixels by slicing; -1 leaves grey."""
    out = torch.full_like(images, 0.5)
    cols = images.shape[-1] // p
    for b in range(images.shape[0]):
        for slot, source in enumerate(sources[b].tolist()):
            if source >= 0:
                (r, c), (sr, sc) = divmod(slot, cols), divmod(source, cols)
                out[b, :, r * p:(r + 1) * p, c * p:(c + 1) * p] = images[b, :, sr * p:(sr + 1) * p, sc * p:(sc + 1) * p]
    return out


def test_the_shuffled_image_puts_token_k_in_slot_k():
    images = torch.rand(2, 3, 12, 16)  # a 3x4 grid of 4 px patches
    perms = shuffle_permutation(12, torch.Generator().manual_seed(0), batch_size=2)
    assert torch.equal(arrange_patches(images, perms, 4), _pixel_shuffle(images, perms, 4))
    assert torch.equal(arrange_patches(images, torch.arange(12).expand(2, 12), 4), images)
    with pytest.raises(ValueError, match="do not match"):
        arrange_patches(images, perms[:, :6], 4)


def test_reassembly_is_exact_when_the_logits_favour_the_truth():
    images = torch.rand(3, 3, 16, 16)
    perms = shuffle_permutation(16, torch.Generator().manual_seed(2), batch_size=3)
    logits = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(3))
    logits.scatter_(2, perms[..., None], 10.0)  # the right position of each token scores highest
    for placement in (decode_argmax(logits), solve_batch(logits)):
        assert torch.equal(placement, perms)
        rebuilt, shown = reassemble(images, perms, placement, 4, placement_confidence(logits, placement))
        assert torch.equal(rebuilt, images)
        assert torch.equal(perms.gather(1, shown), torch.arange(16).expand(3, 16))  # shown is the inverse
        assert placed_correctly(shown, perms).all()


def test_reassembly_by_the_oracle_model_gives_back_the_image(oracle_model):
    images = torch.rand(5, 3, 8, 8)
    images[:, 0] = _oracle_images(5)[:, 0]  # the oracle reads channel 0; the others are content to carry along
    perms = shuffle_permutation(4, torch.Generator().manual_seed(1), batch_size=5)
    with torch.no_grad():
        logits = position_logits(oracle_model, images, perms)
    rebuilt, _ = reassemble(images, perms, solve_batch(logits), 4)
    assert torch.equal(rebuilt, images)
    assert not torch.equal(arrange_patches(images, perms, 4), images)


def test_colliding_placements_keep_the_most_confident_and_leave_holes_grey():
    images = torch.rand(1, 3, 8, 8)  # 2x2 grid of 4 px patches
    perms = torch.tensor([[3, 0, 1, 2]])  # token k carries patch perms[k]
    placement = torch.tensor([[3, 3, 1, 2]])  # tokens 0 and 1 both claim position 3; nobody takes 0
    rebuilt, shown = reassemble(images, perms, placement, 4, confidence=torch.tensor([[0.4, 0.9, 0.5, 0.5]]))
    assert shown.tolist() == [[-1, 2, 3, 1]]
    assert torch.equal(rebuilt, _pixel_shuffle(images, torch.tensor([[-1, 1, 2, 0]]), 4))
    assert placed_correctly(shown, perms).tolist() == [[False, True, True, False]]
    # With equal confidence the lower token index wins.
    _, tied = reassemble(images, perms, placement, 4)
    assert tied.tolist() == [[-1, 2, 3, 0]]
    assert placed_correctly(tied, perms).tolist() == [[False, True, True, True]]


def test_confidence_is_the_probability_of_the_given_position():
    logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]]]))
    got = placement_confidence(logits, torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(got, torch.tensor([[0.7, 0.3, 0.9]]))


def test_accuracy_exact_puzzle_and_displacement_against_a_hand_computation():
    # A 2x3 grid; positions (row, col): 0 (0,0) 1 (0,1) 2 (0,2) 3 (1,0) 4 (1,1) 5 (1,2).
    truth = torch.tensor([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    placement = torch.tensor([[0, 1, 2, 3, 5, 4],    # 4 and 5 swapped: 1 patch apart each
                              [5, 4, 3, 2, 1, 0]])   # all right
    assert displacement(placement, truth, (2, 3)).tolist() == [[0, 0, 0, 0, 1, 1], [0] * 6]
    far = displacement(torch.tensor([[5]]), torch.tensor([[0]]), (2, 3))  # (0,0) to (1,2)
    assert far.item() == pytest.approx(5 ** 0.5)
    metrics = placement_metrics(placement, truth, (2, 3))
    assert metrics == pytest.approx({"patch_acc": 10 / 12, "puzzle_acc": 0.5, "displacement": 2 / 12})
    assert "displacement" not in placement_metrics(placement, truth)
    with pytest.raises(ValueError, match="does not hold"):
        placement_metrics(placement, truth, (2, 2))
    # Both decoders through jigsaw_metrics: argmax collides (tokens 0 and 1 both say position 0).
    logits = torch.tensor([[[5.0, 0.0, 0.0, 0.0], [2.0, 1.5, -3.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 3.0]]])
    metrics = jigsaw_metrics(logits, torch.tensor([[0, 1, 2, 3]]), grid_size=(2, 2))
    assert metrics["patch_acc_argmax"] == pytest.approx(3 / 4) and metrics["puzzle_acc_argmax"] == 0.0
    assert metrics["displacement_argmax"] == pytest.approx(1 / 4)  # token 1 put one column left
    assert metrics["patch_acc_hungarian"] == 1.0 and metrics["displacement_hungarian"] == 0.0


def test_pinning_the_unmoved_patches_restricts_both_decoders():
    perms = torch.tensor([[0, 2, 1, 3]])  # positions 1 and 2 swapped; 0 and 3 stay
    logits = torch.tensor([[[0.0, 3.0, 0.0, 0.0],   # token 0 (unmoved) would go to 1
                            [2.0, 0.0, 1.0, 0.0],   # token 1 likes 0 best, then its truth 2
                            [0.0, 1.0, 0.0, 2.0],   # token 2 likes 3, then its truth 1
                            [0.0, 0.0, 0.0, 1.0]]])
    pinned = pin_unmoved(logits, perms)
    assert torch.isinf(pinned).tolist() == [[[False, True, True, True], [True, False, False, True],
                                             [True, False, False, True], [True, True, True, False]]]
    assert decode_argmax(pinned).tolist() == [[0, 2, 1, 3]]
    assert solve_batch(pinned).tolist() == [[0, 2, 1, 3]]
    assert solve_batch(logits).tolist() != [[0, 2, 1, 3]]
    with pytest.raises(ValueError, match="do not match"):
        pin_unmoved(logits, perms[:, :3])


def test_reassembly_steps_move_one_patch_home_per_step():
    placement = torch.tensor([1, 2, 0, 3, 5, 4])  # a 3-cycle, a fixed token, a swap: 2 + 1 steps
    confidence = torch.tensor([0.1, 0.9, 0.5, 0.99, 0.2, 0.3])
    frames, moved = reassembly_steps(placement, confidence)
    assert frames.shape == (4, 6) and moved.tolist() == [2, 0, 4]  # token 1 first (token 3 is home), then 2, then 5
    assert frames[0].tolist() == list(range(6))
    final = torch.empty(6, dtype=torch.long)
    final[placement] = torch.arange(6)
    assert torch.equal(frames[-1], final)
    for before, after, filled in zip(frames[:-1], frames[1:], moved):
        assert (before != after).sum() == 2 and after[filled] == final[filled]
        assert sorted(after.tolist()) == list(range(6))
    assert reassembly_steps(torch.arange(4))[0].shape == (1, 4)
    with pytest.raises(ValueError, match="one-to-one"):
        reassembly_steps(torch.tensor([0, 0, 2]))


def test_jigsaw_checkpoints_lists_the_ones_with_a_jigsaw_head(tmp_path, monkeypatch):
    model, arch = _jigsaw_vit(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=1)
    save_checkpoint(model, tmp_path / "puzzler.safetensors", {"kind": "jigsaw", "architecture": arch, "jigsaw": {"grid": [2, 2]}})
    plain = {**arch, "num_classes": 2, "pos_embed": "learn"}
    save_checkpoint(create_vit(plain), tmp_path / "labeller.safetensors", {"kind": "classifier", "architecture": plain})
    save_checkpoint(create_vit(plain), tmp_path / "garbled.safetensors", {"architecture": plain})
    (tmp_path / "garbled.json").write_text("{not json")
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    names = jigsaw_checkpoints()
    assert "puzzler" in names and "labeller" not in names and "garbled" not in names


def test_the_best_jigsaw_model_places_the_most_patches_of_held_out_photos(tmp_path):
    import json

    from vitviz.jigsaw import best_jigsaw_checkpoint, patches_placed
    from vitviz.registry import ModelEntry

    def entry(name, grid, accuracy, kind="jigsaw"):
        path = tmp_path / f"{name}.safetensors"
        metrics = {} if accuracy is None else {"val": {"patch_acc_hungarian": accuracy}}
        path.with_suffix(".json").write_text(json.dumps({"architecture": {}, "kind": kind,
                                                         "jigsaw": {"grid": list(grid)}, "metrics": metrics}))
        return ModelEntry(name, "checkpoint", name, kind, path)

    coarse, fine, none = entry("coarse", (4, 4), 0.82), entry("fine", (7, 7), 0.30), entry("none", (7, 7), None)
    assert patches_placed(coarse) == pytest.approx(0.82 * 16) and patches_placed(none) == 0.0
    assert best_jigsaw_checkpoint([none, coarse, fine]) is fine  # 14.7 patches against 13.1
    assert best_jigsaw_checkpoint([coarse, entry("weak", (7, 7), 0.25)]) is coarse  # 12.25 against 13.1
    assert best_jigsaw_checkpoint([entry("a", (4, 4), 0.5), entry("b", (2, 4), 1.0)]).ref == "a"  # a tie: the first
    assert best_jigsaw_checkpoint([entry("cls", (1, 1), 1.0, kind="classifier")]) is None
    broken = ModelEntry("broken", "checkpoint", "broken", "jigsaw", tmp_path / "missing.safetensors")
    assert patches_placed(broken) == 0.0 and best_jigsaw_checkpoint([broken]) is broken
