"""Which map should I trust? Every attribution method scored on the shapes test split.

    python -m vitviz.explanation_benchmark starter-shapes --items 64 --out results/starter-shapes

For N seeded test items (items 0 to N-1 of the split for ``--seed``), each method's map of the
target class (the model's prediction, or the true label) is scored by deletion and insertion AUC
and ROAD's MoRF and LeRF scores (``vitviz.faithfulness``), the share of its positive mass inside the
object mask, and the pointing game; with the seconds it took per image. Two maps that know nothing
of the model are scored beside them (``vitviz.sanity``): a seeded random map (the chance level) and
a centre-biased map. The randomisation test (``vitviz.sanity.cascading_randomisation``) gives, per
method, the rank correlation of its maps with the trained model's maps once the head, then every
block, then the embeddings too are re-initialised. The tables are printed and written to ``OUT.csv``
(one row per method) and ``OUT.json`` (the settings, the table, every item's figures, each
method's randomisation curve and the methods' agreement matrix).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import torch
from torch import nn

from . import faithfulness, sanity
from .attributions import METHODS, AttributionMethod, method_by_name
from .inputs import normalize
from .models import ModelLoadError, load_model

__all__ = ["CENTRE", "COLUMNS", "RANDOM", "RANDOMISATION_COLUMNS", "SCORE_COLUMNS", "build_parser", "evaluate",
           "format_table", "main", "shapes_pixel_mean"]

RANDOM, CENTRE = sanity.RANDOM, sanity.CENTRE
# The scores of the first table, then the randomisation test's rank correlations: after the head, after the
# head and every block, after everything (embeddings too).
SCORE_COLUMNS = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "mass_in_mask", "pointing_game")
RANDOMISATION_COLUMNS = ("rho_head", "rho_blocks", "rho_all")
COLUMNS = ("method", *SCORE_COLUMNS, *RANDOMISATION_COLUMNS, "seconds_per_image")
_HEADERS = {"method": "method", "deletion_auc": "deletion AUC (lower)", "insertion_auc": "insertion AUC (higher)",
            "road_morf": "ROAD MoRF (lower)", "road_lerf": "ROAD LeRF (higher)", "mass_in_mask": "mass in mask",
            "pointing_game": "pointing game", "rho_head": "rho, head random",
            "rho_blocks": "rho, + all blocks", "rho_all": "rho, + embeddings", "seconds_per_image": "s / image"}


def shapes_pixel_mean(image_size: int, items: int = 256, seed: int = 0) -> list[float]:
    """The per-channel mean in [0, 1] of ``items`` shapes training items: the dataset mean deletion fills with."""
    from .data import fixed_set

    images, _, _ = fixed_set("shapes", "train", image_size, items, seed=seed)
    return images.mean(dim=(0, 2, 3)).tolist()


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, *,
             methods: Sequence[type[AttributionMethod]], target: Literal["prediction", "label"] = "prediction",
             steps: faithfulness.Steps = "patch", road_steps: faithfulness.Steps = "decile", road_noise: float = 0.01,
             pixel_mean: Optional[Sequence[float]] = None, ig_steps: int = 50, samples: int = 20,
             batch_size: int = 64, randomisation_items: int = 0, seed: int = 0,
             log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Score each method's maps on ``images``, and the random and centre maps beside them.

    Args:
        model: a shapes classifier from ``load_model``, in eval mode.
        images: ``[N, 3, S, S]`` in [0, 1] (normalised here); labels ``[N]``; masks bool ``[N, S, S]``.
        methods: classes from ``METHODS``.
        target: ``"prediction"`` (explain what the model decided) or ``"label"`` (the true class).
        steps: ``"patch"`` or ``"decile"`` for the deletion and insertion curves; road_steps: for ROAD's.
        road_noise: ROAD's imputation noise, in model-input units.
        pixel_mean: what deletion fills with (``faithfulness.mean_fill``); None is the normalisation mean.
        ig_steps: Integrated Gradients' path points; samples: SmoothGrad's and GradientSHAP's draws.
        batch_size: images per forward pass in the many-pass methods and the curves.
        randomisation_items: the cascading randomisation test on items 0 to this - 1 (0: not run; the
            model needs ``blocks``); seed: the random map's and the new weights' seed.
        log: called with a line of text as each method finishes.

    Returns:
        ``{"accuracy", "targets", "labels", "rows": [{COLUMNS...}], "items": {method: {column: [N values]}},
        "randomisation": {method: [[what is random, rho], ...]}, "agreement": {"methods", "matrix"}}``.
    """
    if target not in ("prediction", "label"):
        raise ValueError(f"target must be 'prediction' or 'label', not {target!r}")
    device = next(model.parameters()).device
    inputs = normalize(images.to(device), model)  # (N, 3, S, S)
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1).cpu()
    targets = predictions if target == "prediction" else labels.cpu()
    fill = faithfulness.mean_fill(model, pixel_mean)
    card = model.card
    grid = card.grid_size
    baselines = {name: (lambda m, x, name=name: sanity.baseline_maps(len(x), grid, seed)[name])
                 for name in sanity.BASELINES}
    tested = inputs[:randomisation_items]
    rows, per_item, randomisation, patches = [], {}, {}, {}
    for method in [*methods, *baselines]:
        name = method if isinstance(method, str) else method.name
        start = time.perf_counter()
        if isinstance(method, str):
            explain = baselines[method]
            patch = explain(model, inputs)  # (N, gh, gw)
            pixel = patch.repeat_interleave(card.patch_size, 1).repeat_interleave(card.patch_size, 2)
            seconds = math.nan
        else:
            options = method.options_for(path_points=ig_steps, draws=samples, batch_size=batch_size)
            explain = sanity.method_explainer(method, targets[:len(tested)], **options)
            maps = [method(model).attribute(inputs[i:i + 1], int(targets[i]), **options) for i in range(len(inputs))]
            _synchronize(device)
            seconds = (time.perf_counter() - start) / len(inputs)
            patch = torch.cat([m.patch for m in maps]).cpu()  # (N, gh, gw)
            pixel = torch.cat([m.pixel for m in maps]).cpu()  # (N, S, S)
        patches[name] = patch
        curves = faithfulness.all_curves(model, inputs, patch, targets, steps=steps, fill=fill, road_steps=road_steps,
                                         road_noise=road_noise, seed=seed, batch_size=batch_size)
        item = {
            "deletion_auc": curves["deletion"].auc.cpu().tolist(),
            "insertion_auc": curves["insertion"].auc.cpu().tolist(),
            "road_morf": curves["road-morf"].auc.cpu().tolist(),
            "road_lerf": curves["road-lerf"].auc.cpu().tolist(),
            "mass_in_mask": faithfulness.mass_in_mask(pixel, masks.cpu()).tolist(),
            "pointing_game": faithfulness.pointing_game(patch, masks.cpu()).float().tolist(),
        }
        per_item[name] = item
        cascade = sanity.cascading_randomisation(model, tested, explain, seed=seed) if len(tested) else []
        randomisation[name] = [list(entry) for entry in cascade]
        rows.append({"method": name, **{key: _mean(values) for key, values in item.items()},
                     **_randomisation_columns(cascade), "seconds_per_image": seconds})
        if log is not None:
            log(f"{name}: done in {time.perf_counter() - start:.1f} s")
    return {
        "accuracy": (predictions == labels.cpu()).float().mean().item(),
        "targets": targets.tolist(),
        "labels": labels.cpu().tolist(),
        "rows": rows,
        "items": per_item,
        "randomisation": randomisation,
        "agreement": {"methods": list(patches), "matrix": sanity.agreement(patches).tolist()},
    }


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ("method", *SCORE_COLUMNS,
                                                                           "seconds_per_image")) -> str:
    """The table as aligned text: ``columns`` of ``rows`` (the scores by default; ``("method",
    *RANDOMISATION_COLUMNS)`` for the randomisation test)."""
    header = [_HEADERS[key] for key in columns]
    lines = [[_cell(row[key]) for key in columns] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(name.lower().replace(" ", "-") for name in METHODS)
    parser = argparse.ArgumentParser(
        prog="python -m vitviz.explanation_benchmark",
        description="Score every attribution method of a shapes classifier on the shapes test split: deletion "
                    "and insertion AUC and ROAD (faithfulness), mass in the object mask and the pointing game "
                    "(localization), seconds per image, beside a random and a centre-biased map; and the "
                    "cascading model randomisation test. Prints the tables and writes OUT.csv and OUT.json.",
    )
    parser.add_argument("checkpoint", help="a shapes classifier: a checkpoint name (e.g. starter-shapes) or the "
                                           "path of its .safetensors file (with its .json sidecar)")
    parser.add_argument("--items", type=int, default=64,
                        help="how many test items to score: items 0 to N-1 of the shapes test split (default 64)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the shapes data seed (fixes the items) and the random map's seed (default 0)")
    parser.add_argument("--methods", default="all",
                        help=f"comma-separated methods, or 'all' (default): {names}")
    parser.add_argument("--target", choices=("prediction", "label"), default="prediction",
                        help="the class each map explains: the model's prediction (default) or the true label")
    parser.add_argument("--steps", choices=("patch", "decile"), default="patch",
                        help="deletion/insertion steps: one patch at a time (default) or 10%% of the patches")
    parser.add_argument("--road-steps", choices=("patch", "decile"), default="decile",
                        help="ROAD's removal steps: 10%% of the patches at a time up to 90%% (default) or one "
                             "patch at a time")
    parser.add_argument("--road-noise", type=float, default=0.01,
                        help="ROAD's imputation noise, standard deviation in model-input units (default 0.01)")
    parser.add_argument("--randomisation-items", type=int, default=None,
                        help="run the cascading model randomisation test on the first N items (default: all "
                             "--items; 0 skips it)")
    parser.add_argument("--ig-steps", type=int, default=50, help="Integrated Gradients' path points (default 50)")
    parser.add_argument("--samples", type=int, default=20,
                        help="SmoothGrad's noisy copies and GradientSHAP's draws per image (default 20)")
    parser.add_argument("--fill-items", type=int, default=256,
                        help="shapes training items whose per-channel mean deletion fills patches with (default 256)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per forward pass in the many-pass methods and the curves (default 64)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: CUDA, else MPS, else CPU; $VITVIZ_DEVICE)")
    parser.add_argument("--out", default=None,
                        help="where to write OUT.csv and OUT.json (default: attributions-CHECKPOINT in the current folder)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("items", "ig_steps", "samples", "fill_items", "batch_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, not {getattr(args, option)}")
    randomisation_items = args.items if args.randomisation_items is None else args.randomisation_items
    if not 0 <= randomisation_items <= args.items:
        parser.error(f"--randomisation-items must be from 0 to --items ({args.items}), not {randomisation_items}")
    if not args.road_noise >= 0:
        parser.error(f"--road-noise must be non-negative, not {args.road_noise}")
    try:
        methods = list(METHODS.values()) if args.methods.strip() == "all" else [
            method_by_name(name) for name in args.methods.split(",") if name.strip()]
    except ValueError as e:
        parser.error(str(e))
    try:
        model = load_model(args.checkpoint, device=args.device)
    except (ModelLoadError, ValueError, RuntimeError) as e:
        parser.error(f"cannot load checkpoint {args.checkpoint!r}: {e}")
    from .data import SHAPES_CLASSES, fixed_set

    card = model.card
    if card.class_names != SHAPES_CLASSES:
        parser.error(f"{args.checkpoint!r} is not a shapes classifier: its classes are "
                     f"{_classes_text(card.class_names)}, shapes has {', '.join(SHAPES_CLASSES)}")
    if card.image_size[0] != card.image_size[1]:
        parser.error(f"{args.checkpoint!r} takes {card.image_size[0]}x{card.image_size[1]} images; shapes are square")

    size = card.image_size[0]
    images, labels, masks = fixed_set("shapes", "test", size, args.items, seed=args.seed)
    pixel_mean = shapes_pixel_mean(size, args.fill_items, args.seed)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{card.name} ({card.provenance}) on {args.items} shapes test items, {next(model.parameters()).device}")
    result = evaluate(model, images, labels, masks, methods=methods, target=args.target, steps=args.steps,
                      road_steps=args.road_steps, road_noise=args.road_noise, pixel_mean=pixel_mean,
                      ig_steps=args.ig_steps, samples=args.samples, batch_size=args.batch_size,
                      randomisation_items=randomisation_items, seed=args.seed, log=log)

    print(f"{card.name}: accuracy {result['accuracy']:.3f} on {args.items} shapes test items "
          f"(seed {args.seed}); maps explain the {args.target}; {args.steps} steps, ROAD {args.road_steps}")
    print(format_table(result["rows"]))
    if randomisation_items:
        print(f"\nCascading model randomisation on {randomisation_items} items: Spearman rank correlation with the "
              "trained model's maps")
        print(format_table(result["rows"], ("method", *RANDOMISATION_COLUMNS)))
    out = Path(args.out) if args.out else Path(f"attributions-{card.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(result["rows"])
    settings = {"checkpoint": args.checkpoint, "model": card.name, "provenance": card.provenance,
                "device": str(next(model.parameters()).device), "split": "test", "items": args.items, "seed": args.seed,
                "target": args.target, "steps": args.steps, "road_steps": args.road_steps,
                "road_noise": args.road_noise, "randomisation_items": randomisation_items,
                "ig_steps": args.ig_steps, "samples": args.samples,
                "deletion_fill_pixel_mean": pixel_mean, "fill_items": args.fill_items,
                "insertion_blur_sigma": card.patch_size / 2}
    document = {"settings": settings, **result}
    out.with_name(out.name + ".json").write_text(json.dumps(_json_ready(document), indent=2, allow_nan=False))
    print(f"wrote {out}.csv and {out}.json")
    return 0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _randomisation_columns(cascade: Sequence[tuple[str, float]]) -> dict[str, float]:
    """rho after the head, after the head and every block, after everything; NaN where the test did not run."""
    if not cascade:
        return dict.fromkeys(RANDOMISATION_COLUMNS, math.nan)
    blocks = [rho for label, rho in cascade if "block" in label and "embeddings" not in label]
    return {"rho_head": cascade[0][1], "rho_blocks": blocks[-1] if blocks else math.nan, "rho_all": cascade[-1][1]}


def _mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _json_ready(value: Any) -> Any:
    """NaN (a map with no positive mass, the random map's time) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _classes_text(names: Sequence[str]) -> str:
    if not names:
        return "none (no classifier head)"
    shown = ", ".join(names[:6])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > 6 else shown


if __name__ == "__main__":
    sys.exit(main())
