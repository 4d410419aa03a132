"""The seam loss: its targets against a loop over the grid, its value against a loop over the tokens, and a
pretraining run that learns it and saves a plain jigsaw checkpoint."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from training.config import PretrainConfig
from training.seams import SeamHead, seam_targets
from vitviz.jigsaw import shuffle_permutation
from vitviz.models import load_model


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _targets_by_loop(permutation, rows, cols):
    n = rows * cols
    right, below = torch.full_like(permutation, n), torch.full_like(permutation, n)
    for b in range(permutation.shape[0]):
        for k in range(n):
            r, c = divmod(int(permutation[b, k]), cols)
            for j in range(n):
                if c + 1 < cols and int(permutation[b, j]) == r * cols + c + 1:
                    right[b, k] = j
                if r + 1 < rows and int(permutation[b, j]) == (r + 1) * cols + c:
                    below[b, k] = j
    return right, below


@pytest.mark.parametrize("grid", [(3, 4), (1, 5), (4, 1), (7, 7)])
def test_the_neighbour_targets_match_a_loop_over_the_grid(grid):
    permutation = shuffle_permutation(grid[0] * grid[1], torch.Generator().manual_seed(3), batch_size=5)
    for got, want in zip(seam_targets(permutation, grid), _targets_by_loop(permutation, *grid)):
        assert torch.equal(got, want)


def test_the_neighbour_targets_refuse_a_grid_of_another_size():
    with pytest.raises(ValueError, match="3x3 grid has 9 positions"):
        seam_targets(torch.arange(8)[None], (3, 3))


def test_the_seam_loss_is_the_mean_cross_entropy_of_both_relations():
    torch.manual_seed(0)
    head, tokens = SeamHead(16, dim=8), torch.randn(2, 6, 16)
    permutation = shuffle_permutation(6, torch.Generator().manual_seed(1), batch_size=2)
    right, below = _targets_by_loop(permutation, 2, 3)
    weight, bias = head.proj.weight.detach(), head.proj.bias.detach()
    total = 0.0
    for b in range(2):
        for k in range(6):
            projected = [tokens[b, t] @ weight.T + bias for t in range(6)]
            for which, target in ((0, right), (1, below)):
                query = projected[k][16 * which:16 * which + 8]
                scores = [float(query @ projected[j][16 * which + 8:16 * which + 16]) / math.sqrt(8)
                          for j in range(6) if j != k]
                none = float(head.edge(tokens[b, k])[which].detach())
                others = [j for j in range(6) if j != k]
                index = others.index(int(target[b, k])) if int(target[b, k]) < 6 else len(others)
                total += -F.log_softmax(torch.tensor(scores + [none]), dim=0)[index].item()
    assert head(tokens, permutation, (2, 3)).item() == pytest.approx(total / (2 * 6 * 2), rel=1e-5)


def test_pretraining_with_the_seam_loss_logs_it_and_saves_the_jigsaw_model_alone(tmp_path):
    from training.train import train

    common = dict(out_dir=str(tmp_path / "models"), run_dir=str(tmp_path / "runs"), data="procedural", model="micro",
                  image_size=16, patch_size=4, batch_size=32, eval_images=32, log_every=5, threads=1, device="cpu",
                  steps=40, eval_every=20, lr=3e-3)
    train(PretrainConfig(name="seam", seam_loss=1.0, **common))
    train(PretrainConfig(name="plain", **common))
    rows = [json.loads(line) for line in (tmp_path / "runs/seam/metrics.jsonl").read_text().splitlines()]
    seam = [r["seam_loss"] for r in rows if r["split"] == "train"]
    assert len(seam) == 8 and seam[-1] < math.log(17) - 0.3  # 16 tokens and "none": ln 17 at the start
    plain = [json.loads(line) for line in (tmp_path / "runs/plain/metrics.jsonl").read_text().splitlines()]
    assert all("seam_loss" not in r for r in plain)
    weights = [load_file(str(tmp_path / f"models/{n}.safetensors")) for n in ("seam", "plain")]
    assert sorted(weights[0]) == sorted(weights[1])  # the seam head is not saved
    assert not torch.equal(weights[0]["jigsaw_head.weight"], weights[1]["jigsaw_head.weight"])
    card = json.loads((tmp_path / "models/seam.json").read_text())
    assert card["training"]["config"]["seam_loss"] == 1.0
    assert load_model(Path(tmp_path / "models/seam.safetensors"), device="cpu").card.jigsaw_grid == (4, 4)
    state = torch.load(tmp_path / "runs/seam/resume.pt", weights_only=True)
    assert set(state["seam"]) == {"proj.weight", "proj.bias", "edge.weight", "edge.bias"}
