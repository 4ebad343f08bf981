"""Engine wall-clock figures that tests must not assert (they depend on how busy the machine is).

  latency    measure_latency_ms on a conv net of several milliseconds per batch-1 forward pass, one
             thread: the median of each round and the spread (max/min) across rounds; the engine
             aims at rounds within 20% of each other on an idle machine
  wall time  run_search with a wall-time budget and an estimator that sleeps per trial: how long the
             search really ran and how far past its budget it stopped (at most about one trial)

    python bench/bench_engine_timings.py
    python bench/bench_engine_timings.py --rounds 5 --wall-time 1.0 --sleep 0.05
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_engine.constraints import measure_latency_ms  # noqa: E402
from search_engine.data import load_builtin  # noqa: E402
from search_engine.estimators.base import Estimator  # noqa: E402
from search_engine.loop import run_search  # noqa: E402
from search_engine.registry import Option, create_space, create_strategy  # noqa: E402
from search_engine.task import Task  # noqa: E402
from search_engine.types import Budget, Result  # noqa: E402


class SleepingEstimator(Estimator):
    """Sleeps `sleep_s` per trial and scores 0.5: the loop's own cost is all that is left."""

    name = "sleeping"
    trains_model = False
    options = {"sleep_s": Option(float, 0.05)}

    def estimate(self, arch, model, task, budget, report):
        time.sleep(self.config["sleep_s"])
        return Result({"val_acc": 0.5}, objective=0.5, cost_s=self.config["sleep_s"])


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def image_task(shape=(3, 64, 64), num_classes: int = 10) -> Task:
    """Shapes only: latency needs an example input, not data."""
    empty_x, empty_y = torch.zeros((0, *shape)), torch.zeros(0, dtype=torch.int64)
    return Task(
        name="shape", X_train=empty_x, y_train=empty_y, X_val=empty_x, y_val=empty_y, X_test=empty_x,
        y_test=empty_y, input_shape=shape, num_classes=num_classes,
        class_names=[str(i) for i in range(num_classes)],
    )  # fmt: skip


def bench_latency(rounds: int, per_round: int, warmup: int, repeats: int) -> None:
    model, task = conv_net(), image_task()
    print(f"latency: conv net 3x64x64, batch 1, 1 thread, {per_round} medians per round "
          f"({warmup} warm-up + {repeats} timed passes each)")
    for r in range(1, rounds + 1):
        medians = [measure_latency_ms(model, task, warmup=warmup, repeats=repeats) for _ in range(per_round)]
        spread = max(medians) / min(medians)
        shown = ", ".join(f"{m:.2f}" for m in medians)
        print(f"  round {r}: medians {shown} ms  spread {spread:.3f} (target <= 1.2)")


def bench_wall_time(wall_time_s: float, sleep_s: float, seed: int) -> None:
    task = load_builtin("iris", seed=seed)
    space = create_space("mlp")

    def search(budget: Budget):
        return run_search(
            task=task, space=space, strategy=create_strategy("random", space, seed=seed),
            estimator=SleepingEstimator(sleep_s=sleep_s), budget=budget, seed=seed,
        )

    search(Budget(trials=1))  # torch's one-time start-up costs (first FLOP count, first forward) stay out
    started = time.perf_counter()
    result = search(Budget(trials=10_000, wall_time_s=wall_time_s))
    elapsed = time.perf_counter() - started
    print(f"wall time: budget {wall_time_s:g}s, {sleep_s:g}s per trial -> {result.stopped_because}: "
          f"{len(result.outcomes)} trials, ran {elapsed:.3f}s ({elapsed - wall_time_s:+.3f}s past the budget; "
          f"search's own figure {result.wall_time_s:.3f}s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds")
    parser.add_argument("--per-round", type=int, default=3, help="latency medians per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--wall-time", type=float, default=0.3, help="search wall-time budget, seconds")
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds each trial sleeps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench_latency(args.rounds, args.per_round, args.warmup, args.repeats)
    bench_wall_time(args.wall_time, args.sleep, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
