"""Predictor-guided search (issue 13): query efficiency, predictor quality and warm-start cost.

(a) Query efficiency: for each benchmark (dataset:space) and strategy (`predictor`, `tpe`,
    `evolution`, `random`) and search seed, run_search trains `--trials` architectures with the
    `train` estimator. After k trained trials the search's best is the trial with the highest
    validation accuracy so far, and its test accuracy is the figure (test data never steers the
    search). Curves are averaged over seeds; the target is tpe's mean best test accuracy after
    min(30, --trials) trials, and "trials to target" is the first k at which a strategy's
    seed-averaged curve reaches it (and per seed, in brackets).
(b) Predictor quality: `--quality-archs` random architectures (seeded) are trained once; the
    predictor is fitted on the first 10 / 20 / 40 of them (those that fit in the set minus the
    held-out `--quality-held-out`) and its Spearman with the measured validation accuracy is
    computed on the held-out ones, next to each single proxy's Spearman and params' on the same
    held-out set, the encoding-only predictor's, and the predictor's k-fold figure on its own
    training trials (what an experiment reports as trials accumulate).
(c) Warm-start cost: seconds to score `--cost-archs` fresh architectures per proxy set, given
    per 1,000 candidates (one CPU thread, as the strategy scores).

    python bench/bench_predictor.py            # the issue's figures: 5 seeds x 30 trials on both benchmarks (hours)
    python bench/bench_predictor.py --benchmarks digits:mlp --seeds 3 --trials 20 --epochs 2 \\
        --quality-archs 50 --quality-held-out 20 --cost-archs 200 --pool-size 500   # reduced run

A benchmark is dataset:space[:key=value...], e.g. mnist5k:nb201:C=8 (nb201 with 8 channels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.constraints import Constraints  # noqa: E402
from search_engine.data import load_builtin  # noqa: E402
from search_engine.loop import Callbacks, evaluate, run_search  # noqa: E402
from search_engine.predictors import ArchFeatures, Predictor, rank_correlation  # noqa: E402
from search_engine.predictors.features import _MEMO as feature_memo  # noqa: E402
from search_engine.registry import create_estimator, create_space, create_strategy  # noqa: E402
from search_engine.types import COMPLETED, Budget, Candidate, TrialRecord  # noqa: E402

SINGLE_PROXIES = ("synflow", "naswot", "grad_norm", "snip", "params", "flops")


def parse_benchmark(text: str) -> tuple[str, str, dict]:
    dataset, space, *options = text.split(":")
    config = {}
    for option in options:
        key, _, value = option.partition("=")
        config[key] = int(value) if value.lstrip("-").isdigit() else value
    return dataset, space, config


def make_estimator(args):
    return create_estimator("train", epochs=args.epochs, data_fraction=args.data_fraction,
                            threads=args.threads, device=args.device)


def strategy_config(name: str, args) -> dict:
    if name != "predictor":
        return {}
    return {"proxies": args.proxies, "pool_size": args.pool_size, "n_init": args.n_init, "acquisition": args.acquisition,
            "n_parents": args.n_parents, "mutations_per_parent": args.mutations_per_parent,
            "n_random": args.n_random}


# -- (a) query efficiency ---------------------------------------------------------------------


def search_curve(task, space, args, strategy_name: str, seed: int) -> dict:
    """Best-so-far test accuracy (best by validation) after each trained trial."""
    strategy = create_strategy(strategy_name, space, seed=seed, **strategy_config(strategy_name, args))
    trained: list = []
    started, cpu = time.perf_counter(), time.process_time()
    run_search(task=task, space=space, strategy=strategy, estimator=make_estimator(args),
               budget=Budget(trials=args.trials), seed=seed, keep_best_model=False,
               callbacks=Callbacks(on_trial_end=lambda o: trained.append(o) if o.counts_against_budget else None))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    curve, val_curve, best_val, best_test = [], [], -1.0, None
    for outcome in trained:
        val = outcome.metrics.get("val_acc") if outcome.state == COMPLETED else None
        if val is not None and val > best_val:
            best_val, best_test = val, outcome.metrics.get("test_acc")
        curve.append(best_test)
        val_curve.append(best_val if best_val >= 0 else None)
    return {"strategy": strategy_name, "seed": seed, "curve": curve, "val_curve": val_curve, "wall_time_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def first_reaching(curve: list, target: float) -> int | None:
    return next((k + 1 for k, v in enumerate(curve) if v is not None and v >= target - 1e-12), None)


def mean_curve(runs: list[dict]) -> list[float | None]:
    length = min(len(r["curve"]) for r in runs)
    out = []
    for k in range(length):
        values = [r["curve"][k] for r in runs if r["curve"][k] is not None]
        out.append(statistics.fmean(values) if len(values) == len(runs) else None)
    return out


def query_efficiency(task, space, args) -> dict:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    runs = {name: [] for name in strategies}
    for name in strategies:
        for seed in range(args.seeds):
            run = search_curve(task, space, args, name, seed)
            runs[name].append(run)
            print(f"    {name} seed {seed}: best test {run['curve'][-1]} after {len(run['curve'])} trials "
                  f"in {run['wall_time_s']:.0f}s ({run['cpu_s']:.0f}s CPU)", file=sys.stderr)
    curves = {name: mean_curve(r) for name, r in runs.items()}
    horizon = min(30, args.trials)
    target = curves.get("tpe", [None] * horizon)[horizon - 1] if "tpe" in curves else None
    checkpoints = [k for k in (5, 10, 15, 20, 30, 40, 50) if k <= args.trials]
    print(f"  (a) mean best test acc % after k trained trials ({args.seeds} seeds); "
          f"target = tpe at {horizon} trials = {_pct(target)}")
    print("    " + f"{'strategy':<10}" + "".join(f"{'k=' + str(k):>9}" for k in checkpoints)
          + f"{'to target':>11}  per seed   wall s  CPU s")
    summary = {}
    for name, curve in curves.items():
        reach = first_reaching(curve, target) if target is not None else None
        per_seed = [first_reaching(r["curve"], target) if target is not None else None for r in runs[name]]
        wall = statistics.fmean(r["wall_time_s"] for r in runs[name])
        cpu = statistics.fmean(r["cpu_s"] for r in runs[name])
        print("    " + f"{name:<10}" + "".join(f"{_pct(curve[k - 1]):>9}" for k in checkpoints)
              + f"{str(reach or '>' + str(len(curve))):>11}  {per_seed}  {wall:.0f}  {cpu:.0f}")
        val_curve = mean_curve([{"curve": r["val_curve"]} for r in runs[name]])
        print("    " + f"{'  (val)':<10}" + "".join(f"{_pct(val_curve[k - 1]):>9}" for k in checkpoints))
        summary[name] = {"mean_curve": curve, "mean_val_curve": val_curve, "trials_to_target": reach, "per_seed_to_target": per_seed,
                         "mean_wall_time_s": wall, "mean_cpu_s": cpu, "runs": runs[name]}
    return {"target": target, "horizon": horizon, "strategies": summary}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


# -- (b) predictor quality ----------------------------------------------------------------------


def trained_sample(task, space, args) -> list[TrialRecord]:
    rng = np.random.default_rng([args.quality_seed, 0x71756C])
    archs: dict = {}
    while len(archs) < args.quality_archs:
        arch = space.sample(rng)
        archs.setdefault(space.fingerprint(arch), arch)
    estimator, records = make_estimator(args), []
    for number, arch in enumerate(archs.values()):
        outcome = evaluate(Candidate(arch), number=number, space=space, estimator=estimator, task=task,
                           constraints=Constraints(), seed=args.quality_seed, measure_latency=False)
        records.append(TrialRecord(number, arch, outcome.state, outcome.objective, outcome.metrics))
    return records


def predictor_quality(task, space, args) -> dict:
    started = time.perf_counter()
    records = trained_sample(task, space, args)
    train_s = time.perf_counter() - started
    held = records[-args.quality_held_out:]
    pool = records[: len(records) - args.quality_held_out]
    measured = [r.objective for r in held]
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    single = {}
    for proxy in SINGLE_PROXIES:
        scores = ArchFeatures(space, task, [proxy]).scores([r.arch for r in held])[:, 0]
        single[proxy] = rank_correlation(scores, measured).spearman
    rows = {}
    for n in [k for k in (10, 20, 40) if k <= len(pool)]:
        fitted = Predictor(space, task, proxies, seed=0).fit(pool[:n])
        encoding_only = Predictor(space, None, [], seed=0).fit(pool[:n])
        rows[n] = {
            "predictor": rank_correlation(fitted.predict([r.arch for r in held])[0], measured).spearman,
            "encoding_only": rank_correlation(encoding_only.predict([r.arch for r in held])[0], measured).spearman,
            "kfold_on_own_trials": fitted.held_out_rank_correlation(pool[:n]).spearman,
        }
    print(f"  (b) Spearman with trained val acc on {len(held)} held-out random archs "
          f"({len(records)} trained in {train_s:.0f}s); predictor proxies: {','.join(proxies) or '-'}")
    print("    single proxies: " + "  ".join(f"{p} {_rho(v)}" for p, v in single.items()))
    for n, row in rows.items():
        print(f"    after {n:>2} trials: predictor {_rho(row['predictor'])}  encoding only "
              f"{_rho(row['encoding_only'])}  k-fold on its {n} trials {_rho(row['kfold_on_own_trials'])}")
    return {"single_proxies": single, "by_trials": rows, "held_out": len(held), "train_s": train_s}


def _rho(value) -> str:
    return "  -  " if value is None else f"{value:+.2f}"


# -- (c) warm-start cost --------------------------------------------------------------------------


def pool_cost(task, space, args) -> dict:
    rng = np.random.default_rng([args.quality_seed, 0x636F7374])
    archs = [space.sample(rng) for _ in range(args.cost_archs)]
    sets = [[p] for p in SINGLE_PROXIES] + [[p.strip() for p in args.proxies.split(",") if p.strip()]]
    ArchFeatures(space, task, ["params"]).scores(archs[:2])  # first-call costs (task digest, torch) aside
    out = {}
    for proxies in sets:
        features = ArchFeatures(space, task, proxies)
        feature_memo.clear()  # time the scoring, not the process memo of an earlier set
        started, cpu = time.perf_counter(), time.process_time()
        features.scores(archs)
        out[",".join(proxies)] = {"wall_s": 1000 * (time.perf_counter() - started) / len(archs),
                                  "cpu_s": 1000 * (time.process_time() - cpu) / len(archs)}
    print(f"  (c) seconds to score 1,000 candidates, wall / CPU (measured on {len(archs)}, one thread): "
          + "  ".join(f"{k} {v['wall_s']:.1f}/{v['cpu_s']:.1f}" for k, v in out.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"args": vars(args), "benchmarks": {}}
    for text in [b for b in args.benchmarks.split(",") if b]:
        dataset, space_name, space_config = parse_benchmark(text)
        task = load_builtin(dataset, seed=args.split_seed)
        space = create_space(space_name, **space_config)
        print(f"{text}: {len(task.y_train)}/{len(task.y_val)}/{len(task.y_test)} train/val/test, "
              f"{args.epochs} epochs, data fraction {args.data_fraction:g}, threads {args.threads}")
        parts = {}
        if "a" in args.parts:
            parts["query_efficiency"] = query_efficiency(task, space, args)
        if "b" in args.parts:
            parts["predictor_quality"] = predictor_quality(task, space, args)
        if "c" in args.parts:
            parts["pool_cost_s_per_1000"] = pool_cost(task, space, args)
        report["benchmarks"][text] = parts
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", default="mnist5k:nb201:C=8,digits:mlp", help="comma separated")
    parser.add_argument("--parts", default="abc", help="which of (a) (b) (c) to run")
    parser.add_argument("--strategies", default="predictor,tpe,evolution,random")
    parser.add_argument("--seeds", type=int, default=5, help="search seeds 0..N-1")
    parser.add_argument("--trials", type=int, default=30, help="trained trials per search")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-fraction", type=float, default=1.0, help="of the training set, per trial")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--proxies", default="synflow,params", help="the predictor's proxy features")
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--acquisition", default="ei", choices=("ei", "ucb"))
    parser.add_argument("--n-parents", type=int, default=5)
    parser.add_argument("--mutations-per-parent", type=int, default=10)
    parser.add_argument("--n-random", type=int, default=20)
    parser.add_argument("--quality-archs", type=int, default=70, help="(b) random architectures trained")
    parser.add_argument("--quality-held-out", type=int, default=30, help="(b) of them, held out")
    parser.add_argument("--quality-seed", type=int, default=0)
    parser.add_argument("--cost-archs", type=int, default=1000, help="(c) architectures scored")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
