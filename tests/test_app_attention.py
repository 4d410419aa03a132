"""The Attention view driven as a user drives it (AppTest, no browser)."""

import pytest
import streamlit as st
import torch
from timm.models.vision_transformer import VisionTransformer

from ui import cache as ui_cache
from apptest import chart_specs, chart_titles, open_page
from vitviz.attention import capture, query_map
from vitviz.inputs import model_input
from vitviz.samples import load_sample

MODEL = "random:vit_tiny_patch16_224"
PATCH = "A patch (click the image)"


@pytest.fixture
def forward_calls(monkeypatch):
    """Every forward pass of any timm ViT while the test runs."""
    calls = []
    original = VisionTransformer.forward

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VisionTransformer, "forward", counting)
    st.cache_data.clear()
    ui_cache.clear_bounded()
    return calls


def reference_attentions(model, sample: str):
    """The attentions of the very model the page ran (timm ViTs without cached weights are random)."""
    return capture(model, model_input(load_sample(sample), model))[1]


def overlay_heat(at, title_start: str) -> torch.Tensor:
    for spec in chart_specs(at):
        if (spec["layout"].get("title") or {}).get("text", "").startswith(title_start):
            return torch.tensor(spec["data"][1]["z"])
    raise AssertionError(f"no chart titled {title_start!r} in {chart_titles(at)}")


def test_one_forward_pass_serves_every_query_layer_and_head(forward_calls):
    at = open_page("attention", model=MODEL, sample="coffee")
    assert not at.exception and not at.error
    # one capture, and one forward + backward for the gradient maps of the top class
    assert len(forward_calls) == 2
    attentions = reference_attentions(forward_calls[0], "coffee")
    expected = query_map(attentions[11][0], 0, (14, 14)).mean(dim=0)  # last layer, class token, mean of heads
    assert torch.allclose(overlay_heat(at, "Layer 12, mean of heads: attention of the class token"), expected, atol=1e-5)

    forward_calls.clear()
    # a click on patch 20: the chart's click handler stores the patch, the next run makes it the query
    at.session_state["att_pending_patch"] = 20
    at.run()
    assert not at.exception
    assert at.radio(key="att_query_kind").value == PATCH and at.number_input(key="att_patch").value == 20
    expected = query_map(attentions[11][0], 1 + 20, (14, 14)).mean(dim=0)
    assert torch.allclose(overlay_heat(at, "Layer 12, mean of heads: attention of patch 20"), expected, atol=1e-5)

    at.slider(key="att_layer").set_value(3)
    at.selectbox(key="att_head").set_value(2).run()
    assert not at.exception
    expected = query_map(attentions[2][0], 1 + 20, (14, 14))[1]  # layer 3, head 2
    assert torch.allclose(overlay_heat(at, "Layer 3, head 2: attention of patch 20"), expected, atol=1e-5)
    canvas = torch.tensor([[float("nan") if v is None else v for v in row] for row in chart_specs(at)[2]["data"][0]["z"]])
    filled = ~canvas.isnan().all(dim=0)  # the panels' columns; blank columns separate the heads
    starts = [c for c in range(canvas.shape[1]) if filled[c] and (c == 0 or not filled[c - 1])]
    assert len(starts) == 3
    assert torch.allclose(canvas[:14, starts[1]:starts[1] + 14], expected, atol=1e-5)

    at.slider(key="att_discard").set_value(0.5)
    at.selectbox(key="att_fusion").set_value("max").run()
    at.slider(key="att_mask_t").set_value(0.3).run()
    assert not at.exception
    assert any(t.startswith("Rollout of patch 20, layers 1-12, max of heads, discard 50%") for t in chart_titles(at))
    assert forward_calls == []  # no slider or click ran the model again

    top = at.selectbox(key="att_class").options
    at.selectbox(key="att_class").set_value(int(top[1].split("(")[-1].split(")")[0])).run()
    assert len(forward_calls) == 1  # a new class: one more forward and backward


def test_the_mass_mask_keeps_the_patches_holding_t_of_the_map():
    at = open_page("attention", model=MODEL, sample="chelsea")
    at.slider(key="att_mask_t").set_value(0.5).run()
    heat = overlay_heat(at, "Layer 12, mean of heads").flatten()
    title = next(t for t in chart_titles(at) if "of the mass" in t)
    kept = int(title.split(": ")[1].split(" of ")[0])
    ranked = heat.sort(descending=True).values / heat.sum()
    assert ranked[:kept].sum() >= 0.5 > ranked[:kept - 1].sum()


@pytest.mark.parametrize("name,arch,query_label", [
    ("tiny-avg-registers", dict(class_token=False, reg_tokens=2, global_pool="avg"), "Mean of the patch queries"),
    ("tiny-headless", dict(reg_tokens=3, num_classes=0), "Class token"),
])
def test_models_without_a_class_token_or_a_head(tmp_path, monkeypatch, name, arch, query_label):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = {**dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3), **arch}
    save_checkpoint(create_vit(arch), tmp_path / name, dict(name=name, kind="classifier", architecture=arch,
                                                             class_names=["a", "b", "c"][:arch["num_classes"]]))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("attention", model=name, sample="rocket")
    assert not at.exception and not at.error
    assert at.radio(key="att_query_kind").value == query_label
    assert overlay_heat(at, "Layer 2").shape == (4, 4)
    if arch["num_classes"] == 0:
        assert any("no classification head" in i.value for i in at.info)
        assert not any(t.startswith("Relevance") for t in chart_titles(at))
    else:
        assert any(t.startswith("Relevance: ") for t in chart_titles(at))
        # beside its predictions: three classes cannot describe a photo of a rocket
        assert any(c.value.startswith(f"**{name}** knows only these 3 classes: a, b, c.") for c in at.caption)
    at.radio(key="att_query_kind").set_value(PATCH).run()
    at.number_input(key="att_patch").set_value(0).run()
    assert not at.exception
    assert "attention of patch 0" in chart_titles(at)[0]


def test_a_new_image_explains_its_own_top_class_again():
    at = open_page("attention", model=MODEL, sample="coffee")
    ranked = at.selectbox(key="att_class").options
    assert at.selectbox(key="att_class").value == _class_of(ranked[0])  # the top prediction first
    at.selectbox(key="att_class").set_value(_class_of(ranked[2])).run()
    assert at.selectbox(key="att_class").value == _class_of(ranked[2])
    at.slider(key="att_layer").set_value(2).run()  # another widget: the chosen class stays
    assert at.selectbox(key="att_class").value == _class_of(ranked[2])

    at.session_state["sample_name"] = "rocket"
    at.run()
    assert not at.exception
    ranked = at.selectbox(key="att_class").options
    assert at.selectbox(key="att_class").value == _class_of(ranked[0])
    assert any(t.startswith(f"Gradient rollout: {ranked[0].split(' (')[0]}") for t in chart_titles(at))


def test_a_new_image_starts_the_query_again_in_the_controls_and_the_maps():
    at = open_page("attention", model=MODEL, sample="coffee")
    at.session_state["att_pending_patch"] = 20  # a click on patch 20
    at.run()
    at.slider(key="att_layer").set_value(5).run()
    assert "Layer 5, mean of heads: attention of patch 20" in chart_titles(at)[0]
    at.session_state["sample_name"] = "rocket"
    at.run()
    assert not at.exception
    assert at.radio(key="att_query_kind").value == "Class token" and at.number_input(key="att_patch").value == 7 * 14 + 7
    assert chart_titles(at)[0] == "Layer 5, mean of heads: attention of the class token"  # the layer is kept
    assert any(t.startswith("Rollout of the class token") for t in chart_titles(at))


def _class_of(option: str) -> int:
    return int(option.split("(")[-1].split(")")[0])


def test_a_distilled_model_says_which_token_row_its_maps_read(tmp_path, monkeypatch):
    import timm

    from vitviz.checkpoints import save_checkpoint

    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=2,
                                  num_classes=3).eval()
    path = tmp_path / "tiny-deit.pth"  # a bare weights file: the distillation token is inferred from it
    torch.save(reference.state_dict(), path)
    from streamlit.testing.v1 import AppTest

    from apptest import APP, TIMEOUT

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["model_choice"] = "A local weights file…"  # sidebar choices go in before the first run
    at.session_state["weights_path"] = str(path)
    at.session_state["sample_name"] = "rocket"
    at.run()
    at.switch_page("pages/attention.py").run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "read the **class token's** row" in captions and "distillation token" in captions
    assert "2 prefix token(s)" in captions
