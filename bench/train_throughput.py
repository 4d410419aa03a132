"""Images per second of vitviz's training loop against a bare PyTorch loop, in one process.

Both train the same timm ViT (classification from scratch) with the same batch, data and optimizer
(timm AdamW); vitviz's loop adds what makes it a training run: the scheduler, gradient clipping,
loss bookkeeping, logging and checkpoints. The ratio (aim: at least 0.95) is its overhead.

    python bench/train_throughput.py                      # CPU: ViT-Ti size at 32 px, 8 px patches
    python bench/train_throughput.py --clock process      # the same on a CPU shared with other jobs
    python bench/train_throughput.py --device cuda --model vit_small_patch16_224 --image-size 224
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

from training.accuracy import normalize_images  # noqa: E402
from training.config import FinetuneConfig, resolve_device  # noqa: E402
from training.train import MEAN, STD, train  # noqa: E402
from vitviz.data import build_data  # noqa: E402
from vitviz.models import create_vit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument("--model", default="vit_tiny_patch16_224",
                        help="timm ViT whose size (width, depth, heads) is trained (default: vit_tiny_patch16_224)")
    parser.add_argument("--image-size", type=int, default=32, help="input side in pixels (default: 32)")
    parser.add_argument("--patch-size", type=int, default=0, help="patch side; 0 = 8 on a CPU, the timm model's on a GPU")
    parser.add_argument("--batch-size", type=int, default=0, help="0 = 64 on a CPU, 256 on a GPU")
    parser.add_argument("--steps", type=int, default=0, help="measured steps per loop; 0 = 40 on a CPU, 300 on a GPU")
    parser.add_argument("--data", default="digits", help="dataset spec both loops draw from (default: digits)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = all cores but one, as training")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="wall time, or this process's CPU time (for a CPU shared with other jobs; CPU only)")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) - 1)  # both loops run with the same count
    torch.set_num_threads(threads)

    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu and args.clock == "process":
        parser.error("--clock process measures CPU work; a GPU's work needs --clock wall")
    clock = time.process_time if args.clock == "process" else time.perf_counter
    batch_size = args.batch_size or (256 if on_gpu else 64)
    steps = args.steps or (300 if on_gpu else 40)
    warmup = max(5, steps // 10)
    reference = timm.create_model(args.model, pretrained=False)
    patch_size = args.patch_size or (reference.patch_embed.patch_size[0] if on_gpu else 8)
    shape = dict(embed_dim=reference.embed_dim, depth=len(reference.blocks),
                 num_heads=reference.blocks[0].attn.num_heads)
    del reference

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize(device)

    # the bare loop: the same model, batch, data and optimizer
    data = build_data(args.data, "train", args.image_size, device=device)
    torch.manual_seed(0)
    model = create_vit(dict(img_size=args.image_size, patch_size=patch_size, **shape, num_classes=data.num_classes,
                            class_token=True, global_pool="token")).to(device)
    defaults = FinetuneConfig()  # the learning rate and weight decay vitviz's loop uses
    optimizer = create_optimizer_v2(model, opt="adamw", lr=defaults.lr, weight_decay=defaults.weight_decay)
    net = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()
    generator = torch.Generator(device=data.device).manual_seed(0)

    def bare_rate() -> float:
        sync()
        start = clock()
        for _ in range(steps):
            images, labels = data.sample(batch_size, generator)
            with autocast:
                loss = F.cross_entropy(net(normalize_images(images, MEAN, STD)).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
        return batch_size * steps / (clock() - start)

    # vitviz's loop: two whole runs, `warmup` and `warmup + steps` steps; their difference is `steps` steps
    # of the loop (set-up, compilation and the evaluations at the start and the end cancel out)
    def run_seconds(total_steps: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            config = FinetuneConfig(name="bench", out_dir=tmp, run_dir=tmp, data=args.data, image_size=args.image_size,
                                    patch_size=patch_size, model="vit_tiny", **shape, batch_size=batch_size,
                                    steps=total_steps, eval_every=10 * (warmup + steps), eval_images=batch_size,
                                    device=str(device), compile=args.compile, threads=threads)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                sync()
                start = clock()
                train(config, command=sys.argv)
                sync()
                return clock() - start

    bare_rate()  # warm-up
    bare_before = bare_rate()
    ours = batch_size * steps / (run_seconds(warmup + steps) - run_seconds(warmup))
    bare_after = bare_rate()  # drift of the machine shows as a difference between the two bare figures
    bare = (bare_before + bare_after) / 2

    name = torch.cuda.get_device_name(device) if on_gpu else f"cpu, {threads} thread{'s' * (threads > 1)}"
    print(f"{args.model} size ({shape['embed_dim']} wide, {shape['depth']} deep), {args.image_size} px, "
          f"{patch_size} px patches, batch {batch_size}, {args.data}, {steps} steps, on {name}, {args.clock} clock")
    print(f"  vitviz training loop   {ours:10.1f} images/s")
    print(f"  bare PyTorch loop      {bare:10.1f} images/s  (before {bare_before:.1f}, after {bare_after:.1f})")
    print(f"  ratio                  {ours / bare:10.3f}")


if __name__ == "__main__":
    main()
