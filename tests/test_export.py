"""Downloads say what they hold: the header names the model, image and settings; arrays keep their shape and type."""

import csv
import io
import json
import math

import numpy as np
import torch

from vitviz.export import as_array, figure_csv, figure_json

ABOUT = {"model": "starter-shapes", "image": "sample photo: chelsea", "layer": 4, "head": "mean of heads",
         "query": "the class token", "grid": (8, 8)}


def _blocks(text: str) -> dict[str, list[list[str]]]:
    """The CSV's data rows under each ``# name: ...`` line."""
    blocks: dict[str, list[list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# ") and ": shape [" in line:
            current = line[2:].split(": shape")[0]
            blocks[current] = []
        elif not line.startswith("#") and current is not None:
            blocks[current].append(next(csv.reader([line])))
    return blocks


def test_a_csv_opens_with_the_model_image_and_settings_and_writes_a_grid_as_a_grid():
    table = torch.arange(64, dtype=torch.float32).reshape(8, 8) / 64
    text = figure_csv("position-similarity-sincos-27", {"similarity": table}, ABOUT, {"similarity": "cosine"})
    lines = text.splitlines()
    assert lines[:7] == ["# vitviz figure: position-similarity-sincos-27", "# model: starter-shapes",
                         "# image: sample photo: chelsea", "# layer: 4", "# head: mean of heads",
                         "# query: the class token", "# grid: [8, 8]"]
    assert "# similarity: shape [8, 8]; cosine" in lines
    rows = _blocks(text)["similarity"]
    assert len(rows) == 8 and all(len(row) == 8 for row in rows)
    assert [[float(v) for v in row] for row in rows] == table.tolist()


def test_class_indices_stay_whole_numbers_beside_their_names():
    data = {"class": torch.tensor([2, 0]), "class_name": ["triangle", "circle"],
            "probability": torch.tensor([0.75, 0.125])}
    document = json.loads(figure_json("top-predictions", data, ABOUT, {"probability": "softmax probability"}))
    assert document["figure"] == "top-predictions" and document["about"]["grid"] == [8, 8]
    arrays = document["arrays"]
    assert arrays["class"] == {"shape": [2], "values": [2, 0]} and all(type(v) is int for v in arrays["class"]["values"])
    assert arrays["class_name"]["values"] == ["triangle", "circle"]
    assert arrays["probability"] == {"shape": [2], "unit": "softmax probability", "values": [0.75, 0.125]}
    rows = _blocks(figure_csv("top-predictions", data))
    assert rows["class"] == [["2", "0"]] and rows["class_name"] == [["triangle", "circle"]]


def test_more_dimensions_are_written_one_grid_per_leading_index_and_nan_is_null():
    heads = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    text = figure_csv("attention-heads", {"attention": heads})
    assert "# attention: shape [2, 3, 4]" in text and "# attention[1]: shape [3, 4]" in text
    second = text.split("# attention[1]: shape [3, 4]\n")[1].splitlines()
    assert [[float(v) for v in line.split(",")] for line in second] == heads[1].tolist()
    confidence = torch.tensor([[0.5, math.nan]])
    assert json.loads(figure_json("c", {"c": confidence}))["arrays"]["c"]["values"] == [[0.5, None]]
    assert "0.5,nan" in figure_csv("c", {"c": confidence})


def test_arrays_keep_their_kind():
    assert as_array(torch.tensor([True, False])).tolist() == [1, 0]
    assert as_array(torch.tensor([1.5], dtype=torch.bfloat16)).dtype == np.float64
    assert as_array(torch.tensor([3])).dtype.kind == "i"
    assert as_array(7).shape == () and figure_csv("s", {"count": 7}).splitlines()[-1] == "7"
    assert json.loads(figure_json("x", {}, {"x": float("nan")}))["about"] == {"x": None}  # strict JSON, no NaN
