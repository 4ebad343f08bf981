"""Search bookkeeping on NAS-Bench-201, the engine driven as a library (issue 11, item 5).

Printed:
  tpe        for multivariate and univariate TPE, --trials sequential asks on nb201 against a
             fixed synthetic landscape: the share of proposals that were random fallbacks, the
             share that were mutations of an architecture TPE kept repeating, the best value
             found, and the milliseconds per ask (building the study from the history and asking
             it together)
  tabular    milliseconds per trial of a `tabular` search over a synthetic table of all 15,625
             cells: without constraints (the loop builds no network) and with a constraint that
             every cell meets (the loop builds each network, counts its params/FLOPs and
             measures its latency, as it did for every table lookup before)

    python bench/bench_bookkeeping.py                  # 200 TPE trials, 20 tabular trials
    python bench/bench_bookkeeping.py --trials 50 --tabular-trials 10   # smoke run
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.constraints import Constraints  # noqa: E402
from search_engine.data import load_builtin  # noqa: E402
from search_engine.loop import run_search  # noqa: E402
from search_engine.registry import create_estimator, create_space, create_strategy  # noqa: E402
from search_engine.spaces.nb201 import EDGE_LABELS, OPS  # noqa: E402
from search_engine.types import COMPLETED, Budget, TrialRecord  # noqa: E402


def landscape(space):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=len(space.encode(space.sample(rng))))
    return lambda arch: float(weights @ space.encode(arch))


def tpe_run(space, trials: int, **config) -> dict:
    score = landscape(space)
    strategy = create_strategy("tpe", space, seed=0, **config)
    history: list[TrialRecord] = []
    how = Counter()
    started = time.perf_counter()
    for number in range(trials):
        (candidate,) = strategy.ask(history)
        how[candidate.meta.get("fallback", "tpe")] += 1
        history.append(TrialRecord(number, candidate.arch, COMPLETED, objective=score(candidate.arch)))
    elapsed = time.perf_counter() - started
    return {
        "random": how["random"] / trials,
        "mutation": how["mutation"] / trials,
        "best": max(r.objective for r in history),
        "ms_per_ask": 1000 * elapsed / trials,
    }


def write_table(path: Path, space) -> None:
    rng = np.random.default_rng(1)
    lines = ["arch,val_acc,params"]
    for ops in itertools.product(OPS, repeat=len(EDGE_LABELS)):
        arch = dict(zip(EDGE_LABELS, ops))
        lines.append(f"{space.to_string(arch)},{rng.uniform(0.1, 0.9):.4f},{rng.integers(1000, 2000000)}")
    path.write_text("\n".join(lines) + "\n")


def tabular_ms(space, table: Path, trials: int, constraints: Constraints | None) -> float:
    task = load_builtin("digits")
    estimator = create_estimator("tabular", path=str(table), report_columns=["params"])
    started = time.perf_counter()
    result = run_search(task=task, space=space, strategy=create_strategy("random", space, seed=0),
                        estimator=estimator, constraints=constraints, budget=Budget(trials=trials), seed=0)
    elapsed = time.perf_counter() - started
    assert sum(o.state == COMPLETED for o in result.outcomes) == trials
    return 1000 * elapsed / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="TPE asks per run")
    parser.add_argument("--tabular-trials", type=int, default=20, help="trials per tabular search")
    args = parser.parse_args()

    space = create_space("nb201")
    print(f"tpe on nb201, {args.trials} sequential trials")
    for name, config in (("multivariate", {}), ("univariate", {"multivariate": False})):
        row = tpe_run(space, args.trials, **config)
        print(f"  {name:<13} random fallbacks {row['random']:6.1%}   mutation fallbacks "
              f"{row['mutation']:6.1%}   best {row['best']:.3f}   {row['ms_per_ask']:.1f} ms per ask")

    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "nb201.csv"
        write_table(table, space)
        print(f"tabular on nb201 (default C and N), {args.tabular_trials} random-search trials")
        without = tabular_ms(space, table, args.tabular_trials, None)
        # A limit every cell meets: the loop builds, counts and times each network.
        built = tabular_ms(space, table, args.tabular_trials, Constraints(max_params=10**12))
        print(f"  no constraint (not built)   {without:8.2f} ms per trial")
        print(f"  with a constraint (built)   {built:8.2f} ms per trial")


if __name__ == "__main__":
    main()
