"""The NAS loop: search space -> search strategy -> performance estimation.

Two layers, so the web workers and the CLI share every step:
- `propose` asks the strategy and screens static constraints (params, FLOPs, size) on an
  untrained network; infeasible candidates come back as recorded trials and the strategy is
  asked again (bounded).
- `evaluate` builds the network deterministically, runs the estimator, then measures latency.
`run_search` is the single-process loop with a budget and callbacks (the CLI uses it).

Both take `build=False` when nothing needs the network (`needs_network`): a table lookup with
no constraint then never builds one, which is most of a tabular trial's time otherwise.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .constraints import Constraints, feasible, violations
from .estimators.base import Estimator
from .rules import CONSTRAINT_KEYS, best_key, best_of, counts_against_budget, is_scored, params_of
from .runtime import derive_seed, seeded
from .spaces.base import SearchSpace
from .strategies.base import Strategy
from .task import Task
from .types import (
    COMPLETED,
    FAILED,
    INFEASIBLE,
    PRUNED,
    Architecture,
    Budget,
    Candidate,
    ReportFn,
    Result,
    TrialPruned,
    TrialRecord,
)


@dataclass
class Outcome:
    """A finished trial: everything the CLI prints and the web side stores."""

    number: int
    arch: Architecture
    fingerprint: str
    state: str
    objective: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, dict] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str = ""
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def trained(self) -> bool:
        """False only for a candidate the static check rejected: params, FLOPs and size come from
        the untrained network, so it never reached the estimator. One rejected afterwards for its
        measured latency was trained; a failed or pruned trial took its training slot too."""
        return not (self.state == INFEASIBLE and "latency_ms" not in self.constraints)

    @property
    def counts_against_budget(self) -> bool:
        return counts_against_budget(self.state, self.trained)

    def record(self) -> TrialRecord:
        return TrialRecord(
            number=self.number,
            arch=self.arch,
            state=self.state,
            objective=self.objective,
            metrics=self.metrics,
            budget=self.budget,
            meta=self.meta,
        )

    def to_dict(self) -> dict:
        keys = ("number", "arch", "fingerprint", "state", "objective", "metrics", "constraints",
                "budget", "meta", "duration_s", "error")
        return {k: getattr(self, k) for k in keys}


def trial_seed(seed: int, space: SearchSpace, arch: Architecture, budget: dict) -> int:
    """Same search seed + same architecture + same budget -> same initial weights and batches,
    whatever the order in which trials ran or which worker ran them."""
    return derive_seed(seed, space.fingerprint(arch), sorted(budget.items()))


def build_model(space: SearchSpace, arch: Architecture, task: Task, seed: int) -> nn.Module:
    with seeded(seed):
        return space.build(arch, task)


def static_check(space: SearchSpace, arch: Architecture, task: Task, constraints: Constraints) -> dict:
    # Initial weights do not change params/FLOPs/size; seeding only keeps torch's global RNG untouched.
    return constraints.static_values(build_model(space, arch, task, 0), task)


def needs_network(estimator: Estimator, constraints: Constraints) -> bool:
    """False when neither the estimator nor a constraint looks at the built network: then
    params/FLOPs/size/latency are not computed (a table that has them reports them itself)."""
    wants_model = estimator.needs_model
    return wants_model or any(getattr(constraints, key) is not None for key in CONSTRAINT_KEYS)


def static_metrics(values: dict[str, dict]) -> dict[str, Any]:
    return {k: v["value"] for k, v in values.items()}


def propose(
    strategy: Strategy,
    history: list[TrialRecord],
    n: int,
    *,
    task: Task,
    constraints: Constraints,
    next_number: int,
    max_infeasible: int = 200,
    build: bool = True,
) -> tuple[list[tuple[Candidate, dict]], list[Outcome]]:
    """Up to `n` statically feasible candidates (each with its constraint values) and the
    infeasible ones met on the way, already numbered, in the order they were proposed.

    `build=False` (see needs_network) skips the static check: every candidate is accepted
    with no constraint values."""
    space = strategy.space
    strategy.bind_task(task)
    history = list(history)
    accepted: list[tuple[Candidate, dict]] = []
    infeasible: list[Outcome] = []
    number = next_number
    while len(accepted) < n and len(infeasible) < max_infeasible:
        if strategy.is_finished(history):
            break
        candidates = strategy.ask(history, n - len(accepted))
        if not candidates:
            break
        for cand in candidates:
            arch = space.validate(cand.arch)
            values = static_check(space, arch, task, constraints) if build else {}
            record = TrialRecord(number, arch, "queued", budget=cand.budget, meta=cand.meta)
            if feasible(values):
                accepted.append((Candidate(arch, cand.budget, cand.meta), values))
            else:
                record.state = INFEASIBLE
                infeasible.append(
                    Outcome(
                        number=number,
                        arch=arch,
                        fingerprint=space.fingerprint(arch),
                        state=INFEASIBLE,
                        metrics=static_metrics(values),
                        constraints=values,
                        budget=cand.budget,
                        meta=cand.meta,
                        error="violates " + ", ".join(violations(values)),
                    )
                )
            history.append(record)
            number += 1
    return accepted, infeasible


def evaluate(
    candidate: Candidate,
    *,
    number: int,
    space: SearchSpace,
    estimator: Estimator,
    task: Task,
    constraints: Constraints,
    seed: int,
    report: ReportFn | None = None,
    measure_latency: bool = True,
    static_values: dict[str, dict] | None = None,
    build: bool = True,
) -> Outcome:
    """Build, estimate and measure one candidate. Never raises for a bad trial: a failure is
    an Outcome with state `failed` and a traceback summary.

    `static_values` are the ones `propose` already computed for this candidate (same space,
    task and constraints); passing them skips counting params/FLOPs/size a second time.
    `build=False` (see needs_network) gives the estimator no network (model=None) and
    computes no static values or latency."""
    arch = space.validate(candidate.arch)
    started = time.perf_counter()
    outcome = Outcome(
        number=number,
        arch=arch,
        fingerprint=space.fingerprint(arch),
        state=COMPLETED,
        budget=dict(candidate.budget),
        meta=dict(candidate.meta),
    )
    last_reported: dict[str, Any] = {}

    def forward_report(step: int, metrics: dict) -> None:
        last_reported.update(metrics)
        if report is not None:
            report(step, metrics)

    try:
        seed_for_trial = trial_seed(seed, space, arch, candidate.budget)
        model = build_model(space, arch, task, seed_for_trial) if build else None
        # FLOP counting runs a forward pass under a dispatch mode: on nb201 it costs more
        # than building the network, so the values from propose are reused when given.
        if not build:
            values = {}
        elif static_values is not None:
            values = static_values
        else:
            values = constraints.static_values(model, task)
        values = {k: dict(v) for k, v in values.items()}
        outcome.metrics.update(static_metrics(values))
        outcome.constraints = values
        if not feasible(values):
            outcome.state = INFEASIBLE
            outcome.error = "violates " + ", ".join(violations(values))
            return outcome
        budget = {**candidate.budget, "seed": seed_for_trial}
        try:
            result = estimator.estimate(arch, model, task, budget, forward_report)
        except TrialPruned as pruned:
            _record_pruned(outcome, pruned, last_reported)
            return outcome
        _record_result(outcome, result)
        if measure_latency and build:
            measured = constraints.measured_values(model, task)
            outcome.constraints.update(measured)
            outcome.metrics.update(static_metrics(measured))
            if not feasible(measured):
                outcome.state = INFEASIBLE
                outcome.error = "violates " + ", ".join(violations(measured))
        outcome.model = model if estimator.trains_model else None
    except Exception as exc:  # a broken trial must not take the search down with it
        outcome.state = FAILED
        outcome.error = summarize_exception(exc)
    finally:
        outcome.duration_s = round(time.perf_counter() - started, 4)
    return outcome


def _record_result(outcome: Outcome, result: Result) -> None:
    outcome.metrics.update(result.metrics)
    outcome.objective = result.objective
    outcome.metrics["cost_s"] = round(result.cost_s, 4)


def _record_pruned(outcome: Outcome, pruned: TrialPruned, last_reported: dict[str, Any]) -> None:
    outcome.state = PRUNED
    # The trainer attaches its scores so far (best-epoch val_acc, epochs run); without
    # them, fall back on the last reported epoch.
    partial = getattr(pruned, "result", None)
    if partial is not None:
        _record_result(outcome, partial)
    else:
        outcome.metrics.update(last_reported)
        outcome.objective = last_reported.get("val_acc")


def summarize_exception(exc: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))
    return text[-limit:]


def outcome_key(outcome: Outcome) -> tuple:
    """rules.best_key of a scored outcome: sorting by it puts the best first."""
    return best_key(outcome.objective, params_of(outcome.metrics), outcome.number)


def best_of_outcomes(outcomes: Iterable[Outcome]) -> Outcome | None:
    """The best scored outcome by the shared rule (rules.best_of)."""
    return best_of(
        outcomes, state=lambda o: o.state, objective=lambda o: o.objective,
        params=lambda o: params_of(o.metrics), number=lambda o: o.number,
    )


def ranked_outcomes(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """The scored outcomes, best first (rules.best_key order)."""
    return sorted((o for o in outcomes if is_scored(o.state, o.objective)), key=outcome_key)


@dataclass
class Callbacks:
    on_trial_start: Callable[[int, Candidate], None] | None = None
    on_epoch: Callable[[int, int, dict], None] | None = None
    on_trial_end: Callable[[Outcome], None] | None = None


@dataclass
class SearchResult:
    outcomes: list[Outcome]
    best: Outcome | None
    wall_time_s: float
    stopped_because: str

    @property
    def evaluated(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.trained]


def run_search(
    *,
    task: Task,
    space: SearchSpace,
    strategy: Strategy,
    estimator: Estimator,
    constraints: Constraints | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    callbacks: Callbacks | None = None,
    keep_best_model: bool = True,
) -> SearchResult:
    """Sequential ask -> screen -> evaluate loop until the trial or wall-time budget is spent."""
    constraints = constraints or Constraints()
    budget = budget or Budget()
    callbacks = callbacks or Callbacks()
    strategy.check_budget(budget.trials)
    build = needs_network(estimator, constraints)
    outcomes: list[Outcome] = []
    best: Outcome | None = None
    started = time.perf_counter()
    stopped_because = "trial budget spent"
    while sum(o.counts_against_budget for o in outcomes) < budget.trials:
        if budget.wall_time_s is not None and time.perf_counter() - started >= budget.wall_time_s:
            stopped_because = "wall-time budget spent"
            break
        history = [o.record() for o in outcomes]
        accepted, infeasible = propose(
            strategy, history, 1, task=task, constraints=constraints,
            next_number=len(outcomes), max_infeasible=budget.max_infeasible, build=build,
        )
        for outcome in infeasible:
            outcomes.append(outcome)
            if callbacks.on_trial_end:
                callbacks.on_trial_end(outcome)
        if not accepted:
            # Asked with the history including the infeasible candidates just recorded: a grid
            # whose last points broke a limit is exhausted, not short of feasible proposals.
            history = [o.record() for o in outcomes]
            stopped_because = (
                "search space exhausted" if strategy.is_finished(history)
                else f"no feasible candidate in {budget.max_infeasible} proposals"
            )
            break
        candidate, static_values = accepted[0]
        number = len(outcomes)
        if callbacks.on_trial_start:
            callbacks.on_trial_start(number, candidate)
        report = (lambda step, m, n=number: callbacks.on_epoch(n, step, m)) if callbacks.on_epoch else None
        outcome = evaluate(
            candidate, number=number, space=space, estimator=estimator, task=task,
            constraints=constraints, seed=seed, report=report, static_values=static_values, build=build,
        )
        is_better = outcome is best_of_outcomes([outcome] if best is None else [best, outcome])
        if is_better:
            if best is not None:
                best.model = None  # only the best network is kept in memory
            best = outcome
        if not is_better or not keep_best_model:
            outcome.model = None
        outcomes.append(outcome)
        strategy.tell(outcome.record())
        if callbacks.on_trial_end:
            callbacks.on_trial_end(outcome)
    return SearchResult(outcomes, best, time.perf_counter() - started, stopped_because)
