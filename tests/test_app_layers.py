"""The Layers view driven as a user drives it (AppTest, no browser), its figures checked against the library."""

import re

import pytest
import streamlit as st
import torch
from timm.models.vision_transformer import VisionTransformer

from apptest import chart_specs, chart_titles, open_page
from vitviz import inside
from vitviz.attention import attention_flow, capture, class_map, rollout
from vitviz.inputs import model_input
from vitviz.models import load_model
from vitviz.samples import PHOTO_NAMES, load_sample

FIVE_MB = 5 * 1024 * 1024


def chart(at, title_start: str) -> dict:
    for spec in chart_specs(at):
        if (spec["layout"].get("title") or {}).get("text", "").startswith(title_start):
            return spec
    raise AssertionError(f"no chart titled {title_start!r} in {chart_titles(at)}")


def overlay_heat(at, title_start: str) -> torch.Tensor:
    """The map of an overlay (image, heatmap, markers): its heatmap trace."""
    return torch.tensor(chart(at, title_start)["data"][1]["z"], dtype=torch.float64)


@pytest.fixture
def passes(monkeypatch):
    """Every forward pass and every recorded forward of any timm ViT while the test runs."""
    calls = []
    forward, intermediates = VisionTransformer.forward, VisionTransformer.forward_intermediates

    def counting_forward(self, *args, **kwargs):
        calls.append("forward")
        return forward(self, *args, **kwargs)

    def counting_intermediates(self, *args, **kwargs):
        calls.append("intermediates")
        return intermediates(self, *args, **kwargs)

    monkeypatch.setattr(VisionTransformer, "forward", counting_forward)
    monkeypatch.setattr(VisionTransformer, "forward_intermediates", counting_intermediates)
    st.cache_data.clear()
    return calls


def test_every_figure_is_the_librarys_and_a_block_change_runs_no_model(passes):
    at = open_page("layers", model="starter-shapes", sample="chelsea")
    assert not at.exception and not at.error, (at.exception, at.error)
    # one recorded pass for the lens, colours and norms; one for the flow's attention; one intact pass of the knock-out
    assert sorted(passes) == ["forward", "forward", "intermediates"]
    model = load_model("starter-shapes", device="cpu")
    x = model_input(load_sample("chelsea"), model)

    lens = inside.logit_lens(model, x)[0]  # (4, 4)
    curves = chart(at, "Logit lens")["data"]
    final = int(lens[-1].argmax())
    assert curves[0]["name"].endswith(f"({final})")
    for trace in curves:
        c = int(re.search(r"\((\d+)\)$", trace["name"]).group(1))
        assert torch.allclose(torch.tensor(trace["y"], dtype=torch.float32), lens[:, c], atol=1e-5)

    record = inside.record_blocks(model, x)
    classes, _ = inside.patch_lens(model, record.tokens)
    hover = chart(at, "After block 4: the class each patch is read as")["data"][2]["text"]
    assert [int(re.search(r" \((\d+)\), p = ", h).group(1)) for h in hover] == classes[0, -1].tolist()

    colours = inside.token_pca(record.tokens[0, -1, 1:], 3).reshape(8, 8, 3)
    pixels = torch.tensor(chart(at, "Block 4: principal components")["data"][0]["z"], dtype=torch.float32)  # (64, 64, 3)
    centres = pixels[4::8, 4::8]  # one pixel per 8-pixel patch
    assert torch.allclose(centres, (colours * 255).round(), atol=1)

    norms = chart(at, "Token norms after every block")["data"][0]["z"]
    assert torch.allclose(torch.tensor(norms), inside.token_norms(model, x)[0], atol=1e-3)

    _, attentions = capture(model, x)
    flow = attention_flow(attentions, (8, 8))[0]
    assert torch.allclose(overlay_heat(at, "Attention flow to the class token"), flow, atol=1e-6)
    rolled = class_map(rollout(attentions), (8, 8), 1, True)[0]
    rho = inside.rank_correlation(flow, rolled)
    assert chart(at, "Flow against rollout")["layout"]["title"]["text"].endswith(f"Spearman ρ = {rho:.3f}")

    knockout = inside.head_knockout(model, x, final)
    assert torch.allclose(torch.tensor(chart(at, "Change in p(")["data"][0]["z"]), knockout, atol=1e-5)

    passes.clear()
    at.slider(key="lay_layer").set_value(2).run()
    assert not at.exception and passes == []  # everything re-read from the cached pass and maps
    classes_2 = [int(re.search(r" \((\d+)\), p = ", h).group(1))
                 for h in chart(at, "After block 2: the class each patch is read as")["data"][2]["text"]]
    assert classes_2 == classes[0, 1].tolist()
    assert "Block 2: principal components" in " ".join(chart_titles(at))


def test_a_click_on_the_knockout_map_shows_that_blocks_and_heads_attention():
    at = open_page("layers", model="starter-shapes", sample="coffee")
    assert not at.exception
    at.session_state["lay_pending"] = (1, 2)  # what a click on block 2, head 3 stores
    at.run()
    assert not at.exception
    head_box = next(box for box in at.selectbox if box.label == "Head")
    assert at.slider(key="lay_layer").value == 2 and head_box.value == 3
    model = load_model("starter-shapes", device="cpu")
    _, attentions = capture(model, model_input(load_sample("coffee"), model))
    expected = attentions[1][0, 2, 0, 1:].reshape(8, 8).double()
    assert torch.allclose(overlay_heat(at, "Block 2, head 3: attention of the class token"), expected, atol=1e-6)
    selected = chart(at, "Change in p(")["layout"]["shapes"][0]
    assert (selected["x0"], selected["y0"]) == (2.5, 1.5)  # the cell of head 3, block 2 is outlined


def test_colours_fitted_with_the_sample_photos_are_the_pca_of_all_their_patch_tokens():
    at = open_page("layers", model="starter-shapes", sample="astronaut")
    at.radio(key="lay_pca_fit").set_value(at.radio(key="lay_pca_fit").options[1]).run()
    assert not at.exception
    model = load_model("starter-shapes", device="cpu")
    tokens = [inside.record_blocks(model, model_input(load_sample(name), model), attention=False).tokens[0, -1, 1:]
              for name in ("astronaut", *PHOTO_NAMES)]
    expected = inside.token_pca(tokens[0], 3, fit_on=torch.cat(tokens)).reshape(8, 8, 3)  # the SVD of them all
    pixels = torch.tensor(chart(at, "Block 4: principal components")["data"][0]["z"], dtype=torch.float32)
    assert torch.allclose(pixels[4::8, 4::8], (expected * 255).round(), atol=1)


def test_registers_are_named_and_a_large_grids_flow_waits_to_be_asked():
    """vit_small_patch14_reg4_dinov2: 4 registers, 37x37 patches, no classifier head."""
    at = open_page("layers", model="random:vit_small_patch14_reg4_dinov2", sample="rocket")
    assert not at.exception and not at.error
    ticks = chart(at, "Token norms after every block")["layout"]["xaxis"]["ticktext"]
    assert ticks[:5] == ["CLS", "REG1", "REG2", "REG3", "REG4"]
    assert any("REG1" in m.value and "REG4" in m.value for m in at.markdown)
    infos = " ".join(i.value for i in at.info)
    assert "no classification head" in infos and "37x37 grid is slow" in infos
    assert "Attention flow to the class token" not in " ".join(chart_titles(at))
    assert at.toggle[0].label.startswith("Compute the attention flow: 1,369 maximum-flow problems")
    sizes = [len(c.proto.spec) for c in at.get("plotly_chart")]
    assert max(sizes) < FIVE_MB, sizes


def _tiny(folder, name, **arch_overrides) -> str:
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = {**dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3), **arch_overrides}
    torch.manual_seed(0)
    save_checkpoint(create_vit(arch), folder / name, dict(name=name, kind="classifier", architecture=arch,
                                                          class_names=["ant", "bee", "cat"]))
    return name


def test_a_model_with_a_register_and_no_class_token_reads_the_patch_queries(tmp_path, monkeypatch):
    name = _tiny(tmp_path, "tiny-gap", class_token=False, reg_tokens=1, global_pool="avg")
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("layers", model=name, sample="coffee")
    assert not at.exception and not at.error, (at.exception, at.error)
    titles = " ".join(chart_titles(at))
    for part in ("Rollout, mean of the patch queries", "Attention flow to the patch tokens (mean)",
                 "attention of the patch queries (mean)", "Change in p("):
        assert part in titles, (part, titles)
    model = load_model(name, device="cpu")
    _, attentions = capture(model, model_input(load_sample("coffee"), model))
    flow = attention_flow(attentions, (4, 4), num_prefix_tokens=1, has_class_token=False)[0]
    assert torch.allclose(overlay_heat(at, "Attention flow to the patch tokens"), flow, atol=1e-6)


def test_many_heads_are_knocked_out_only_when_asked(tmp_path, monkeypatch):
    name = _tiny(tmp_path, "tiny-many-heads", depth=9, num_heads=8)  # 72 heads
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("layers", model=name, sample="coffee")
    assert not at.exception
    assert not any(t.startswith("Change in p(") for t in chart_titles(at))
    toggle = next(t for t in at.toggle if t.label.startswith("Knock out all 72 heads"))
    toggle.set_value(True).run()
    assert not at.exception
    model = load_model(name, device="cpu")
    x = model_input(load_sample("coffee"), model)
    target = int(model(x)[0].argmax())
    expected = inside.head_knockout(model, x, target)
    assert torch.allclose(torch.tensor(chart(at, "Change in p(")["data"][0]["z"]), expected, atol=1e-6)
