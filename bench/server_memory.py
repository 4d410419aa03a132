"""A served app's memory after many uploads: ``streamlit run app.py`` driven by headless Chromium.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/server_memory.py [--model random:vit_base_patch16_224]
        [--uploads 20] [--max-minutes 10] [--cache-mb 1024]

Starts the app on a free loopback port (headless), opens it in Chromium (``/usr/bin/chromium``, driven by
Python playwright; never ``playwright install``), picks ``--model`` in the sidebar, opens the Attention view
and uploads ``--uploads`` different generated photos one after another, waiting after each until the page
shows the new image and the script has finished. After each upload it prints the resident memory of the
server process and its children (``VmRSS`` from ``/proc``) and the seconds the upload took; at the end, the
resident memory after the last upload and the largest seen. The aim: under 4 GB after 20 uploads; the large
per-image results live in one cache bounded to ``$VITVIZ_CACHE_MB`` (``ui/cache.py``), set here by
``--cache-mb``. ``--max-minutes`` stops the uploads early and says how far they got.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser import open_view  # noqa: E402
from conftest import CHROMIUM, CHROMIUM_ARGS, AppServer  # noqa: E402

IDLE = ("() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app !== null && app.getAttribute('data-test-script-state') !== 'running'; }")


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A PNG of random shapes over a gradient, different for every seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.random(3) + np.linspace(0, 1, height)[:, None, None] * rng.random(3)
    image = Image.fromarray((ramp / ramp.max() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(20, 120))
        box = (int(x - r), int(y - r), int(x + r), int(y + r))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def resident_mb(pid: int) -> float:
    """``VmRSS`` of ``pid`` and every process below it, in MB (shared pages counted once per process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # fields[1]: the parent's pid
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def model_label(ref: str) -> str:
    from vitviz.registry import list_models

    for entry in list_models():
        if entry.ref == ref:
            return entry.label
    raise SystemExit(f"{ref} is not offered in the model picker")


def wait_for_image(page, name: str, timeout_ms: float) -> None:
    """Until the Attention view shows ``name`` (its caption names the image) and the script is idle."""
    page.wait_for_selector(f'main :text("{name}")', timeout=timeout_ms)
    page.wait_for_function(IDLE, timeout=timeout_ms)
    page.wait_for_selector('.js-plotly-plot .gtitle:has-text("Mean attention distance per head")', timeout=timeout_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:vit_base_patch16_224")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--max-minutes", type=float, default=10.0, help="stop uploading after this long")
    parser.add_argument("--cache-mb", type=float, default=None, help="$VITVIZ_CACHE_MB for the server (default: its own)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    label = model_label(args.model)
    folder = Path(tempfile.mkdtemp(prefix="vitviz-memory-"))
    env = {"HF_HUB_OFFLINE": "1"} | ({"VITVIZ_CACHE_MB": str(args.cache_mb)} if args.cache_mb else {})
    print(f"load average at the start: {Path('/proc/loadavg').read_text().split()[0]}; model {args.model}; "
          f"cache budget {env.get('VITVIZ_CACHE_MB', os.environ.get('VITVIZ_CACHE_MB', 'default'))} MB", flush=True)
    started = time.perf_counter()
    deadline = started + args.max_minutes * 60
    server = AppServer(folder / "streamlit-server.log", env)
    done, peak = 0, 0.0
    try:
        print(f"server up (pid {server.process.pid}): {resident_mb(server.process.pid):,.0f} MB", flush=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
            timeout_ms = max(1.0, deadline - time.perf_counter()) * 1000
            page.set_default_timeout(timeout_ms)
            page.goto(server.url)
            page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stSelectbox"]')
            page.wait_for_function(IDLE)
            page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
            page.locator('[role="option"]').filter(has_text=label).first.click()
            page.wait_for_function(IDLE)
            open_view(page, "Attention")
            page.wait_for_function(IDLE)
            print(f"model picked, Attention open: {resident_mb(server.process.pid):,.0f} MB "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            uploader = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"] input[type="file"]')
            for index in range(args.uploads):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                name = f"photo-{index + 1:02d}.png"
                path = folder / name
                path.write_bytes(photo(index))
                begin = time.perf_counter()
                uploader.set_input_files(str(path))
                try:
                    wait_for_image(page, name, left * 1000)
                except Exception as e:  # playwright's timeout: report how far it got
                    print(f"upload {index + 1} did not finish before the time limit ({type(e).__name__})", flush=True)
                    break
                done += 1
                memory = resident_mb(server.process.pid)
                peak = max(peak, memory)
                print(f"upload {done:>2}: {memory:>7,.0f} MB resident, {time.perf_counter() - begin:5.1f} s", flush=True)
            errors = page.locator('[data-testid="stException"]').count()
            browser.close()
        final = resident_mb(server.process.pid)
    finally:
        server.stop()
    print(f"after {done} of {args.uploads} uploads ({time.perf_counter() - started:.0f} s in all): {final:,.0f} MB "
          f"resident (server and children), largest seen {max(peak, final):,.0f} MB; aim under 4,096 MB; "
          f"{errors} exception(s) on the page; load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
