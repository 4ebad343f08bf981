"""Engine overhead per trial outside training, with an estimator that returns at once.

Mirrors run_search step by step and times each step of every trial:
  propose  strategy.ask + static constraint checks (build an untrained network, params/FLOPs/size)
  evaluate seeded build (static values reused from propose) around a stub estimate (no training)
  record   Outcome -> TrialRecord, strategy.tell, the history handed to the next ask
The overhead is their sum (target: median <= 50 ms), as wall time and as this process's CPU time
(the figure to trust on a shared, loaded machine; with one torch thread the two agree when idle). Latency measurement (median of 30 batch-1
forward passes after 5 warm-ups) is a measured constraint, timed apart as `latency`; its cost grows
with the network, not with the engine.

    python bench/bench_overhead.py                       # nb201 and mlp, random + evolution, 200 trials
    python bench/bench_overhead.py --trials 50 --spaces mlp --strategies random,tpe
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.constraints import Constraints  # noqa: E402
from search_engine.data import load_builtin  # noqa: E402
from search_engine.estimators.base import Estimator  # noqa: E402
from search_engine.loop import Outcome, evaluate, propose  # noqa: E402
from search_engine.registry import create_space, create_strategy  # noqa: E402
from search_engine.runtime import derive_seed  # noqa: E402
from search_engine.types import Budget, Result  # noqa: E402

SPACE_DATASETS = {"nb201": "digits", "mobilenet": "digits", "mlp": "digits"}


class InstantEstimator(Estimator):
    """A deterministic pseudo-score from the fingerprint; nothing is trained."""

    name = "instant"
    trains_model = False

    def estimate(self, arch, model, task, budget, report):
        score = (derive_seed("instant", sorted(arch.items())) % 10_000) / 10_000
        report(1, {"val_acc": score})
        return Result({"val_acc": score, "test_acc": score}, objective=score, cost_s=0.0)


def bench(space_name: str, strategy_name: str, trials: int, seed: int, constraints: Constraints,
          latency_every: int) -> dict[str, list[float]]:
    task = load_builtin(SPACE_DATASETS.get(space_name, "digits"), seed=seed)
    space = create_space(space_name)
    strategy = create_strategy(strategy_name, space, seed=seed)
    estimator = InstantEstimator()
    budget = Budget(trials=trials)
    times: dict[str, list[float]] = {
        "propose": [], "evaluate": [], "record": [], "overhead": [], "overhead_cpu": [], "latency": []
    }
    outcomes: list[Outcome] = []
    infeasible = 0
    history = []
    for i in range(trials):
        c0 = time.process_time()
        t0 = time.perf_counter()
        accepted, rejected = propose(
            strategy, history, 1, task=task, constraints=constraints, next_number=len(outcomes),
            max_infeasible=budget.max_infeasible,
        )
        t1 = time.perf_counter()
        outcomes.extend(rejected)
        infeasible += len(rejected)
        if not accepted:
            break
        candidate, static_values = accepted[0]
        outcome = evaluate(
            candidate, number=len(outcomes), space=space, estimator=estimator, task=task,
            constraints=constraints, seed=seed, report=lambda step, metrics: None, measure_latency=False,
            static_values=static_values,
        )
        t2 = time.perf_counter()
        outcomes.append(outcome)
        strategy.tell(outcome.record())
        history = [o.record() for o in outcomes]
        t3 = time.perf_counter()
        times["overhead_cpu"].append(time.process_time() - c0)
        times["propose"].append(t1 - t0)
        times["evaluate"].append(t2 - t1)
        times["record"].append(t3 - t2)
        times["overhead"].append(t3 - t0)
        if latency_every and i % latency_every == 0:
            model = space.build(candidate.arch, task)
            t4 = time.perf_counter()
            constraints.measured_values(model, task)
            times["latency"].append(time.perf_counter() - t4)
    times["infeasible"] = [infeasible]
    return times


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{1000 * float(np.quantile(values, q)):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--spaces", default="nb201,mlp", help="comma separated")
    parser.add_argument("--strategies", default="random,evolution", help="comma separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--max-params", type=int, default=None,
                        help="a static limit, so screening also rejects candidates (default: none)")
    parser.add_argument("--latency-every", type=int, default=10,
                        help="also time a latency measurement every N trials (0: never)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    constraints = Constraints(max_params=args.max_params)

    print(f"engine overhead per trial, stub estimator, {args.trials} trials, torch threads {args.threads}, "
          f"max params {args.max_params or '-'}")
    header = ["space", "strategy", "trials", "rejected", "propose p50", "evaluate p50", "record p50",
              "overhead p50", "overhead p95", "overhead CPU p50", "CPU p95", "latency p50"]
    rows = [header]
    for space_name in args.spaces.split(","):
        for strategy_name in args.strategies.split(","):
            started = time.perf_counter()
            t = bench(space_name, strategy_name, args.trials, args.seed, constraints, args.latency_every)
            rows.append([
                space_name, strategy_name, str(len(t["overhead"])), str(t["infeasible"][0]),
                ms(t["propose"], 0.5), ms(t["evaluate"], 0.5), ms(t["record"], 0.5),
                ms(t["overhead"], 0.5), ms(t["overhead"], 0.95), ms(t["overhead_cpu"], 0.5),
                ms(t["overhead_cpu"], 0.95), ms(t["latency"], 0.5),
            ])
            print(f"  ({space_name}/{strategy_name}: {time.perf_counter() - started:.1f}s, "
                  f"mean overhead {1000 * statistics.fmean(t['overhead']):.1f} ms)", file=sys.stderr)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("times in ms; overhead = propose + evaluate + record (target: median <= 50 ms); wall clock except\n"
          "the CPU columns (process CPU time, which other processes on a shared machine do not inflate)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
