"""Which map should I trust? Every attribution method of any classifier, scored on held-out items.

    python -m vitviz.explanation_benchmark starter-shapes --items 64 --out results/starter-shapes
    python -m vitviz.explanation_benchmark vit_small_patch16_224.augreg_in21k_ft_in1k --items 16 \
        --methods saliency,attention-rollout,relevance,grad-cam

A shapes classifier is scored on N seeded items of the shapes test split (items 0 to N-1 for
``--seed``), which have object masks. Any other classifier (a timm ImageNet model whose weights are
cached, ``random:NAME``, ``hf-hub:ORG/NAME``, a checkpoint of other classes) is scored on N items drawn
from the bundled natural colour photos (``photo_items``: each photo whole, then seeded square crops of
it, as the model's own data config sees them); photos have no masks, so localization is skipped and
said to be. Each method's map of the target class (the model's prediction; for shapes, or the true
label) is scored by deletion and insertion AUC and ROAD's MoRF and LeRF scores
(``vitviz.faithfulness``), with masks the share of its positive mass inside the object mask and the
pointing game; with the seconds it took per image. Two maps that know nothing of the model are scored
beside them (``vitviz.sanity``): a seeded random map (the chance level) and a centre-biased map. The
randomisation test (``vitviz.sanity.cascading_randomisation``) gives, per method, the rank
correlation of its maps with the trained model's maps once the head, then every block, then the
embeddings too are re-initialised. The tables are printed and written to ``OUT.csv`` (one row per
method) and ``OUT.json`` (the settings, the table, every item's figures, each method's randomisation
curve and the methods' agreement matrix).

A model with no classifier head (a self-supervised DINO, a jigsaw checkpoint) has no class to
explain and is refused; so is a timm name whose weights are not downloaded (``python -m vitviz fetch
NAME`` gets them). Each refusal is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Literal, NoReturn, Optional, Sequence

import numpy as np
import torch
from torch import nn

from . import faithfulness, sanity
from .attributions import METHODS, AttributionMethod, method_by_name
from .card import ModelCard
from .hub import WeightsNotDownloaded
from .inputs import model_pixels, normalize
from .models import ModelLoadError, load_model
from .samples import NATURAL_PHOTOS, load_sample

__all__ = ["CENTRE", "COLUMNS", "LOCALIZATION_SKIPPED", "RANDOM", "RANDOMISATION_COLUMNS",
           "SCORE_COLUMNS", "build_parser", "evaluate", "format_table", "main", "no_head_sentence", "photo_items",
           "shapes_pixel_mean"]

RANDOM, CENTRE = sanity.RANDOM, sanity.CENTRE
# The scores of the first table (the last two, localization, NaN for items without object masks), then the
# randomisation test's rank correlations: after the head, after the head and every block, after everything
# (embeddings too).
SCORE_COLUMNS = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "mass_in_mask", "pointing_game")
RANDOMISATION_COLUMNS = ("rho_head", "rho_blocks", "rho_all")
COLUMNS = ("method", *SCORE_COLUMNS, *RANDOMISATION_COLUMNS, "seconds_per_image")
_HEADERS = {"method": "method", "deletion_auc": "deletion AUC (lower)", "insertion_auc": "insertion AUC (higher)",
            "road_morf": "ROAD MoRF (lower)", "road_lerf": "ROAD LeRF (higher)", "mass_in_mask": "mass in mask",
            "pointing_game": "pointing game", "rho_head": "rho, head random",
            "rho_blocks": "rho, + all blocks", "rho_all": "rho, + embeddings", "seconds_per_image": "s / image"}
PROG = "python -m vitviz.explanation_benchmark"
LOCALIZATION_SKIPPED = ("Localization (mass in mask, pointing game) needs ground-truth object masks, which the sample "
                        "photos do not have: skipped (shown as -).")
_CROP_AREA = (0.25, 1.0)  # a photo item's square crop covers this share of the photo's largest square


def shapes_pixel_mean(image_size: int, items: int = 256, seed: int = 0) -> list[float]:
    """The per-channel mean in [0, 1] of ``items`` shapes training items: the dataset mean deletion fills with."""
    from .data import fixed_set

    images, _, _ = fixed_set("shapes", "train", image_size, items, seed=seed)
    return images.mean(dim=(0, 2, 3)).tolist()


def photo_items(model: nn.Module, count: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``count`` items from the bundled natural colour photos, as the model sees them, for a model with no data set.

    Item k comes from photo ``NATURAL_PHOTOS[k % P]`` (the photos held out from jigsaw training first):
    the whole photo the first time round, then a square crop of it (side drawn so the crop covers 25% to
    100% of the photo's largest square, placed at random; ``numpy.random.default_rng([seed, k])``). Each
    goes through the model's own evaluation transform (``vitviz.inputs.model_pixels``: timm's resize and
    centre crop at the model's input size).

    Args:
        model: what ``vitviz.models.load_model`` returns.
        count: N, at least 1.
        seed: the crops' seed (the whole photos do not depend on it).

    Returns:
        ``images [N, 3, H, W]`` in [0, 1] on the CPU, and each item's source in words
        (``"chelsea"``, ``"coffee, crop 300 px at (12, 40)"``).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    images, sources = [], []
    for index in range(count):
        name = NATURAL_PHOTOS[index % len(NATURAL_PHOTOS)]
        photo = load_sample(name)
        if index < len(NATURAL_PHOTOS):
            view, source = photo, name
        else:
            rng = np.random.default_rng([seed, index])
            largest = min(photo.size)
            side = max(1, round(largest * math.sqrt(rng.uniform(*_CROP_AREA))))
            left = int(rng.integers(0, photo.width - side + 1))
            top = int(rng.integers(0, photo.height - side + 1))
            view, source = photo.crop((left, top, left + side, top + side)), f"{name}, crop {side} px at ({left}, {top})"
        images.append(model_pixels(view, model).cpu())  # (1, 3, H, W) in [0, 1]
        sources.append(source)
    return torch.cat(images), sources


def evaluate(model: nn.Module, images: torch.Tensor, labels: Optional[torch.Tensor] = None,
             masks: Optional[torch.Tensor] = None, *,
             methods: Sequence[type[AttributionMethod]], target: Literal["prediction", "label"] = "prediction",
             steps: faithfulness.Steps = "patch", road_steps: faithfulness.Steps = "decile", road_noise: float = 0.01,
             pixel_mean: Optional[Sequence[float]] = None, ig_steps: int = 50, samples: int = 20,
             batch_size: int = 64, randomisation_items: int = 0, seed: int = 0,
             log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Score each method's maps on ``images``, and the random and centre maps beside them.

    Args:
        model: a classifier from ``load_model`` (a model with class names), in eval mode.
        images: ``[N, 3, H, W]`` in [0, 1] (normalised here) at the model's input size.
        labels: ``[N]`` true classes, or None (no labels: no accuracy, the target must be the prediction).
        masks: bool ``[N, H, W]`` object masks, or None: mass in mask and the pointing game are then NaN
            in the rows and absent from the items.
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
        "randomisation": {method: [[what is random, rho], ...]}, "agreement": {"methods", "matrix"}}``;
        ``accuracy`` and ``labels`` are None without labels.

    Raises:
        ValueError: an unknown target, ``"label"`` without labels, a model with no classifier head.
    """
    if target not in ("prediction", "label"):
        raise ValueError(f"target must be 'prediction' or 'label', not {target!r}")
    if target == "label" and labels is None:
        raise ValueError("target 'label' needs labels; these items have none: explain the prediction")
    if model.card.num_classes == 0:
        raise ValueError(no_head_sentence(model.card))
    device = next(model.parameters()).device
    inputs = normalize(images.to(device), model)  # (N, 3, S, S)
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1).cpu()
    targets = predictions if target == "prediction" else labels.cpu()  # (N,)
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
        }
        if masks is not None:
            item["mass_in_mask"] = faithfulness.mass_in_mask(pixel, masks.cpu()).tolist()
            item["pointing_game"] = faithfulness.pointing_game(patch, masks.cpu()).float().tolist()
        per_item[name] = item
        cascade = sanity.cascading_randomisation(model, tested, explain, seed=seed) if len(tested) else []
        randomisation[name] = [list(entry) for entry in cascade]
        scores = {key: _mean(item[key]) if key in item else math.nan for key in SCORE_COLUMNS}
        rows.append({"method": name, **scores, **_randomisation_columns(cascade), "seconds_per_image": seconds})
        if log is not None:
            log(f"{name}: done in {time.perf_counter() - start:.1f} s")
    return {
        "accuracy": None if labels is None else (predictions == labels.cpu()).float().mean().item(),
        "targets": targets.tolist(),
        "labels": None if labels is None else labels.cpu().tolist(),
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


def no_head_sentence(card: ModelCard) -> str:
    """Why a model with no classifier head cannot be scored, in one sentence."""
    what = ("its only head is the jigsaw head, which predicts patch positions" if card.has_jigsaw_head else
            "it gives features only, as self-supervised models such as DINO do")
    return (f"{card.name} has no classifier head ({what}): every score here is of a map explaining one class, so "
            "there is nothing to explain; pick a classifier.")


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(name.lower().replace(" ", "-") for name in METHODS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score every attribution method of a classifier: deletion and insertion AUC and ROAD "
                    "(faithfulness), seconds per image, beside a random and a centre-biased map, and the cascading "
                    "model randomisation test. A shapes classifier is scored on the shapes test split, with mass in "
                    "the object mask and the pointing game (localization); any other classifier on items drawn from "
                    "the bundled natural colour photos, which have no masks, so localization is skipped. Prints "
                    "the tables and writes OUT.csv and OUT.json.",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a classifier: a checkpoint name (e.g. starter-shapes) or the path of its weights file; a "
                             "timm name whose pretrained weights are cached (python -m vitviz fetch NAME), e.g. "
                             "vit_small_patch16_224.augreg_in21k_ft_in1k; random:NAME for random weights; or "
                             "hf-hub:ORG/NAME")
    parser.add_argument("--items", type=int, default=64,
                        help="how many items to score (default 64): items 0 to N-1 of the shapes test split, or for "
                             "other models each natural sample photo whole, then seeded square crops of them")
    parser.add_argument("--seed", type=int, default=0,
                        help="the shapes data seed or the photo crops' seed (fixes the items), the random map's seed, "
                             "and the seed a random:NAME model's weights are drawn from (default 0)")
    parser.add_argument("--methods", default="all",
                        help=f"comma-separated methods, or 'all' (default): {names}. At 224 px Score-CAM and "
                             "Ablation-CAM take one forward pass per channel, Integrated Gradients, SmoothGrad and "
                             "GradientSHAP tens, Occlusion and Feature ablation one per patch: leave them out for a "
                             "quick table")
    parser.add_argument("--target", choices=("prediction", "label"), default="prediction",
                        help="the class each map explains: the model's (top-1) prediction (default) or the true label "
                             "(shapes only: the photos have no labels)")
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
                        help="shapes training items whose per-channel mean deletion fills patches with (default 256); "
                             "on photos deletion fills with the model's normalisation mean")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per forward pass in the many-pass methods and the curves (default 64)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: CUDA, else MPS, else CPU; $VITVIZ_DEVICE)")
    parser.add_argument("--out", default=None,
                        help="where to write OUT.csv and OUT.json (default: attributions-MODEL in the current folder)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; argument errors and refusals exit with status 2 (``SystemExit``), refusals in one line."""
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
    if not methods:
        parser.error("--methods names no method")
    model = _load_classifier(args.model, args.device, args.seed)
    from .data import SHAPES_CLASSES, fixed_set

    card = model.card
    shapes = card.class_names == SHAPES_CLASSES
    if shapes and card.image_size[0] != card.image_size[1]:
        _refuse(f"{card.name} takes {card.image_size[0]}x{card.image_size[1]} images; shapes are square")
    if not shapes and args.target == "label":
        _refuse(f"--target label needs labelled items, and {card.name} is not a shapes classifier: it is scored on "
                "the sample photos, which have no labels; leave --target at prediction")

    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    device = next(model.parameters()).device
    if shapes:
        size = card.image_size[0]
        images, labels, masks = fixed_set("shapes", "test", size, args.items, seed=args.seed)
        pixel_mean = shapes_pixel_mean(size, args.fill_items, args.seed)
        sources, data = None, f"{args.items} shapes test items"
    else:
        images, sources = photo_items(model, args.items, args.seed)
        labels = masks = pixel_mean = None
        whole = ", ".join(sources[:len(NATURAL_PHOTOS)])
        crops = args.items - len(NATURAL_PHOTOS)
        data = f"{args.items} sample-photo items (the whole photos {whole}" + (
            f", then {crops} seeded square crops of them)" if crops > 0 else ")")
    log(f"{card.name} ({card.provenance}) on {data}, {device}")
    result = evaluate(model, images, labels, masks, methods=methods, target=args.target, steps=args.steps,
                      road_steps=args.road_steps, road_noise=args.road_noise, pixel_mean=pixel_mean,
                      ig_steps=args.ig_steps, samples=args.samples, batch_size=args.batch_size,
                      randomisation_items=randomisation_items, seed=args.seed, log=log)

    curves = f"{args.steps} steps, ROAD {args.road_steps}"
    if shapes:
        print(f"{card.name}: accuracy {result['accuracy']:.3f} on {data} (seed {args.seed}); maps explain the "
              f"{args.target}; {curves}")
    else:
        print(f"{card.name}: {data}, seed {args.seed}; maps explain the model's top-1 prediction "
              f"({_predictions_text(result['targets'], card)}); {curves}")
        print(LOCALIZATION_SKIPPED)
    print(format_table(result["rows"]))
    if randomisation_items:
        print(f"\nCascading model randomisation on {randomisation_items} items: Spearman rank correlation with the "
              "trained model's maps")
        print(format_table(result["rows"], ("method", *RANDOMISATION_COLUMNS)))
    out = Path(args.out) if args.out else Path(f"attributions-{_file_name(card.name)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(result["rows"])
    settings = {"checkpoint": args.model, "model": card.name, "provenance": card.provenance, "device": str(device),
                "data": "shapes" if shapes else "sample photos", "split": "test" if shapes else None,
                "items": args.items, "seed": args.seed,
                "target": args.target, "steps": args.steps, "road_steps": args.road_steps,
                "road_noise": args.road_noise, "randomisation_items": randomisation_items,
                "ig_steps": args.ig_steps, "samples": args.samples,
                "deletion_fill_pixel_mean": pixel_mean if shapes else list(card.mean),
                "fill_items": args.fill_items if shapes else None,
                "insertion_blur_sigma": card.patch_size / 2,
                "localization": "mass in mask, pointing game" if shapes else LOCALIZATION_SKIPPED}
    extra = {} if shapes else {"item_sources": sources,
                               "predicted_classes": [card.class_names[t] for t in result["targets"]]}
    document = {"settings": settings, **result, **extra}
    out.with_name(out.name + ".json").write_text(json.dumps(_json_ready(document), indent=2, allow_nan=False))
    print(f"wrote {out}.csv and {out}.json")
    return 0


def _load_classifier(ref: str, device: Optional[str], seed: int) -> nn.Module:
    """``load_model(ref)``, or one line on stderr and exit status 2: not loadable, not downloaded, no classifier
    head. The global torch seed is set first, so a ``random:NAME`` model's weights are the same on every run."""
    torch.manual_seed(seed)
    try:
        model = load_model(ref, device=device)
    except WeightsNotDownloaded as e:
        headless = _headless_timm_name(ref)
        _refuse(f"{headless} has no classifier head (it gives features only, as self-supervised models such as DINO "
                "do): every score here is of a map explaining one class, so there is nothing to explain; pick a "
                "classifier." if headless else str(e))
    except (ModelLoadError, ValueError, RuntimeError, OSError) as e:
        _refuse(f"cannot load {ref!r}: {e}")
    if model.card.num_classes == 0:
        _refuse(no_head_sentence(model.card))
    return model


def _headless_timm_name(ref: str) -> Optional[str]:
    """The timm name ``ref`` names when timm's pretrained config gives it no classifier (``num_classes`` 0), else None:
    such a model is refused before anyone downloads it."""
    import timm

    name = ref.strip().removeprefix("timm:")
    if name.startswith(("random:", "hf-hub:")) or not timm.is_model(name):
        return None
    cfg = timm.models.get_pretrained_cfg(name)
    return name if cfg is not None and cfg.num_classes == 0 else None


def _refuse(message: str) -> NoReturn:
    """One line on stderr, exit status 2 (as argparse's errors)."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)


def _predictions_text(targets: Sequence[int], card: ModelCard) -> str:
    """How many classes the items were explained for, and the most frequent one."""
    counts = Counter(targets)
    (top, times), = counts.most_common(1)
    return (f"{len(counts)} distinct class{'es' if len(counts) != 1 else ''}; most often {card.class_names[top]!r}, "
            f"{times} of {len(targets)}")


def _file_name(name: str) -> str:
    """A model name as part of a file name: ``hf-hub:org/x (random init)`` to ``hf-hub-org-x-random-init``."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-") or "model"


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


if __name__ == "__main__":
    sys.exit(main())
