"""``python -m training``: pretrain, finetune, evaluate, halve, quickstart; options built from the config dataclasses."""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from typing import Any, NoReturn, Optional, Sequence

from vitviz.checkpoints import ModelLoadError
from vitviz.data import DataError, describe_specs

from .config import (
    ConfigError,
    EvaluateConfig,
    FinetuneConfig,
    HalveConfig,
    PretrainConfig,
    QuickstartConfig,
    field_help,
)

__all__ = ["main", "parse", "to_argv"]

_COMMANDS = {
    "pretrain": (PretrainConfig, "jigsaw pretext: predict each shuffled patch's grid position (no positional embedding), from random weights or a jigsaw checkpoint (--init)"),
    "finetune": (FinetuneConfig, "classification, from a jigsaw checkpoint (--init) or from random weights"),
    "evaluate": (EvaluateConfig, "print a checkpoint's metrics on a split of a dataset"),
    "halve": (HalveConfig, "store a checkpoint in float16 (half the file), with its metrics before and after"),
    "quickstart": (QuickstartConfig, "train the starter models: starter-jigsaw, starter-shapes, starter-shapes-scratch"),
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one sentence and exit code 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse(argv: Sequence[str]) -> tuple[str, Any]:
    """The command and its config dataclass from a ``python -m training`` argument list (without the program).

    Options not given keep the dataclass defaults, except that ``--minutes`` without ``--steps`` sets
    ``steps=0`` (the time budget alone ends the run). Bad options exit with code 2 and one sentence.
    """
    args = _parser().parse_args(list(argv))
    config_class = _COMMANDS[args.command][0]
    given = {f.name: getattr(args, f.name) for f in fields(config_class) if hasattr(args, f.name)}
    if "minutes" in given and "steps" not in given and config_class in (PretrainConfig, FinetuneConfig):
        given["steps"] = 0  # --minutes alone: the time budget is the only limit
    return args.command, config_class(**given)


def to_argv(config: Any) -> list[str]:
    """The ``python -m training`` arguments that ``parse`` turns back into ``config`` (options that differ
    from their defaults, and ``--steps`` whenever ``--minutes`` is given)."""
    command = next((name for name, (cls, _) in _COMMANDS.items() if type(config) is cls), None)
    if command is None:
        raise TypeError(f"{type(config).__name__} is not a training command's config")
    argv = [command]
    for f in fields(config):
        value = getattr(config, f.name)
        if value == f.default and not (f.name == "steps" and getattr(config, "minutes", 0)):
            continue
        if isinstance(value, bool):
            argv.append(f"--{'' if value else 'no-'}{f.name.replace('_', '-')}")
        elif command in ("evaluate", "halve") and f.name == "checkpoint":
            argv.insert(1, str(value))
        else:
            argv += [f"--{f.name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit status (2 for bad options or inputs, 143 when stopped by a signal)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command_name, config = parse(argv)
    command = ["python", "-m", "training", *argv]
    try:
        if command_name == "evaluate":
            return _evaluate(config)
        if command_name == "halve":
            return _halve(config, command)
        if command_name == "quickstart":
            from .quickstart import quickstart

            results = quickstart(config, command)
        else:
            from .train import train

            results = [train(config, command)]
    except (ConfigError, DataError, ModelLoadError) as e:
        print(f"python -m training {command_name}: error: {e}", file=sys.stderr)
        return 2
    return 143 if any(r.interrupted for r in results) else 0


def _evaluate(config: EvaluateConfig) -> int:
    from .accuracy import evaluate_checkpoint

    card, spec, metrics = evaluate_checkpoint(config)
    print(f"{card.name} ({card.sidecar.get('kind')}) on {spec}, split {config.split}, {config.images} images")
    for key, value in metrics.items():
        print(f"  {key.ljust(22)}{value:.4f}")
    return 0


def _halve(config: HalveConfig, command: Sequence[str]) -> int:
    from .storage import halve_checkpoint

    path, before, after = halve_checkpoint(config, command)
    print(f"{path.name} stored in float16 ({path.stat().st_size / 2**20:.1f} MB)")
    for split in after:
        changes = ", ".join(f"{key} {before[split][key]:.4f} -> {value:.4f}" for key, value in after[split].items()
                            if key != "chance")
        print(f"  {split}: {changes}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training", description=sys.modules["training"].__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, (config_class, summary) in _COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=config_class.__doc__,
                                  epilog=describe_specs() if name != "quickstart" else None,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  argument_default=argparse.SUPPRESS)
        helps = field_help(config_class)
        for f in fields(config_class):
            default = f.default if f.default is not MISSING else None
            text = f"{helps[f.name]} (default: {default!r})"
            if config_class in (EvaluateConfig, HalveConfig) and f.name == "checkpoint":
                sub.add_argument("checkpoint", help=helps[f.name])
            elif isinstance(default, bool):
                sub.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, help=text)
            else:
                sub.add_argument(f"--{f.name.replace('_', '-')}", type=_type_of(default), help=text)
    return parser


def _type_of(default: Any) -> type:
    return type(default) if isinstance(default, (int, float)) else str
