"""Driving the app with Streamlit's AppTest.

AppTest drops the sidebar from its element tree on reruns of a multipage app whose pages are
files, and with it the uploaded file's state. So each scenario sets the sidebar's choices
before the first run, uploads, then opens the page: widgets in the page itself work as usual.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

TIMEOUT = 180
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def png_bytes(seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def open_page(page: str, model: Optional[str] = None, upload: Optional[tuple[str, bytes]] = None,
              sample: Optional[str] = None, shapes_index: Optional[int] = None) -> AppTest:
    """The app on ``pages/<page>.py`` with the given model and image (an upload, a sample photo or a shapes item)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if model is not None:
        at.session_state["model_choice"] = _label_for(model)
    if sample is not None:
        at.session_state["sample_name"] = sample
    if shapes_index is not None:
        at.session_state["image_source"] = "Shapes item"
        at.session_state["shapes_index"] = shapes_index
    at.run()
    if upload is not None:
        name, data = upload
        at.file_uploader(key="upload").set_value((name, data, "image/png"))
    return at.switch_page(f"pages/{page}.py").run()


def _label_for(ref: str) -> str:
    from vitviz.registry import list_models

    for entry in list_models():
        if entry.ref == ref:
            return entry.label
    raise KeyError(f"{ref} is not offered in the model picker")


def chart_specs(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as dicts, their binary-packed arrays decoded to lists."""
    return [_decode(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def _decode(value):
    """Plotly packs numpy arrays as {"dtype", "bdata", "shape"}: unpack them."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            if shape:
                array = array.reshape([int(n) for n in str(shape).split(",")])
            return array.tolist()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def chart_titles(at: AppTest) -> list[str]:
    return [(spec["layout"].get("title") or {}).get("text", "") for spec in chart_specs(at)]
