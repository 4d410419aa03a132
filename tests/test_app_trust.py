"""The Trust view driven as a user drives it (AppTest, no browser): its figures against the library."""

import math

import pytest
import torch

from apptest import chart_specs, open_page
from test_app_attributions import NAME, shapes_inputs, tiny_shapes  # noqa: F401  (the fixture)
from vitviz import faithfulness, sanity
from vitviz.attributions import METHODS
from vitviz.explanation_benchmark import shapes_pixel_mean

DEFAULTS = ["Saliency", "Attention rollout", "Relevance", "Grad-CAM", "EigenCAM"]
BASELINES = ["Random (chance)", "Centre bias"]


def chart(at, title_start):
    for spec in chart_specs(at):
        if (spec["layout"].get("title") or {}).get("text", "").startswith(title_start):
            return spec
    raise AssertionError(f"no chart with a title starting {title_start!r}")


def test_randomisation_baselines_road_and_agreement_on_a_shapes_item(tiny_shapes):  # noqa: F811
    at = open_page("trust", model=NAME, shapes_index=1)
    assert not at.exception and not at.error
    inputs, mask = shapes_inputs(tiny_shapes, 1)
    with torch.no_grad():
        target = int(tiny_shapes(inputs)[0].argmax())
    assert at.selectbox(key="trust_class").value == target

    # one line per method, from "trained" (rho = 1) through each cascading step
    curves = chart(at, "Cascading model randomisation")
    assert [trace["name"] for trace in curves["data"]] == DEFAULTS
    cascade = sanity.cascading_randomisation(tiny_shapes, inputs, sanity.method_explainer(METHODS["Grad-CAM"], target))
    grad_cam = curves["data"][3]
    assert grad_cam["customdata"] == ["trained", "head", "head + block 1", "head + blocks 1-0",
                                      "head + blocks 1-0 + embeddings"]
    assert grad_cam["y"] == pytest.approx([1.0, *(rho for _, rho in cascade)], abs=1e-6)
    assert curves["data"][1]["y"][1] == pytest.approx(1.0)  # rollout never reads the head

    # every score beside the random and the centre map, the same numbers as the library's
    table = at.dataframe[0].value.set_index("map")
    assert list(table.index) == DEFAULTS + BASELINES
    fill = faithfulness.mean_fill(tiny_shapes, shapes_pixel_mean(32))
    random = sanity.random_map(1, (4, 4))
    deletion = faithfulness.deletion_curve(tiny_shapes, inputs, random, target, fill=fill)
    assert table.loc["Random (chance)", "deletion AUC (lower is better)"] == pytest.approx(deletion.auc.item(), abs=1e-6)
    centre = sanity.centre_map(1, (4, 4))
    road = faithfulness.road_curve(tiny_shapes, inputs, centre, target, order="lerf")
    assert table.loc["Centre bias", "ROAD LeRF (higher is better)"] == pytest.approx(road.auc.item(), abs=1e-6)
    assert table.loc["Centre bias", "mass in mask (higher is better)"] == pytest.approx(
        faithfulness.mass_in_mask(centre.repeat_interleave(8, 1).repeat_interleave(8, 2), mask.cpu()[None]).item())
    bars = chart_specs(at)[1]
    assert len([t for t in bars["data"] if t["type"] == "bar"]) == 6  # four curves, two localization scores

    # ROAD beside deletion and insertion: four curves per map
    removal = chart(at, "Target probability as patches are deleted, revealed, or removed")
    assert len(removal["data"]) == 4 * 7

    # the agreement matrix: symmetric, 1 on the diagonal
    matrix = torch.tensor(chart(at, "Rank correlation between the maps")["data"][0]["z"], dtype=torch.float64)
    assert matrix.shape == (7, 7)
    torch.testing.assert_close(matrix, matrix.T)
    assert matrix.diagonal().tolist() == pytest.approx([1.0] * 7)


def test_the_independent_variant_and_a_cam_added(tiny_shapes):  # noqa: F811
    """Ablation-CAM: on this random model the gradient CAMs are all zero (nothing survives their ReLU)."""
    at = open_page("trust", model=NAME, shapes_index=0)
    at.multiselect(key="trust_methods").set_value(["Ablation-CAM"]).run()
    at.radio(key="trust_mode").set_value("Independent: one part at a time").run()
    assert not at.exception and not at.error
    curves = chart(at, "Independent model randomisation")
    assert [trace["name"] for trace in curves["data"]] == ["Ablation-CAM"]
    assert curves["data"][0]["customdata"] == ["trained", "head", "block 1", "block 0", "embeddings"]
    inputs, _ = shapes_inputs(tiny_shapes, 0)
    target = at.selectbox(key="trust_class").value
    expected = sanity.independent_randomisation(tiny_shapes, inputs, sanity.method_explainer(METHODS["Ablation-CAM"], target))
    shown = [math.nan if y is None else y for y in curves["data"][0]["y"][1:]]  # a constant map's NaN is sent as null
    assert shown == pytest.approx([rho for _, rho in expected], abs=1e-6, nan_ok=True)
    assert not all(math.isnan(y) for y in shown)
    assert list(at.dataframe[0].value["map"]) == ["Ablation-CAM", *BASELINES]
