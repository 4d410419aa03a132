"""Seconds for the three fine-tune modes on 200 images of your own in 3 classes, from a small and a real-size ViT.

The images: 200 generated ``shapes`` items of three classes (circle, square, triangle) at 224 px, zipped and
imported with ``vitviz.data.import_zip`` as an upload from the Train view is (160 train, 40 validation). For each
start model, every run is the Train view's job (``python -m training finetune`` with its settings: batch 32,
evaluations every fifth of the run, 128 evaluation images at most), timed on the wall clock, or with ``--clock
process`` on this process's CPU time (what a quiet machine's wall clock would show for one thread):

- linear probe: the whole run, 300 head steps: loading the model, the features of every training and validation
  image, the steps, six evaluations and their checkpoints; beside it, one forward pass over the same 200 images in
  the same process (the least any method that looks at every image once can cost);
- last 2 blocks and full fine-tune (both with timm's augmentation): images per second of their training steps,
  from two runs of 1 and 1 + ``--steps`` steps with the same evaluations (before the first step and after the
  last), whose difference is ``--steps`` steps; their ratio is what freezing the earlier blocks saves.

    python bench/finetune_modes.py                        # starter-shapes at 64 px, vit_small_patch16_224 at 224 px
    python bench/finetune_modes.py --clock process        # on a CPU shared with other jobs
    python bench/finetune_modes.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from training.config import FinetuneConfig, resolve_device  # noqa: E402
from training.finetune import ProbeFeatures  # noqa: E402
from training.train import train  # noqa: E402
from vitviz.data import SHAPES_CLASSES, import_zip, shapes_item  # noqa: E402
from vitviz.images import to_tensor  # noqa: E402
from vitviz.models import load_model  # noqa: E402

CLASSES = SHAPES_CLASSES[:3]  # circle, square, triangle
IMAGES = 200
STARTS = {"starter-shapes": 64, "vit_small_patch16_224": 224}  # start model -> its input size


def shapes_zip(count: int, size: int = 224) -> bytes:
    """``count`` shapes test items of ``CLASSES`` as PNGs in class folders, zipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        index = written = 0
        while written < count:
            image, label, _ = shapes_item(index, size, "test")
            index += 1
            if SHAPES_CLASSES[label] not in CLASSES:
                continue
            png = io.BytesIO()
            Image.fromarray(image.mul(255).round().byte().permute(1, 2, 0).numpy()).save(png, format="PNG")
            archive.writestr(f"{SHAPES_CLASSES[label]}/{index:04d}.png", png.getvalue())
            written += 1
    return buffer.getvalue()


def run(name: str, out: Path, threads: int, device: str, clock, **options) -> tuple[float, list[dict]]:
    """A training run with the Train view's settings unless ``options`` say otherwise, quiet: its seconds on
    ``clock`` and its metrics rows."""
    steps = options["steps"]
    settings = dict(batch_size=32, eval_images=128, eval_every=max(1, steps // 5), log_every=max(1, steps // 50))
    config = FinetuneConfig(name=name, data="upload:bench", out_dir=str(out), run_dir=str(out / "runs"),
                            threads=threads, device=device, **{**settings, **options})
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        start = clock()
        train(config, command=sys.argv)
        seconds = clock() - start
    rows = [json.loads(line) for line in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = all cores but one, as a job has")
    parser.add_argument("--steps", type=int, default=4, help="measured steps of the last-blocks and full runs "
                        "(default: 4)")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="wall time, or this process's CPU time (for a CPU shared with other jobs; CPU only)")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    if device.type == "cuda" and args.clock == "process":
        parser.error("--clock process measures CPU work; a GPU's work needs --clock wall")
    clock = time.process_time if args.clock == "process" else time.perf_counter

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VITVIZ_JOBS"] = str(Path(tmp) / "jobs")
        from vitviz.registry import uploads_dir

        zipped = shapes_zip(IMAGES)
        start = clock()
        import_zip(zipped, "bench", uploads_dir())
        imported = clock() - start
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"cpu, {threads} thread{'s' * (threads > 1)}"
        print(f"{IMAGES} images of {', '.join(CLASSES)} (224 px PNGs, zipped), imported in {imported:.1f} s; on {where}, "
              f"{args.clock} clock")
        print(f"{'start model':<24}{'size':>6}{'forward 200':>13}{'probe run':>11}{'/ forward':>11}"
              f"{'probe val':>11}{'last 2 img/s':>14}{'full img/s':>12}{'last 2 / full':>15}")
        for ref, size in STARTS.items():
            model = load_model(ref, device=device)
            images = torch.stack([to_tensor(Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC))
                                  for p in sorted(uploads_dir().glob("bench/*/*.png"))])
            features = ProbeFeatures(model, model.card.mean, model.card.std, 32)
            features(images[:32])  # warm-up
            features = ProbeFeatures(model, model.card.mean, model.card.std, 32)
            start = clock()
            features(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            forward = clock() - start
            del model, features

            out = Path(tmp) / ref
            probe, rows = run("probe", out, threads, str(device), clock, init=ref, image_size=size, mode="probe",
                              steps=300)
            accuracy = next(r["accuracy"] for r in rows if r["split"] == "final" and r["eval_split"] == "val")
            rates = {}
            for mode, options in (("last", dict(mode="last", train_blocks=2, augment="timm")),
                                  ("full", dict(mode="full", augment="timm"))):
                # the same start-up and evaluations (before the first step, after the last) in both: they cancel
                seconds = [run(f"{mode}-{steps}", out, threads, str(device), clock, init=ref, image_size=size,
                               steps=steps, eval_every=steps, log_every=steps, **options)[0]
                           for steps in (1, 1 + args.steps)]
                rates[mode] = 32 * args.steps / (seconds[1] - seconds[0])
            print(f"{ref:<24}{size:>6}{forward:>11.1f} s{probe:>9.1f} s{probe / forward:>10.2f}x{accuracy:>11.3f}"
                  f"{rates['last']:>14.1f}{rates['full']:>12.1f}{rates['last'] / rates['full']:>14.2f}x")


if __name__ == "__main__":
    main()
