"""Images per second of vitviz's training loop against a bare PyTorch loop, in one process.

Both train the same timm ViT (classification from scratch) with the same batch, data and optimizer
(timm AdamW); vitviz's loop adds what makes it a training run: the scheduler, gradient clipping,
loss bookkeeping, logging and checkpoints. The ratio (aim: at least 0.95) is its overhead.

    python bench/train_throughput.py                      # CPU: ViT-Ti size at 32 px, 8 px patches
    python bench/train_throughput.py --device cuda --model vit_small_patch16_224 --image-size 224
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

from training.config import FinetuneConfig, resolve_device  # noqa: E402
from training.data import build_data  # noqa: E402
from training.evaluate import normalize_images  # noqa: E402
from training.train import MEAN, STD, train  # noqa: E402
from vitviz.models import create_vit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument("--model", default="vit_tiny_patch16_224",
                        help="timm ViT whose size (width, depth, heads) is trained (default: vit_tiny_patch16_224)")
    parser.add_argument("--image-size", type=int, default=32, help="input side in pixels (default: 32)")
    parser.add_argument("--patch-size", type=int, default=0, help="patch side; 0 = 8 on a CPU, the timm model's on a GPU")
    parser.add_argument("--batch-size", type=int, default=0, help="0 = 64 on a CPU, 256 on a GPU")
    parser.add_argument("--steps", type=int, default=0, help="measured steps per loop; 0 = 30 on a CPU, 200 on a GPU")
    parser.add_argument("--data", default="digits", help="dataset spec both loops draw from (default: digits)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    batch_size = args.batch_size or (256 if on_gpu else 64)
    steps = args.steps or (200 if on_gpu else 30)
    warmup = max(5, steps // 10)
    reference = timm.create_model(args.model, pretrained=False)
    patch_size = args.patch_size or (reference.patch_embed.patch_size[0] if on_gpu else 8)
    shape = dict(embed_dim=reference.embed_dim, depth=len(reference.blocks),
                 num_heads=reference.blocks[0].attn.num_heads)
    del reference

    # the bare loop: the same model, batch, data and optimizer
    data = build_data(args.data, "train", args.image_size, device=device)
    torch.manual_seed(0)
    model = create_vit(dict(img_size=args.image_size, patch_size=patch_size, **shape, num_classes=data.num_classes,
                            class_token=True, global_pool="token")).to(device)
    config = FinetuneConfig()  # the learning rate and weight decay vitviz's loop uses
    optimizer = create_optimizer_v2(model, opt="adamw", lr=config.lr, weight_decay=config.weight_decay)
    net = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else nullcontext()
    generator = torch.Generator(device=data.device).manual_seed(0)
    log_every = max(1, steps // 10)

    def bare_step() -> None:
        images, labels = data.sample(batch_size, generator)
        with autocast:
            loss = F.cross_entropy(net(normalize_images(images, MEAN, STD)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def bare_rates() -> list[float]:
        rates = []
        for _ in range(steps // log_every):  # timed in the same intervals as vitviz's log
            if on_gpu:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(log_every):
                bare_step()
            if on_gpu:
                torch.cuda.synchronize()
            rates.append(batch_size * log_every / (time.perf_counter() - start))
        return rates

    for _ in range(warmup):
        bare_step()
    bare_before = statistics.median(bare_rates())

    # vitviz's loop: its own log gives the rate of every log interval after the warm-up
    with tempfile.TemporaryDirectory() as tmp:
        run = FinetuneConfig(name="bench", out_dir=tmp, run_dir=tmp, data=args.data, image_size=args.image_size,
                             patch_size=patch_size, model="vit_tiny", **shape, batch_size=batch_size,
                             steps=warmup + steps, eval_every=10 * (warmup + steps), eval_images=batch_size,
                             log_every=log_every, device=str(device), compile=args.compile)
        result = train(run, command=sys.argv)
        rows = [json.loads(line) for line in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()]
        rates = [r["images_per_s"] for r in rows if r["split"] == "train" and r["step"] - log_every >= warmup]
        ours = statistics.median(rates)

    # the bare loop again: machine drift shows as a difference between the two bare figures
    bare_after = statistics.median(bare_rates())
    bare = (bare_before + bare_after) / 2

    name = torch.cuda.get_device_name(device) if on_gpu else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n{args.model} size ({shape['embed_dim']} wide, {shape['depth']} deep), {args.image_size} px, "
          f"{patch_size} px patches, batch {batch_size}, {args.data}, on {name}")
    print(f"  vitviz training loop   {ours:10.1f} images/s  (median of {len(rates)} intervals; {result.steps} steps)")
    print(f"  bare PyTorch loop      {bare:10.1f} images/s  (mean of the medians before, {bare_before:.1f}, "
          f"and after, {bare_after:.1f})")
    print(f"  ratio                  {ours / bare:10.3f}")


if __name__ == "__main__":
    main()
