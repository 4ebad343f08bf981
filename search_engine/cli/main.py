"""The argument parser and the dispatch to `run` and `list`; bad input exits 2 with "field: reason"."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..data import DatasetError
from ..registry import ConfigError
from ..runtime import DEVICES
from .listing import cmd_list
from .run import DEFAULT_OBJECTIVES, cmd_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search_engine", description="Neural architecture search from the command line."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,list}")

    run = commands.add_parser("run", help="run a search and export the best model")
    source = run.add_argument_group("data (one of --dataset, --csv, --npz, --zip)")
    source.add_argument("--dataset", help="a built-in dataset name (see `list`)")
    source.add_argument("--csv", type=Path, help="a CSV file; needs --target")
    source.add_argument("--target", help="the CSV column holding the class label")
    source.add_argument("--npz", type=Path, help="an NPZ file with arrays X and y")
    source.add_argument("--zip", type=Path, help="a ZIP of image folders, one folder per class")
    source.add_argument("--image-size", type=int, default=None, help="side in pixels for --zip images")

    parts = run.add_argument_group("search")
    parts.add_argument("--space", default="mlp", help="search space (default: mlp)")
    parts.add_argument("--strategy", default="random", help="search strategy (default: random)")
    parts.add_argument("--estimator", default="train", help="performance estimator (default: train)")
    for kind in ("space", "strategy", "estimator"):
        parts.add_argument(
            f"--{kind}-opt", action="append", default=[], metavar="KEY=VALUE",
            help=f"an option of the {kind} (repeatable; see `list`)",
        )
    parts.add_argument("--oneshot", default=None,
                       help="run a one-shot method (supernet, darts) first and retrain its top architectures "
                            "as the trials (replaces --strategy)")
    parts.add_argument("--oneshot-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the one-shot method (repeatable; see `list`)")
    parts.add_argument("--fresh", action="store_true",
                       help="one-shot: start over instead of resuming from OUT/oneshot/checkpoint.pt")
    parts.add_argument("--epochs", type=int, default=None, help="sets the estimator's `epochs` option")
    parts.add_argument("--objectives", default=DEFAULT_OBJECTIVES,
                       help=f"Pareto front objectives, key:max|min, comma separated (default: {DEFAULT_OBJECTIVES})")

    limits = run.add_argument_group("budget and constraints")
    limits.add_argument("--trials", type=int, default=20, help="trained trials (default: 20)")
    limits.add_argument("--wall-time", type=float, default=None, metavar="SECONDS", help="stop after this long")
    limits.add_argument("--max-params", type=int, default=None)
    limits.add_argument("--max-flops", type=int, default=None)
    limits.add_argument("--max-size-mb", type=float, default=None)
    limits.add_argument("--max-latency-ms", type=float, default=None)

    runtime = run.add_argument_group("runtime")
    runtime.add_argument("--device", default=None, choices=DEVICES,
                         help="where trials train and latency is measured (default: auto = cuda if available)")
    runtime.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    runtime.add_argument("--seed", type=int, default=0)
    runtime.add_argument("--out", type=Path, default=None,
                         help="output folder (default: runs/<dataset>-<space>-<strategy>-seed<seed>)")
    runtime.add_argument("--quiet", action="store_true", help="no progress bar, per-trial lines or tables")

    listing = commands.add_parser("list", help="list spaces, strategies, estimators and datasets")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    return parser



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args)
        return cmd_run(args)
    except (ConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `... | head`: the reader left; exit quietly instead of a traceback.
        # As the Python docs advise: point stdout at devnull so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141

