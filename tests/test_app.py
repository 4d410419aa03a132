"""The Home, Patches and Positions views driven as a user drives them (AppTest, no browser)."""

import pytest
import torch
from streamlit.testing.v1 import AppTest

from apptest import APP, chart_specs, chart_titles, open_page, png_bytes

MODEL = "random:vit_tiny_patch16_224"


def test_home_shows_the_model_card():
    at = open_page("home", model=MODEL)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patch grid"] == "14 x 14" and metrics["Input"] == "224 x 224 px"
    assert metrics["Parameters"] == "5.72 M"
    assert any("random weights" in w.value for w in at.warning)


def _first_run(**state) -> AppTest:
    """The app's first run (Home), the one whose sidebar AppTest keeps, with ``state`` set before it."""
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_the_sidebar_warns_about_the_model_and_shows_the_image_as_the_model_sees_it():
    at = _first_run(model_choice="vit_tiny_patch16_224 (random init)", sample_name="chelsea")
    assert not at.exception
    warnings = [w.value for w in at.sidebar.warning]
    assert warnings == ["This model has random weights, as chosen (random init): its predictions and maps show an "
                        "untrained network."]
    preview = at.sidebar.get("image")[0]
    assert preview.proto.imgs[0].caption == "As the model sees it: 224x224 px, from 451x300"
    from vitviz.samples import load_sample

    assert load_sample("chelsea").size == (451, 300)


def test_the_app_opens_on_starter_shapes_with_no_warning():
    from vitviz.registry import DEFAULT_MODEL, find_checkpoint

    if find_checkpoint(DEFAULT_MODEL) is None:
        pytest.skip("the starter models are not installed")
    at = _first_run()
    assert at.sidebar.selectbox(key="model_choice").value == "starter-shapes (classifier)"
    assert not at.sidebar.warning
    assert at.sidebar.get("image")[0].proto.imgs[0].caption == "As the model sees it: 64x64 px, from 512x512"


@pytest.mark.parametrize("image", ["upload", "sample"])
def test_patches_draws_the_models_grid(image):
    kwargs = dict(upload=("tiny.png", png_bytes())) if image == "upload" else dict(sample="chelsea")
    at = open_page("patches", model=MODEL, **kwargs)
    assert not at.exception and not at.error
    assert ("tiny.png" if image == "upload" else "chelsea") in at.caption[0].value
    grid = chart_specs(at)[0]
    lines = [s for s in grid["layout"]["shapes"] if s["type"] == "line"]
    horizontal = {s["y0"] for s in lines if s["y0"] == s["y1"]}
    vertical = {s["x0"] for s in lines if s["x0"] == s["x1"]}
    assert len(horizontal) == 15 and len(vertical) == 15  # a 14x14 grid of 16 px patches
    assert sorted(horizontal)[1] - sorted(horizontal)[0] == 16
    markers = grid["data"][1]
    assert len(markers["customdata"]) == 196


def test_choosing_a_patch_shows_its_vector():
    at = open_page("patches", model=MODEL, sample="astronaut")
    at.number_input(key="patch_index").set_value(0).run()
    assert "Patch **0** sits at row 0, column 0" in " ".join(m.value for m in at.markdown)
    vector = chart_specs(at)[1]
    values = [y for trace in vector["data"] for y in trace["y"]]
    assert len(values) == 3 * 16 * 16
    # the vector is the top-left patch of the image the model sees (timm's own evaluation transform), channel first
    import timm
    from timm.data import create_transform, resolve_data_config

    from vitviz.samples import load_sample

    config = resolve_data_config({}, model=timm.create_model(MODEL.removeprefix("random:")))
    seen = create_transform(**config, is_training=False, normalize=False)(load_sample("astronaut")).float() / 255
    patch = seen[:, :16, :16].reshape(-1)
    assert torch.allclose(torch.tensor(values), patch, atol=1e-6)


def test_a_file_that_is_not_an_image_gets_a_clear_message():
    at = open_page("patches", model=MODEL, upload=("notes.png", b"this is text, not pixels" * 10))
    assert not at.exception
    assert "notes.png** cannot be used: This file is not an image" in at.error[0].value


def test_a_missing_weights_file_gets_a_clear_message(tmp_path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["model_choice"] = "A local weights file…"
    at.session_state["weights_path"] = str(tmp_path / "nothing.safetensors")
    at.run()
    assert not at.exception
    assert "Could not load model" in at.error[0].value and "No file at" in at.error[0].value


def test_positions_learned_and_sincos():
    at = open_page("positions", model=MODEL, sample="rocket")
    assert not at.exception
    titles = chart_titles(at)
    assert len(titles) == 5 and "resampled to 28x28" in titles[-1]
    learned = chart_specs(at)[0]["data"][0]["z"]
    # tile (0, 0) of the grid: position (0, 0) against itself is 1
    assert abs(learned[0][0] - 1.0) < 1e-6


def test_positions_on_a_model_without_position_embeddings(tmp_path, monkeypatch):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=0, pos_embed="none")
    save_checkpoint(create_vit(arch, jigsaw_grid=(4, 4)), tmp_path / "tiny-jigsaw",
                    dict(name="tiny-jigsaw", kind="jigsaw", architecture=arch, jigsaw=dict(grid=[4, 4])))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("positions", model="tiny-jigsaw", sample="rocket")
    assert not at.exception
    assert "has no learned positional embeddings" in at.info[0].value
    assert len(chart_titles(at)) == 2  # the sin-cos table only


def test_a_shapes_item_as_the_image():
    from vitviz.data import SHAPES_CLASSES, shapes_item

    at = open_page("patches", model=MODEL, shapes_index=6)
    assert not at.exception
    assert f"shapes test item 6 (a {SHAPES_CLASSES[shapes_item(6, 224)[1]]})" in at.caption[0].value
    assert "a 14x14 grid of 16x16 patches" in at.caption[0].value


def test_home_card_names_the_classes_and_tabulates_recorded_metrics(tmp_path, monkeypatch):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=3)
    metrics = {"val": {"accuracy": 0.5, "loss": 1.25}, "test": {"accuracy": 0.375, "loss": 1.5}}
    save_checkpoint(create_vit(arch), tmp_path / "tiny-abc",
                    dict(name="tiny-abc", kind="classifier", architecture=arch, class_names=["ant", "bee", "cat"],
                         metrics=metrics))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("home", model="tiny-abc")
    assert not at.exception
    assert any("| Classes | 3: ant, bee, cat |" in m.value for m in at.markdown)
    card_table = next(m.value for m in at.markdown if "| Classes |" in m.value)
    assert card_table.strip().splitlines()[0] == "| About | tiny-abc |"  # a header that says something
    table = at.table[0].value
    assert table.loc["test", "accuracy"] == 0.375 and table.loc["val", "loss"] == 1.25


FIVE_MB = 5 * 1024 * 1024


def test_positions_at_a_37x37_grid_sends_bounded_figures():
    """vit_small_patch14_reg4_dinov2 (37x37 patches, 4 registers): no chart over 5 MB of JSON, the grid of maps strided."""
    at = open_page("positions", model="random:vit_small_patch14_reg4_dinov2", sample="rocket")
    assert not at.exception
    sizes = [len(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(sizes) == 5 and max(sizes) < FIVE_MB, sizes
    titles = chart_titles(at)
    assert titles[0].endswith("(one tile per 3x3 block of the 37x37 positions)")  # 37 tiles of 38 cells: strided
    at.slider(key="pos_new_rows").set_value(74).run()  # the largest resampling offered: 74x74, 30 M similarities
    assert not at.exception
    sizes = [len(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert max(sizes) < FIVE_MB and "37x37 resampled to 74x74" in chart_titles(at)[-1]


def test_a_non_square_grid_is_resampled_to_a_non_square_grid(tmp_path, monkeypatch):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = dict(img_size=[32, 64], patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=2)
    save_checkpoint(create_vit(arch), tmp_path / "wide", dict(name="wide", kind="classifier", architecture=arch,
                                                              class_names=["a", "b"]))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("positions", model="wide", sample="rocket")
    assert not at.exception
    assert "4x8 resampled to 8x16" in chart_titles(at)[-1]
    at.slider(key="pos_new_rows").set_value(6).run()
    assert "4x8 resampled to 6x12" in chart_titles(at)[-1]


def test_an_eight_by_eight_grid_is_an_eight_by_eight_grid(tmp_path, monkeypatch):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = dict(img_size=64, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=2)
    save_checkpoint(create_vit(arch), tmp_path / "eights", dict(name="eights", kind="classifier", architecture=arch,
                                                                class_names=["a", "b"]))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("patches", model="eights", sample="rocket")
    assert "resized and centre-cropped to 64x64 px: an 8x8 grid of 8x8 patches" in at.caption[0].value
