"""Inside the blocks, each function against a computation written out here: a block-by-block forward
from the weights, numpy's SVD, numpy's median, and a forward with one head's slice of the projection
input edited by hand."""

import threading

import numpy as np
import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import ParallelScalingBlock, ResPostBlock, VisionTransformer

from vitviz.attention import capture
from vitviz.inside import (
    TokenStats,
    class_attention,
    foreground_mask,
    head_knockout,
    head_knockout_effects,
    logit_lens,
    norm_outliers,
    outlier_attention_share,
    patch_lens,
    pooled_lens,
    rank_correlation,
    record_blocks,
    settling_layer,
    token_norms,
    token_pca,
)

SHAPES = {
    "class token": dict(),
    "avg pool, no class token": dict(class_token=False, global_pool="avg", fc_norm=True),
    "class token + 2 registers": dict(reg_tokens=2),
    "avg pool + 1 register": dict(reg_tokens=1, class_token=False, global_pool="avg"),
    "post-norm blocks": dict(block_fn=ResPostBlock),
    "parallel blocks": dict(block_fn=ParallelScalingBlock),
}


def tiny_vit(distilled=False, **overrides) -> VisionTransformer:
    torch.manual_seed(0)
    config = {**dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=5), **overrides}
    model = (VisionTransformerDistilled if distilled else VisionTransformer)(**config).eval()
    with torch.no_grad():  # timm starts some weights at zero (class token, head): give every one a value
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def model_named(name) -> VisionTransformer:
    """One of SHAPES, or a distilled DeiT ("distilled")."""
    return tiny_vit(distilled=True) if name == "distilled" else tiny_vit(**SHAPES[name])


def images_for(model, batch=1, seed=0):
    h, w = model.patch_embed.img_size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --- a forward written out from the weights ------------------------------------------------------------

def attend(attn, x, heads, knocked=None, mode="zero", prefix=1):
    """Softmax attention from the qkv weights, then ``proj`` on the concatenated heads, with head ``knocked``'s
    slice of the projection input zeroed or replaced by its mean over the patch tokens."""
    batch, n, dim = x.shape
    width = dim // heads
    q, k, v = attn_qkv(attn, x).reshape(batch, n, 3, heads, width).permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-2, -1)) * width ** -0.5).softmax(dim=-1)
    concatenated = (a @ v).transpose(1, 2).reshape(batch, n, dim)  # (B, N, D): head h in columns h*width...
    if knocked is not None:
        part = slice(knocked * width, (knocked + 1) * width)
        concatenated = concatenated.clone()
        concatenated[:, :, part] = 0.0 if mode == "zero" else concatenated[:, prefix:, part].mean(dim=1, keepdim=True)
    return concatenated


def attn_qkv(attn, x):
    return attn.qkv(x)


def hand_block(block, x, knocked=None, mode="zero", prefix=1):
    if isinstance(block, ParallelScalingBlock):
        y = block.in_proj(block.in_norm(x))
        hidden = block.mlp_out_proj.in_features
        x_mlp, qkv = y[..., :hidden], y[..., hidden:]
        x_mlp = block.mlp_act(x_mlp + (block.mlp_bias if block.mlp_bias is not None else 0))
        concatenated = attend(_Fixed(qkv), x, block.num_heads, knocked, mode, prefix)
        return x + block.attn_out_proj(concatenated) + block.mlp_out_proj(x_mlp)
    heads = block.attn.num_heads
    if isinstance(block, ResPostBlock):
        x = x + block.norm1(block.attn.proj(attend(block.attn, x, heads, knocked, mode, prefix)))
        return x + block.norm2(block.mlp(x))
    x = x + block.attn.proj(attend(block.attn, block.norm1(x), heads, knocked, mode, prefix))
    return x + block.mlp(block.norm2(x))


class _Fixed:
    """Stands in for an attention module whose qkv projection is already computed (the parallel block's in_proj)."""

    def __init__(self, qkv):
        self.value = qkv

    def qkv(self, _x):
        return self.value


def hand_states(model, x, knock=None, mode="zero"):
    """The residual stream after every block, with head ``knock = (layer, head)`` knocked out; and the logits."""
    tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    states = []
    for index, block in enumerate(model.blocks):
        knocked = knock[1] if knock is not None and knock[0] == index else None
        tokens = hand_block(block, tokens, knocked, mode, model.num_prefix_tokens)
        states.append(tokens)
    return torch.stack(states, dim=1), hand_head(model, tokens)


def hand_head(model, tokens):
    """Pooling and head written out per pooling type (the final norm first)."""
    tokens = model.norm(tokens)
    if isinstance(model, VisionTransformerDistilled):
        return (model.head(tokens[:, 0]) + model.head_dist(tokens[:, 1])) / 2
    if model.global_pool == "token":
        return model.head(model.fc_norm(tokens[:, 0]))
    return model.head(model.fc_norm(tokens[:, model.num_prefix_tokens:].mean(dim=1)))


# --- one recorded forward ---------------------------------------------------------------------------------

def hand_case(name):
    """A model of SHAPES (or "distilled"), two images, and their residual stream and logits from the hand forward."""
    model = model_named(name)
    x = images_for(model, batch=2)
    with torch.no_grad():
        states, logits = hand_states(model, x)
    return model, x, states, logits


@pytest.mark.parametrize("name", [*SHAPES, "distilled"])
def test_recorded_tokens_output_and_attention_are_the_models(name):
    model, x, states, logits = hand_case(name)
    record = record_blocks(model, x)
    with torch.no_grad():
        assert torch.allclose(record.output, model(x), atol=1e-5)
    assert torch.allclose(record.output, logits, atol=1e-4)
    assert record.tokens.shape == (2, 3, model.num_prefix_tokens + 16, 32)
    assert torch.allclose(record.tokens, states, atol=1e-4)
    _, attentions = capture(model, x)
    assert all(torch.allclose(a, b) for a, b in zip(record.attentions, attentions))
    assert record_blocks(model, x, attention=False).attentions == []
    assert torch.allclose(token_norms(model, x), states.norm(dim=-1), atol=1e-4)


@pytest.mark.parametrize("name", [*SHAPES, "distilled"])
def test_logit_lens_reads_every_block_as_the_head_reads_the_last(name):
    model, x, states, logits = hand_case(name)
    lens = logit_lens(model, x)
    with torch.no_grad():
        expected = torch.stack([hand_head(model, states[:, layer]) for layer in range(3)], dim=1).softmax(dim=-1)
    assert lens.shape == (2, 3, 5)
    assert torch.allclose(lens, expected, atol=1e-5)
    assert torch.allclose(lens[:, -1], logits.softmax(dim=-1), atol=1e-5)  # the last block's reading is the prediction
    assert torch.allclose(pooled_lens(model, record_blocks(model, x).tokens), lens)


@pytest.mark.parametrize("name", ["class token", "avg pool, no class token", "class token + 2 registers", "distilled"])
def test_patch_lens_reads_each_patch_token_with_the_head(name):
    model, x, states, _ = hand_case(name)
    classes, probabilities = patch_lens(model, record_blocks(model, x).tokens)
    with torch.no_grad():
        patches = model.norm(states[:, :, model.num_prefix_tokens:])  # (B, L, 16, D)
        if name == "distilled":
            logits = (model.head(patches) + model.head_dist(patches)) / 2
        else:
            logits = model.head(model.fc_norm(patches))
        expected = logits.softmax(dim=-1).max(dim=-1)
    assert classes.shape == probabilities.shape == (2, 3, 16)
    assert torch.equal(classes, expected.indices)
    assert torch.allclose(probabilities, expected.values, atol=1e-5)


def test_lens_refuse_a_model_with_no_head():
    model = tiny_vit(num_classes=0)
    with pytest.raises(ValueError, match="no classifier head"):
        logit_lens(model, images_for(model))
    with pytest.raises(ValueError, match="no classifier head"):
        head_knockout(model, images_for(model), 0)


def test_settling_layer_by_hand():
    classes = torch.tensor([[3, 1, 2, 2], [2, 2, 2, 2], [1, 2, 1, 2], [2, 2, 2, 1]])
    assert settling_layer(classes, 2).tolist() == [2, 0, 3, -1]
    assert settling_layer(classes, torch.tensor([2, 2, 2, 1])).tolist() == [2, 0, 3, 3]


# --- token features as colour ------------------------------------------------------------------------------

def numpy_pca(tokens, k, fit=None):
    """Centre on the fitted tokens' mean, project on numpy's right singular vectors, min-max scale over ``tokens``."""
    fit = tokens if fit is None else fit
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    projected = (tokens - mean) @ vt[:k].T
    return (projected - projected.min(axis=0)) / (projected.max(axis=0) - projected.min(axis=0))


def equal_up_to_sign(ours, reference, atol=1e-5):
    """Each scaled component is the reference's, or 1 minus it (its axis turned the other way)."""
    for column in range(reference.shape[1]):
        same = np.allclose(ours[:, column], reference[:, column], atol=atol)
        flipped = np.allclose(ours[:, column], 1 - reference[:, column], atol=atol)
        assert same or flipped, column


def spread_tokens(n, d, seed):
    """Tokens whose variance falls off by direction, so the principal axes are well separated."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.linspace(3.0, 0.2, d) + rng.standard_normal(d)


def test_token_pca_matches_numpys_svd_up_to_sign():
    tokens = spread_tokens(60, 12, 0)
    ours = token_pca(torch.tensor(tokens, dtype=torch.float32), k=3).numpy()
    assert ours.shape == (60, 3) and ours.min() == 0 and ours.max() == 1
    equal_up_to_sign(ours, numpy_pca(tokens, 3))


def test_token_pca_fitted_on_more_images_matches_numpys_svd_of_them_all():
    tokens, others = spread_tokens(40, 10, 1), spread_tokens(90, 10, 2)
    both = np.concatenate([tokens, others])
    reference = numpy_pca(tokens, 3, fit=both)
    as_tokens = token_pca(torch.tensor(tokens), 3, fit_on=torch.tensor(both)).numpy()
    as_stats = token_pca(torch.tensor(tokens), 3, fit_on=TokenStats.of(torch.tensor(tokens)) + TokenStats.of(torch.tensor(others))).numpy()
    equal_up_to_sign(as_tokens, reference)
    equal_up_to_sign(as_stats, reference)
    assert np.allclose(as_tokens, as_stats, atol=1e-5)  # one sign convention for both fits


def test_token_pca_gives_the_same_colours_to_the_same_tokens_and_zero_to_a_constant_component():
    tokens = torch.tensor(spread_tokens(30, 6, 3))
    assert torch.equal(token_pca(tokens), token_pca(tokens.clone()))
    flat = torch.tensor([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    assert torch.allclose(token_pca(flat, k=2), torch.tensor([[0.0, 0.0], [1 / 3, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="k must be"):
        token_pca(flat, k=3)
    with pytest.raises(ValueError, match=r"tokens \[M, 2\], got shape \(4, 5\)"):
        token_pca(flat, k=1, fit_on=torch.zeros(4, 5))
    with pytest.raises(ValueError, match="5-wide tokens; tokens are 2 wide"):
        token_pca(flat, k=1, fit_on=TokenStats.of(torch.zeros(4, 5)))


def test_foreground_is_the_side_that_holds_fewer_border_cells():
    component = torch.zeros(4, 4)
    component[1:3, 1:3] = 1.0
    centre = component > 0.5
    assert torch.equal(foreground_mask(component), centre)
    assert torch.equal(foreground_mask(1 - component), centre)  # the axis turned the other way: same foreground
    with pytest.raises(ValueError, match="threshold"):
        foreground_mask(component, 1.5)


# --- norms and registers -------------------------------------------------------------------------------------

def test_norm_outliers_follow_median_plus_k_robust_deviations():
    assert norm_outliers(torch.tensor([1.0, 1.0, 1.0, 1.0, 10.0])).tolist() == [False] * 4 + [True]
    rng = np.random.default_rng(4)
    norms = rng.normal(10, 1, (3, 50))
    norms[0, 7], norms[2, [3, 30]] = 40, (25, 16)
    median = np.median(norms, axis=1, keepdims=True)
    mad = np.median(np.abs(norms - median), axis=1, keepdims=True)
    expected = norms > median + 4 * 1.4826 * mad
    assert np.array_equal(norm_outliers(torch.tensor(norms), k=4).numpy(), expected)
    assert expected[0, 7] and expected[2, 3] and expected[2, 30] and expected.sum() == 3


def test_class_attention_rows_and_the_outlier_share_in_the_next_block():
    g = torch.Generator().manual_seed(0)
    attentions = [torch.randn(2, 3, 6, 6, generator=g).softmax(dim=-1) for _ in range(3)]
    rows = class_attention(attentions)
    assert rows.shape == (2, 3, 3, 6)
    assert torch.equal(rows[1, 2, 0], attentions[2][1, 0, 0])
    no_class = class_attention(attentions, num_prefix_tokens=2, has_class_token=False)
    assert torch.allclose(no_class[0, 1, 2], attentions[1][0, 2, 2:].mean(dim=0))

    outliers = torch.zeros(2, 3, 6, dtype=torch.bool)
    outliers[0, 0, [2, 4]] = True
    outliers[1, 1, 5] = True
    outliers[1, 2, 1] = True  # after the last block: no block reads it
    share = outlier_attention_share(rows.mean(dim=2), outliers)
    assert share.shape == (2, 2)
    # flagged after block 0, read by block 1; flagged after block 1, read by block 2
    assert share[0, 0] == pytest.approx((attentions[1][0, :, 0, 2] + attentions[1][0, :, 0, 4]).mean().item(), abs=1e-6)
    assert share[1, 1] == pytest.approx(attentions[2][1, :, 0, 5].mean().item(), abs=1e-6)
    assert share[0, 1] == 0 and share[1, 0] == 0
    with pytest.raises(ValueError, match="class token"):
        class_attention(attentions, num_prefix_tokens=0)


# --- head knock-out ---------------------------------------------------------------------------------------------

def hand_knockout(model, x, target, mode):
    """Every (layer, head) by a full forward written out with that head's slice edited."""
    with torch.no_grad():
        _, intact = hand_states(model, x)
        base = intact.softmax(dim=-1)[0, target]
        out = torch.zeros(len(model.blocks), 4)
        logit = torch.zeros_like(out)
        for layer in range(len(model.blocks)):
            for head in range(4):
                _, knocked = hand_states(model, x, (layer, head), mode)
                out[layer, head] = knocked.softmax(dim=-1)[0, target] - base
                logit[layer, head] = knocked[0, target] - intact[0, target]
    return out, logit


@pytest.mark.parametrize("name", [*SHAPES, "distilled"])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_knockout_equals_a_hand_written_forward_with_the_heads_slice_edited(name, mode):
    model = model_named(name)
    x = images_for(model, seed=1)
    effects = head_knockout_effects(model, x, 2, mode)
    expected, expected_logit = hand_knockout(model, x, 2, mode)
    assert effects.probability.shape == (3, 4)
    assert torch.allclose(effects.probability, expected, atol=1e-5)
    assert torch.allclose(effects.logit, expected_logit, atol=1e-4)
    assert effects.probability.abs().max() > 1e-3  # the knock-outs change something
    assert torch.allclose(head_knockout(model, x, 2, mode), expected, atol=1e-5)


def test_knockout_reports_progress_and_leaves_the_model_as_found():
    model = tiny_vit()
    x = images_for(model)
    before = model(x)
    seen = []
    head_knockout(model, x, 0, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 3
    assert all(not block._forward_pre_hooks and not block.attn.proj._forward_pre_hooks for block in model.blocks)
    assert torch.equal(model(x), before)


def test_a_pass_from_another_thread_during_a_knockout_is_not_edited():
    """Streamlit serves every session from one model: another session's forward must see every head."""
    model = tiny_vit()
    x = images_for(model)
    with torch.no_grad():
        intact = model(x)
    seen, started = [], []

    def other_session(_module, _args):
        if not started:  # once: the other session's own pass comes through here too
            started.append(True)
            worker = threading.Thread(target=lambda: seen.append(model(x)))
            worker.start()
            worker.join()

    handle = model.blocks[0].attn.register_forward_pre_hook(other_session)  # runs while the knock-out hook is on
    try:
        head_knockout(model, x, 0)
    finally:
        handle.remove()
    assert len(seen) == 1 and torch.allclose(seen[0], intact, atol=1e-6)


def test_knockout_refuses_a_batch_and_a_bad_mode():
    model = tiny_vit()
    with pytest.raises(ValueError, match="one image"):
        head_knockout(model, images_for(model, batch=2), 0)
    with pytest.raises(ValueError, match="mode must be"):
        head_knockout(model, images_for(model), 0, mode="noise")
    with pytest.raises(ValueError, match="out of range"):
        head_knockout(model, images_for(model), 7)


def test_rank_correlation_by_hand():
    assert rank_correlation(torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 20, 40, 30])) == pytest.approx(0.8)
    # ties share their mean rank: ranks (1.5, 1.5, 3) and (1, 2, 3)
    assert rank_correlation(torch.tensor([1.0, 1, 2]), torch.tensor([1.0, 2, 3])) == pytest.approx(0.8660254, abs=1e-6)
    assert np.isnan(rank_correlation(torch.ones(2, 2), torch.rand(2, 2)))
