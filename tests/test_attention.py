import threading

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from vitviz.attention import (
    attention_gradients,
    capture,
    class_map,
    grad_rollout,
    grad_rollout_matrix,
    gradient_maps,
    mass_mask,
    mean_attention_distance,
    mean_attention_distance_over,
    pick_head,
    prefix_share,
    query_map,
    recorded_attention,
    relevance,
    relevance_matrix,
    rollout,
    rollout_layers,
    rollout_row,
    top_predictions,
)


# --- independent references: per item, per layer, plain loops -----------------------------------

def _softmax_rows(x):
    return x.softmax(dim=-1)


def random_attentions(layers=2, batch=2, heads=3, tokens=5, seed=0):
    """L tensors [B, H, N, N] of distinct positive values, rows summing to 1."""
    g = torch.Generator().manual_seed(seed)
    return [_softmax_rows(3 * torch.randn(batch, heads, tokens, tokens, generator=g, dtype=torch.float64))
            for _ in range(layers)]


def ref_discard(matrix, ratio):
    """Zero the int(N*N*ratio) smallest entries of one [N, N] matrix, never [0, 0]."""
    n = matrix.shape[0]
    out = matrix.clone()
    entries = sorted((matrix[i, j].item(), i, j) for i in range(n) for j in range(n) if (i, j) != (0, 0))
    for _, i, j in entries[:int(n * n * ratio)]:
        out[i, j] = 0.0
    return out


def ref_roll(fused_per_layer, ratio):
    """Rollout of one item's fused [N, N] matrices, written out step by step."""
    n = fused_per_layer[0].shape[0]
    result = torch.eye(n, dtype=torch.float64)
    for fused in fused_per_layer:
        a = ref_discard(fused, ratio) + torch.eye(n, dtype=torch.float64)
        for i in range(n):
            a[i] = a[i] / sum(a[i, j].item() for j in range(n))
        result = a @ result
    return result


def ref_fuse(heads, how):
    """[H, N, N] -> [N, N] by an explicit loop over heads."""
    out = heads[0].clone()
    for h in heads[1:]:
        out = {"mean": out + h, "max": torch.maximum(out, h), "min": torch.minimum(out, h)}[how]
    return out / len(heads) if how == "mean" else out


# --- rollout ----------------------------------------------------------------------------------------

def test_rollout_by_hand_two_equal_layers():
    a = torch.tensor([[0.6, 0.4], [0.2, 0.8]]).view(1, 1, 2, 2)
    # (A + I) / 2 = [[0.8, 0.2], [0.1, 0.9]]; squared:
    expected = torch.tensor([[0.66, 0.34], [0.17, 0.83]])
    assert torch.allclose(rollout([a, a])[0], expected, atol=1e-6)


def test_rollout_by_hand_max_fusion_normalises_each_row_over_the_keys():
    heads = torch.tensor([[[0.6, 0.4], [0.2, 0.8]], [[0.1, 0.9], [0.5, 0.5]]]).unsqueeze(0)  # (1, 2, 2, 2)
    # max = [[0.6, 0.9], [0.5, 0.8]]; + I = [[1.6, 0.9], [0.5, 1.8]]; row sums 2.5 and 2.3
    expected = torch.tensor([[1.6 / 2.5, 0.9 / 2.5], [0.5 / 2.3, 1.8 / 2.3]])
    result = rollout([heads], head_fusion="max")[0]
    assert torch.allclose(result, expected, atol=1e-6)
    assert torch.allclose(result.sum(dim=-1), torch.ones(2))


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("start", [0, 1])
def test_rollout_matches_a_per_item_loop(fusion, ratio, start):
    attentions = random_attentions(layers=3, batch=3, seed=1)
    result = rollout(attentions, head_fusion=fusion, discard_ratio=ratio, start_layer=start)
    assert result.shape == (3, 5, 5)
    for b in range(3):
        expected = ref_roll([ref_fuse(a[b], fusion) for a in attentions[start:]], ratio)
        assert torch.allclose(result[b].double(), expected, atol=1e-5), (fusion, ratio, start, b)


def test_discard_never_zeroes_entry_0_0_and_zeroes_each_items_own_smallest():
    # One layer, one head. Item 0: [0, 0] is the smallest entry; item 1: it is the largest.
    item0 = torch.tensor([[0.01, 0.50, 0.49], [0.30, 0.30, 0.40], [0.20, 0.05, 0.75]])
    item1 = torch.tensor([[0.90, 0.04, 0.06], [0.02, 0.97, 0.01], [0.33, 0.33, 0.34]])
    a = torch.stack([item0, item1]).unsqueeze(1)  # (2, 1, 3, 3)
    ratio = 0.25  # int(9 * 0.25) = 2 entries per item
    result = rollout([a], discard_ratio=ratio)
    # item 0 loses 0.05 and 0.20 (not the 0.01 at [0, 0]); item 1 loses 0.01 and 0.02
    kept0 = item0.clone()
    kept0[2, 1] = kept0[2, 0] = 0
    kept1 = item1.clone()
    kept1[1, 2] = kept1[1, 0] = 0
    for kept, got in ((kept0, result[0]), (kept1, result[1])):
        expected = kept + torch.eye(3)
        expected = expected / expected.sum(dim=-1, keepdim=True)
        assert torch.allclose(got, expected, atol=1e-6)
    assert result[0, 0, 0] > 1 / (1 + 1 + 0.99)  # [0, 0] kept its 0.01 on top of the identity


def test_rollout_leaves_its_input_untouched():
    attentions = random_attentions()
    copies = [a.clone() for a in attentions]
    rollout(attentions, head_fusion="max", discard_ratio=0.5)
    assert all(torch.equal(a, c) for a, c in zip(attentions, copies))


def test_rollout_rejects_bad_options_naming_them():
    attentions = random_attentions()
    with pytest.raises(ValueError, match="'median'"):
        rollout(attentions, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio 1.0"):
        rollout(attentions, discard_ratio=1.0)
    with pytest.raises(ValueError, match="start_layer 2 is out of range for 2 layers"):
        rollout(attentions, start_layer=2)
    with pytest.raises(ValueError, match="no attention layers"):
        rollout([])


@pytest.mark.parametrize("fusion, ratio, start", [("mean", 0.0, 0), ("max", 0.3, 1), ("min", 0.9, 0)])
@pytest.mark.parametrize("query", [0, 3, "patches"])
def test_rollout_row_is_the_rollouts_row(fusion, ratio, start, query):
    attentions = random_attentions(layers=3, batch=2, tokens=7, seed=2)  # 1 prefix token and a 2x3 grid
    layers = rollout_layers(attentions, fusion, ratio)
    assert layers.shape == (3, 2, 7, 7) and torch.allclose(layers.sum(dim=-1), torch.ones(3, 2, 7))
    row = rollout_row(layers[start:], query, (2, 3), 1)
    whole = query_map(rollout(attentions, fusion, ratio, start), query, (2, 3), 1)
    assert row.shape == (2, 2, 3)
    assert torch.allclose(row, whole, atol=1e-6)


def test_rollout_row_rejects_bad_queries_and_grids():
    layers = rollout_layers(random_attentions(tokens=7))
    with pytest.raises(ValueError, match="query 7"):
        rollout_row(layers, 7, (2, 3), 1)
    with pytest.raises(ValueError, match="7 tokens are not 1 prefix tokens and a 3x3 grid"):
        rollout_row(layers, 0, (3, 3), 1)


def test_discard_drops_exactly_the_count_among_tied_values_first_in_raster_order():
    # Ties at the threshold: int(16 * 0.5) = 8 entries go; the reference breaks ties by (row, column).
    values = torch.tensor([[0.5, 0.1, 0.1, 0.3], [0.1, 0.2, 0.1, 0.6], [0.2, 0.2, 0.2, 0.4], [0.1, 0.2, 0.3, 0.4]])
    rolled = rollout([values.view(1, 1, 4, 4)], discard_ratio=0.5)[0]
    expected = ref_discard(values.double(), 0.5) + torch.eye(4, dtype=torch.float64)
    expected = expected / expected.sum(dim=-1, keepdim=True)
    assert torch.allclose(rolled.double(), expected, atol=1e-6)


# --- gradient rollout and relevance on hand-built tensors -------------------------------------------

def test_relevance_matrix_by_hand_one_layer():
    a = torch.tensor([[0.5, 0.5], [0.25, 0.75]]).view(1, 1, 2, 2)
    grad = torch.tensor([[2.0, -1.0], [4.0, 1.0]]).view(1, 1, 2, 2)
    # clamp(dA * A, 0) = [[1, 0], [1, 0.75]]; R = I + A_bar @ I
    expected = torch.tensor([[2.0, 0.0], [1.0, 1.75]])
    assert torch.allclose(relevance_matrix([a], [grad])[0], expected)


def test_relevance_clamps_each_head_before_the_mean():
    a = torch.full((1, 2, 2, 2), 0.5)
    grad = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), -4.0)]).unsqueeze(0)  # (1, 2, 2, 2)
    # head 0 gives 1, head 1 gives -2 -> clamped to 0; mean 0.5 (clamping after the mean would give 0)
    assert torch.allclose(relevance_matrix([a], [grad])[0], torch.eye(2) + 0.5 * torch.ones(2, 2) @ torch.eye(2))


def test_grad_rollout_matrix_by_hand_clamps_after_the_head_mean():
    a = torch.full((1, 2, 2, 2), 0.5)
    grad = torch.stack([torch.tensor([[2.0, 2.0], [2.0, 6.0]]), torch.tensor([[-4.0, 2.0], [0.0, -2.0]])]).unsqueeze(0)
    # mean_h(A * dA) = [[-0.5, 1], [0.5, 1]] -> clamp -> [[0, 1], [0.5, 1]]; + I = [[1, 1], [0.5, 2]]
    expected = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    assert torch.allclose(grad_rollout_matrix([a], [grad])[0], expected)


@pytest.mark.parametrize("ratio", [0.0, 0.4])
def test_grad_rollout_and_relevance_matrices_match_per_item_loops(ratio):
    attentions = random_attentions(layers=3, batch=2, heads=2, tokens=4, seed=2)
    gradients = [torch.randn_like(a) for a in random_attentions(layers=3, batch=2, heads=2, tokens=4, seed=3)]
    rolled = grad_rollout_matrix(attentions, gradients, discard_ratio=ratio)
    rel = relevance_matrix(attentions, gradients)
    for b in range(2):
        fused = [ref_fuse(a[b] * g[b], "mean").clamp(min=0) for a, g in zip(attentions, gradients)]
        assert torch.allclose(rolled[b].double(), ref_roll(fused, ratio), atol=1e-5)
        expected = torch.eye(4, dtype=torch.float64)
        for a, g in zip(attentions, gradients):
            a_bar = sum((g[b, h] * a[b, h]).clamp(min=0) for h in range(2)) / 2
            expected = expected + a_bar @ expected
        assert torch.allclose(rel[b].double(), expected, atol=1e-5)


# --- maps on the grid -------------------------------------------------------------------------------

def test_query_map_drops_prefix_columns_and_reshapes_in_raster_order():
    # P = 2 (class token + one register), grid 2x3: N = 8
    matrix = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 8, 8)
    got = query_map(matrix, 3, (2, 3), num_prefix_tokens=2)
    assert got.shape == (2, 2, 3)
    assert torch.equal(got[1], torch.tensor([[90.0, 91, 92], [93, 94, 95]]))  # item 1, row 3: 64 + 24 + (2..7)
    by_heads = query_map(matrix.view(1, 2, 8, 8), 0, (2, 3), num_prefix_tokens=2)
    assert by_heads.shape == (1, 2, 2, 3)
    patches = query_map(matrix, "patches", (2, 3), num_prefix_tokens=2)
    assert torch.equal(patches[0], matrix[0, 2:, 2:].mean(dim=0).view(2, 3))


def test_class_map_uses_the_class_token_or_the_patch_mean():
    matrix = torch.rand(2, 5, 5)
    assert torch.equal(class_map(matrix, (2, 2), 1, True), matrix[:, 0, 1:].reshape(2, 2, 2))
    assert torch.allclose(class_map(matrix, (2, 2), 1, False), matrix[:, 1:, 1:].mean(dim=1).reshape(2, 2, 2))


def test_query_map_rejects_bad_queries_and_grids():
    matrix = torch.rand(1, 5, 5)
    with pytest.raises(ValueError, match="query 5 "):
        query_map(matrix, 5, (2, 2))
    with pytest.raises(ValueError, match="5 tokens are not 1 prefix tokens and a 3x3 grid"):
        query_map(matrix, 0, (3, 3))


def test_prefix_share_is_what_the_query_map_leaves_out():
    attentions = random_attentions(layers=1, batch=2, heads=3, tokens=6)[0]  # P = 2, grid 2x2
    for query in (0, 1, 4, "patches"):
        share = prefix_share(attentions, query, (2, 2), num_prefix_tokens=2)
        assert share.shape == (2, 3)
        on_patches = query_map(attentions, query, (2, 2), num_prefix_tokens=2).sum(dim=(-2, -1))
        assert torch.allclose(share + on_patches, torch.ones(2, 3, dtype=torch.float64)), query
    assert torch.allclose(prefix_share(attentions, 4, (2, 2), 2), attentions[:, :, 4, :2].sum(dim=-1))
    assert torch.equal(prefix_share(attentions[:, :, 2:, 2:], 0, (2, 2), 0), torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="query 6 "):
        prefix_share(attentions, 6, (2, 2), 2)


def test_pick_head_takes_one_head_or_their_mean():
    per_head = torch.arange(12.0).view(3, 2, 2)  # (H, gh, gw)
    assert torch.equal(pick_head(per_head, 1), per_head[1])
    assert torch.equal(pick_head(per_head), per_head.mean(dim=0))
    assert torch.equal(pick_head(per_head.view(1, 3, 4), 2, dim=1), per_head[2].view(1, 4))
    with pytest.raises(ValueError, match="head 3 is out of range for 3 heads"):
        pick_head(per_head, 3)


def test_mean_attention_distance_by_hand():
    # grid 1x2, patch 16, one class token. Patch 0 gives 0.25 to patch 1 (16 px away): 4 px.
    # Patch 1 attends only to itself: 0 px. Mean over the two query patches: 2 px.
    a = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    assert torch.allclose(mean_attention_distance([a], (1, 2), 16), torch.tensor([[2.0]]))


def test_mean_attention_distance_matches_a_loop_over_patch_pairs():
    gh, gw, p, prefix = 2, 3, 14, 2
    attentions = random_attentions(layers=2, batch=2, heads=3, tokens=prefix + gh * gw, seed=4)
    got = mean_attention_distance(attentions, (gh, gw), p, num_prefix_tokens=prefix)
    assert got.shape == (2, 3)
    for layer, a in enumerate(attentions):
        for h in range(3):
            total = 0.0
            for b in range(2):
                for i in range(gh * gw):
                    for j in range(gh * gw):
                        di, dj = i // gw - j // gw, i % gw - j % gw
                        total += a[b, h, prefix + i, prefix + j].item() * p * (di * di + dj * dj) ** 0.5
            assert got[layer, h].item() == pytest.approx(total / (2 * gh * gw), rel=1e-5)


def test_mass_mask_by_hand():
    maps = torch.tensor([[0.15, 0.5], [0.05, 0.3]])  # total 1
    assert torch.equal(mass_mask(maps, 0.6), torch.tensor([[False, True], [False, True]]))
    assert torch.equal(mass_mask(maps, 0.5), torch.tensor([[False, True], [False, False]]))
    assert torch.equal(mass_mask(2 * maps, 0.81), torch.tensor([[True, True], [False, True]]))  # scale-free


def test_mass_mask_matches_dinos_sort_and_cumsum():
    maps = torch.rand(3, 2, 4, 5)  # (B, heads, gh, gw)
    t = 0.6
    flat = maps.flatten(-2)
    values, order = torch.sort(flat, dim=-1)  # ascending, as visualize_attention.py
    values = values / values.sum(dim=-1, keepdim=True)
    kept = values.cumsum(dim=-1) > (1 - t)
    expected = torch.gather(kept, -1, torch.argsort(order, dim=-1)).view_as(maps)
    got = mass_mask(maps, t)
    assert torch.equal(got, expected)
    mass = (maps * got).flatten(-2).sum(-1) / maps.flatten(-2).sum(-1)
    assert (mass >= t - 1e-6).all()


def test_mass_mask_rejects_bad_fraction_and_negative_maps():
    with pytest.raises(ValueError, match="fraction 0 "):
        mass_mask(torch.rand(2, 2), 0)
    with pytest.raises(ValueError, match="non-negative"):
        mass_mask(torch.tensor([[1.0, -0.5]]), 0.5)


def test_top_predictions():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    probabilities, classes = top_predictions(logits, k=2)
    assert torch.equal(classes, torch.tensor([[1, 2], [0, 1]]))
    assert torch.allclose(probabilities, logits.softmax(-1).sort(dim=-1, descending=True).values[:, :2])
    assert top_predictions(logits, k=10)[1].shape == (2, 3)


# --- on timm models --------------------------------------------------------------------------------

SHAPES = {
    "class token": dict(img_size=32, patch_size=8),
    "avg pool, no class token": dict(img_size=32, patch_size=8, class_token=False, global_pool="avg"),
    "class token + 4 registers": dict(img_size=32, patch_size=8, reg_tokens=4),
    "4 registers, no class token": dict(img_size=32, patch_size=8, reg_tokens=4, class_token=False, global_pool="avg"),
    "non-square 32x48": dict(img_size=(32, 48), patch_size=8),
    "patch 16 at 48": dict(img_size=48, patch_size=16, depth=3),
}


def tiny_vit(**overrides) -> VisionTransformer:
    torch.manual_seed(0)
    config = {**dict(embed_dim=32, depth=2, num_heads=4, num_classes=5), **overrides}
    return VisionTransformer(**config).eval()


def images_for(model, batch=2, seed=0):
    h, w = model.patch_embed.img_size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def set_fused(model, value):
    for block in model.blocks:
        block.attn.fused_attn = value


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("fused", [True, False])
def test_capture_shapes_rows_logits_and_fused_setting(name, fused):
    model = tiny_vit(**SHAPES[name])
    set_fused(model, fused)
    x = images_for(model)
    logits, attentions = capture(model, x)
    gh, gw = model.patch_embed.grid_size
    n = model.num_prefix_tokens + gh * gw
    assert len(attentions) == len(model.blocks)
    assert all(a.shape == (2, 4, n, n) for a in attentions)
    assert all(torch.allclose(a.sum(dim=-1), torch.ones(2, 4, n), atol=1e-5) for a in attentions)
    assert all(block.attn.fused_attn is fused for block in model.blocks)
    with torch.no_grad():
        assert torch.allclose(logits, model(x), atol=1e-5)
    assert not logits.requires_grad


def manual_forward(model, x):
    """The ViT written out block by block from its weights; attentions keep their gradients."""
    tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    attentions = []
    for block in model.blocks:
        h = block.norm1(tokens)
        batch, n, dim = h.shape
        heads = block.attn.num_heads
        q, k, v = block.attn.qkv(h).reshape(batch, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
        if a.requires_grad:
            a.retain_grad()
        attentions.append(a)
        tokens = tokens + block.attn.proj((a @ v).transpose(1, 2).reshape(batch, n, dim))
        tokens = tokens + block.mlp(block.norm2(tokens))
    return model.forward_head(model.norm(tokens)), attentions


def test_captured_attention_is_the_models_softmax():
    model = tiny_vit(**SHAPES["class token + 4 registers"])
    x = images_for(model)
    _, attentions = capture(model, x)
    with torch.no_grad():
        _, expected = manual_forward(model, x)
    assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(attentions, expected))


def independent_gradients(model, x, targets):
    """Per item: one backward of its own target logit through the written-out forward."""
    grads = []
    for b, t in enumerate(targets):
        logits, attentions = manual_forward(model, x[b:b + 1])
        logits[0, t].backward()
        grads.append(([a.detach()[0] for a in attentions], [a.grad[0] for a in attentions]))
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("name", ["class token", "4 registers, no class token", "patch 16 at 48"])
def test_relevance_and_grad_rollout_match_an_independent_autograd_loop(name):
    model = tiny_vit(**SHAPES[name])
    x = images_for(model)
    targets = [1, 3]
    prefix, (gh, gw) = model.num_prefix_tokens, model.patch_embed.grid_size
    rel = relevance(model, x, torch.tensor(targets))
    rolled = grad_rollout(model, x, torch.tensor(targets), discard_ratio=0.2)
    assert rel.shape == rolled.shape == (2, gh, gw)
    for b, (attentions, grads) in enumerate(independent_gradients(model, x, targets)):
        n = attentions[0].shape[-1]
        r = torch.eye(n)
        for a, g in zip(attentions, grads):
            r = r + (g * a).clamp(min=0).mean(dim=0) @ r
        fused = [(a * g).mean(dim=0).clamp(min=0).double() for a, g in zip(attentions, grads)]
        roll = ref_roll(fused, 0.2).float()
        if model.cls_token is not None:
            rel_expected, roll_expected = r[0, prefix:], roll[0, prefix:]
        else:
            rel_expected, roll_expected = r[prefix:, prefix:].mean(dim=0), roll[prefix:, prefix:].mean(dim=0)
        assert torch.allclose(rel[b], rel_expected.view(gh, gw), rtol=1e-4, atol=1e-6), b
        assert torch.allclose(rolled[b], roll_expected.view(gh, gw), rtol=1e-4, atol=1e-6), b


def test_gradient_methods_take_an_int_target_and_leave_the_model_as_found():
    model = tiny_vit(**SHAPES["class token"])
    set_fused(model, True)
    x = images_for(model)
    by_int = relevance(model, x, 2)
    assert torch.allclose(by_int, relevance(model, x, torch.tensor([2, 2])))
    assert all(p.grad is None for p in model.parameters())
    assert all(block.attn.fused_attn for block in model.blocks)
    model.requires_grad_(False)  # frozen weights: the maps must not change
    assert torch.allclose(relevance(model, x, 2), by_int)
    logits, attentions, gradients = attention_gradients(model, x, 2)
    assert len(gradients) == len(attentions) == 2 and gradients[0].shape == attentions[0].shape


@pytest.mark.parametrize("name", ["class token", "4 registers, no class token"])
def test_gradient_maps_are_grad_rollout_and_relevance_from_one_backward(name, monkeypatch):
    model = tiny_vit(**SHAPES[name])
    x = images_for(model)
    targets = torch.tensor([1, 3])
    expected = grad_rollout(model, x, targets, discard_ratio=0.2), relevance(model, x, targets)
    backward = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: backward.append(1) or original(*a, **k))
    rolled, relevant = gradient_maps(model, x, targets, discard_ratio=0.2)
    assert len(backward) == 1
    assert torch.equal(rolled, expected[0]) and torch.equal(relevant, expected[1])


def test_gradient_methods_follow_the_input_size_of_a_dynamic_model():
    model = tiny_vit(img_size=32, patch_size=8, dynamic_img_size=True)
    x = torch.randn(1, 3, 40, 24)
    assert relevance(model, x, 0).shape == (1, 5, 3)
    assert grad_rollout(model, x, 0).shape == (1, 5, 3)


def test_bad_targets_and_models_are_refused_by_name():
    model = tiny_vit(**SHAPES["class token"])
    x = images_for(model)
    with pytest.raises(ValueError, match="target class 5 is out of range for 5 classes"):
        relevance(model, x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"LongTensor \[2\]"):
        grad_rollout(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="training mode"):
        capture(model.train(), x)
    with pytest.raises(ValueError, match="no classifier head"):
        relevance(tiny_vit(img_size=32, patch_size=8, num_classes=0), x, 0)


def test_a_pass_from_another_thread_is_not_recorded():
    model = tiny_vit(**SHAPES["class token"])
    x = images_for(model)
    with torch.no_grad(), recorded_attention(model) as recorded:
        other = threading.Thread(target=model, args=(x,))
        other.start()
        other.join()
        assert recorded == []
        model(x)
        assert len(recorded) == 2


def test_attention_distance_over_batches_weights_every_image_alike():
    model = tiny_vit(**SHAPES["class token + 4 registers"])
    x = images_for(model, batch=3)
    per_image = torch.stack([mean_attention_distance(capture(model, x[i:i + 1])[1], (4, 4), 8, 5) for i in range(3)])
    assert torch.allclose(mean_attention_distance_over(model, [x[:1], x[1:]]), per_image.mean(dim=0), atol=1e-5)
    with pytest.raises(ValueError, match="no images"):
        mean_attention_distance_over(model, [])


@pytest.mark.parametrize("method", ["relevance", "grad_rollout", "gradient_maps"])
def test_gradient_maps_ignore_the_callers_grad_mode(method):
    """Inside torch.no_grad() the maps equal those outside it; inside inference_mode the refusal says why."""
    import timm

    from vitviz import attention as A

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=5, depth=2).eval()
    images = torch.randn(2, 3, 32, 32)
    outside = getattr(A, method)(model, images, 1)
    with torch.no_grad():
        inside = getattr(A, method)(model, images, 1)
    for a, b in zip(outside if isinstance(outside, tuple) else [outside], inside if isinstance(inside, tuple) else [inside]):
        torch.testing.assert_close(a, b)
    with torch.inference_mode(), pytest.raises(ValueError, match="autograd cannot run inside torch.inference_mode"):
        getattr(A, method)(model, images, 1)
