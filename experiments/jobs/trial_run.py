"""Train and evaluate one trial.

The trial is claimed with a conditional update (queued -> running, lease token, attempt + 1) and
heartbeats from the claim on (guards.TrialGuard starts before any slow set-up: loading the
dataset, building the search, the first torch imports). It trains through the engine, writes a
metric point and broadcasts each epoch, records the result, and tops the experiment up right away.

Stops happen only at safe points of the training thread: the start of each forward pass (every
batch; a hook on the network) and each epoch's report. Why a trial stopped decides what is
recorded: a cancel records "cancelled"; the time limit "failed"; a stopping worker, a lost
database and a worker out of service (jobs/service.py) hand the trial back to the queue, since
the trial did nothing wrong.

Weights of the best model: a trial that is the best so far when it completes stores its trained
weights (safetensors) before it is marked terminal; finalize rebuilds the network from the
architecture and loads them, so the exported model is exactly the trial's model and nothing is
trained twice. Only if those weights are missing (storage lost them) does finalize retrain the
best architecture with the trial's seed.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from search_engine import rules
from search_engine.loop import evaluate
from search_engine.registry import ConfigError
from search_engine.rules import STATIC_METRICS

from ..choices import ACTIVE_STATUSES, ExperimentStatus, TrialState
from ..engine import build, records, storage
from ..live import broadcast
from ..models import Experiment, Trial, TrialMetric
from . import advance, enqueue, queues, service
from .guards import CANCELLED_BY_USER, LEASE_LOST, SHUTDOWN, TIME_LIMIT, TrialGuard, TrialStopped
from .locks import worker_name

log = logging.getLogger(__name__)

INFRASTRUCTURE_ERRORS = (DatabaseError, redis.RedisError)


def run_trial(trial_id: int) -> None:
    if not service.available():
        # Stopping, or out of service: this message belongs to another worker.
        enqueue.run_trial(trial_id)
        return
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
    guard = TrialGuard(trial, token).start()  # the heartbeat starts with the claim
    try:
        if trial.attempt > 1:
            TrialMetric.objects.filter(trial=trial).delete()  # points of a dead attempt
        broadcast.trial_started(trial)
        _train(trial, experiment, guard)
    except INFRASTRUCTURE_ERRORS:
        # The database or Redis went away under the trial: not the trial's fault.
        log.exception("trial %s: infrastructure error; handing it back to the queue", trial.pk)
        _hand_back(trial, token, "its worker lost the database or Redis; re-queued")
    finally:
        guard.close()
        advance.advance_now(experiment.pk)


def _train(trial: Trial, experiment: Experiment, guard: TrialGuard) -> None:
    started = time.perf_counter()
    try:
        search = build.build_search(experiment, with_strategy=False)
    except build.DatasetMissing as exc:
        # Every trial would fail the same way: the experiment fails now, with the reason.
        _finish_trial(trial, guard.token, state=TrialState.FAILED, error=str(exc),
                      duration_s=time.perf_counter() - started)
        experiment.finish(ExperimentStatus.FAILED, f"cannot run this search: {exc}")
        return
    except ConfigError as exc:
        _finish_trial(trial, guard.token, state=TrialState.FAILED, error=f"cannot build the trial: {exc}",
                      duration_s=time.perf_counter() - started)
        return
    last_values: dict = {}
    try:
        guard.check()  # a cancel during the set-up
        outcome = _evaluate_trial(trial, experiment, search, _reporter(trial, guard, last_values), guard.check)
    except TrialStopped:
        _record_stop(trial, guard, last_values, time.perf_counter() - started)
        return
    duration = time.perf_counter() - started
    if _trips_breaker(trial, guard.token, outcome, duration):
        return
    fields = records.outcome_fields(outcome)
    if outcome.model is not None and outcome.state == TrialState.COMPLETED and _is_best_so_far(trial, outcome):
        # Stored before the trial turns terminal: finalize runs only after every trial is
        # terminal, so it always finds the weights of the best one.
        try:
            storage.save_weights(trial, outcome.model)
        except Exception:  # noqa: BLE001 - finalize falls back to retraining
            log.exception("trial %s: could not store its weights", trial.pk)
    _finish_trial(trial, guard.token, **fields)


def _reporter(trial: Trial, guard: TrialGuard, last_values: dict):
    def report(step: int, values: dict) -> None:
        guard.check()  # the epoch's end: a safe point
        values = records.jsonable(values)
        try:
            # get_or_create: a report repeated for the same step (a retried write) adds no row.
            TrialMetric.objects.get_or_create(trial_id=trial.pk, step=step, defaults={"values": values})
        except DatabaseError:
            # One missing point of a learning curve is better than a failed trial.
            log.warning("trial %s: could not store the point of step %s", trial.pk, step, exc_info=True)
        last_values.update(values)
        broadcast.trial_epoch(trial, step, values)

    return report


class _StoppableSpace:
    """The experiment's space, whose networks call `check` at the start of every forward pass:
    between two batches, in the training thread, nothing half done."""

    def __init__(self, space, check):
        self._space = space
        self._check = check

    def __getattr__(self, name):
        return getattr(self._space, name)

    def build(self, arch, task):
        model = self._space.build(arch, task)
        model.register_forward_pre_hook(lambda module, args: self._check())
        return model


def _record_stop(trial: Trial, guard: TrialGuard, last_values: dict, duration: float) -> None:
    reason = guard.stop_reason
    if reason == TIME_LIMIT:
        _finish_trial(trial, guard.token, state=TrialState.FAILED, metrics=last_values, duration_s=duration,
                      error=f"stopped by the trial time limit ({queues.TRIAL_TIME_LIMIT_S}s)")
    elif reason == LEASE_LOST:
        log.warning("trial %s: lease lost; its new owner records the result", trial.pk)
    elif reason == SHUTDOWN:
        _hand_back(trial, guard.token, "its worker stopped; re-queued")
    else:
        assert reason == CANCELLED_BY_USER, reason
        _finish_trial(trial, guard.token, state=TrialState.CANCELLED, metrics=last_values, duration_s=duration,
                      error="cancelled while running")


def _hand_back(trial: Trial, token, reason: str, *, count_attempt: bool = False) -> None:
    """Back to the queue with a message, for a trial stopped by its worker's trouble."""
    try:
        connection.close()  # a connection that broke mid-statement is of no use any more
        if trial.release(token, reason, count_attempt=count_attempt):
            broadcast.trial_created(trial)
            enqueue.run_trial(trial.pk)
    except INFRASTRUCTURE_ERRORS:
        # Still away: the lease expires and the periodic check re-queues and re-sends it.
        log.warning("trial %s: could not hand it back; the lease will expire", trial.pk, exc_info=True)


def _trips_breaker(trial: Trial, token, outcome, duration: float) -> bool:
    """A failure within WORKER_FAST_FAILURE_S is suspect; the last of a streak of them takes this
    worker out of service (see jobs/service.py). True when this trial went back to the queue."""
    failed_fast = outcome.state == TrialState.FAILED and duration < settings.WORKER_FAST_FAILURE_S
    streak = service.note_trial(trial.pk, failed_fast)
    if not streak:
        return False
    why = (f"{len(streak)} trials in a row failed within {settings.WORKER_FAST_FAILURE_S}s each "
           f"(last: {rules.error_line(outcome.error)})")  # fmt: skip
    service.take_out_of_service(why)
    note = f"re-queued: worker {worker_name()} took itself out of service ({why})"
    others = Trial.objects.filter(pk__in=[pk for pk in streak if pk != trial.pk]).reopen_failed(note)
    for pk in others:
        enqueue.run_trial(pk)
    if trial.attempt >= settings.TRIAL_MAX_ATTEMPTS:
        return False  # it failed fast on every attempt, on every worker: that is the trial's own failure
    _hand_back(trial, token, note, count_attempt=True)
    return True


def _evaluate_trial(trial: Trial, experiment: Experiment, search, report, check):
    # The static values advance computed when it screened the candidate; passing them back saves
    # building the network's FLOP count a second time.
    static = trial.constraint_values or {}
    return evaluate(
        build.candidate_of(trial),
        number=trial.number,
        space=_StoppableSpace(search.space, check),
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
