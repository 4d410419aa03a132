"""What the Attention view costs: capture, rollout and the gradient methods against a plain forward.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attention.py [--repeats 9] [--device cpu] [--clock process]

Batch 1, on the CPU and on CUDA when there is one, for ``vit_base_patch16_224`` (random weights)
and the starter checkpoint ``models/starter-shapes.safetensors`` when it exists. Each figure is the
median of ``--repeats`` timed runs after two warm-up runs; the methods are interleaved within a
repeat so that load from other processes falls on all of them alike; on a shared CPU,
``--clock process`` (CPU time of this process) is steadier than wall time.
Aims: capture / forward <= 1.15 and relevance / forward <= 3.5.
Then the Attention view itself (Streamlit's AppTest, no browser): the first run of the page,
and the re-render after a layer or query change, which must reuse the cached forward pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import add_options, clock_and_devices, interleaved_medians, models_to_time, timer  # noqa: E402
from vitviz.attention import capture, grad_rollout, relevance, rollout  # noqa: E402

STARTER = "starter-shapes"
APP = Path(__file__).resolve().parent.parent / "app.py"
CAPTURE_AIM, RELEVANCE_AIM = 1.15, 3.5


def bench_model(name: str, model: torch.nn.Module, device: torch.device, repeats: int,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each method on one random model-ready image."""
    model = model.to(device).eval()
    height, width = model.patch_embed.img_size
    images = torch.randn(1, 3, height, width, device=device)
    _, attentions = capture(model, images)

    def forward() -> None:
        with torch.no_grad():
            model(images)

    methods = {
        "forward": forward,
        "capture": lambda: capture(model, images),
        "rollout": lambda: rollout(attentions),
        "rollout_discard": lambda: rollout(attentions, head_fusion="max", discard_ratio=0.9),
        "grad_rollout": lambda: grad_rollout(model, images, 0),
        "relevance": lambda: relevance(model, images, 0),
    }
    return interleaved_medians(methods, timer(device, clock), repeats, warmups=2)


def bench_view(ref: str, device: torch.device, repeats: int) -> dict[str, float]:
    """Seconds for the Attention page's first run and (median) re-render after a slider or query change."""
    from streamlit.testing.v1 import AppTest

    from vitviz.registry import list_models

    os.environ["VITVIZ_DEVICE"] = str(device)
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.session_state["model_choice"] = next(e.label for e in list_models() if e.ref == ref)
    at.session_state["sample_name"] = "chelsea"
    at.run()
    start = time.perf_counter()
    at.switch_page("pages/attention.py").run()
    first = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"the Attention page failed: {at.exception[0].message}")
    depth = at.slider(key="att_layer").max
    layer_times, query_times = [], []
    for i in range(repeats):
        start = time.perf_counter()
        at.slider(key="att_layer").set_value(1 + i % depth).run()
        layer_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        at.session_state["att_pending_patch"] = 7 * i  # what a click on a patch stores
        at.run()
        query_times.append(time.perf_counter() - start)
    return {"first": first, "layer": statistics.median(layer_times), "query": statistics.median(query_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per method (median reported)")
    add_options(parser)
    args = parser.parse_args()
    clock, devices = clock_and_devices(args)

    header = (f"{'model':<22} {'device':<6} {'forward ms':>10} {'capture ms':>10} {'capture/fwd':>11} "
              f"{'rollout ms':>10} {'roll+disc ms':>12} {'grad-roll/fwd':>13} {'relevance ms':>12} {'relev/fwd':>9}")
    print(header)
    for name, build in models_to_time([STARTER]):
        model = build()
        for device in devices:
            t = bench_model(name, model, device, args.repeats, clock)
            ms = {key: 1000 * value for key, value in t.items()}
            print(f"{name:<22} {device.type:<6} {ms['forward']:>10.1f} {ms['capture']:>10.1f} "
                        f"{t['capture'] / t['forward']:>11.2f} {ms['rollout']:>10.2f} {ms['rollout_discard']:>12.2f} "
                        f"{t['grad_rollout'] / t['forward']:>13.2f} {ms['relevance']:>12.1f} "
                        f"{t['relevance'] / t['forward']:>9.2f}", flush=True)
    print(f"\nbatch 1, median of {args.repeats}, {args.clock} clock; torch {torch.__version__}, {torch.get_num_threads()} CPU threads. "
          f"Aims: capture/fwd <= {CAPTURE_AIM}, relevance/fwd <= {RELEVANCE_AIM}.")

    print(f"\n{'Attention view':<22} {'device':<6} {'first run s':>11} {'layer change s':>14} {'query click s':>13}")
    for device in devices:
        v = bench_view("random:vit_base_patch16_224", device, args.repeats)
        print(f"{'vit_base_patch16_224':<22} {device.type:<6} {v['first']:>11.2f} {v['layer']:>14.2f} {v['query']:>13.2f}",
              flush=True)
    print("The page's first run includes the forward pass, one backward pass for the top class and every figure; "
          "a change re-renders from the cached pass.")


if __name__ == "__main__":
    main()
