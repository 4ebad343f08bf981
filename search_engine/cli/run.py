"""`python -m search_engine run ...`: a search, its tables, the best model's export and results.json."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data, export, package
from ..constraints import Constraints
from ..estimators.base import Estimator
from ..loop import SearchResult, ranked_outcomes, run_search
from ..pareto import pareto_front, parse_objectives
from ..registry import ConfigError, create_estimator, create_space, create_strategy
from ..runtime import resolve_device
from ..spaces.base import SearchSpace
from ..strategies.base import Strategy
from ..task import Task
from ..types import COMPLETED, Budget
from .oneshot import run_oneshot
from .options import dataset_spec, estimator_config, parse_key_values, positive
from .output import (
    Progress,
    cardinality_line,
    dataset_line,
    json_default,
    jsonable,
    pct,
    print_pareto,
    print_ranked,
)

DEFAULT_OBJECTIVES = "val_acc:max,params:min,latency_ms:min"
TOP_N = 10


@dataclass
class RunSetup:
    """Everything one `run` searches with, built and validated from the arguments."""

    trials: int
    wall_time: float | None
    objectives: list[tuple[str, str]]
    estimator: Estimator
    device: torch.device
    constraints: Constraints
    space: SearchSpace
    strategy: Strategy
    spec: dict
    task: Task
    out: Path
    say: Callable[..., None]
    oneshot: dict[str, Any] = field(default_factory=dict)  # {"job", "result"} after --oneshot


def cmd_run(args) -> int:
    setup = prepare(args)
    if args.oneshot:
        job, oneshot_result, setup.strategy = run_oneshot(args, setup.space, setup.task, setup.out, setup.say)
        setup.trials = min(setup.trials, len(oneshot_result.top_archs))
        setup.oneshot = {"job": job, "result": oneshot_result}
    config = run_config(args, setup)
    setup.say(f"dataset {setup.task.name}: {dataset_line(setup.task)}")
    setup.say(f"space {args.space} ({cardinality_line(setup.space)}), strategy {setup.strategy.name}, "
              f"estimator {args.estimator}, {setup.trials} trials"
              + (f", wall time {setup.wall_time:g}s" if setup.wall_time else ""))
    result = search(setup, args)
    front = show_result(result, setup, args)

    setup.out.mkdir(parents=True, exist_ok=True)
    exported, export_error = None, ""
    try:
        exported = export_best(result, setup.space, setup.task, setup.out / "best", setup.spec)
    except (export.ExportError, export.ModelFileError) as exc:
        export_error = str(exc)
    results_path = write_results(setup, config, result, front, exported, export_error)
    print(f"results: {results_path}")
    return print_summary(result, setup, exported, export_error)


def prepare(args) -> RunSetup:
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
    return RunSetup(trials, wall_time, objectives, estimator, device, constraints, space, strategy,
                    spec, task, out, say)


def run_config(args, setup: RunSetup) -> dict:
    """The run's configuration as results.json records it."""
    config = {
        "dataset": setup.spec,
        "space": {"name": args.space, "config": setup.space.config},
        "strategy": {"name": setup.strategy.name, "config": setup.strategy.config},
        "estimator": {"name": args.estimator, "config": setup.estimator.config},
        "constraints": setup.constraints.to_dict(),
        "budget": {"trials": setup.trials, "wall_time_s": setup.wall_time},
        "objectives": [f"{k}:{d}" for k, d in setup.objectives],
        "device": {"requested": args.device or setup.estimator.config.get("device") or "auto",
                   "resolved": setup.device.type},
        "threads": args.threads,
        "seed": args.seed,
    }
    if setup.oneshot:
        config["oneshot"] = {"name": args.oneshot, "config": setup.oneshot["job"].config}
    return config


def search(setup: RunSetup, args) -> SearchResult:
    progress = Progress(setup.space, setup.trials, quiet=args.quiet)
    try:
        return run_search(
            task=setup.task, space=setup.space, strategy=setup.strategy, estimator=setup.estimator,
            constraints=setup.constraints, budget=Budget(trials=setup.trials, wall_time_s=setup.wall_time),
            seed=args.seed, callbacks=progress.callbacks(),
        )
    finally:
        progress.close()


def show_result(result: SearchResult, setup: RunSetup, args) -> list:
    """Print the stop reason and the tables; returns the Pareto front."""
    setup.say("")
    setup.say(f"stopped: {result.stopped_because} after {result.wall_time_s:.1f}s "
              f"({len(result.evaluated)} trained, {len(result.outcomes) - len(result.evaluated)} "
              f"rejected before training)")
    ranked = ranked_outcomes(result.outcomes)
    completed = [o for o in result.outcomes if o.state == COMPLETED]
    front = pareto_front(completed, setup.objectives)
    if not args.quiet:
        print_ranked(ranked[:TOP_N], setup.space)
        print_pareto(front, setup.objectives, setup.space)
    missing = [k for k, _ in setup.objectives if not any(k in o.metrics for o in completed)]
    if missing and ranked:
        print(f"warning: no completed trial has objective(s) {', '.join(missing)}; the Pareto front is empty",
              file=sys.stderr)
    return front


def write_results(setup: RunSetup, config: dict, result: SearchResult, front: list,
                  exported: dict | None, export_error: str) -> Path:
    oneshot_result = setup.oneshot.get("result")
    results = {
        "config": config,
        "dataset": data.describe_task(setup.task),
        "trials": [o.to_dict() for o in result.outcomes],
        "best": result.best.to_dict() if result.best else None,
        "exported": exported,
        "export_error": export_error or None,
        "pareto": [
            {"number": o.number, **{k: o.metrics.get(k) for k, _ in setup.objectives}} for o in front
        ],
        "wall_time_s": round(result.wall_time_s, 3),
        "stopped_because": result.stopped_because,
        "oneshot": oneshot_result.to_dict() if oneshot_result is not None else None,
    }
    results_path = setup.out / "results.json"
    results_path.write_text(json.dumps(jsonable(results), indent=2, default=json_default) + "\n")
    return results_path


def print_summary(result: SearchResult, setup: RunSetup, exported: dict | None, export_error: str) -> int:
    if result.best is None:
        print("no completed trial: nothing to export")
        return 1
    best = result.best
    print(f"best: trial #{best.number}  val acc {pct(best.metrics.get('val_acc'))}  "
          f"test acc {pct(best.metrics.get('test_acc'))}  {setup.space.describe(best.arch)}")
    if export_error:
        print(f"error: export failed: {export_error}", file=sys.stderr)
        return 1
    if exported is None:
        print(f"estimator {setup.estimator.name!r} trains no network: nothing to export")
        return 0
    for name, path in exported["files"].items():
        print(f"  {name:<20s} {path}")
    others = ", ".join(f"{fmt} {pct(acc)}" for fmt, acc in exported["test_acc_by_format"].items()
                       if fmt != "onnx")
    print(f"exported best model test accuracy: {pct(exported['test_acc'])} on {exported['test_samples']} "
          f"test samples, re-measured from {exported['folder']}/model.onnx on the raw data"
          + (f" ({others})" if others else ""))
    print(f"run it on your data: python {exported['folder']}/predict.py INPUT (see MODEL_CARD.md)")
    return 0


def export_best(result: SearchResult, space, task, folder: Path, spec: dict | None = None) -> dict | None:
    """Write the best network's full package (package.write_package), then re-measure its test
    accuracy from each exported file; the package's own figure is model.onnx on the raw data file."""
    best = result.best
    if best is None or best.model is None:
        return None
    source = next((spec[kind] for kind in ("csv", "npz", "zip") if spec and kind in spec), None)
    info = package.write_package(folder, model=best.model, arch=best.arch, space=space, task=task,
                                 metrics=best.metrics, card=package.CardContext(search=search_lines(best, space)),
                                 source=source)  # fmt: skip
    accuracy = {fmt: export.exported_test_accuracy(folder, task, format=fmt) for fmt in ("torchscript", "weights")}
    accuracy["onnx"] = info.test_acc
    return {
        "folder": str(folder),
        "files": {name: str(folder / name) for name in info.files},
        "test_acc": info.test_acc,
        "test_acc_by_format": accuracy,
        "test_samples": info.test_total,
    }


def search_lines(best, space) -> list[str]:
    return [f"- Space `{space.name}` {json.dumps(space.config, sort_keys=True)}",
            f"- Best trial #{best.number}: `{space.describe(best.arch)}`"]
