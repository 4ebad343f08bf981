"""run_search end to end on tiny tasks, plus pareto_front unit tests."""

from __future__ import annotations

import time

import pytest
import torch
from sklearn.datasets import load_iris
from torch import nn

from search_engine.constraints import Constraints, count_params
from search_engine.estimators.base import Estimator
from search_engine.loop import Callbacks, Outcome, best_of_outcomes, ranked_outcomes, run_search
from search_engine.pareto import dominates, pareto_front, parse_objectives
from search_engine.registry import ConfigError, Option, create_estimator, create_space, create_strategy
from search_engine.spaces.base import SearchSpace
from search_engine.task import make_task
from search_engine.types import COMPLETED, FAILED, INFEASIBLE, PRUNED, Budget, Result, TrialPruned


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return make_task("iris", data.data, data.target, seed=0)


class InstantEstimator(Estimator):
    """Scores an architecture from its parameter count, reporting a few fake epochs."""

    name = "instant"
    options = {"epochs": Option(int, 2), "sleep_s": Option(float, 0.0)}

    def __init__(self, **config):
        super().__init__(**config)
        self.calls: list[tuple[str, int]] = []

    def estimate(self, arch, model, task, budget, report):
        self.calls.append((repr(sorted(arch.items())), count_params(model)))
        if self.config["sleep_s"]:
            time.sleep(self.config["sleep_s"])
        score = 1.0 / (1.0 + count_params(model) / 1000)
        for epoch in range(1, self.config["epochs"] + 1):
            report(epoch, {"val_acc": score * epoch / self.config["epochs"]})
        return Result({"val_acc": score, "test_acc": score}, objective=score, cost_s=0.0)


class Recording(Estimator):
    """Wraps a real estimator and remembers every model it was asked to train."""

    name = "recording"

    def __init__(self, inner: Estimator):
        self.inner = inner
        self.config = inner.config
        self.trained: list[tuple[dict, int]] = []

    def estimate(self, arch, model, task, budget, report):
        self.trained.append((dict(arch), count_params(model)))
        return self.inner.estimate(arch, model, task, budget, report)


class TinySpace(SearchSpace):
    """Three linear networks; small enough for grid search to exhaust."""

    name = "tiny"

    def choices(self):
        return {"width": [2, 4, 64]}

    def build(self, arch, task):
        return nn.Sequential(nn.Linear(task.input_shape[0], arch["width"]), nn.Linear(arch["width"], task.num_classes))


def search(task, *, space="mlp", strategy="random", estimator=None, seed=0, trials=4, strategy_config=None, **kwargs):
    space = create_space(space) if isinstance(space, str) else space
    return run_search(
        task=task,
        space=space,
        strategy=create_strategy(strategy, space, seed=seed, **(strategy_config or {})),
        estimator=estimator or InstantEstimator(),
        budget=kwargs.pop("budget", None) or Budget(trials=trials),
        seed=seed,
        **kwargs,
    )


# -- budget and callbacks -----------------------------------------------------------------
def test_it_respects_the_trial_budget(iris):
    estimator = InstantEstimator()
    result = search(iris, estimator=estimator, trials=5)
    assert len(result.outcomes) == 5
    assert len(estimator.calls) == 5
    assert result.stopped_because == "trial budget spent"
    assert [o.number for o in result.outcomes] == list(range(5))
    assert all(o.state == COMPLETED for o in result.outcomes)
    assert result.best is max(result.outcomes, key=lambda o: (o.objective, -o.number))


def test_it_calls_the_callbacks_in_order(iris):
    events = []
    callbacks = Callbacks(
        on_trial_start=lambda n, cand: events.append(("start", n)),
        on_epoch=lambda n, step, metrics: events.append(("epoch", n, step, sorted(metrics))),
        on_trial_end=lambda outcome: events.append(("end", outcome.number, outcome.state)),
    )
    search(iris, trials=3, callbacks=callbacks)
    expected = []
    for n in range(3):
        expected += [("start", n), ("epoch", n, 1, ["val_acc"]), ("epoch", n, 2, ["val_acc"]), ("end", n, COMPLETED)]
    assert events == expected


def test_it_never_trains_a_statically_infeasible_candidate(iris):
    limit = 3000
    estimator = InstantEstimator()
    ended = []
    result = search(
        iris, estimator=estimator, trials=6, seed=3, constraints=Constraints(max_params=limit),
        callbacks=Callbacks(on_trial_end=ended.append),
    )
    infeasible = [o for o in result.outcomes if o.state == INFEASIBLE]
    trained = [o for o in result.outcomes if o.state != INFEASIBLE]
    assert infeasible, "the limit should reject some random MLPs"
    assert len(trained) == 6  # rejected candidates cost no trial budget
    assert all(params <= limit for _, params in estimator.calls)
    trained_archs = {arch for arch, _ in estimator.calls}
    for o in infeasible:
        assert repr(sorted(o.arch.items())) not in trained_archs
        assert o.metrics["params"] > limit
        assert o.constraints["params"] == {"value": o.metrics["params"], "limit": limit, "ok": False}
        assert {"flops", "size_mb"} <= set(o.metrics)
        assert "params" in o.error and str(limit) in o.error
        assert o.objective is None
    # Every recorded trial, feasible or not, reached on_trial_end exactly once.
    assert [o.number for o in ended] == [o.number for o in result.outcomes]


def test_it_never_trains_an_infeasible_candidate_with_the_real_trainer(iris):
    limit = 2000
    estimator = Recording(create_estimator("train", epochs=1, threads=1, device="cpu"))
    result = search(iris, estimator=estimator, trials=3, seed=1, constraints=Constraints(max_params=limit))
    assert any(o.state == INFEASIBLE for o in result.outcomes)
    assert len(estimator.trained) == 3
    assert all(params <= limit for _, params in estimator.trained)
    infeasible_archs = [o.arch for o in result.outcomes if o.state == INFEASIBLE]
    assert not any(arch in infeasible_archs for arch, _ in estimator.trained)


def test_it_stops_when_the_wall_time_is_spent(iris):
    # How long past the budget it stops is a figure: bench/bench_engine_timings.py prints it.
    result = search(
        iris, estimator=InstantEstimator(sleep_s=0.05), budget=Budget(trials=10_000, wall_time_s=0.3)
    )
    assert result.stopped_because == "wall-time budget spent"
    assert 1 <= len(result.outcomes) < 100


def test_it_stops_when_a_grid_is_exhausted(iris):
    result = search(iris, space=TinySpace(), strategy="grid", trials=10)
    assert result.stopped_because == "search space exhausted"
    assert sorted(o.arch["width"] for o in result.outcomes) == [2, 4, 64]


def test_it_says_exhausted_when_the_last_grid_points_are_infeasible(iris):
    # width 64 breaks the limit and comes last in the unshuffled grid.
    result = search(
        iris, space=TinySpace(), strategy="grid", strategy_config={"shuffle": False}, trials=10,
        constraints=Constraints(max_params=100),
    )
    assert result.stopped_because == "search space exhausted"
    assert [o.arch["width"] for o in result.outcomes if o.state == INFEASIBLE] == [64]


def test_it_gives_up_when_nothing_is_feasible(iris):
    result = search(iris, trials=3, constraints=Constraints(max_params=10), budget=Budget(trials=3, max_infeasible=7))
    assert result.stopped_because == "no feasible candidate in 7 proposals"
    assert len(result.outcomes) == 7
    assert result.best is None


def test_it_records_a_failed_trial_and_goes_on(iris):
    class Broken(InstantEstimator):
        def estimate(self, arch, model, task, budget, report):
            if len(self.calls) == 1:
                self.calls.append(("boom", 0))
                raise RuntimeError("out of cheese")
            return super().estimate(arch, model, task, budget, report)

    result = search(iris, estimator=Broken(), trials=3)
    states = [o.state for o in result.outcomes]
    assert states == [COMPLETED, FAILED, COMPLETED]
    assert "out of cheese" in result.outcomes[1].error
    assert result.outcomes[1].model is None


def test_it_records_a_pruned_trial(iris):
    def prune_second_epoch(number, step, metrics):
        if step == 2:
            raise TrialPruned()

    result = search(iris, trials=2, callbacks=Callbacks(on_epoch=prune_second_epoch))
    assert [o.state for o in result.outcomes] == [PRUNED, PRUNED]
    assert all(o.objective is not None for o in result.outcomes)


# -- with the real trainer ------------------------------------------------------------------
def test_it_trains_end_to_end(iris):
    epochs = []
    estimator = create_estimator("train", epochs=2, threads=1, device="cpu")
    result = search(iris, estimator=estimator, trials=3, callbacks=Callbacks(on_epoch=lambda *a: epochs.append(a)))
    assert [o.state for o in result.outcomes] == [COMPLETED] * 3
    assert len(epochs) == 6
    for o in result.outcomes:
        assert {"val_acc", "test_acc", "params", "flops", "size_mb", "latency_ms"} <= set(o.metrics)
        assert 0.0 <= o.metrics["test_acc"] <= 1.0
        assert o.constraints["latency_ms"]["value"] == o.metrics["latency_ms"]
    assert result.best is not None and isinstance(result.best.model, nn.Module)
    assert [o.model for o in result.outcomes if o is not result.best] == [None, None]
    assert result.best.objective == max(o.objective for o in result.outcomes)


def test_it_keeps_the_trainers_scores_for_a_pruned_trial(iris):
    def prune_second_epoch(number, step, metrics):
        if step == 2:
            raise TrialPruned()

    estimator = create_estimator("train", epochs=3, threads=1, device="cpu")
    result = search(iris, estimator=estimator, trials=1, callbacks=Callbacks(on_epoch=prune_second_epoch))
    (outcome,) = result.outcomes
    assert outcome.state == PRUNED
    assert outcome.metrics["epochs"] == 2 and outcome.metrics["pruned"] is True
    assert outcome.objective == outcome.metrics["val_acc"]


def test_it_is_deterministic_for_a_seed(iris):
    def run(seed):
        estimator = create_estimator("train", epochs=1, threads=1, device="cpu")
        # population_size fits the 3-trial budget (the default 20 is refused: random search).
        result = search(iris, strategy="evolution", estimator=estimator, trials=3, seed=seed,
                        strategy_config={"population_size": 2, "sample_size": 2})
        keys = ("val_acc", "val_loss", "test_acc", "train_loss", "params", "flops")
        return [(o.arch, {k: o.metrics[k] for k in keys}) for o in result.outcomes], result.best

    first, best = run(7)
    again, best_again = run(7)
    assert first == again
    with torch.no_grad():
        assert torch.equal(best.model(iris.X_test), best_again.model(iris.X_test))
    other, _ = run(8)
    assert [arch for arch, _ in other] != [arch for arch, _ in first]


# -- pareto_front ----------------------------------------------------------------------------
ACC_PARAMS = [("val_acc", "max"), ("params", "min")]


def test_pareto_drops_a_dominated_result():
    a = {"val_acc": 0.9, "params": 100}
    b = {"val_acc": 0.8, "params": 200}
    assert dominates(a, b, ACC_PARAMS) and not dominates(b, a, ACC_PARAMS)
    assert pareto_front([b, a], ACC_PARAMS) == [a]


def test_pareto_keeps_trade_offs_in_input_order():
    small = {"val_acc": 0.8, "params": 10}
    big = {"val_acc": 0.95, "params": 1000}
    middle = {"val_acc": 0.9, "params": 100}
    assert pareto_front([big, small, middle], ["val_acc:max", "params:min"]) == [big, small, middle]


def test_pareto_keeps_ties():
    a = {"val_acc": 0.9, "params": 100}
    b = dict(a)
    assert not dominates(a, b, ACC_PARAMS)
    assert pareto_front([a, b], ACC_PARAMS) == [a, b]
    # Equal on one objective, better on the other: dominated.
    c = {"val_acc": 0.9, "params": 50}
    assert pareto_front([a, b, c], ACC_PARAMS) == [c]


def test_pareto_respects_directions():
    a = {"val_acc": 0.9, "params": 100}
    b = {"val_acc": 0.8, "params": 200}
    assert pareto_front([a, b], [("val_acc", "min"), ("params", "max")]) == [b]
    assert pareto_front([a, b], ["val_acc"]) == [a]  # direction defaults to max
    assert pareto_front([a, b], ["params:min"]) == [a]


def test_pareto_ignores_results_missing_a_value():
    full = {"val_acc": 0.5, "params": 500}
    no_params = {"val_acc": 0.99}
    none_params = {"val_acc": 0.99, "params": None}
    assert pareto_front([no_params, none_params, full], ACC_PARAMS) == [full]
    assert pareto_front([no_params], ACC_PARAMS) == []
    assert pareto_front([], ACC_PARAMS) == []


def test_pareto_accepts_objects_with_metrics(iris):
    result = search(iris, trials=4)
    front = pareto_front(result.outcomes, ACC_PARAMS)
    # InstantEstimator's score falls with size, so the smallest network dominates the rest
    # (two architectures differing only in dropout tie, and the front keeps ties).
    smallest = min(o.metrics["params"] for o in result.outcomes)
    assert front and front == [o for o in result.outcomes if o.metrics["params"] == smallest]


def test_parse_objectives_rejects_a_bad_direction():
    assert parse_objectives(["val_acc", "params:min", ("flops", "min")]) == [
        ("val_acc", "max"), ("params", "min"), ("flops", "min")
    ]
    with pytest.raises(ValueError, match="direction"):
        parse_objectives(["params:smallest"])


# -- the shared rules in the loop ------------------------------------------------------------


def _outcome(number, state=COMPLETED, objective=0.5, params=100, **fields):
    return Outcome(number=number, arch={}, fingerprint=str(number), state=state, objective=objective,
                   metrics={"params": params}, **fields)


def test_the_best_outcome_breaks_ties_by_fewer_params_then_the_earlier_trial():
    outcomes = [_outcome(0, params=300), _outcome(1, params=100), _outcome(2, params=100),
                _outcome(3, objective=0.4, params=1), _outcome(4, state=PRUNED, objective=0.9)]
    assert best_of_outcomes(outcomes).number == 1
    assert [o.number for o in ranked_outcomes(outcomes)] == [1, 2, 0, 3]
    assert best_of_outcomes([_outcome(0, state=FAILED, objective=None)]) is None


def test_only_a_statically_rejected_candidate_was_not_trained():
    static = _outcome(0, state=INFEASIBLE, objective=None, constraints={"params": {"ok": False}})
    slow = _outcome(1, state=INFEASIBLE, constraints={"latency_ms": {"value": 9.0, "limit": 1.0, "ok": False}})
    assert not static.trained and not static.counts_against_budget
    assert slow.trained and slow.counts_against_budget
    for state in (COMPLETED, PRUNED, FAILED):
        assert _outcome(2, state=state).counts_against_budget


def test_run_search_keeps_the_smaller_of_two_equally_good_models(iris):
    result = search(iris, estimator=ConstantEstimator(), trials=6)
    completed = [o for o in result.outcomes if o.state == COMPLETED]
    smallest = min(o.metrics["params"] for o in completed)
    assert result.best.metrics["params"] == smallest
    assert result.best.number == min(o.number for o in completed if o.metrics["params"] == smallest)


class ConstantEstimator(Estimator):
    """The same score for every architecture: only the tie-break can choose the best."""

    name = "constant"
    trains_model = False

    def estimate(self, arch, model, task, budget, report):
        report(1, {"val_acc": 0.5})
        return Result({"val_acc": 0.5}, objective=0.5, cost_s=0.0)


def test_it_refuses_an_evolution_population_larger_than_the_trial_budget(iris):
    with pytest.raises(ConfigError) as excinfo:
        search(iris, strategy="evolution", trials=8)
    assert excinfo.value.field == "population_size"


class LookupEstimator(ConstantEstimator):
    """A table lookup: declares that it needs no network, and checks it gets none."""

    name = "lookup"
    needs_model = False

    def estimate(self, arch, model, task, budget, report):
        assert model is None
        return super().estimate(arch, model, task, budget, report)


class SpiedSpace(TinySpace):
    def __init__(self):
        super().__init__()
        self.builds = 0

    def build(self, arch, task):
        self.builds += 1
        return super().build(arch, task)


def test_it_never_builds_a_network_nobody_needs(iris):
    space = SpiedSpace()
    result = search(iris, space=space, strategy="grid", estimator=LookupEstimator(), trials=3)

    assert space.builds == 0
    assert [o.state for o in result.outcomes] == [COMPLETED] * 3
    assert all("params" not in o.metrics and "latency_ms" not in o.constraints for o in result.outcomes)


def test_it_builds_the_network_when_a_constraint_needs_it(iris):
    space = SpiedSpace()
    result = search(iris, space=space, strategy="grid", estimator=LookupEstimator(), trials=3,
                    constraints=Constraints(max_params=100))

    assert space.builds >= 3
    assert [o.state for o in result.outcomes].count(INFEASIBLE) == 1  # width 64 is over the limit
    assert all("params" in o.metrics for o in result.outcomes)
