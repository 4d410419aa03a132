"""The Attributions view driven as a user drives it (AppTest, no browser)."""

import numpy as np
import pytest
import streamlit as st
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

from ui import cache as ui_cache
from apptest import chart_specs, open_page
from vitviz import faithfulness
from vitviz.attributions import METHODS
from vitviz.checkpoints import save_checkpoint
from vitviz.inputs import model_input
from vitviz.models import create_vit, load_model

NAME = "tiny-shapes"


@pytest.fixture
def tiny_shapes(tmp_path, monkeypatch):
    """A 32 px shapes classifier (random weights, logits spread out) in the model picker."""
    from vitviz.data import SHAPES_CLASSES

    torch.manual_seed(0)
    arch = dict(img_size=32, patch_size=8, num_classes=4, embed_dim=32, depth=2, num_heads=2)
    model = create_vit(arch)
    with torch.no_grad():
        model.head.weight.mul_(40)
    weights = save_checkpoint(model, tmp_path / NAME, dict(name=NAME, kind="classifier", architecture=arch,
                                                           class_names=list(SHAPES_CLASSES)))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    st.cache_data.clear()
    ui_cache.clear_bounded()
    return load_model(weights, device="cpu")


def shapes_inputs(model, index):
    """The shapes test item as the page makes it: drawn at the model's size, through 8-bit pixels."""
    from vitviz.data import shapes_item

    pixels, label, mask = shapes_item(index, 32)
    image = Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    return model_input(image, model), mask


def chart(at, title_start):
    for spec in chart_specs(at):
        texts = [(spec["layout"].get("title") or {}).get("text", "")]
        texts += [a.get("text", "") for a in spec["layout"].get("annotations", [])]
        if any(t.startswith(title_start) for t in texts):
            return spec
    raise AssertionError(f"no chart with a title starting {title_start!r}")


def test_maps_on_one_scale_curves_and_localization_on_a_shapes_item(tiny_shapes):
    at = open_page("attributions", model=NAME, shapes_index=2)
    assert not at.exception and not at.error
    inputs, mask = shapes_inputs(tiny_shapes, 2)
    with torch.no_grad():
        target = int(tiny_shapes(inputs)[0].argmax())
    assert at.selectbox(key="attr_class").value == target  # the top class is explained first

    assert not any("knows only" in c.value for c in at.caption)  # an item of its own data set

    panels = chart(at, "Evidence for")
    heatmaps = [trace for trace in panels["data"] if trace["type"] == "heatmap"]
    # each map over the image at the chosen opacity, and alone beside it
    assert len(heatmaps) == 10 and all(trace["coloraxis"] == "coloraxis" for trace in heatmaps)
    assert [trace["opacity"] for trace in heatmaps[:2]] == [0.8, 1]
    assert (panels["layout"]["coloraxis"]["cmin"], panels["layout"]["coloraxis"]["cmax"]) == (-1, 1)
    assert sum(trace["type"] == "contour" for trace in panels["data"]) == 10  # the mask outlined on every panel
    names = [a["text"] for a in panels["layout"]["annotations"]]
    methods = ["Integrated Gradients", "Saliency", "Occlusion", "Attention rollout", "Relevance"]
    assert names == [title for method in methods for title in (method, f"{method}: map alone")]
    overlays, alone = heatmaps[0::2], heatmaps[1::2]
    occlusion = METHODS["Occlusion"](tiny_shapes).attribute(inputs, target)
    torch.testing.assert_close(torch.tensor(overlays[2]["z"]), occlusion.scaled().patch[0], rtol=1e-4, atol=1e-5)
    relevance = METHODS["Relevance"](tiny_shapes).attribute(inputs, target)
    torch.testing.assert_close(torch.tensor(overlays[4]["z"]), relevance.scaled().patch[0], rtol=1e-4, atol=1e-5)
    assert [trace["z"] for trace in alone] == [trace["z"] for trace in overlays]

    at.slider(key="attr_opacity").set_value(0.3)
    at.checkbox(key="attr_alone").uncheck().run()
    heatmaps = [trace for trace in chart(at, "Evidence for")["data"] if trace["type"] == "heatmap"]
    assert [trace["opacity"] for trace in heatmaps] == [0.3] * 5

    from vitviz.explanation_benchmark import shapes_pixel_mean

    fill = faithfulness.mean_fill(tiny_shapes, shapes_pixel_mean(32))
    deletion = faithfulness.deletion_curve(tiny_shapes, inputs, occlusion.patch, target, steps="decile", fill=fill)
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["Occlusion", "deletion AUC (lower)"] == pytest.approx(deletion.auc.item(), abs=1e-5)
    saliency = METHODS["Saliency"](tiny_shapes).attribute(inputs, target)  # non-negative: its mass is defined
    assert table.loc["Saliency", "mass in mask"] == pytest.approx(
        faithfulness.mass_in_mask(saliency.pixel, mask[None]).item(), abs=1e-5)
    assert set(table["pointing game"]) <= {0.0, 1.0}
    curves = chart(at, "Occlusion<br>deletion AUC")
    assert f"deletion AUC {deletion.auc.item():.3f}" in " ".join(a["text"] for a in curves["layout"]["annotations"])
    assert len([t for t in curves["data"] if t["name"] == "deletion"]) == 5
    # the ends of the curves: the baselines, drawn and marked, with the probability the model gives them
    insertion = faithfulness.insertion_curve(tiny_shapes, inputs, occlusion.patch, target, steps="decile")
    ends = [t for t in curves["data"] if t["name"] in ("deletion baseline", "insertion baseline")]
    assert [(t["x"][0], round(t["y"][0], 4)) for t in ends[:2]] == [
        (1.0, round(deletion.probabilities[0, -1].item(), 4)), (0.0, round(insertion.probabilities[0, 0].item(), 4))]
    assert "neither end is 0" in curves["layout"]["title"]["text"]
    baselines = chart(at, "Where the curves start and end")
    assert [a["text"] for a in baselines["layout"]["annotations"]] == [
        f"the image: p = {deletion.probabilities[0, 0].item():.3f}",
        f"100% deleted: p = {deletion.probabilities[0, -1].item():.3f}",
        f"0% revealed: p = {insertion.probabilities[0, 0].item():.3f}"]
    deleted_pixels = torch.tensor(baselines["data"][1]["z"], dtype=torch.float32)  # the plain fill, in pixels
    expected = torch.tensor(shapes_pixel_mean(32)) * 255
    assert torch.allclose(deleted_pixels.reshape(-1, 3).float().mean(0), expected, atol=0.6)
    assert any("fixed random order (seed 0)" in c.value for c in at.caption)


@pytest.fixture
def forward_calls(monkeypatch):
    calls = []
    original = VisionTransformer.forward

    def counting(self, *args, **kwargs):
        calls.append(args[0].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VisionTransformer, "forward", counting)
    return calls


def test_each_map_is_computed_once(tiny_shapes, forward_calls):
    at = open_page("attributions", model=NAME, sample="rocket")
    assert not at.exception and not at.error
    assert "mass in mask" not in at.dataframe[0].value.columns  # a photo has no object mask
    note = next(c.value for c in at.caption if "knows only" in c.value)  # four shapes, and a photo of a rocket
    assert note.startswith("**tiny-shapes** knows only these 4 classes: circle, square, triangle, star.")
    forward_calls.clear()

    at.radio(key="attr_resolution").set_value("pixels").run()
    assert not at.exception
    assert forward_calls == []  # the maps are cached; only the drawing changed
    heatmaps = [t for t in chart(at, "Evidence for")["data"] if t["type"] == "heatmap"]
    assert np.array(heatmaps[0]["z"]).shape == (32, 32) and np.array(heatmaps[1]["z"]).shape == (32, 32)

    at.multiselect(key="attr_methods").select("Feature ablation").run()
    assert not at.exception
    # Only the new method ran: 1 + 16 ablated copies in two passes, then one pass per curve (11 steps each).
    assert forward_calls == [1, 16, 11, 11]

    at.multiselect(key="attr_methods").set_value([]).run()
    assert any("Pick at least one method" in info.value for info in at.info)


def test_a_new_item_explains_its_own_top_class_again(tiny_shapes):
    at = open_page("attributions", model=NAME, shapes_index=1)
    at.multiselect(key="attr_methods").set_value(["Saliency"]).run()
    ranked = [int(o.split("(")[-1].split(")")[0]) for o in at.selectbox(key="attr_class").options]
    assert at.selectbox(key="attr_class").value == ranked[0]
    at.selectbox(key="attr_class").set_value(ranked[-1]).run()
    assert at.selectbox(key="attr_class").value == ranked[-1]

    at.session_state["shapes_index"] = 2
    at.run()
    assert not at.exception
    ranked = [int(o.split("(")[-1].split(")")[0]) for o in at.selectbox(key="attr_class").options]
    with torch.no_grad():
        probability = tiny_shapes(shapes_inputs(tiny_shapes, 2)[0]).softmax(-1)[0]
    assert at.selectbox(key="attr_class").value == ranked[0] == probability.argmax().item()
