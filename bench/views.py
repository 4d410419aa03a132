"""Every view at real grid sizes: first render, re-render, figure bytes, and the server's memory after many uploads.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/views.py [--pages home patches positions attention attributions]
        [--uploads 20] [--models ...]

Driven through Streamlit's AppTest (the page scripts as the server runs them, no browser), on the
catalogue's geometries with random weights (pretrained ones give the same timings): ViT-B/16 at
224 px (14x14 patches), ViT-S/8 at 224 px (28x28) and ViT-S/14 with 4 registers at 518 px (37x37).
For each page: the first render (model loaded and cached beforehand, so it is the page's own work),
one re-render after a control changes, and the largest figure's JSON in MB. Then ``--uploads``
different photos, one after another, on the Attention view, and the process's resident memory
after them (the aim: under 4 GB; large results live in a cache bounded in bytes, ``VITVIZ_CACHE_MB``).
The aims on a 2-core CPU: a first render under 3 s, a re-render under 1 s (README, "Views at real
grid sizes"). Times are wall seconds in this process; the ratio column divides by a plain forward
pass of the same model measured in the same process.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import apptest  # noqa: E402
from apptest import open_page  # noqa: E402
from ui import cache  # noqa: E402
from vitviz.models import load_model  # noqa: E402

MODELS = ("random:vit_base_patch16_224", "random:vit_small_patch8_224", "random:vit_small_patch14_reg4_dinov2")
PAGES = ("home", "patches", "positions", "attention", "attributions")
# One control per page whose change re-renders it: (widget kind, key, new value)
RERENDER = {
    "patches": ("number_input", "patch_index", 3),
    "positions": ("number_input", "pos_row", 1),
    "attention": ("slider", "att_layer", 2),
    "attributions": ("number_input", "attr_mass", None),
}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _forward_seconds(ref: str) -> float:
    model = load_model(ref, device="cpu")
    images = torch.randn(1, 3, *model.card.image_size)
    with torch.no_grad():
        model(images)
        start = time.perf_counter()
        model(images)
    return time.perf_counter() - start


def _largest_figure_mb(at) -> float:
    return max((len(chart.proto.spec) for chart in at.get("plotly_chart")), default=0) / 1e6


def bench_page(ref: str, page: str) -> dict[str, float]:
    open_page("home", model=ref, sample="chelsea")  # load and cache the model first
    start = time.perf_counter()
    at = open_page(page, model=ref, sample="chelsea")
    first = time.perf_counter() - start
    result = {"first": first, "rerender": float("nan"), "figure_mb": _largest_figure_mb(at),
              "error": str(at.exception[0].value)[:60] if at.exception else ""}
    if page in RERENDER and not at.exception:
        kind, key, value = RERENDER[page]
        widgets = [w for w in getattr(at, kind) if w.key == key]
        if widgets:
            widget = widgets[0]
            start = time.perf_counter()
            widget.set_value(value if value is not None else widget.value).run()
            result["rerender"] = time.perf_counter() - start
    return result


def bench_first_maps(ref: str) -> float:
    """Seconds until the Attributions view has drawn its cheap maps (rollout, saliency, relevance): what a user
    sees first while the many-pass methods run; the page draws those cheapest first in any case."""
    open_page("home", model=ref, sample="chelsea")
    at = open_page("home", model=ref, sample="chelsea")
    at.session_state["attr_methods"] = ["Attention rollout", "Saliency", "Relevance"]
    start = time.perf_counter()
    at.switch_page("pages/attributions.py").run(timeout=apptest.TIMEOUT)
    return time.perf_counter() - start


def bench_uploads(ref: str, uploads: int) -> float:
    for seed in range(uploads):
        at = open_page("attention", model=ref, upload=(f"photo-{seed}.png", _png(seed)))
        assert not at.exception, at.exception
    return _rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--pages", nargs="+", default=list(PAGES))
    parser.add_argument("--uploads", type=int, default=20)
    args = parser.parse_args()
    apptest.TIMEOUT = 1800  # the whole Attributions page runs every many-pass method; a benchmark waits for it
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{'model':<40} {'page':<13} {'first s':>8} {'rerender s':>11} {'first/fwd':>10} {'largest MB':>11}")
    for ref in args.models:
        forward = _forward_seconds(ref)
        for page in args.pages:
            r = bench_page(ref, page)
            print(f"{ref:<40} {page:<13} {r['first']:>8.2f} {r['rerender']:>11.2f} {r['first'] / forward:>10.1f} "
                  f"{r['figure_mb']:>11.2f} {r['error']}", flush=True)
        if "attributions" in args.pages:
            print(f"{ref:<40} {'first maps':<13} {bench_first_maps(ref):>8.2f}   (rollout, saliency, relevance)", flush=True)
        if args.uploads:
            print(f"{ref:<40} resident memory after {args.uploads} uploads on Attention: {bench_uploads(ref, args.uploads):,.0f} MB "
                  f"(bounded cache {cache.bounded_bytes() / 1e6:,.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
