"""Command line: `python -m search_engine run ...` and `python -m search_engine list`.

    python -m search_engine run --dataset digits --space nb201 --strategy evolution \
        --estimator train --trials 20 --epochs 3 --max-params 100000 --seed 0 --out runs/demo
    python -m search_engine list [--json]

Bad input (an unknown option, a value of the wrong type, an unreadable file) exits with
status 2 and a "field: reason" line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data, export
from .constraints import Constraints
from .loop import Callbacks, Outcome, SearchResult, counts_against_budget, run_search
from .oneshot import ONESHOT, create_oneshot, fixed_strategy_config
from .pareto import pareto_front, parse_objectives
from .registry import (
    ESTIMATORS,
    SPACES,
    STRATEGIES,
    ConfigError,
    create_estimator,
    create_space,
    create_strategy,
)
from .runtime import DEVICES, resolve_device
from .types import COMPLETED, Budget

DEFAULT_OBJECTIVES = "val_acc:max,params:min,latency_ms:min"
TOP_N = 10


# -- argument parsing -------------------------------------------------------------------------
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


def parse_key_values(flag: str, items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(flag, f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args)
        return cmd_run(args)
    except (ConfigError, data.DatasetError) as exc:
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


# -- list -------------------------------------------------------------------------------------
def catalogue() -> dict:
    return {
        "spaces": SPACES.describe(),
        "strategies": STRATEGIES.describe(),
        "estimators": ESTIMATORS.describe(),
        "oneshot": ONESHOT.describe(),
        "datasets": builtin_datasets(),
    }


def builtin_datasets() -> dict[str, str]:
    return dict(sorted(data.BUILTIN_DATASETS.items()))


def cmd_list(args) -> int:
    cat = catalogue()
    if args.json:
        print(json.dumps(cat, indent=2, default=_json_default))
        return 0
    for section in ("spaces", "strategies", "estimators", "oneshot"):
        print(f"{section}:")
        for name, entry in cat[section].items():
            print(f"  {name}" + (f"  - {entry['help']}" if entry["help"] else ""))
            for opt_name, opt in entry["options"].items():
                extras = []
                if opt.get("choices") is not None:
                    extras.append("choices: " + ", ".join(map(str, opt["choices"])))
                if opt.get("min") is not None:
                    extras.append(f"min {opt['min']:g}")
                if opt.get("max") is not None:
                    extras.append(f"max {opt['max']:g}")
                line = f"      {opt_name} ({opt['type']}, default {opt['default']!r})"
                if opt.get("help"):
                    line += f": {opt['help']}"
                if extras:
                    line += f" [{'; '.join(extras)}]"
                print(line)
        print()
    print("datasets (built in):")
    for name, help_text in cat["datasets"].items():
        print(f"  {name}" + (f"  - {help_text}" if help_text else ""))
    return 0


# -- run --------------------------------------------------------------------------------------
def dataset_spec(args) -> dict:
    """The spec data.load_dataset shares with the web side: {"builtin": name} or a file plus options."""
    sources = [flag for flag in ("dataset", "csv", "npz", "zip") if getattr(args, flag) is not None]
    if len(sources) != 1:
        raise ConfigError("dataset", "give exactly one of --dataset, --csv, --npz, --zip")
    if args.target is not None and args.csv is None:
        raise ConfigError("target", "--target only applies to --csv")
    if args.image_size is not None and args.zip is None:
        raise ConfigError("image_size", "--image-size only applies to --zip")
    if args.dataset is not None:
        return {"builtin": args.dataset, "seed": args.seed}
    if args.csv is not None:
        if not args.target:
            raise ConfigError("target", "--csv needs --target COLUMN")
        return {"csv": str(args.csv), "target": args.target, "seed": args.seed}
    if args.npz is not None:
        return {"npz": str(args.npz), "seed": args.seed}
    extra = {"image_size": args.image_size} if args.image_size is not None else {}
    return {"zip": str(args.zip), "seed": args.seed, **extra}


def estimator_config(args) -> dict:
    config: dict[str, Any] = parse_key_values("estimator-opt", args.estimator_opt)
    schema = ESTIMATORS.get(args.estimator).options
    for key, value in (("epochs", args.epochs), ("device", args.device), ("threads", args.threads)):
        if value is None or (key == "device" and key not in schema and value != "cuda"):
            continue  # an estimator without a device option runs on the CPU; only cuda needs one
        if key not in schema:
            raise ConfigError(key, f"estimator {args.estimator!r} has no {key!r} option")
        if key in config and str(config[key]) != str(value):
            raise ConfigError(key, f"given both as --{key} and --estimator-opt {key}=")
        config[key] = value
    return config


def positive(name: str, value, kind=float):
    if value is not None and (not isinstance(value, (int, float)) or value <= 0):
        raise ConfigError(name, f"must be > 0, got {value!r}")
    return kind(value) if value is not None else None


def cmd_run(args) -> int:
    trials = positive("trials", args.trials, int)
    wall_time = positive("wall_time", args.wall_time)
    positive("threads", args.threads, int)
    try:
        objectives = parse_objectives(o.strip() for o in args.objectives.split(",") if o.strip())
    except ValueError as exc:
        raise ConfigError("objectives", str(exc)) from None
    if not objectives:
        raise ConfigError("objectives", "give at least one key:max|min")
    estimator = create_estimator(args.estimator, **estimator_config(args))
    device = resolve_device(args.device or estimator.config.get("device") or "auto")
    constraints = Constraints(
        max_params=args.max_params, max_flops=args.max_flops, max_size_mb=args.max_size_mb,
        max_latency_ms=args.max_latency_ms, latency_device=device.type,
    )
    space = create_space(args.space, **parse_key_values("space-opt", args.space_opt))
    strategy = create_strategy(
        args.strategy, space, seed=args.seed, **parse_key_values("strategy-opt", args.strategy_opt)
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = dataset_spec(args)
    task = data.load_dataset(spec)
    # A space that cannot take this data (nb201 on a table) says so before the search starts.
    space.build(space.sample(np.random.default_rng(args.seed)), task)
    method = args.oneshot or args.strategy
    out = args.out or Path("runs") / f"{task.name}-{args.space}-{method}-seed{args.seed}"
    say = (lambda *a, **k: None) if args.quiet else print
    oneshot_result = None
    if args.oneshot:
        job = create_oneshot(args.oneshot, space, seed=args.seed, **parse_key_values("oneshot-opt", args.oneshot_opt))
        say(f"one-shot {args.oneshot}: training on {task.name}, checkpoints in {out / 'oneshot'}")
        oneshot_result = job.run(
            task, report_progress=lambda step, values: say(oneshot_line(step, values)),
            checkpoint_dir=out / "oneshot", resume=not args.fresh,
        )
        say(f"one-shot {args.oneshot}: {oneshot_result.stopped_because} after {oneshot_result.cost_s:.1f}s; "
            f"retraining its top {len(oneshot_result.top_archs)} architectures")
        # The job's top architectures become the trials: training, constraints, export and the
        # Pareto front then work exactly as for any other search.
        strategy = create_strategy("fixed", space, seed=args.seed, **fixed_strategy_config(oneshot_result, space))
        trials = min(trials, len(oneshot_result.top_archs))

    config = {
        "dataset": spec,
        "space": {"name": args.space, "config": space.config},
        "strategy": {"name": strategy.name, "config": strategy.config},
        "estimator": {"name": args.estimator, "config": estimator.config},
        "constraints": constraints.to_dict(),
        "budget": {"trials": trials, "wall_time_s": wall_time},
        "objectives": [f"{k}:{d}" for k, d in objectives],
        "device": {"requested": args.device or estimator.config.get("device") or "auto", "resolved": device.type},
        "threads": args.threads,
        "seed": args.seed,
    }
    if oneshot_result is not None:
        config["oneshot"] = {"name": args.oneshot, "config": job.config}
    say(f"dataset {task.name}: {_dataset_line(task)}")
    say(f"space {args.space} ({_cardinality(space)}), strategy {strategy.name}, estimator {args.estimator}, "
        f"{trials} trials" + (f", wall time {wall_time:g}s" if wall_time else ""))

    progress = Progress(space, trials, quiet=args.quiet)
    try:
        result = run_search(
            task=task, space=space, strategy=strategy, estimator=estimator, constraints=constraints,
            budget=Budget(trials=trials, wall_time_s=wall_time), seed=args.seed,
            callbacks=progress.callbacks(),
        )
    finally:
        progress.close()

    say("")
    say(f"stopped: {result.stopped_because} after {result.wall_time_s:.1f}s "
        f"({len(result.evaluated)} trained, {len(result.outcomes) - len(result.evaluated)} rejected before training)")
    ranked = ranked_outcomes(result.outcomes)
    front = pareto_front([o for o in result.outcomes if o.state == COMPLETED], objectives)
    if not args.quiet:
        print_ranked(ranked[:TOP_N], space)
        print_pareto(front, objectives, space)
    missing = [k for k, _ in objectives if not any(k in o.metrics for o in result.outcomes if o.state == COMPLETED)]
    if missing and ranked:
        print(f"warning: no completed trial has objective(s) {', '.join(missing)}; the Pareto front is empty",
              file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    exported, export_error = None, ""
    try:
        exported = export_best(result, space, task, out / "best")
    except (export.ExportError, export.ModelFileError) as exc:
        export_error = str(exc)
    results = {
        "config": config,
        "dataset": data.describe_task(task),
        "trials": [o.to_dict() for o in result.outcomes],
        "best": result.best.to_dict() if result.best else None,
        "exported": exported,
        "export_error": export_error or None,
        "pareto": [
            {"number": o.number, **{k: o.metrics.get(k) for k, _ in objectives}} for o in front
        ],
        "wall_time_s": round(result.wall_time_s, 3),
        "stopped_because": result.stopped_because,
        "oneshot": oneshot_result.to_dict() if oneshot_result is not None else None,
    }
    results_path = out / "results.json"
    results_path.write_text(json.dumps(_jsonable(results), indent=2, default=_json_default) + "\n")

    print(f"results: {results_path}")
    if result.best is None:
        print("no completed trial: nothing to export")
        return 1
    best = result.best
    print(f"best: trial #{best.number}  val acc {_pct(best.metrics.get('val_acc'))}  "
          f"test acc {_pct(best.metrics.get('test_acc'))}  {space.describe(best.arch)}")
    if export_error:
        print(f"error: export failed: {export_error}", file=sys.stderr)
        return 1
    if exported is None:
        print(f"estimator {estimator.name!r} trains no network: nothing to export")
        return 0
    for fmt, path in exported["files"].items():
        print(f"  {fmt:<12s} {path}")
    others = ", ".join(f"{fmt} {_pct(acc)}" for fmt, acc in exported["test_acc_by_format"].items()
                       if fmt != "torchscript")
    print(f"exported best model test accuracy: {_pct(exported['test_acc'])} on {exported['test_samples']} "
          f"test samples, re-measured from {exported['files'].get('torchscript', 'the export')}"
          + (f" ({others})" if others else ""))
    return 0


def oneshot_line(step: int, values: dict) -> str:
    keys = ("epoch", "supernet_loss", "supernet_acc", "val_acc", "genotype", "skip_fraction", "best_val_acc")
    shown = "  ".join(f"{k} {_fmt(k, values[k])}" for k in keys if k in values)
    return f"  [{values.get('phase', 'train')} {step}] {shown}"


def _dataset_line(task) -> str:
    d = task.describe()
    sizes = d["sizes"]
    return (f"{d['kind']} {tuple(d['input_shape'])}, {d['num_classes']} classes, "
            f"{sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test")


def _cardinality(space) -> str:
    try:
        return f"{space.cardinality():,} architectures"
    except Exception:  # a space too large to enumerate may refuse; it is only informative here
        return "size unknown"


# -- progress and tables ----------------------------------------------------------------------
class Progress:
    """tqdm bar over trained trials with the best so far; one line per finished trial."""

    def __init__(self, space, trials: int, quiet: bool = False):
        self.space = space
        self.quiet = quiet
        self.best: float | None = None
        self.current = ""
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            # disable=None: a bar on a terminal, plain per-trial lines in logs and CI.
            self.bar = tqdm(total=trials, unit="trial", dynamic_ncols=True, file=sys.stderr, disable=None)

    def callbacks(self) -> Callbacks:
        return Callbacks(on_trial_start=self.start, on_epoch=self.epoch, on_trial_end=self.end)

    def _postfix(self, extra: str = "") -> None:
        if self.bar is None:
            return
        best = f"best {self.best:.4f}" if self.best is not None else "best -"
        self.bar.set_postfix_str(f"{best}{'  ' + extra if extra else ''}", refresh=True)

    def start(self, number: int, candidate) -> None:
        self.current = f"#{number}"
        self._postfix(f"{self.current} training")

    def epoch(self, number: int, step: int, metrics: dict) -> None:
        val = metrics.get("val_acc")
        self._postfix(f"#{number} epoch {step}" + (f" val {val:.4f}" if isinstance(val, (int, float)) else ""))

    def end(self, outcome: Outcome) -> None:
        if outcome.state == COMPLETED and outcome.objective is not None:
            if self.best is None or outcome.objective > self.best:
                self.best = outcome.objective
        if self.bar is None:
            return
        from tqdm import tqdm

        tqdm.write(trial_line(outcome, self.space))
        if counts_against_budget(outcome):
            self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def trial_line(o: Outcome, space) -> str:
    m = o.metrics
    parts = [
        f"#{o.number:<3d}",
        f"{o.state:<10s}",
        (f"val {_pct(m.get('val_acc')):>7s}" if m.get("val_acc") is not None or o.objective is None
         else f"obj {o.objective:>7.4g}"),
        f"params {_si(m.get('params')):>6s}",
        f"FLOPs {_si(m.get('flops')):>6s}",
        f"lat {_ms(m.get('latency_ms')):>8s}",
        f"{o.duration_s:6.1f}s",
        _short(space.describe(o.arch)),
    ]
    if o.error:
        reason = o.error.strip().splitlines()[-1] if o.state != "infeasible" else o.error
        parts.append(f"[{reason}]")
    return "  ".join(parts)


def ranked_outcomes(outcomes: list[Outcome]) -> list[Outcome]:
    scored = [o for o in outcomes if o.state == COMPLETED and o.objective is not None]
    return sorted(scored, key=lambda o: (-o.objective, o.number))


def print_ranked(ranked: list[Outcome], space) -> None:
    # Zero-cost and proxy estimators score with something other than validation accuracy.
    show_objective = any(o.objective != o.metrics.get("val_acc") for o in ranked)
    print(f"\ntop {len(ranked)} by objective" + ("" if show_objective else " (validation accuracy)") + ":")
    rows = [["rank", "trial", *(["objective"] if show_objective else []), "val acc", "test acc", "params",
             "FLOPs", "latency", "time", "architecture"]]
    for rank, o in enumerate(ranked, 1):
        m = o.metrics
        rows.append([
            str(rank), f"#{o.number}", *([f"{o.objective:.4g}"] if show_objective else []),
            _pct(m.get("val_acc")), _pct(m.get("test_acc")), _si(m.get("params")), _si(m.get("flops")),
            _ms(m.get("latency_ms")), f"{o.duration_s:.1f}s", _short(space.describe(o.arch)),
        ])
    print_table(rows)


def print_pareto(front: list[Outcome], objectives, space) -> None:
    names = ", ".join(f"{k} ({d})" for k, d in objectives)
    print(f"\nPareto front over {names}: {len(front)} trial(s)")
    if not front:
        return
    front = sorted(front, key=lambda o: tuple(
        (o.metrics[k] if d == "min" else -o.metrics[k]) for k, d in objectives))
    rows = [["trial", *[k for k, _ in objectives], "architecture"]]
    for o in front:
        rows.append([f"#{o.number}", *[_fmt(k, o.metrics.get(k)) for k, _ in objectives],
                     _short(space.describe(o.arch))])
    print_table(rows)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == len(row) - 1 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cells).rstrip())
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(key: str, value) -> str:
    if key.endswith("acc"):
        return _pct(value)
    if key.endswith("_ms"):
        return _ms(value)
    if key in ("params", "flops"):
        return _si(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def _ms(value) -> str:
    return f"{value:.2f}ms" if isinstance(value, (int, float)) else "-"


def _si(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:g}"


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- export -----------------------------------------------------------------------------------
def export_best(result: SearchResult, space, task, folder: Path) -> dict | None:
    """Export the best network, then re-measure its test accuracy from each exported file."""
    best = result.best
    if best is None or best.model is None:
        return None
    paths = export.export_model(
        best.model, best.arch, space.name, space.config, task, folder, metrics=best.metrics
    )
    accuracy = {fmt: exported_test_accuracy(folder, fmt, task) for fmt in export.FORMATS if fmt in paths}
    return {
        "folder": str(folder),
        "files": {fmt: str(path) for fmt, path in paths.items()},
        "test_acc": accuracy.get("torchscript", next(iter(accuracy.values()), None)),
        "test_acc_by_format": accuracy,
        "test_samples": len(task.y_test),
    }


@torch.no_grad()
def exported_test_accuracy(folder: Path, fmt: str, task) -> float:
    """Test accuracy of the model as loaded back from an exported file (not the one in memory)."""
    model = export.load_model(folder, format=fmt)
    correct = 0
    for start in range(0, len(task.y_test), 512):
        logits = torch.as_tensor(model(task.X_test[start : start + 512]))
        correct += int((logits.argmax(dim=1) == task.y_test[start : start + 512]).sum())
    return correct / len(task.y_test) if len(task.y_test) else math.nan


# -- JSON -------------------------------------------------------------------------------------
def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, type):
        return value.__name__
    return str(value)


def _jsonable(value):
    """NaN / inf are not JSON; write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))

