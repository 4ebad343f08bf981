"""Search quality on mnist5k: best test accuracy after N trials per strategy, averaged over seeds.

For each strategy and search seed, run_search trains `--trials` architectures; the search's best
trial is the one with the highest validation accuracy, and its test accuracy is what counts (test
data never steers the search). The data split is the same for every run (`--split-seed`), so
strategies differ only in what they proposed.

    python bench/bench_search_quality.py                         # the issue's figures (takes hours on 2 CPU cores)
    python bench/bench_search_quality.py --trials 3 --seeds 1 --epochs 1 --data-fraction 0.1   # smoke test

Prints one line per finished run (stderr), then a table: mean +- std of the best test accuracy,
mean best validation accuracy and mean wall time per strategy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.cli import parse_key_values  # noqa: E402
from search_engine.constraints import Constraints  # noqa: E402
from search_engine.data import load_builtin  # noqa: E402
from search_engine.loop import Callbacks, run_search  # noqa: E402
from search_engine.registry import create_estimator, create_space, create_strategy  # noqa: E402
from search_engine.types import Budget  # noqa: E402


def one_run(task, args, strategy_name: str, seed: int) -> dict:
    space = create_space(args.space, **parse_key_values("space-opt", args.space_opt))
    # Evolution refuses a population larger than the budget (it would be random search).
    sized = {"population_size": min(20, args.trials), "sample_size": min(5, args.trials)}
    strategy = create_strategy(strategy_name, space, seed=seed, **(sized if strategy_name == "evolution" else {}))
    estimator = create_estimator(
        "train", epochs=args.epochs, data_fraction=args.data_fraction, threads=args.threads, device=args.device
    )

    def progress(outcome):
        if not args.quiet and outcome.state != "infeasible":
            val = outcome.metrics.get("val_acc")
            print(f"    {strategy_name} seed {seed} #{outcome.number:<3d} {outcome.state:<9s} "
                  f"val {val if val is None else round(val, 4)}  {outcome.duration_s:.1f}s", file=sys.stderr)

    started = time.perf_counter()
    result = run_search(
        task=task, space=space, strategy=strategy, estimator=estimator,
        constraints=Constraints(max_params=args.max_params, latency_device="cpu"),
        budget=Budget(trials=args.trials), seed=seed, callbacks=Callbacks(on_trial_end=progress),
        keep_best_model=False,
    )
    wall = time.perf_counter() - started
    best = result.best
    return {
        "strategy": strategy_name,
        "seed": seed,
        "trials": len(result.evaluated),
        "best_trial": best.number if best else None,
        "best_val_acc": best.metrics.get("val_acc") if best else None,
        "best_test_acc": best.metrics.get("test_acc") if best else None,
        "best_arch": space.describe(best.arch) if best else None,
        "wall_time_s": round(wall, 2),
    }


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} +- {100 * std:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--space", default="nb201")
    parser.add_argument("--space-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--strategies", default="random,evolution,tpe", help="comma separated")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="search seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-fraction", type=float, default=1.0, help="of the training set, per trial")
    parser.add_argument("--max-params", type=int, default=None)
    parser.add_argument("--split-seed", type=int, default=0, help="train/val/test split, same for every run")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--json-out", type=Path, default=None, help="also write every run's figures here")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    task = load_builtin(args.dataset, seed=args.split_seed)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    print(f"search quality on {args.dataset} ({len(task.y_train)}/{len(task.y_val)}/{len(task.y_test)} "
          f"train/val/test), space {args.space} {' '.join(args.space_opt)}, {args.trials} trials x "
          f"{args.seeds} seeds, {args.epochs} epochs, data fraction {args.data_fraction:g}, "
          f"max params {args.max_params or '-'}, torch threads {args.threads}")
    runs = []
    for strategy_name in strategies:
        for seed in range(args.seeds):
            run = one_run(task, args, strategy_name, seed)
            runs.append(run)
            print(f"  {strategy_name} seed {seed}: best #{run['best_trial']} val {run['best_val_acc']} "
                  f"test {run['best_test_acc']} in {run['wall_time_s']:.0f}s  {run['best_arch']}", file=sys.stderr)

    header = ["strategy", "runs", "best test acc % (mean +- std)", "best val acc %", "wall time s (mean)"]
    rows = [header]
    for strategy_name in strategies:
        mine = [r for r in runs if r["strategy"] == strategy_name]
        rows.append([
            strategy_name, str(len(mine)), mean_std([r["best_test_acc"] for r in mine]),
            mean_std([r["best_val_acc"] for r in mine]),
            f"{statistics.fmean(r['wall_time_s'] for r in mine):.0f}",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if args.json_out:
        args.json_out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs},
                                            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
