"""The Jigsaw view driven as a user drives it (AppTest, no browser), on tiny checkpoints written here."""

import pytest
import torch

from apptest import chart_specs, chart_titles, open_page, png_bytes

ARCH = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0, pos_embed="none")


@pytest.fixture(autouse=True)
def tiny_models(tmp_path, monkeypatch):
    """``tiny-jigsaw`` (a 4x4 jigsaw head, random weights) and ``tiny-classifier`` (none) in the picker."""
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    torch.manual_seed(0)
    save_checkpoint(create_vit(ARCH, jigsaw_grid=(4, 4)), tmp_path / "tiny-jigsaw",
                    dict(name="tiny-jigsaw", kind="jigsaw", architecture=ARCH, jigsaw=dict(grid=[4, 4])))
    classifier = {**ARCH, "num_classes": 3, "pos_embed": "learn"}
    save_checkpoint(create_vit(classifier), tmp_path / "tiny-classifier",
                    dict(name="tiny-classifier", kind="classifier", architecture=classifier, class_names=["a", "b", "c"]))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))


def _expected(sample: str, seed: int, drop: float = 0.0, k: int = 16, pin: bool = False):
    """What the view should show, computed here from the library: pixels, permutation, both decoders' placements."""
    from vitviz.inputs import model_pixels
    from vitviz.jigsaw import decode_argmax, pin_unmoved, position_logits, shuffle_permutation, solve_batch
    from vitviz.models import load_model
    from vitviz.samples import load_sample

    model = load_model("tiny-jigsaw", device="cpu")
    pixels = model_pixels(load_sample(sample), model)  # (1, 3, 32, 32): the one image-to-model step
    generator = torch.Generator().manual_seed(seed)
    permutation = shuffle_permutation(16, generator, num_shuffled=k, derange=True)
    with torch.no_grad():
        logits = position_logits(model, pixels, permutation, drop_fraction=drop, generator=generator)
    if pin:
        logits = pin_unmoved(logits, permutation)
    return pixels, permutation, decode_argmax(logits), solve_batch(logits)


def _panel(spec: dict, index: int) -> torch.Tensor:
    """Panel ``index`` of the reassembly figure as uint8 pixels [H, W, 3]."""
    images = [trace for trace in spec["data"] if trace["type"] == "image"]
    return torch.tensor(images[index]["z"], dtype=torch.uint8)


def _scores(spec: dict) -> dict[str, dict[str, float]]:
    """The scores figure's bars: {trace name: {decoder: value}}."""
    return {trace["name"]: dict(zip(trace["x"], trace["y"])) for trace in spec["data"]}


def test_the_view_shuffles_predicts_and_reassembles():
    at = open_page("jigsaw", model="tiny-jigsaw", sample="chelsea")
    assert not at.exception and not at.error
    titles = chart_titles(at)
    assert titles[:3] == ["Shuffled, then put back by the model (wrong or empty places outlined)",
                          "How sure the model is (Hungarian)", "This puzzle"]
    pixels, permutation, argmax, hungarian = _expected("chelsea", seed=0)
    reassembly = chart_specs(at)[0]
    original = (pixels[0].permute(1, 2, 0) * 255).round().to(torch.uint8)
    assert torch.equal(_panel(reassembly, 0), original)
    # The shuffled panel puts the patch from permutation[k] in slot k.
    shuffled = _panel(reassembly, 1)
    for slot, source in enumerate(permutation[0].tolist()):
        (r, c), (sr, sc) = divmod(slot, 4), divmod(source, 4)
        assert torch.equal(shuffled[8 * r:8 * r + 8, 8 * c:8 * c + 8], original[8 * sr:8 * sr + 8, 8 * sc:8 * sc + 8])
    # The scores are this puzzle's, for both decoders, against the library's own decoding.
    bars = _scores(chart_specs(at)[2])
    assert bars["per-patch accuracy"]["as shuffled"] == 0.0  # every patch moved
    assert bars["per-patch accuracy"]["argmax"] == pytest.approx((argmax == permutation).float().mean().item())
    assert bars["per-patch accuracy"]["Hungarian"] == pytest.approx((hungarian == permutation).float().mean().item())
    # Wrong places of the Hungarian panel are outlined: 16 minus the right ones.
    outlined = [s for s in reassembly["layout"]["shapes"] if s["xref"] == "x4"]
    assert len(outlined) == 16 - int((hungarian == permutation).sum())
    # Step-through: the last step shows the Hungarian reassembly.
    step = at.slider(key="jig_step")
    step.set_value(step.max).run()
    assert not at.exception
    step_panel = _panel(chart_specs(at)[3], 0)
    assert torch.equal(step_panel, _panel(reassembly, 3))


def test_the_controls_change_the_puzzle():
    at = open_page("jigsaw", model="tiny-jigsaw", sample="coffee")
    first = chart_specs(at)
    at.number_input(key="jig_seed").set_value(5).run()
    assert not at.exception
    reseeded = chart_specs(at)
    assert not torch.equal(_panel(reseeded[0], 1), _panel(first[0], 1))  # another shuffle
    _, permutation, _, hungarian = _expected("coffee", seed=5)
    assert _scores(reseeded[2])["per-patch accuracy"]["Hungarian"] == pytest.approx(
        (hungarian == permutation).float().mean().item())

    at.slider(key="jig_drop").set_value(0.5).run()
    assert not at.exception
    def confidence(specs):  # the heatmap over the reassembly
        return torch.tensor(specs[1]["data"][1]["z"], dtype=torch.float64)

    assert not torch.allclose(confidence(chart_specs(at)), confidence(reseeded), equal_nan=True)  # fewer keys seen
    _, permutation, _, hungarian = _expected("coffee", seed=5, drop=0.5)
    assert _scores(chart_specs(at)[2])["per-patch accuracy"]["Hungarian"] == pytest.approx(
        (hungarian == permutation).float().mean().item())

    at.radio(key="jig_mode").set_value("k random patches").run()
    at.slider(key="jig_k").set_value(3).run()
    assert not at.exception
    bars = _scores(chart_specs(at)[2])
    assert bars["per-patch accuracy"]["as shuffled"] == pytest.approx(13 / 16)  # exactly 3 patches moved
    assert "3 of 16 patches moved" in at.caption[0].value
    # Pinning the unmoved patches: the 13 that stayed are placed right by both decoders.
    at.checkbox(key="jig_pin").check().run()
    bars = _scores(chart_specs(at)[2])
    _, permutation, argmax, hungarian = _expected("coffee", seed=5, drop=0.5, k=3, pin=True)
    for name, placement in (("argmax", argmax), ("Hungarian", hungarian)):
        assert (placement == permutation).sum() >= 13
        assert bars["per-patch accuracy"][name] == pytest.approx((placement == permutation).float().mean().item())


def test_a_region_is_shuffled_inside_itself():
    at = open_page("jigsaw", model="tiny-jigsaw", sample="rocket")
    at.radio(key="jig_mode").set_value("A region").run()
    at.slider(key="jig_rows").set_value((1, 2)).run()
    at.slider(key="jig_cols").set_value((1, 2)).run()
    assert not at.exception
    assert "4 of 16 patches moved" in at.caption[0].value
    reassembly = chart_specs(at)[0]
    original, shuffled = _panel(reassembly, 0), _panel(reassembly, 1)
    differs = [(r, c) for r in range(4) for c in range(4)
               if not torch.equal(shuffled[8 * r:8 * r + 8, 8 * c:8 * c + 8], original[8 * r:8 * r + 8, 8 * c:8 * c + 8])]
    assert differs == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_an_uploaded_image_works_too():
    at = open_page("jigsaw", model="tiny-jigsaw", upload=("noise.png", png_bytes(3)))
    assert not at.exception and not at.error
    assert "noise.png" in at.caption[0].value
    assert len(chart_titles(at)) >= 4


def test_a_model_without_a_jigsaw_head_says_so_and_points_to_one():
    at = open_page("jigsaw", model="tiny-classifier", sample="chelsea")
    assert not at.exception
    message = at.info[0].value
    assert "tiny-classifier** has no jigsaw head" in message and "**tiny-jigsaw**" in message
    assert not chart_titles(at)


def _jigsaw_with_metrics(folder, name: str, grid: tuple[int, int], val_accuracy: float) -> None:
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = {**ARCH, "img_size": 8 * grid[0]}
    save_checkpoint(create_vit(arch, jigsaw_grid=grid), folder / name,
                    dict(name=name, kind="jigsaw", architecture=arch, jigsaw=dict(grid=list(grid)),
                         metrics=dict(val=dict(patch_acc_hungarian=val_accuracy))))


def test_one_click_switches_to_the_jigsaw_model_that_places_the_most_patches(tmp_path, monkeypatch):
    monkeypatch.setattr("vitviz.registry.BUNDLED_MODELS_DIR", tmp_path / "none")  # only this test's models
    # tiny-jigsaw records no metrics (0 patches); 4x4 at 0.75 places 12 of 16; 7x7 at 0.3 places 14.7 of 49.
    _jigsaw_with_metrics(tmp_path, "grid4", (4, 4), 0.75)
    _jigsaw_with_metrics(tmp_path, "grid7", (7, 7), 0.3)
    at = open_page("jigsaw", model="tiny-classifier", sample="chelsea")
    assert not at.exception
    assert "**grid7** puts back the most patches" in at.info[0].value
    assert "**tiny-jigsaw**" in at.info[0].value and "**grid4**" in at.info[0].value
    at.button(key="jig_switch").click().run()
    assert not at.exception and "has no jigsaw head" not in " ".join(i.value for i in at.info), [i.value for i in at.info]
    assert at.session_state["model_choice"].startswith("grid7 ")
    assert "of 49 patches" in at.caption[0].value and len(chart_titles(at)) >= 4

    at = open_page("jigsaw", model="grid4", sample="chelsea")  # a jigsaw model, not the best: the switch is offered
    assert at.button(key="jig_switch").label.startswith("Switch to grid7, which puts back about 15 patches")
    assert len(chart_titles(at)) >= 4


def test_a_jigsaw_head_on_a_model_with_positions_is_refused_with_the_reason(tmp_path, monkeypatch):
    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    arch = {**ARCH, "pos_embed": "learn"}
    save_checkpoint(create_vit(arch, jigsaw_grid=(4, 4)), tmp_path / "positional-jigsaw",
                    dict(kind="jigsaw", architecture=arch, jigsaw=dict(grid=[4, 4])))
    monkeypatch.setenv("VITVIZ_MODELS", str(tmp_path))
    at = open_page("jigsaw", model="positional-jigsaw", sample="chelsea")
    assert not at.exception
    assert "cannot place patches" in at.error[0].value and "positional embeddings" in at.error[0].value
