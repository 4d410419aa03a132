"""A figure's numbers as files that say what they are: CSV and JSON, each opening with what the figure shows
(the model, the image, the view's settings) and giving every array its unit and shape.

Arrays keep their type: integer tensors (class indices, permutations) stay integers, booleans become 0/1,
strings (class names) stay strings. In a CSV, a 2-D array is written as its grid (rows as rows), a 1-D array
as one row, and an array of more dimensions as one grid per index of its leading dimensions, each under its
own header line. In JSON, NaN is written as null.

Example of a CSV::

    # vitviz figure: attention-query
    # model: starter-shapes
    # image: sample photo: chelsea
    # layer: 4
    #
    # attention: shape [8, 8]; share of the query token's attention
    0.0123,0.00981,...
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["as_array", "figure_csv", "figure_json"]


def as_array(value: Any) -> np.ndarray:
    """A tensor, array, list or scalar as a numpy array of its own kind: integers stay integers, booleans become
    0/1 integers, floats become float64 (a bfloat16 tensor too), strings stay strings."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.double()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == bool:
        return array.astype(np.int64)
    return array


def figure_csv(name: str, arrays: Mapping[str, Any], about: Optional[Mapping[str, Any]] = None,
               units: Optional[Mapping[str, str]] = None) -> str:
    """The CSV of a figure ``name``: ``about`` (model, image, settings) as ``# key: value`` lines, then each
    array under a ``# NAME: shape [...]; UNIT`` line, written as a grid (see the module docstring)."""
    out = io.StringIO()
    for line in _header(name, about):
        out.write(f"# {line}\n")
    writer = csv.writer(out, lineterminator="\n")
    for key, value in arrays.items():
        array = as_array(value)
        unit = (units or {}).get(key)
        out.write(f"#\n# {key}: shape {list(array.shape)}{f'; {unit}' if unit else ''}\n")
        if array.ndim <= 2:
            _write_grid(writer, array)
            continue
        for index in np.ndindex(*array.shape[:-2]):
            out.write(f"# {key}[{', '.join(map(str, index))}]: shape {list(array.shape[-2:])}\n")
            _write_grid(writer, array[index])
    return out.getvalue()


def figure_json(name: str, arrays: Mapping[str, Any], about: Optional[Mapping[str, Any]] = None,
                units: Optional[Mapping[str, str]] = None) -> str:
    """The JSON of a figure ``name``: ``{"figure", "about", "arrays": {NAME: {"shape", "unit", "values"}}}``,
    values nested as the array is (an 8x8 map is 8 lists of 8)."""
    document = {
        "figure": name,
        "about": {key: _plain(value) for key, value in (about or {}).items()},
        "arrays": {},
    }
    for key, value in arrays.items():
        array = as_array(value)
        entry: dict[str, Any] = {"shape": list(array.shape)}
        if (units or {}).get(key):
            entry["unit"] = units[key]
        entry["values"] = _plain(array.tolist())
        document["arrays"][key] = entry
    return json.dumps(document, indent=1, allow_nan=False)


def _header(name: str, about: Optional[Mapping[str, Any]]) -> list[str]:
    lines = [f"vitviz figure: {name}"]
    for key, value in (about or {}).items():
        text = json.dumps(_plain(value), allow_nan=False) if isinstance(value, (list, tuple, dict)) else str(value)
        lines.append(f"{key}: {' '.join(text.splitlines())}")
    return lines


def _write_grid(writer: "csv._writer", array: np.ndarray) -> None:
    for row in np.atleast_2d(array):
        writer.writerow([_cell(v) for v in row])


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and tuples made plain, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
