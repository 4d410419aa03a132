"""Attention flow against networkx's maximum flow on small hand-built layered graphs, and by hand."""

import networkx as nx
import pytest
import torch

from vitviz.attention import attention_flow, attention_flow_size


def random_attentions(layers, batch, heads, tokens, seed):
    """L tensors [B, H, N, N] of positive rows summing to 1, some entries near zero (peaked softmax)."""
    g = torch.Generator().manual_seed(seed)
    return [(4 * torch.randn(batch, heads, tokens, tokens, generator=g, dtype=torch.float64)).softmax(dim=-1)
            for _ in range(layers)]


def networkx_flow(attentions, item, source_token, sink_token):
    """The definition written out: nodes (boundary, token); edge (l, j) -> (l+1, i) of capacity A_l[i, j] with
    A_l = 0.5 * mean over heads + 0.5 * I, rows renormalised; networkx's maximum flow from (0, source) to (L, sink)."""
    graph = nx.DiGraph()
    for layer, attention in enumerate(attentions):
        heads = attention[item]  # (H, N, N)
        n = heads.shape[-1]
        for i in range(n):
            row = [0.5 * sum(heads[h, i, j].item() for h in range(heads.shape[0])) / heads.shape[0]
                   + (0.5 if i == j else 0.0) for j in range(n)]
            total = sum(row)
            for j in range(n):
                graph.add_edge((layer, j), (layer + 1, i), capacity=row[j] / total)
    return nx.maximum_flow_value(graph, (0, source_token), (len(attentions), sink_token))


@pytest.mark.parametrize("layers,tokens,prefix,seed", [(1, 5, 1, 0), (2, 5, 1, 1), (3, 7, 1, 2), (3, 6, 2, 3), (4, 5, 1, 4)])
def test_flow_to_the_class_token_matches_networkx(layers, tokens, prefix, seed):
    attentions = random_attentions(layers, batch=2, heads=3, tokens=tokens, seed=seed)
    grid = (1, tokens - prefix)
    flow = attention_flow(attentions, grid, num_prefix_tokens=prefix)
    assert flow.shape == (2, *grid)
    for item in range(2):
        for patch in range(tokens - prefix):
            expected = networkx_flow(attentions, item, prefix + patch, 0)
            assert flow[item, 0, patch].item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("prefix", [0, 2])
def test_with_no_class_token_each_patch_gets_its_mean_flow_to_the_patch_tokens(prefix):
    attentions = random_attentions(layers=2, batch=1, heads=2, tokens=prefix + 4, seed=5)
    flow = attention_flow(attentions, (2, 2), num_prefix_tokens=prefix, has_class_token=False)
    for patch in range(4):
        expected = sum(networkx_flow(attentions, 0, prefix + patch, prefix + t) for t in range(4)) / 4
        assert flow[0].flatten()[patch].item() == pytest.approx(expected, abs=1e-4)


def test_one_layer_by_hand_is_the_class_tokens_mixed_attention():
    attentions = random_attentions(layers=1, batch=1, heads=2, tokens=5, seed=6)
    mixed = 0.5 * attentions[0][0].mean(dim=0) + 0.5 * torch.eye(5, dtype=torch.float64)
    flow = attention_flow(attentions, (2, 2))
    # one edge from patch j to the class token, nothing else
    assert torch.allclose(flow[0].flatten(), mixed[0, 1:], atol=1e-8)


def test_two_layers_by_hand_two_disjoint_paths():
    # class token and one patch; identical layers with A = [[0.6, 0.4], [0.2, 0.8]], so mixed = [[0.8, 0.2], [0.1, 0.9]]
    a = torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64).view(1, 1, 2, 2)
    flow = attention_flow([a, a], (1, 1))
    # an edge (j -> i) has capacity mixed[i, j]. patch -> patch -> class: min(0.9, 0.2);
    # patch -> class -> class: min(0.2, 0.8); the two paths share no edge
    assert flow.item() == pytest.approx(0.2 + 0.2, abs=1e-8)


def test_flow_is_at_most_one_and_progress_reaches_the_end():
    attentions = random_attentions(layers=3, batch=2, heads=2, tokens=5, seed=7)
    seen = []
    flow = attention_flow(attentions, (2, 2), progress=seen.append)
    assert (flow >= 0).all() and (flow <= 1 + 1e-8).all()
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 2 * 4


def test_flow_refuses_a_grid_that_does_not_fit_and_a_class_token_with_no_prefix():
    attentions = random_attentions(layers=1, batch=1, heads=1, tokens=5, seed=8)
    with pytest.raises(ValueError, match="1 prefix tokens and a 3x3 grid"):
        attention_flow(attentions, (3, 3))
    with pytest.raises(ValueError, match="class token needs"):
        attention_flow(random_attentions(1, 1, 1, 4, 9), (2, 2), num_prefix_tokens=0, has_class_token=True)


def test_flow_size_counts_problems_times_edges():
    assert attention_flow_size(12, (14, 14)) == 196 * 12 * 197 * 197
    assert attention_flow_size(2, (2, 2), num_prefix_tokens=0, has_class_token=False) == 16 * 2 * 4 * 4
