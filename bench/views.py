"""Every view at real grid sizes: first render, re-render, figure bytes, and the server's memory after many uploads.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/views.py [--pages home patches positions attention attributions]
        [--uploads 20] [--models ...] [--headed]

Driven through Streamlit's AppTest (the page scripts as the server runs them, no browser), on the
catalogue's geometries with random weights (pretrained ones give the same timings): ViT-B/16 at
224 px (14x14 patches), ViT-S/8 at 224 px (28x28) and ViT-S/14 with 4 registers at 518 px (37x37);
``--headed`` adds the last two with a classification head, which the catalogue's have not (class maps,
Attributions).
For each page: the first render (model loaded and cached beforehand, so it is the page's own work),
one re-render after a control changes (on Attention also a click that makes a patch the query), in wall
seconds and the process's CPU seconds (every thread: read these when the machine is shared), and the
largest figure's JSON in MB; the ratio column divides the first render by a plain forward pass of the
same model measured in the same process. Then ``--uploads`` different photos, one after another, on
the Attention view, and this process's resident memory after them (AppTest's own sessions included;
``bench/server_memory.py`` measures a served app). The aims on a 2-core CPU: a first render under 3 s,
a re-render under 1 s (README, "Views at real grid sizes").
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import streamlit as st
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


# The catalogue's 28x28 and 37x37 models (DINO ViT-S/8, DINOv2 ViT-S/14 with registers) have no classification head,
# so their Attention view draws no class maps and Attributions has nothing to explain: the same geometries with a
# 1000-class head (random weights), for ``--headed``.
HEADED = {
    "bench-headed-28x28": dict(img_size=224, patch_size=8, embed_dim=384, depth=12, num_heads=6, num_classes=1000),
    "bench-headed-37x37": dict(img_size=518, patch_size=14, embed_dim=384, depth=12, num_heads=6, reg_tokens=4,
                               init_values=1e-5, num_classes=1000),
}


def headed_models(folder: Path) -> list[str]:
    """The ``HEADED`` checkpoints written to ``folder`` and put in the model picker through ``$VITVIZ_MODELS``."""
    import os

    from vitviz.checkpoints import save_checkpoint
    from vitviz.models import create_vit

    torch.manual_seed(0)
    for name, architecture in HEADED.items():
        save_checkpoint(create_vit(architecture), folder / f"{name}.safetensors",
                        {"architecture": architecture, "name": name, "class_names": [f"class {i}" for i in range(1000)]})
    os.environ["VITVIZ_MODELS"] = str(folder)
    return list(HEADED)


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


class _Clock:
    """Wall and CPU seconds (this process, every thread) of the block inside ``with``."""

    def __enter__(self) -> "_Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bench_page(ref: str, page: str) -> dict[str, float]:
    open_page("home", model=ref, sample="chelsea")  # load and cache the model first
    with _Clock() as first:
        at = open_page(page, model=ref, sample="chelsea")
    nan = float("nan")
    result = {"first": first.wall, "first_cpu": first.cpu, "rerender": nan, "rerender_cpu": nan, "click": nan,
              "figure_mb": _largest_figure_mb(at), "error": str(at.exception[0].value)[:60] if at.exception else ""}
    if page in RERENDER and not at.exception:
        kind, key, value = RERENDER[page]
        widgets = [w for w in getattr(at, kind) if w.key == key]
        if widgets:
            widget = widgets[0]
            with _Clock() as rerender:
                widget.set_value(value if value is not None else widget.value).run()
            result["rerender"], result["rerender_cpu"] = rerender.wall, rerender.cpu
    if page == "attention" and not at.exception:  # a click on the map: a patch becomes the query
        at.session_state["att_pending_patch"] = 5
        with _Clock() as click:
            at.run()
        result["click"] = click.wall
    return result


def bench_first_maps(ref: str) -> dict[str, float]:
    """Seconds until the Attributions view has drawn its first map, then its three cheap maps (rollout, saliency,
    relevance: what a user sees first, since the page draws the cheapest first in any case), and until the whole
    page is done (deletion and insertion curves for the three maps included); wall and CPU seconds ("..._cpu",
    this process). NaN where no map is drawn (a model with no classification head)."""
    import ui

    open_page("home", model=ref, sample="chelsea")
    at = open_page("home", model=ref, sample="chelsea")
    at.session_state["attr_methods"] = ["Attention rollout", "Saliency", "Relevance"]
    st.cache_data.clear()  # nothing kept from an earlier visit to the page (the model stays loaded)
    cache.clear_bounded()
    drawn: list[tuple[float, float]] = []
    show_figure = ui.show_figure

    def timed(fig, name, *args, **kwargs):  # the maps figure is drawn again as each method arrives
        result = show_figure(fig, name, *args, **kwargs)
        if name == "attribution-maps":
            drawn.append((time.perf_counter(), time.process_time()))
        return result

    ui.show_figure = timed
    try:
        start = (time.perf_counter(), time.process_time())
        at.switch_page("pages/attributions.py").run(timeout=apptest.TIMEOUT)
        end = (time.perf_counter(), time.process_time())
    finally:
        ui.show_figure = show_figure
    assert not at.exception, at.exception
    result = {}
    for label, moment in (("first", drawn[0] if drawn else None), ("three", drawn[-1] if drawn else None), ("page", end)):
        result[label], result[f"{label}_cpu"] = ((moment[0] - start[0], moment[1] - start[1]) if moment
                                                 else (float("nan"), float("nan")))
    return result


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
    parser.add_argument("--headed", action="store_true",
                        help="also the 28x28 and 37x37 geometries with a classification head (random weights)")
    args = parser.parse_args()
    if args.headed:
        args.models += headed_models(Path(tempfile.mkdtemp(prefix="vitviz-bench-")))
    apptest.TIMEOUT = 1800  # the whole Attributions page runs every many-pass method; a benchmark waits for it
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"load average at the start: {Path('/proc/loadavg').read_text().split()[0]}")
    print(f"{'model':<40} {'page':<13} {'first s':>8} {'(cpu)':>6} {'rerender s':>11} {'(cpu)':>6} {'click s':>8} "
          f"{'first/fwd':>10} {'largest MB':>11}")
    for ref in args.models:
        forward = _forward_seconds(ref)
        for page in args.pages:
            r = bench_page(ref, page)
            print(f"{ref:<40} {page:<13} {r['first']:>8.2f} {r['first_cpu']:>6.2f} {r['rerender']:>11.2f} "
                  f"{r['rerender_cpu']:>6.2f} {r['click']:>8.2f} {r['first'] / forward:>10.1f} {r['figure_mb']:>11.2f} "
                  f"{r['error']}", flush=True)
        if "attributions" in args.pages:
            m = bench_first_maps(ref)
            print(f"{ref:<40} {'first maps':<13} first map {m['first']:.2f} s ({m['first_cpu']:.2f} cpu), all three "
                  f"(rollout, saliency, relevance) {m['three']:.2f} s ({m['three_cpu']:.2f} cpu); the page with their "
                  f"deletion and insertion curves {m['page']:.2f} s ({m['page_cpu']:.2f} cpu)", flush=True)
        if args.uploads:
            print(f"{ref:<40} resident memory after {args.uploads} uploads on Attention: {bench_uploads(ref, args.uploads):,.0f} MB "
                  f"(bounded cache {cache.bounded_bytes() / 1e6:,.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
