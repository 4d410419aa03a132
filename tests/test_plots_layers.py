"""The Layers view's figures put each value where the view says it is: the cell a click reports, the colour of a
patch's class, the block a patch settles at, the colour of a patch's components."""

import numpy as np
import torch

from vitviz import plots

IMAGE = torch.rand(3, 32, 48)  # a 4x6 grid of 8-pixel patches


def test_a_click_on_the_knockout_map_reports_layer_times_heads_plus_head():
    change = torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5  # (L=3, H=4)
    fig = plots.knockout_map(change, selected=(2, 1))
    heat, markers = fig.data
    assert np.array_equal(np.asarray(heat.z), change.numpy())
    assert heat.zmin == -6 and heat.zmax == 6  # centred on zero
    for index, (block, head, value) in enumerate(np.asarray(markers.customdata)):
        layer, h = divmod(index, 4)
        assert (block, head, value) == (layer + 1, h + 1, change[layer, h].item())
        assert (markers.x[index], markers.y[index]) == (h + 1, layer + 1)  # the marker sits on its own cell
    outline = fig.layout.shapes[0]
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (1.5, 2.5, 2.5, 3.5)


def test_patch_classes_give_the_prediction_the_first_colour_and_each_class_one_colour():
    classes = torch.tensor([[2, 2, 0, 0, 0, 0], [2, 2, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    fig = plots.patch_classes(IMAGE, classes, torch.full((4, 6), 0.5), 8, ["ant", "bee", "cat"], first=2)
    heat = fig.data[1]
    scale = [colour for _, colour in heat.colorscale]
    colour = np.vectorize(lambda code: scale[int(code)])(np.asarray(heat.z))  # (4, 6) the colour drawn on each patch
    assert colour[0, 0] == scale[0]  # the prediction (cat) takes the first colour, though ant covers more patches
    assert len(set(colour[classes.numpy() == 0])) == 1
    assert len({colour[0, 0], colour[0, 3], colour[3, 0]}) == 3
    legend = [trace.name for trace in fig.data[3:]]
    assert legend == ["cat: 4 patches", "ant: 16 patches", "bee: 4 patches"]


def test_settling_map_leaves_patches_that_never_settle_blank():
    settled = torch.tensor([[0, 3, -1, 1, 1, 2]] * 4)
    fig = plots.settling_map(IMAGE, settled, 4, 8, "cat")
    z = np.asarray(fig.data[1].z, dtype=float)
    assert np.isnan(z[:, 2]).all() and np.array_equal(z[:, [0, 1, 3]], np.array([[1, 4, 2]] * 4))
    assert "not cat after the last block" in fig.data[2].text[2]


def test_token_colours_paint_each_patch_its_components():
    colours = torch.rand(4, 6, 3)
    pixels = np.asarray(plots.token_colours(colours, 8).data[0].z)
    assert pixels.shape == (32, 48, 3)
    assert np.array_equal(pixels[8 * 2:8 * 3, 8 * 5:8 * 6], np.broadcast_to(np.rint(colours[2, 5].numpy() * 255), (8, 8, 3)))


def test_norm_map_outlines_the_outliers():
    outliers = torch.zeros(4, 6, dtype=torch.bool)
    outliers[1, 4] = outliers[3, 0] = True
    fig = plots.norm_map(IMAGE, torch.rand(4, 6), outliers, 8)
    corners = sorted((s.x0, s.y0) for s in fig.layout.shapes)
    assert corners == [(-0.5, 23.5), (31.5, 7.5)]  # patch (3, 0) and patch (1, 4), along the pixel edges
