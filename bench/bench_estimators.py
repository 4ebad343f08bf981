"""Cost and ranking quality of every performance estimator on the same nb201 cells and data.

For each of --archs nb201 cells sampled with a seeded generator (default 50, mnist5k, C=16, N=1):
  reference     `train` for --epochs on --train-fraction of the training set ("full training";
                the defaults keep a 2-core run near 15-30 minutes, raise them for a stronger one)
  low_fidelity  the registered low-fidelity estimator (its defaults: 2 epochs on 25% of the data)
  proxies       synflow, naswot, grad_norm, snip and params (the baseline), untrained networks
  supernet      with --supernet: one weight-sharing supernet trained for --supernet-epochs, then
                each cell scored by inherited validation accuracy (BN recalibrated); its cost per
                candidate is the training time spread over the cells plus the scoring time
Every estimator sees the same initial weights for a cell (built with the loop's trial seed).

Printed: seconds per estimated candidate (median) and in total, and the Spearman (and Kendall)
rank correlation of each cheap estimator's objective with the reference's validation accuracy
and with its test accuracy. Every objective is higher-is-better.

    python bench/bench_estimators.py                                     # 50 cells
    python bench/bench_estimators.py --archs 6 --epochs 1 --train-fraction 0.2   # smoke run
    python bench/bench_estimators.py --supernet --supernet-epochs 10 --json runs/estimators.json
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
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.data import load_builtin  # noqa: E402
from search_engine.estimators.zero_cost import PROXIES  # noqa: E402
from search_engine.loop import trial_seed  # noqa: E402
from search_engine.registry import create_estimator, create_space  # noqa: E402
from search_engine.runtime import seeded  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--archs", type=int, default=50, help="nb201 cells sampled (default 50)")
    p.add_argument("--epochs", type=int, default=3, help="reference training epochs (default 3)")
    p.add_argument("--train-fraction", type=float, default=0.5,
                   help="fraction of the training set the reference trains on (default 0.5)")
    p.add_argument("--low-epochs", type=int, default=None, help="low_fidelity epochs (default: its own, 2)")
    p.add_argument("--low-fraction", type=float, default=None,
                   help="low_fidelity data fraction (default: its own, 0.25)")
    p.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated zero-cost proxies")
    p.add_argument("--batch-size", type=int, default=64, help="proxy mini-batch size (default 64)")
    p.add_argument("--supernet", action="store_true", help="also train a weight-sharing supernet")
    p.add_argument("--supernet-epochs", type=int, default=5)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, like a trial)")
    p.add_argument("--json", type=Path, default=None, help="also write every score and timing here")
    return p.parse_args(argv)


def sample_cells(space, n: int, seed: int) -> list[dict]:
    """n distinct cells from a seeded generator."""
    rng = np.random.default_rng([seed, 0xBE4C])
    cells: dict[str, dict] = {}
    while len(cells) < n:
        arch = space.sample(rng)
        cells.setdefault(space.fingerprint(arch), arch)
    return list(cells.values())


def run_estimator(estimator, space, arch, task, seed: int) -> tuple[float, dict, float]:
    with seeded(seed):
        model = space.build(arch, task)
    started = time.perf_counter()
    result = estimator.estimate(arch, model, task, {"seed": seed}, lambda step, metrics: None)
    return result.objective, result.metrics, time.perf_counter() - started


def correlation(xs: list[float], ys: list[float]) -> tuple[float, float]:
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan"), float("nan")
    return float(spearmanr(xs, ys).statistic), float(kendalltau(xs, ys).statistic)


def train_supernet(space, task, args) -> tuple[object, float] | None:
    try:
        from search_engine.oneshot import create_oneshot
    except ImportError:
        print("supernet: search_engine.oneshot is not available; skipped")
        return None
    # Searching is done here, cell by cell, not by the job's own evolution: keep that minimal.
    job = create_oneshot("supernet", space, seed=args.seed, epochs=args.supernet_epochs, device="cpu",
                         threads=args.threads, cycles=1, population_size=2, sample_size=1, top_k=1,
                         monitor_archs=0)
    started = time.perf_counter()
    job.run(task, report_progress=lambda step, values: print(f"  supernet {step}: {values}", flush=True))
    return job, time.perf_counter() - started


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    task = load_builtin(args.dataset, seed=args.seed)
    space = create_space("nb201", C=args.C, N=args.N)
    cells = sample_cells(space, args.archs, args.seed)
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]

    reference = create_estimator("train", epochs=args.epochs, data_fraction=args.train_fraction,
                                 device="cpu", threads=args.threads)
    low_config = {"device": "cpu", "threads": args.threads}
    if args.low_epochs is not None:
        low_config["epochs"] = args.low_epochs
    if args.low_fraction is not None:
        low_config["data_fraction"] = args.low_fraction
    cheap = {"low_fidelity": create_estimator("low_fidelity", **low_config)}
    for name in proxies:
        config = {} if name == "params" else {"device": "cpu", "threads": args.threads}
        if name not in ("synflow", "params"):
            config["batch_size"] = args.batch_size
        cheap[name] = create_estimator(name, **config)

    print(f"{len(cells)} nb201 cells (C={args.C}, N={args.N}) on {task.name} "
          f"({len(task.y_train)} train / {len(task.y_val)} val / {len(task.y_test)} test); reference: train "
          f"{args.epochs} epochs on {args.train_fraction:g} of the training set; {args.threads} thread(s)",
          flush=True)
    supernet = train_supernet(space, task, args) if args.supernet else None

    rows = []
    started = time.perf_counter()
    for i, arch in enumerate(cells):
        seed = trial_seed(args.seed, space, arch, {})
        row = {"arch": space.to_string(arch), "scores": {}, "cost_s": {}}
        for name, estimator in cheap.items():
            objective, _, cost = run_estimator(estimator, space, arch, task, seed)
            row["scores"][name], row["cost_s"][name] = objective, cost
        if supernet is not None:
            job, _ = supernet
            t0 = time.perf_counter()
            row["scores"]["supernet"] = job.score(arch)
            row["cost_s"]["supernet"] = time.perf_counter() - t0
        objective, metrics, cost = run_estimator(reference, space, arch, task, seed)
        row["val_acc"], row["test_acc"], row["cost_s"]["train"] = objective, metrics["test_acc"], cost
        rows.append(row)
        done = time.perf_counter() - started
        print(f"[{i + 1}/{len(cells)}] val {objective:.4f} test {metrics['test_acc']:.4f} train {cost:.1f}s  "
              f"{row['arch']}  (eta {done / (i + 1) * (len(cells) - i - 1) / 60:.1f} min)", flush=True)

    names = ["train", *cheap, *(["supernet"] if supernet is not None else [])]
    val = [r["val_acc"] for r in rows]
    test = [r["test_acc"] for r in rows]
    print()
    print(f"{'estimator':<13} {'s/candidate':>11} {'total s':>9} {'spearman val':>13} {'spearman test':>14} "
          f"{'kendall val':>12}")
    summary = {}
    for name in names:
        costs = [r["cost_s"][name] for r in rows]
        total = sum(costs)
        per_candidate = statistics.median(costs)
        if name == "supernet":
            training = supernet[1]
            total += training
            per_candidate += training / len(rows)
        if name == "train":
            rho_val, tau_val, rho_test = 1.0, 1.0, correlation(val, test)[0]
        else:
            scores = [r["scores"][name] for r in rows]
            rho_val, tau_val = correlation(scores, val)
            rho_test = correlation(scores, test)[0]
        summary[name] = {"s_per_candidate": per_candidate, "total_s": total, "spearman_val": rho_val,
                         "spearman_test": rho_test, "kendall_val": tau_val}
        label = "train (ref)" if name == "train" else name
        print(f"{label:<13} {per_candidate:>11.3f} {total:>9.1f} {rho_val:>13.3f} {rho_test:>14.3f} {tau_val:>12.3f}")
    print(f"\nreference val accuracy: min {min(val):.4f} median {statistics.median(val):.4f} max {max(val):.4f}; "
          f"'spearman test' of train (ref) is its own val-vs-test agreement")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                         "rows": rows}, indent=2))
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
