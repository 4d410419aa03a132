"""The figures put patches where they are: outlines, hover markers and map cells agree with the pixels.

A 48 x 64 image in 16 px patches is a 3 x 4 grid, so a row/column mix-up shows. Patch 7 is at row 1,
col 3: pixels y 16..31, x 48..63, drawn with pixel centres on integers, edges at half-integers.
"""

import re

import pytest
import torch

from vitviz import plots

P = 16
ROWS, COLS = 3, 4
IMAGE = torch.rand(3, ROWS * P, COLS * P, generator=torch.Generator().manual_seed(0))
HEAT = torch.arange(ROWS * COLS, dtype=torch.float32).reshape(ROWS, COLS)
PATCH_7 = dict(x0=47.5, x1=63.5, y0=15.5, y1=31.5)  # row 1, col 3
CENTRE_7 = (55.5, 23.5)  # (x, y)


def rects(shapes) -> list[dict]:
    return [{k: s[k] for k in ("x0", "x1", "y0", "y1")} for s in shapes if s.type == "rect"]


def layout_shapes(fig) -> tuple:
    return fig.layout.shapes


def traces(fig, kind: str) -> list:
    return [t for t in fig.data if t.type == kind]


@pytest.mark.parametrize("draw", [
    lambda: plots.image_with_grid(IMAGE, P, selected=7),
    lambda: plots.attention_overlay(IMAGE, HEAT, P, selected=7),
    lambda: plots.confidence_overlay(IMAGE, HEAT / 12, P, wrong=[7]),
], ids=["image_with_grid", "attention_overlay", "confidence_overlay"])
def test_an_outlined_patch_covers_its_pixels(draw):
    assert rects(layout_shapes(draw())) == [PATCH_7]


def test_panels_and_animation_outline_the_patch_on_their_own_axes():
    fig = plots.patch_panels([IMAGE, IMAGE], ["a", "b"], P, outlines=[[], [7]])
    (shape,) = layout_shapes(fig)
    assert rects([shape]) == [PATCH_7] and (shape.xref, shape.yref) == ("x2", "y2")
    frames = plots.reassembly_animation(IMAGE.expand(3, -1, -1, -1), [0, 7], P).frames
    assert [rects(frame.layout.shapes) for frame in frames] == [[], [dict(x0=-0.5, x1=15.5, y0=-0.5, y1=15.5)], [PATCH_7]]


def markers(fig):
    (trace,) = traces(fig, "scatter")
    return trace


def test_hover_markers_sit_on_patch_centres_in_raster_order():
    grid = markers(plots.image_with_grid(IMAGE, P))
    assert (grid.x[7], grid.y[7]) == CENTRE_7
    assert grid.customdata[7].tolist() == [7, 1, 3]  # index, row, col
    assert grid.hovertemplate.startswith("patch %{customdata[0]}<br>row %{customdata[1]}, col %{customdata[2]}")
    overlay = markers(plots.attention_overlay(IMAGE, HEAT, P))
    assert (overlay.x[7], overlay.y[7]) == CENTRE_7 and overlay.text[7] == "patch 7 (row 1, col 3): 7"
    masked = markers(plots.mask_overlay(IMAGE, HEAT > 6, P))
    assert masked.text[6:8] == ("patch 6 (row 1, col 2): dropped", "patch 7 (row 1, col 3): kept")
    confidence = markers(plots.confidence_overlay(IMAGE, HEAT / 12, P))
    assert (confidence.x[7], confidence.y[7]) == CENTRE_7 and confidence.text[7] == "patch 7: 0.583"


def test_panel_hover_markers_follow_their_panel():
    hover = [[f"{panel} {i}" for i in range(ROWS * COLS)] for panel in "ab"]
    fig = plots.patch_panels([IMAGE, IMAGE], ["a", "b"], P, hover=hover)
    first, second = traces(fig, "scatter")
    assert (first.xaxis, second.xaxis, second.yaxis) == ("x", "x2", "y2")
    assert (second.x[7], second.y[7]) == CENTRE_7 and second.text[7] == "b 7"


def test_a_map_cell_is_centred_on_its_patch():
    (heat,) = traces(plots.attention_overlay(IMAGE, HEAT, P), "heatmap")
    x = heat.x0 + 3 * heat.dx
    y = heat.y0 + 1 * heat.dy
    assert (x, y) == CENTRE_7


def test_the_package_exports_every_figure_flat():
    assert set(plots.__all__) >= {"PLOTLY_CONFIG", "image_with_grid", "attention_overlay", "patch_panels",
                                  "training_curves", "attribution_panels", "faithfulness_curves"}
    assert all(callable(getattr(plots, name)) for name in plots.__all__ if name != "PLOTLY_CONFIG")


def test_a_large_grid_of_similarity_maps_is_strided_and_bounded():
    import json

    import numpy as np

    from vitviz.plots import similarity_grid

    torch.manual_seed(0)
    table = torch.randn(36, 8)
    similarity = torch.nn.functional.normalize(table, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
    fig = similarity_grid(similarity, (6, 6), max_side=20)  # 6 tiles of 7 cells need 41 > 20: every 3rd query
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (13, 13) and "one tile per 3x3 block of the 6x6 positions" in fig.layout.title.text
    sim = similarity.numpy().reshape(6, 6, 6, 6)
    np.testing.assert_allclose(z[7:13, 7:13], sim[3, 3], atol=1e-6)  # tile (1, 1) is query position (3, 3)
    np.testing.assert_allclose(z[0:6, 7:13], sim[0, 3], atol=1e-6)
    for side in (37, 74):  # the dinov2 grid and its largest resampling: one PNG, well under 5 MB
        big = torch.nn.functional.normalize(torch.randn(side * side, 16), dim=-1)
        fig = similarity_grid(big @ big.T, (side, side))
        assert fig.data[0].type == "image" and len(json.dumps(fig.to_plotly_json(), default=str)) < 5 * 1024 * 1024


def test_attribution_panels_at_518_px_with_many_methods_stay_under_5_mb():
    import json

    torch.manual_seed(0)
    image = torch.rand(3, 518, 518)  # noise: the photo that compresses worst
    maps = {f"method {i}": torch.rand(518, 518) * 2 - 1 for i in range(15)}
    fig = plots.attribution_panels(image, maps)
    assert len(json.dumps(fig.to_plotly_json(), default=str)) < 5 * 1024 * 1024
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    photo = [t for t in fig.data if t.type == "image"][0]
    assert len(heat.z) == 160 and abs(heat.dx * 160 - 518) < 1e-6  # averaged down, still spanning the image
    # the downscaled photo still covers pixel edges -0.5 .. 517.5
    side = round(518 / photo.dx)
    assert abs(photo.x0 - photo.dx / 2 + 0.5) < 1e-6 and abs(photo.x0 + (side - 0.5) * photo.dx - 517.5) < 1e-6


# Streamlit's chart theme replaces these colours in every figure with its own palette (streamlit_plotly_theme.py).
STREAMLIT_PLACEHOLDERS = re.compile(r"#0000(?:[0-3][0-9]|40)\b", re.IGNORECASE)


def _every_figure():
    from vitviz.faithfulness import Curve

    fractions = torch.linspace(0, 1, 5)
    curves = {"m": (Curve("deletion", fractions, torch.rand(1, 5)), Curve("insertion", fractions, torch.rand(1, 5)))}
    signed = HEAT / 11 * 2 - 1
    return {
        "attention_overlay": plots.attention_overlay(IMAGE, HEAT, P, selected=7),
        "head_grid": plots.head_grid(HEAT.expand(3, -1, -1)),
        "attention_distance": plots.attention_distance(torch.rand(4, 3) * 40, torch.rand(4, 3) * 40),
        "predictions": plots.predictions(torch.tensor([0.5, 0.3]), ["a", "b"]),
        "attribution_panels": plots.attribution_panels(IMAGE, {"m": signed}, mask=torch.ones(48, 64, dtype=torch.bool),
                                                       alone=True),
        "faithfulness_curves": plots.faithfulness_curves(curves),
        "attention_comparison": plots.attention_comparison(IMAGE, HEAT, HEAT.flip(0), ("a", "b")),
        "confidence_overlay": plots.confidence_overlay(IMAGE, HEAT / 12, P),
        "image_with_grid": plots.image_with_grid(IMAGE, P, selected=7),
    }


@pytest.mark.parametrize("name", list(_every_figure()))
def test_no_figure_uses_a_colour_streamlit_would_repaint(name):
    import json

    figure = _every_figure()[name].to_plotly_json()
    figure["layout"].pop("template", None)  # Streamlit's own template, once streamlit is imported, uses them on purpose
    spec = json.dumps(figure, default=str)
    assert not STREAMLIT_PLACEHOLDERS.findall(spec), STREAMLIT_PLACEHOLDERS.findall(spec)


def _luminance(colour: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_heat_scale_is_sequential_from_black():
    from vitviz.plots._common import _HEAT_SCALE

    positions = [stop for stop, _ in _HEAT_SCALE]
    levels = [_luminance(colour) for _, colour in _HEAT_SCALE]
    assert positions[0] == 0 and positions[-1] == 1 and positions == sorted(positions)
    assert levels[0] < 0.01 and levels[-1] > 0.9  # zero is black, the maximum pale
    assert levels == sorted(levels)  # brighter all the way: no colour in the middle reads lower than zero


def test_attribution_maps_alone_beside_their_overlay_at_the_chosen_opacity():
    signed = HEAT / 11 * 2 - 1
    fig = plots.attribution_panels(IMAGE, {"IG": signed, "Saliency": -signed}, opacity=0.4, alone=True)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["IG", "IG: map alone", "Saliency", "Saliency: map alone"]
    heat = traces(fig, "heatmap")
    assert [h.opacity for h in heat] == [0.4, 1.0, 0.4, 1.0]
    assert len(traces(fig, "image")) == 2  # the image under the overlays only
    assert heat[1].z.tolist() == signed.tolist() and heat[1].xaxis == "x2"
    assert [a.text for a in plots.attribution_panels(IMAGE, {"IG": signed}).layout.annotations] == ["IG"]
    with pytest.raises(ValueError, match="opacity"):
        plots.attribution_panels(IMAGE, {"IG": signed}, opacity=0)


def test_attention_distance_dots_sit_on_their_layer_ticks():
    fig = plots.attention_distance(torch.rand(4, 3) * 40, torch.rand(4, 3) * 40)
    for trace in fig.data:
        assert list(trace.x) == [layer for layer in (1, 2, 3, 4) for _ in range(3)]
    assert fig.layout.xaxis.dtick == 1
