"""Train and evaluate one trial.

The trial is claimed with a conditional update (queued -> running, lease token, attempt + 1),
heartbeats from the claim on (guards.TrialGuard), trains through the engine, writes a metric point
and broadcasts each epoch, records the result, and tops the experiment up right away.

Weights of the best model: a trial that is the best so far when it completes stores its trained
weights (safetensors) before it is marked terminal; finalize rebuilds the network from the
architecture and loads them, so the exported model is exactly the trial's model and nothing is
trained twice. Only if those weights are missing (storage lost them) does finalize retrain the
best architecture with the trial's seed.
"""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError, connection
from dramatiq.middleware.time_limit import TimeLimitExceeded

from search_engine import rules
from search_engine.loop import evaluate
from search_engine.registry import ConfigError
from search_engine.rules import STATIC_METRICS

from ..choices import ACTIVE_STATUSES, TrialState
from ..engine import build, records, storage
from ..live import broadcast
from ..models import Experiment, Trial, TrialMetric
from . import advance, queues
from .guards import LEASE_LOST, TrialGuard, TrialStopped
from .locks import worker_name

log = logging.getLogger(__name__)


def run_trial(trial_id: int) -> None:
    trial = Trial.objects.select_related("experiment__dataset", "experiment__project").filter(pk=trial_id).first()
    if trial is None:
        return
    experiment = trial.experiment
    if experiment.is_terminal:
        if trial.cancel_if_queued("the experiment finished before this trial started"):
            broadcast.trial_finished(trial)
        return
    if experiment.status not in ACTIVE_STATUSES:
        return  # paused (or still draft): resume re-sends run_trial for queued trials
    token = trial.claim(worker_name())
    if token is None:
        return  # a duplicate delivery, or another worker has it
    try:
        if trial.attempt > 1:
            TrialMetric.objects.filter(trial=trial).delete()  # points of a dead attempt
        broadcast.trial_started(trial)
        _train(trial, experiment, token)
    finally:
        advance.advance_now(experiment.pk)


def _train(trial: Trial, experiment: Experiment, token) -> None:
    started = time.perf_counter()
    try:
        search = build.build_search(experiment, with_strategy=False)
    except ConfigError as exc:
        _finish_trial(trial, token, state=TrialState.FAILED, error=f"cannot build the trial: {exc}",
                      duration_s=time.perf_counter() - started)
        return
    guard = TrialGuard(trial, token)
    last_values: dict = {}
    outcome, stopped = _train_guarded(trial, experiment, search, guard, last_values)
    duration = time.perf_counter() - started
    if outcome is None:
        _record_stop(trial, token, stopped, guard.stop_reason, last_values, duration)
        return
    fields = records.outcome_fields(outcome)
    if outcome.model is not None and outcome.state == TrialState.COMPLETED and _is_best_so_far(trial, outcome):
        # Stored before the trial turns terminal: finalize runs only after every trial is
        # terminal, so it always finds the weights of the best one.
        try:
            storage.save_weights(trial, outcome.model)
        except Exception:  # noqa: BLE001 - finalize falls back to retraining
            log.exception("trial %s: could not store its weights", trial.pk)
    _finish_trial(trial, token, **fields)


def _train_guarded(trial: Trial, experiment: Experiment, search, guard: TrialGuard, last_values: dict):
    """(outcome, None), or (None, the exception that stopped training)."""

    def report(step: int, values: dict) -> None:
        values = records.jsonable(values)
        with guard.lock:
            guard.check()
            try:
                # get_or_create: a report repeated for the same step (a retried write) adds no row.
                TrialMetric.objects.get_or_create(trial_id=trial.pk, step=step, defaults={"values": values})
            except DatabaseError:
                # One missing point of a learning curve is better than a failed trial.
                log.warning("trial %s: could not store the point of step %s", trial.pk, step, exc_info=True)
        last_values.update(values)
        broadcast.trial_epoch(trial, step, values)

    outcome = stopped = None
    guard.start()
    try:
        try:
            outcome = _evaluate_trial(trial, experiment, search, report)
        except TrialStopped as exc:
            stopped = exc
        except TimeLimitExceeded:
            stopped = TimeLimitExceeded()
        guard.disarm_safely()
    except TrialStopped:
        guard.disarm_safely()
    finally:
        guard.close()
    return outcome, stopped


def _record_stop(trial: Trial, token, stopped, stop_reason, last_values: dict, duration: float) -> None:
    if isinstance(stopped, TimeLimitExceeded):
        _finish_trial(trial, token, state=TrialState.FAILED, metrics=last_values, duration_s=duration,
                      error=f"stopped by the trial time limit ({queues.TRIAL_TIME_LIMIT_S}s)")
    elif stop_reason == LEASE_LOST:
        connection.close()
        log.warning("trial %s: lease lost; its new owner records the result", trial.pk)
    else:
        connection.close()  # an interrupt may have landed mid-statement: start afresh
        _finish_trial(trial, token, state=TrialState.CANCELLED, metrics=last_values, duration_s=duration,
                      error="cancelled while running")


def _evaluate_trial(trial: Trial, experiment: Experiment, search, report):
    # The static values advance computed when it screened the candidate; passing them back saves
    # building the network's FLOP count a second time.
    static = trial.constraint_values or {}
    return evaluate(
        build.candidate_of(trial),
        number=trial.number,
        space=search.space,
        estimator=search.estimator,
        task=search.task,
        constraints=search.constraints,
        seed=experiment.seed,
        report=report,
        static_values=static if all(k in static for k in STATIC_METRICS) else None,
    )


def _is_best_so_far(trial: Trial, outcome) -> bool:
    """Better, by the one rule of "best", than every trial completed so far (this one is still
    running, so it is not among them)."""
    best = Trial.objects.filter(experiment_id=trial.experiment_id).best_first().first()
    if best is None:
        return True
    if outcome.objective is None:
        return False
    mine = rules.best_key(outcome.objective, rules.params_of(outcome.metrics), trial.number)
    return mine <= rules.best_key(best.objective, rules.params_of(best.metrics), best.number)


def _finish_trial(trial: Trial, token, *, state: str, objective=None, metrics=None, constraint_values=None,
                  error: str = "", duration_s: float | None = None) -> None:
    done = trial.complete(
        token, state=state, objective=objective, metrics=metrics or {},
        constraint_values=constraint_values or {}, error=error,
        duration_s=None if duration_s is None else round(duration_s, 4),
    )  # fmt: skip
    if done:
        broadcast.trial_finished(trial)
    else:
        log.warning("trial %s: result dropped, this worker no longer holds the lease", trial.pk)

