"""Contract tests over every registered estimator (as timm and Optuna test every implementation):
each scores a tiny nb201 cell on a tiny image task within a small budget, returns a Result, reports
as the interface says, stops when `report` raises TrialPruned, and gives the same score for the
same seed."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from search_engine.loop import build_model
from search_engine.registry import ESTIMATORS, create_estimator, create_space
from search_engine.task import make_task
from search_engine.types import Result, TrialPruned

# A small budget for the estimators that train; the rest take only what they need.
SMALL_CONFIG = {
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "threads": 1},
    "low_fidelity": {"epochs": 1, "batch_size": 16, "device": "cpu", "threads": 1},
}


@cache
def tiny_task():
    rng = np.random.default_rng(0)
    return make_task("tiny", rng.random((60, 1, 8, 8), dtype=np.float32), np.arange(60) % 3, seed=0)


def tiny_space():
    return create_space("nb201", C=4, N=1)


def tiny_arch():
    return tiny_space().sample(np.random.default_rng(5))


def make_estimator(name: str, tmp_path):
    config = dict(SMALL_CONFIG.get(name, {}))
    if name == "tabular":
        # The lookup estimator reads a benchmark table: one row for the architecture under test.
        path = tmp_path / "table.csv"
        path.write_text(f"arch,val_acc,test_acc\n{tiny_space().to_string(tiny_arch())},0.625,0.5\n")
        config.update(path=str(path), report_columns=["test_acc"])
    return create_estimator(name, **config)


def estimate(estimator, report, seed: int = 0) -> Result:
    space, arch, task = tiny_space(), tiny_arch(), tiny_task()
    model = build_model(space, arch, task, seed)
    return estimator.estimate(arch, model, task, {"seed": seed}, report)


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "time" not in k and k != "cost_s"}


every_estimator = pytest.mark.parametrize("name", ESTIMATORS.names())


@every_estimator
def test_it_returns_a_result_with_a_float_objective(name, tmp_path):
    reports: list[tuple[int, dict]] = []
    result = estimate(make_estimator(name, tmp_path), lambda step, metrics: reports.append((step, metrics)))

    assert isinstance(result, Result)
    assert isinstance(result.objective, float) and math.isfinite(result.objective)
    assert isinstance(result.metrics, dict) and result.metrics
    assert result.cost_s >= 0
    steps = [step for step, _ in reports]
    assert steps == sorted(steps) and all(isinstance(step, int) for step in steps)
    assert all(isinstance(metrics, dict) for _, metrics in reports)


@every_estimator
def test_it_stops_when_report_raises_trial_pruned(name, tmp_path):
    estimator = make_estimator(name, tmp_path)
    reports: list[int] = []
    estimate(estimator, lambda step, metrics: reports.append(step))
    if not reports:
        pytest.fail(f"estimator {name!r} never calls report(step, metrics)")
    calls: list[int] = []

    def prune(step, metrics):
        calls.append(step)
        raise TrialPruned(f"pruned at {step}")

    with pytest.raises(TrialPruned):
        estimate(estimator, prune)
    assert calls == [reports[0]], "the estimator must stop at the first report that prunes"


@every_estimator
def test_it_is_deterministic_for_a_seed(name, tmp_path):
    estimator = make_estimator(name, tmp_path)
    first = estimate(estimator, lambda *_: None, seed=3)
    again = estimate(estimator, lambda *_: None, seed=3)

    assert first.objective == again.objective
    assert without_timings(first.metrics) == without_timings(again.metrics)
