"""Each figure's downloads, as a click returns them: what they show (model, image, settings), units and shapes."""

import json

import pytest
import torch
from streamlit.delta_generator import DeltaGenerator

from apptest import chart_specs, open_page

MODEL = "random:vit_tiny_patch16_224"


@pytest.fixture
def downloads(monkeypatch):
    """file name -> the text a click on its download button would return."""
    made = {}
    original = DeltaGenerator.download_button

    def recording(self, label, data, file_name=None, *args, **kwargs):
        made[file_name] = data
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", recording)
    return lambda name: made[name]() if callable(made[name]) else made[name]


def _grid(csv_text: str, array: str) -> list[list[float]]:
    lines = csv_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {array}: shape"))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        rows.append([float(v) for v in line.split(",")])
    return rows


def test_attention_downloads_name_the_model_image_and_query(downloads):
    at = open_page("attention", model=MODEL, sample="coffee")
    at.session_state["att_pending_patch"] = 20
    at.run()
    assert not at.exception
    text = downloads("attention-query.csv")
    header = text.splitlines()[:10]
    for line in ("# vitviz figure: attention-query", f"# model: {MODEL}", "# image: sample photo: coffee",
                 "# layer: 12", "# head: mean of heads", "# query: patch 20"):
        assert line in header, (line, header)
    assert any(line.startswith("# attention: shape [14, 14]; share of the query token's attention")
               for line in text.splitlines())
    heat = next(spec["data"][1]["z"] for spec in chart_specs(at)
                if spec["layout"]["title"]["text"].endswith("attention of patch 20"))
    torch.testing.assert_close(torch.tensor(_grid(text, "attention")), torch.tensor(heat), atol=1e-5, rtol=1e-4)

    predictions = json.loads(downloads("top-predictions.json"))
    assert predictions["about"]["model"] == MODEL and predictions["about"]["image"] == "sample photo: coffee"
    classes = predictions["arrays"]["class"]["values"]
    assert len(classes) == 5 and all(type(c) is int for c in classes)
    from vitviz.models import load_model

    names = load_model(MODEL, device="cpu").card.class_names
    assert predictions["arrays"]["class_name"]["values"] == [names[c] for c in classes]
    assert predictions["arrays"]["probability"]["unit"] == "softmax probability"

    rollout = json.loads(downloads("attention-rollout.json"))
    assert rollout["about"]["head_fusion"] == "mean" and rollout["about"]["layers"] == "1-12"
    assert rollout["arrays"]["rollout"]["shape"] == [14, 14]


def test_the_sincos_table_downloads_as_its_grid(downloads):
    at = open_page("positions", model=MODEL, sample="rocket")
    assert not at.exception
    centre = 7 * 14 + 7
    text = downloads(f"position-similarity-sincos-{centre}.csv")
    assert f"# model: {MODEL}" in text and "# position: [7, 7]" in text
    grid = _grid(text, "similarity")
    assert len(grid) == 14 and all(len(row) == 14 for row in grid) and grid[7][7] == pytest.approx(1.0)
