"""Dramatiq actors: the NAS loop of one experiment, spread over worker processes and machines.

    Experiment.start() --on commit--> advance_experiment --on commit--> run_trial (one per trial)
    run_trial (trial done) --inline--> advance_experiment --...--> finalize_experiment (budget spent)
    watch_experiment (every lease/2 s while the experiment is active) --> advance_experiment
    one-shot experiments: Experiment.start() --> run_oneshot (one resumable job) --> advance_experiment

Every actor takes ids, is idempotent under at-least-once delivery (a row lock or a conditional
update decides, so a duplicate message does nothing) and sets queue, retries and time limit.
Short bookkeeping (advance, watch) runs on CONTROL_QUEUE so that it never waits behind training;
`manage.py up` gives that queue its own worker process. Training and export run on TRIALS_QUEUE.

Design choices:
- Weights of the best model: run_trial stores the trained weights (safetensors) of a trial that is
  the best so far when it completes, before the trial is marked terminal; finalize rebuilds the
  network from the architecture and loads them, so the exported model is exactly the trial's model
  and nothing is trained twice. Only if those weights are missing (storage lost them) does finalize
  retrain the best architecture with the trial's seed. The stored weights are deleted after export.
- Dead workers: a running trial heartbeats from a watcher thread. advance_experiment reaps trials
  whose heartbeat is older than the lease (re-queue, or fail after TRIAL_MAX_ATTEMPTS). Something
  has to call advance when every worker of an experiment died, since nobody finishes a trial then:
  watch_experiment is a self-rescheduling delayed message, one chain per experiment (a Redis key
  names the chain's owner), alive while the experiment is active. It needs no extra process and
  works the same on every machine of a scale-out. `manage.py up` also sends one advance per active
  experiment at start-up, because messages queued in the embedded Redis do not survive a restart.
- Cancel stops a running trial within about a second: the watcher thread reads the experiment's
  status every CANCEL_POLL_SECONDS and raises TrialStopped inside the training thread (the same
  mechanism Dramatiq's time limit uses), so even a long epoch is interrupted mid-batch.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
import time
import uuid
from functools import lru_cache

import dramatiq
import redis
import torch
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Max
from django.utils import timezone
from dramatiq.middleware.time_limit import TimeLimitExceeded
from dramatiq.threading import raise_thread_exception

from search_engine.loop import evaluate, propose
from search_engine.registry import ConfigError

from . import broadcast, engine_bridge, exports
from .choices import ACTIVE_STATUSES, TERMINAL_STATUSES, ArtifactKind, ExperimentStatus, TrialState
from .models import Artifact, Experiment, ExperimentProgress, Trial, TrialMetric

log = logging.getLogger(__name__)

CONTROL_QUEUE = "nas-control"
TRIALS_QUEUE = "nas-trials"

# A trial longer than this is stopped and failed (Dramatiq interrupts the thread).
TRIAL_TIME_LIMIT_S = 12 * 3600
FINALIZE_TIME_LIMIT_S = 3600
# How often a running trial's watcher looks for a cancel; each look is one indexed SELECT.
CANCEL_POLL_SECONDS = 1.0
# propose() screens up to this many statically infeasible candidates per advance.
MAX_INFEASIBLE_PER_ADVANCE = 200
# Optimistic retries when another advance wrote trials while this one was proposing.
ADVANCE_ATTEMPTS = 5

CANCELLED_BY_USER = "cancelled"
LEASE_LOST = "lease lost"


# Helpers ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


_threads_set = False


def _set_torch_threads() -> None:
    """Torch threads of this worker process (the estimator also sets them per trial)."""
    global _threads_set
    if not _threads_set:
        torch.set_num_threads(max(1, settings.WORKER_TORCH_THREADS))
        _threads_set = True


def _watch_interval() -> float:
    return max(1.0, settings.TRIAL_LEASE_SECONDS / 2)


def enqueue_advance(experiment_id: int, resend_queued: bool = False) -> None:
    """Called by Experiment.start()/resume() through transaction.on_commit."""
    if resend_queued:
        advance_experiment.send(experiment_id, resend_queued=True)
    else:
        advance_experiment.send(experiment_id)


def _lock_experiment(experiment_id: int) -> Experiment | None:
    # On PostgreSQL this is SELECT ... FOR UPDATE. SQLite ignores it, but settings open every
    # SQLite transaction with BEGIN IMMEDIATE, which takes the database's write lock up front:
    # the same mutual exclusion, coarser.
    return Experiment.objects.select_for_update().filter(pk=experiment_id).first()


def _trial_counts(experiment: Experiment) -> dict[str, int]:
    rows = experiment.trials.values("state").annotate(n=Count("pk")).order_by()
    return {row["state"]: row["n"] for row in rows}


def _last_number(experiment_id: int) -> int:
    top = Trial.objects.filter(experiment_id=experiment_id).aggregate(top=Max("number"))["top"]
    return -1 if top is None else top


def _wall_time_spent(experiment: Experiment) -> bool:
    # Wall time counts from start(), pauses included: it bounds what the search may cost in time.
    if not experiment.budget_wall_time_s or not experiment.started_at:
        return False
    return (timezone.now() - experiment.started_at).total_seconds() >= experiment.budget_wall_time_s


def _on_commit_send(actor, *args, **kwargs) -> None:
    transaction.on_commit(lambda: actor.send(*args, **kwargs))


def _reap_stale(experiment: Experiment) -> list[int]:
    """Re-queue (or fail, after the last attempt) running trials whose worker stopped
    heartbeating. Returns the ids of re-queued trials; the caller sends run_trial for them."""
    lease = settings.TRIAL_LEASE_SECONDS
    requeued = []
    for trial in experiment.trials.stale(lease).select_for_update():
        reason = f"worker {trial.worker or '?'} stopped heartbeating (lease of {lease}s expired)"
        state = trial.requeue_or_fail(settings.TRIAL_MAX_ATTEMPTS, reason)
        log.warning("trial %s: %s -> %s", trial, reason, state)
        if state == TrialState.QUEUED:
            requeued.append(trial.pk)
            transaction.on_commit(lambda t=trial: broadcast.trial_created(t))
        else:
            transaction.on_commit(lambda t=trial: broadcast.trial_finished(t))
    return requeued


# advance_experiment ---------------------------------------------------------------------------
@dramatiq.actor(queue_name=CONTROL_QUEUE, max_retries=10, min_backoff=1000, max_backoff=30_000,
                time_limit=10 * 60 * 1000, on_retry_exhausted="experiment_gave_up")
def advance_experiment(experiment_id: int, resend_queued: bool = False) -> None:
    """Bring an experiment forward: reap dead trials, top up to `parallelism` running trials
    within the budget, or finalize when the budget is spent and nothing is pending."""
    _set_torch_threads()
    for _ in range(ADVANCE_ATTEMPTS):
        if _advance_once(experiment_id, resend_queued):
            return
        resend_queued = False
    log.info("experiment %s: other advances kept writing trials; leaving the top-up to them", experiment_id)


def _advance_once(experiment_id: int, resend_queued: bool) -> bool:
    """One optimistic round; False when another advance created trials meanwhile (retry)."""
    # Phase 1, locked and short. The lock serialises advances of the same experiment: two of them
    # (two trials finishing together, or a duplicate message) would otherwise both count the same
    # pending trials, both number their new trial N, and together overshoot the trial budget.
    with transaction.atomic():
        experiment = _lock_experiment(experiment_id)
        if experiment is None or experiment.status not in ACTIVE_STATUSES:
            return True  # draft, paused or finished: nothing to do (resume sends a new advance)
        if experiment.status == ExperimentStatus.QUEUED:
            Experiment.objects.filter(pk=experiment.pk).update(
                status=ExperimentStatus.RUNNING, updated_at=timezone.now()
            )
            experiment.status = ExperimentStatus.RUNNING
            experiment.announce_status()
            resend_queued = True  # after a resume, trials queued before the pause need a message
        transaction.on_commit(lambda: ensure_watchdog(experiment_id))
        if experiment.oneshot and not experiment.oneshot_result:
            # The one-shot job runs before any trial: (re)send it unless a worker holds it (after
            # a resume, a restart, or a worker that died: see run_oneshot).
            transaction.on_commit(lambda: enqueue_oneshot(experiment_id))
            return True
        resend = set(_reap_stale(experiment))
        if resend_queued:
            resend.update(experiment.trials.filter(state=TrialState.QUEUED).values_list("pk", flat=True))
        for trial_id in sorted(resend):
            _on_commit_send(run_trial, trial_id)

        counts = _trial_counts(experiment)
        pending = counts.get(TrialState.QUEUED, 0) + counts.get(TrialState.RUNNING, 0)
        counted = experiment.counted_trials().count()
        if _wall_time_spent(experiment):
            # Trials not started yet will not start; running ones finish (as the CLI does).
            now = timezone.now()
            cancelled = list(experiment.trials.filter(state=TrialState.QUEUED))
            experiment.trials.filter(state=TrialState.QUEUED).update(
                state=TrialState.CANCELLED, finished_at=now, error="wall-time budget spent before it started"
            )
            for trial in cancelled:
                trial.state, trial.finished_at = TrialState.CANCELLED, now
                transaction.on_commit(lambda t=trial: broadcast.trial_finished(t))
            if counts.get(TrialState.RUNNING, 0) == 0:
                _on_commit_send(finalize_experiment, experiment_id, "wall-time budget spent")
            return True
        if counted >= experiment.budget_trials:
            if pending == 0:
                _on_commit_send(finalize_experiment, experiment_id, "trial budget spent")
            return True
        room = min(experiment.parallelism - pending, experiment.budget_trials - counted)
        if room <= 0:
            return True
        last_number = _last_number(experiment_id)

    # Phase 2, unlocked: ask the strategy and screen static constraints. This builds networks
    # (milliseconds to seconds), too long to hold a lock that every heartbeat would wait for.
    try:
        search = engine_bridge.build_search(experiment)
        records = engine_bridge.history(experiment_id)
        accepted, infeasible = propose(
            search.strategy, records, room, task=search.task, constraints=search.constraints,
            next_number=last_number + 1, max_infeasible=MAX_INFEASIBLE_PER_ADVANCE,
        )  # fmt: skip
        finished_reason = None
        if not accepted:
            finished_reason = (
                "search space exhausted" if search.strategy.is_finished(records + [o.record() for o in infeasible])
                else f"no statically feasible candidate in {MAX_INFEASIBLE_PER_ADVANCE} proposals"
            )
    except ConfigError as exc:  # DatasetError too: the configuration or data cannot run at all
        experiment.finish(ExperimentStatus.FAILED, f"cannot run this search: {exc}")
        return True

    # Phase 3, locked again: write the trials only if no other advance wrote any meanwhile.
    with transaction.atomic():
        experiment = _lock_experiment(experiment_id)
        if experiment is None or experiment.status not in ACTIVE_STATUSES:
            return True
        if _last_number(experiment_id) != last_number:
            return False
        new_trials = [
            Trial(experiment=experiment, finished_at=timezone.now(), **engine_bridge.infeasible_trial_fields(o))
            for o in infeasible
        ]
        # propose() numbered infeasible and accepted candidates in one sequence; keep its numbers.
        numbers = _accepted_numbers(last_number + 1, infeasible, len(accepted))
        new_trials += [
            Trial(experiment=experiment, state=TrialState.QUEUED,
                  **engine_bridge.queued_trial_fields(search.space, number, cand, values))
            for number, (cand, values) in zip(numbers, accepted)
        ]  # fmt: skip
        new_trials.sort(key=lambda t: t.number)
        created = Trial.objects.bulk_create(new_trials)
        if not accepted and not experiment.trials.pending().exists():
            # Nothing left to try and nothing running: the search ends below its trial budget.
            _on_commit_send(finalize_experiment, experiment_id, finished_reason)
        for trial in created:
            transaction.on_commit(lambda t=trial: broadcast.trial_created(t))
            if trial.state == TrialState.QUEUED:
                _on_commit_send(run_trial, trial.pk)
    return True


def _accepted_numbers(first: int, infeasible, n_accepted: int) -> list[int]:
    """The numbers propose() gave the accepted candidates: the sequence from `first` minus
    the numbers its infeasible outcomes took."""
    taken = {o.number for o in infeasible}
    numbers, number = [], first
    while len(numbers) < n_accepted:
        if number not in taken:
            numbers.append(number)
        number += 1
    return numbers


# run_trial --------------------------------------------------------------------------------------
class TrialStopped(BaseException):
    """Raised inside the training thread to stop a trial (cancel, or this worker lost its lease).

    A BaseException, like Dramatiq's own interrupts, so the engine's `except Exception` that turns
    a broken trial into a failed Outcome does not swallow it."""


class TrialGuard:
    """Runs beside a trial: heartbeats, watches for a cancel, and stops the training thread.

    The training thread's report callback holds `lock` while it writes to the database, and the
    watcher injects TrialStopped only while holding it, so a stop never lands mid-query. After
    `disarm()` returns no stop is pending or can arrive."""

    def __init__(self, trial: Trial, token, *, poll_s: float | None = None, heartbeat_s: float | None = None):
        self.trial = trial
        self.token = token
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self.armed = True
        self.injected = False
        self.stop_reason: str | None = None
        self.poll_s = poll_s if poll_s is not None else CANCEL_POLL_SECONDS
        lease = settings.TRIAL_LEASE_SECONDS
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else min(10.0, max(0.5, lease / 4))
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"trial-{trial.pk}-guard", daemon=True)

    def start(self) -> TrialGuard:
        self._thread.start()
        return self

    def _watch(self) -> None:
        last_beat = time.monotonic()
        try:
            while not self._done.wait(self.poll_s):
                try:
                    reason = self._look(last_beat)
                except DatabaseError:
                    # A flaky database must not stop the trial: look again at the next tick; if the
                    # database stays away, the lease expires and the trial is re-run elsewhere.
                    log.warning("trial %s: guard could not reach the database", self.trial.pk, exc_info=True)
                    continue
                if reason == "beat":
                    last_beat = time.monotonic()
                elif reason:
                    self.request_stop(reason)
                    return
        finally:
            connection.close()  # this thread's own connection

    def _look(self, last_beat: float) -> str | None:
        status = Experiment.objects.filter(pk=self.trial.experiment_id).values_list("status", flat=True).first()
        if status in (None, ExperimentStatus.CANCELLED, ExperimentStatus.FAILED):
            return CANCELLED_BY_USER
        if time.monotonic() - last_beat >= self.heartbeat_s:
            return "beat" if self.trial.heartbeat(self.token) else LEASE_LOST
        return None

    def request_stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            if self.armed and not self.injected:
                self.injected = True
                raise_thread_exception(self.thread_id, TrialStopped)

    def check(self) -> None:
        """Called from the training thread (with `lock` held) between epochs."""
        if self.stop_reason is not None:
            raise TrialStopped(self.stop_reason)

    def disarm(self) -> None:
        """Training is over: no more stops. Clears a stop that was injected but not yet raised."""
        with self.lock:
            self.armed = False
            if self.injected:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), None)

    def disarm_safely(self) -> None:
        # An injected stop may surface on any bytecode, including inside disarm() itself; once
        # disarm() has run to its end nothing is pending any more.
        while True:
            try:
                self.disarm()
                return
            except TrialStopped:
                continue

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)


@dramatiq.actor(queue_name=TRIALS_QUEUE, max_retries=0, time_limit=TRIAL_TIME_LIMIT_S * 1000)
def run_trial(trial_id: int) -> None:
    """Train and evaluate one trial. Max 0 retries: a trial that breaks is recorded as failed, and
    one whose worker dies is re-queued by advance_experiment (bounded attempts)."""
    _set_torch_threads()
    trial = Trial.objects.select_related("experiment__dataset", "experiment__project").filter(pk=trial_id).first()
    if trial is None:
        return
    experiment = trial.experiment
    if experiment.is_terminal:
        _cancel_queued_trial(trial, "the experiment finished before this trial started")
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
        _advance_after_trial(experiment.pk)


def _advance_after_trial(experiment_id: int) -> None:
    """Top up right here: this worker is free now, and a round trip through the broker (a
    message to the control worker, whose idle poll may be sleeping) would sit between every
    two trials of a sequential search. Should it fail, the message path (with retries) takes over."""
    try:
        advance_experiment.fn(experiment_id)
    except Exception:  # noqa: BLE001
        log.exception("experiment %s: advance after a trial failed; sending it instead", experiment_id)
        enqueue_advance(experiment_id)


def _cancel_queued_trial(trial: Trial, reason: str) -> None:
    if Trial.objects.filter(pk=trial.pk, state=TrialState.QUEUED).update(
        state=TrialState.CANCELLED, finished_at=timezone.now(), error=reason
    ):
        trial.refresh_from_db()
        broadcast.trial_finished(trial)


def _train(trial: Trial, experiment: Experiment, token) -> None:
    started = time.perf_counter()
    try:
        search = engine_bridge.build_search(experiment, with_strategy=False)
    except ConfigError as exc:
        _finish_trial(trial, token, state=TrialState.FAILED, error=f"cannot build the trial: {exc}",
                      duration_s=time.perf_counter() - started)
        return

    guard = TrialGuard(trial, token)
    last_values: dict = {}

    def report(step: int, values: dict) -> None:
        values = engine_bridge.jsonable(values)
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

    outcome = None
    stopped = None
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
    duration = time.perf_counter() - started

    if outcome is None:
        if isinstance(stopped, TimeLimitExceeded):
            _finish_trial(trial, token, state=TrialState.FAILED, metrics=last_values, duration_s=duration,
                          error=f"stopped by the trial time limit ({TRIAL_TIME_LIMIT_S}s)")
        elif guard.stop_reason == LEASE_LOST:
            connection.close()
            log.warning("trial %s: lease lost; its new owner records the result", trial.pk)
        else:
            connection.close()  # an interrupt may have landed mid-statement: start afresh
            _finish_trial(trial, token, state=TrialState.CANCELLED, metrics=last_values, duration_s=duration,
                          error="cancelled while running")
        return

    fields = engine_bridge.outcome_fields(outcome)
    if outcome.model is not None and outcome.state == TrialState.COMPLETED and _is_best_so_far(trial, outcome):
        # Stored before the trial turns terminal: finalize runs only after every trial is
        # terminal, so it always finds the weights of the best one.
        try:
            engine_bridge.save_weights(trial, outcome.model)
        except Exception:  # noqa: BLE001 - finalize falls back to retraining
            log.exception("trial %s: could not store its weights", trial.pk)
    _finish_trial(trial, token, **fields)


def _evaluate_trial(trial: Trial, experiment: Experiment, search, report):
    # The static values advance_experiment computed when it screened the candidate; passing
    # them back saves building the network's FLOP count a second time.
    static = trial.constraint_values or {}
    return evaluate(
        engine_bridge.candidate_of(trial),
        number=trial.number,
        space=search.space,
        estimator=search.estimator,
        task=search.task,
        constraints=search.constraints,
        seed=experiment.seed,
        report=report,
        static_values=static if all(k in static for k in ("params", "flops", "size_mb")) else None,
    )


def _is_best_so_far(trial: Trial, outcome) -> bool:
    best = (
        Trial.objects.filter(experiment_id=trial.experiment_id, state=TrialState.COMPLETED, objective__isnull=False)
        .order_by("-objective", "number")
        .values_list("objective", flat=True)
        .first()
    )
    return best is None or (outcome.objective is not None and outcome.objective >= best)


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


# run_oneshot ------------------------------------------------------------------------------------
# A one-shot experiment (weight-sharing supernet, DARTS) first runs ONE long job that trains a
# supernet and reads its top architectures out of it; those then train as normal trials through
# the `fixed` strategy. The job checkpoints after every epoch (engine_bridge.checkpoint_dir), so
# it survives its worker:
# - Claim: a Redis key per experiment, set NX with a TTL of one lease and refreshed by the job's
#   guard thread, names the worker that runs the job. A duplicate message finds it taken and
#   does nothing; a job that already has a result is never run again.
# - A killed worker stops refreshing the key, which expires after TRIAL_LEASE_SECONDS. The
#   experiment is still active without a result, so the next advance (the watchdog sends one
#   every lease/2 s) sends run_oneshot again, and the new run resumes from the last checkpoint.
#   Dramatiq's own redelivery of the dead worker's message and its retries (each one resumes)
#   lead to the same place: whichever message comes first claims the job, the others do nothing.
# - Pause and cancel are seen by the guard (one indexed SELECT per CANCEL_POLL_SECONDS) and stop
#   the job at the end of the current epoch, right after its checkpoint; resume sends advance,
#   which sends run_oneshot again.
ONESHOT_TIME_LIMIT_S = 6 * 3600
ONESHOT_PAUSED = "paused"
ONESHOT_WALL_TIME = "wall-time budget spent"

# Compare-and-set scripts: only the holder of the claim may extend or drop it.
_EXTEND_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
_DELETE_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _oneshot_key(experiment_id: int) -> str:
    return _key("oneshot", experiment_id)


def _oneshot_sent_key(experiment_id: int) -> str:
    return _key("oneshot-sent", experiment_id)


def enqueue_oneshot(experiment_id: int) -> None:
    """Send run_oneshot unless a worker holds the job or a message is already on its way.

    Extra messages would be harmless (the claim decides); the "sent" marker only keeps the
    watchdog from piling them up while one waits behind long trials. It expires after two
    leases, and run_oneshot drops it as soon as a message is taken."""
    client = _redis()
    if client.exists(_oneshot_key(experiment_id)):
        return
    if client.set(_oneshot_sent_key(experiment_id), "1", nx=True, ex=2 * settings.TRIAL_LEASE_SECONDS):
        run_oneshot.send(experiment_id)


class OneShotLease:
    """The claim of one experiment's one-shot job by this worker (see the section comment)."""

    def __init__(self, experiment_id: int, token: str):
        self.key = _oneshot_key(experiment_id)
        self.token = token

    @classmethod
    def claim(cls, experiment_id: int) -> OneShotLease | None:
        token = f"{worker_name()}:{uuid.uuid4().hex}"
        if _redis().set(_oneshot_key(experiment_id), token, nx=True, ex=settings.TRIAL_LEASE_SECONDS):
            return cls(experiment_id, token)
        return None

    def extend(self) -> bool:
        return bool(_redis().eval(_EXTEND_IF_OWNER, 1, self.key, self.token, settings.TRIAL_LEASE_SECONDS))

    def held(self) -> bool:
        return _redis().get(self.key) == self.token.encode()

    def release(self) -> None:
        try:
            _redis().eval(_DELETE_IF_OWNER, 1, self.key, self.token)
        except redis.RedisError:  # the key expires by itself
            log.warning("could not release %s", self.key, exc_info=True)


class OneShotGuard:
    """Runs beside a one-shot job: extends the lease and watches the experiment's status.

    `should_stop` (polled by the job after each epoch's checkpoint) only reads a flag, so the
    training thread never waits on the database. The lease is extended until `close()`, also
    after a stop was asked for: the current epoch still runs to its checkpoint, and the job must
    not look dead (and be started a second time) meanwhile."""

    def __init__(self, experiment: Experiment, lease: OneShotLease, *, poll_s: float | None = None):
        self.experiment_id = experiment.pk
        self.lease = lease
        self.stop_reason: str | None = None
        self.poll_s = poll_s if poll_s is not None else CANCEL_POLL_SECONDS
        self.heartbeat_s = min(10.0, max(0.5, settings.TRIAL_LEASE_SECONDS / 4))
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"oneshot-{experiment.pk}-guard", daemon=True)

    def start(self) -> OneShotGuard:
        self._thread.start()
        return self

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def _watch(self) -> None:
        last_beat = time.monotonic()
        try:
            while not self._done.wait(self.poll_s):
                try:
                    if time.monotonic() - last_beat >= self.heartbeat_s:
                        if not self.lease.extend():
                            self.stop_reason = LEASE_LOST
                            return
                        last_beat = time.monotonic()
                    if self.stop_reason is None:
                        self.stop_reason = self._look()
                except (DatabaseError, redis.RedisError):
                    # Look again at the next tick; if Redis stays away the lease expires and the
                    # job is resumed elsewhere (this one then stops: LEASE_LOST).
                    log.warning("one-shot job of experiment %s: guard could not look", self.experiment_id,
                                exc_info=True)  # fmt: skip
        finally:
            connection.close()  # this thread's own connection

    def _look(self) -> str | None:
        row = Experiment.objects.filter(pk=self.experiment_id).values_list(
            "status", "started_at", "budget_wall_time_s"
        ).first()
        if row is None or row[0] not in ACTIVE_STATUSES:
            return ONESHOT_PAUSED if row is not None and row[0] == ExperimentStatus.PAUSED else CANCELLED_BY_USER
        status, started_at, wall_time_s = row
        if wall_time_s and started_at and (timezone.now() - started_at).total_seconds() >= wall_time_s:
            return ONESHOT_WALL_TIME
        return None

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)


@dramatiq.actor(queue_name=TRIALS_QUEUE, max_retries=5, min_backoff=10_000, max_backoff=600_000,
                time_limit=ONESHOT_TIME_LIMIT_S * 1000, on_retry_exhausted="experiment_gave_up")
def run_oneshot(experiment_id: int) -> None:
    """Run (or resume) the one-shot job of an experiment, then hand its top architectures to the
    trials. Retried up to 5 times on an unexpected error or the time limit: each retry resumes
    from the last checkpoint."""
    _set_torch_threads()
    _redis().delete(_oneshot_sent_key(experiment_id))  # this message is taken: advance may send again
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None or not experiment.oneshot or experiment.oneshot_result:
        return
    if experiment.status not in ACTIVE_STATUSES:
        return  # paused: resume sends advance, which sends this again
    lease = OneShotLease.claim(experiment_id)
    if lease is None:
        return  # a duplicate message, or another worker runs the job
    next_step = None
    try:
        # Read again under the claim: the previous holder may have finished just before it.
        experiment = Experiment.objects.select_related("dataset", "project").filter(pk=experiment_id).first()
        if experiment is None or experiment.oneshot_result or experiment.status not in ACTIVE_STATUSES:
            return
        if experiment.status == ExperimentStatus.QUEUED and Experiment.objects.filter(
            pk=experiment_id, status=ExperimentStatus.QUEUED
        ).update(status=ExperimentStatus.RUNNING, updated_at=timezone.now()):
            experiment.status = ExperimentStatus.RUNNING
            experiment.announce_status()
        ensure_watchdog(experiment_id)
        next_step = _run_oneshot(experiment, lease)
    finally:
        lease.release()
    if next_step == "resend":
        enqueue_oneshot(experiment_id)
    elif next_step == "advance":
        _advance_after_trial(experiment_id)  # the top architectures start training now


def _run_oneshot(experiment: Experiment, lease: OneShotLease) -> str | None:
    """Run the job to its end or to a stop. Returns "advance" when its result was recorded (the
    trials start), "resend" when it stopped for a pause but the experiment is active again (a
    pause and resume within one epoch), else None."""
    from search_engine.oneshot import CheckpointError

    experiment_id = experiment.pk
    try:
        space = engine_bridge.build_space(experiment)
        job = engine_bridge.build_oneshot(experiment, space)
        task = engine_bridge.load_task(experiment.dataset, experiment.seed)
        folder = engine_bridge.checkpoint_dir(experiment_id)
        engine_bridge.fetch_checkpoint(experiment_id)
    except ConfigError as exc:  # DatasetError too: this configuration or data cannot run at all
        _end_oneshot(experiment, ExperimentStatus.FAILED, f"cannot run the one-shot job: {exc}")
        return None

    def report(step: int, values: dict) -> None:
        values = engine_bridge.jsonable(values)
        replayed = bool(values.pop("replayed", False))
        phase = str(values.get("phase") or "train")[:20]
        try:
            # Upsert: a resumed job reports its last checkpointed epoch again.
            ExperimentProgress.objects.update_or_create(
                experiment_id=experiment_id, phase=phase, step=step, defaults={"values": values}
            )
        except DatabaseError:
            log.warning("experiment %s: could not store one-shot progress %s %s", experiment_id, phase, step,
                        exc_info=True)  # fmt: skip
        if phase == "train" and not replayed:
            try:
                engine_bridge.push_checkpoint(experiment_id)  # remote storage: the epoch just written
            except Exception:  # noqa: BLE001 - the next epoch pushes again; a resume redoes at most a few
                log.warning("experiment %s: could not copy the checkpoint to storage", experiment_id, exc_info=True)
        broadcast.experiment_progress(experiment, {**values, "phase": phase, "step": step,
                                                   **({"replayed": True} if replayed else {})})  # fmt: skip

    guard = OneShotGuard(experiment, lease).start()
    try:
        try:
            result = job.run(task, report, checkpoint_dir=folder, resume=True, should_stop=guard.should_stop)
        except CheckpointError as exc:
            # Written by another configuration under this experiment's id (a database reset with the
            # media folder kept) or damaged: it cannot be continued, so the job starts over.
            log.warning("experiment %s: %s; starting the one-shot job afresh", experiment_id, exc)
            ExperimentProgress.objects.filter(experiment_id=experiment_id).delete()
            result = job.run(task, report, checkpoint_dir=folder, resume=False, should_stop=guard.should_stop)
    except (ConfigError, FloatingPointError) as exc:  # the same on every retry: say why and stop
        _end_oneshot(experiment, ExperimentStatus.FAILED, f"the one-shot job failed: {exc}")
        return None
    finally:
        guard.close()

    if result.completed:
        if not _record_oneshot_result(experiment_id, result, space, lease):
            return None
        engine_bridge.delete_checkpoint(experiment_id)
        return "advance"
    if guard.stop_reason == LEASE_LOST:
        log.warning("experiment %s: one-shot lease lost; the job's new owner carries on", experiment_id)
        return None
    if guard.stop_reason == ONESHOT_WALL_TIME:
        _end_oneshot(experiment, ExperimentStatus.FAILED,
                     f"wall-time budget spent during the one-shot job "
                     f"(epoch {result.epochs_done} of {job.config['epochs']} trained)")
        return None
    status = Experiment.objects.filter(pk=experiment_id).values_list("status", flat=True).first()
    if status is None or status in TERMINAL_STATUSES:
        engine_bridge.delete_checkpoint(experiment_id)  # cancelled: nothing will resume it
        return None
    # Paused: the checkpoint waits for resume. Active again (paused and resumed within one
    # epoch): the resume's advance found the job still held, so it is sent again from here.
    return "resend" if status in ACTIVE_STATUSES else None


def discard_oneshot_checkpoint(experiment_id: int) -> None:
    """Delete the checkpoint of a job that will never resume, unless a worker runs the job (it
    deletes the checkpoint itself when it sees the experiment ended)."""
    try:
        if not _redis().exists(_oneshot_key(experiment_id)):
            engine_bridge.delete_checkpoint(experiment_id)
    except Exception:  # noqa: BLE001 - a leftover checkpoint costs disk space, nothing else
        log.exception("experiment %s: could not delete the one-shot checkpoint", experiment_id)


def _end_oneshot(experiment: Experiment, status: str, message: str) -> None:
    experiment.finish(status, message)
    try:
        engine_bridge.delete_checkpoint(experiment.pk)
    except Exception:  # noqa: BLE001 - a leftover checkpoint costs disk space, nothing else
        log.exception("experiment %s: could not delete the one-shot checkpoint", experiment.pk)


def _record_oneshot_result(experiment_id: int, result, space, lease: OneShotLease) -> bool:
    """Store the job's result and turn the experiment into a `fixed` search over its top
    architectures (budget: at most as many trials as architectures; the original is kept in
    oneshot_result). False when nothing was stored (already done, or not ours to do)."""
    from search_engine.oneshot import fixed_strategy_config
    from search_engine.registry import create_strategy

    if not result.top_archs:
        experiment = Experiment.objects.filter(pk=experiment_id).first()
        if experiment is not None:
            _end_oneshot(experiment, ExperimentStatus.FAILED, "the one-shot job returned no architecture")
        return False
    strategy = create_strategy("fixed", space, seed=0, **fixed_strategy_config(result, space))
    stored = result.to_dict()
    stored.pop("history", None)  # every epoch is in ExperimentProgress already
    with transaction.atomic():
        experiment = _lock_experiment(experiment_id)
        # Paused is fine (the work is done; resume goes on with the trials); finished is not.
        if experiment is None or experiment.oneshot_result or experiment.is_terminal:
            return False
        if not lease.held():
            return False  # another worker owns the job now and records its own (identical) result
        budget = min(experiment.budget_trials, len(result.top_archs))
        stored.update(budget_trials_requested=experiment.budget_trials, budget_trials=budget)
        stored = engine_bridge.jsonable(stored)
        Experiment.objects.filter(pk=experiment_id).update(
            oneshot_result=stored, strategy="fixed", strategy_config=dict(strategy.config), strategy_state={},
            budget_trials=budget, updated_at=timezone.now(),
        )  # fmt: skip
        payload = {"phase": "result", "step": 0, "budget_trials": budget, "strategy_config": dict(strategy.config),
                   "oneshot_result": stored}  # fmt: skip
        transaction.on_commit(lambda: broadcast.experiment_progress(experiment, payload))
    return True


# finalize_experiment ----------------------------------------------------------------------------
@dramatiq.actor(queue_name=TRIALS_QUEUE, max_retries=3, min_backoff=5000, time_limit=FINALIZE_TIME_LIMIT_S * 1000,
                on_retry_exhausted="experiment_gave_up")
def finalize_experiment(experiment_id: int, reason: str = "") -> None:
    """Export the best model as an Artifact and mark the experiment completed (or failed)."""
    _set_torch_threads()
    # A Redis lock keeps a duplicate message from exporting a second time in parallel; the
    # locked check at the end guarantees one artifact even if the lock expired meanwhile.
    key, token = _key("finalize", experiment_id), uuid.uuid4().hex
    client = _redis()
    if not client.set(key, token, nx=True, ex=FINALIZE_TIME_LIMIT_S):
        return
    try:
        _finalize(experiment_id, reason)
    finally:
        if client.get(key) == token.encode():
            client.delete(key)


def _finalize(experiment_id: int, reason: str) -> None:
    experiment = Experiment.objects.select_related("dataset", "project").filter(pk=experiment_id).first()
    if experiment is None or experiment.status not in ACTIVE_STATUSES:
        return  # finished already, or paused: resume brings it back through advance
    if experiment.trials.pending().exists():
        return  # the advance after the last pending trial sends finalize again
    best = experiment.best_trial()
    if best is None:
        experiment.finish(ExperimentStatus.FAILED, f"{reason}; no trial completed ({_describe_counts(experiment)})")
        return
    summary = _best_summary(best)
    if _has_best_package(experiment, best):
        experiment.finish(ExperimentStatus.COMPLETED, f"{reason}; {summary}")
        return
    try:
        artifact = _export_best(experiment, best)
    except DatabaseError:
        raise  # transient: Dramatiq retries the message
    except Exception as exc:  # noqa: BLE001 - the person sees why there is no model to download
        log.exception("experiment %s: export failed", experiment_id)
        experiment.finish(ExperimentStatus.FAILED, f"{reason}; {summary}; exporting the model failed: {exc}")
        return
    if artifact is None:
        experiment.finish(ExperimentStatus.COMPLETED,
                          f"{reason}; {summary}; the estimator trains no model, so there is nothing to export")
        return
    with transaction.atomic():
        locked = _lock_experiment(experiment_id)
        if locked.is_terminal or _has_best_package(locked, best):
            stored = artifact.file.name
            transaction.on_commit(lambda: artifact.file.storage.delete(stored))
            return
        artifact.save()
        locked.finish(ExperimentStatus.COMPLETED, f"{reason}; {summary}")
    try:
        engine_bridge.delete_weights(experiment_id)
    except Exception:  # noqa: BLE001 - leftover weight files cost disk space, nothing else
        log.exception("experiment %s: could not delete stored trial weights", experiment_id)


def _export_best(experiment: Experiment, best: Trial) -> Artifact | None:
    search = engine_bridge.build_search(experiment, with_strategy=False)
    model = engine_bridge.load_trained_model(experiment, best, search)
    retrained = model is None
    if model is None:
        if not search.estimator.trains_model:
            return None
        # Same architecture, budget and seed as the trial: same initial weights and batches.
        outcome = evaluate(
            engine_bridge.candidate_of(best), number=best.number, space=search.space, estimator=search.estimator,
            task=search.task, constraints=search.constraints, seed=experiment.seed, measure_latency=False,
        )  # fmt: skip
        if outcome.model is None:
            raise RuntimeError(f"retraining trial #{best.number} failed: {outcome.error.strip().splitlines()[-1:]}")
        model = outcome.model
    package = engine_bridge.export_package(experiment, best, model, search, retrained=retrained)
    artifact = Artifact(
        experiment=experiment, trial=best, kind=ArtifactKind.MODEL_ZIP, size_bytes=len(package.zip_bytes),
        checksum=package.sha256,
        metrics=engine_bridge.jsonable({**(best.metrics or {}), "objective": best.objective,
                                        "exported_test_acc": package.test_acc, "files": package.files,
                                        "retrained": retrained}),
    )  # fmt: skip
    name = f"experiment-{experiment.pk}-trial-{best.number}-model.zip"
    artifact.file.save(name, ContentFile(package.zip_bytes), save=False)
    return artifact


def _best_summary(best: Trial) -> str:
    metrics = best.metrics or {}
    test = metrics.get("test_acc")
    text = f"best trial #{best.number}: val_acc {best.objective:.4f}"
    return text + (f", test_acc {test:.4f}" if isinstance(test, (int, float)) else "")


def _describe_counts(experiment: Experiment) -> str:
    counts = _trial_counts(experiment)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"


@dramatiq.actor(queue_name=CONTROL_QUEUE, max_retries=3, time_limit=60 * 1000)
def experiment_gave_up(message_data: dict, retry_info: dict) -> None:
    """An advance or finalize that kept raising (a bug, not a bad trial) ends the experiment as
    failed with a reason, rather than leaving it running for ever."""
    experiment = Experiment.objects.filter(pk=message_data["args"][0]).first()
    if experiment is not None:
        experiment.finish(
            ExperimentStatus.FAILED,
            f"{message_data['actor_name']} kept failing ({retry_info.get('retries')} retries); see the worker log",
        )
        if message_data["actor_name"] == "run_oneshot":
            discard_oneshot_checkpoint(experiment.pk)


# watch_experiment ---------------------------------------------------------------------------------
def _key(name: str, experiment_id: int) -> str:
    # Namespaced like the broker's queues, so installations (and test sessions) sharing one
    # Redis server do not see each other's locks.
    return f"{settings.DRAMATIQ_BROKER['OPTIONS']['namespace']}:{name}:{experiment_id}"


def _watch_key(experiment_id: int) -> str:
    return _key("watch", experiment_id)


def ensure_watchdog(experiment_id: int) -> None:
    """Start the watch chain of an experiment unless one is alive (its key has not expired)."""
    token = uuid.uuid4().hex
    interval = _watch_interval()
    try:
        if _redis().set(_watch_key(experiment_id), token, nx=True, ex=int(interval * 3) + 1):
            watch_experiment.send_with_options(args=(experiment_id, token), delay=int(interval * 1000))
    except redis.RedisError:
        log.exception("experiment %s: could not start its watchdog", experiment_id)


@dramatiq.actor(queue_name=CONTROL_QUEUE, max_retries=0, time_limit=10 * 60 * 1000)
def watch_experiment(experiment_id: int, token: str) -> None:
    """Periodic safety net while an experiment is active: reaps trials of dead workers (through
    advance) and retries a finalize that did not happen. Ends when the experiment is paused or
    finished; the next advance starts a new chain."""
    client = _redis()
    key = _watch_key(experiment_id)
    if client.get(key) != token.encode():
        return  # another chain owns this experiment
    status = Experiment.objects.filter(pk=experiment_id).values_list("status", flat=True).first()
    if status in ACTIVE_STATUSES:
        advance_experiment.fn(experiment_id)
    elif status is not None and Trial.objects.filter(experiment_id=experiment_id, state=TrialState.RUNNING).exists():
        _reap_after_stop(experiment_id)
    else:
        if client.get(key) == token.encode():
            client.delete(key)
        return
    interval = _watch_interval()
    client.set(key, token, ex=int(interval * 3) + 1)
    watch_experiment.send_with_options(args=(experiment_id, token), delay=int(interval * 1000))


def _reap_after_stop(experiment_id: int) -> None:
    """Running trials of a paused or finished experiment whose worker died: a finished
    experiment's are cancelled; a paused one's wait for resume (advance reaps them then)."""
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None or not experiment.is_terminal:
        return
    now = timezone.now()
    for trial in experiment.trials.stale(settings.TRIAL_LEASE_SECONDS):
        if Trial.objects.filter(pk=trial.pk, state=TrialState.RUNNING, lease_token=trial.lease_token).update(
            state=TrialState.CANCELLED, lease_token=None, finished_at=now,
            error="the experiment ended while this trial's worker was gone",
        ):
            trial.refresh_from_db()
            broadcast.trial_finished(trial)


# Start-up recovery ---------------------------------------------------------------------------------
def recover_active_experiments() -> int:
    """Send an advance (re-sending queued trials) for every active experiment: messages held by a
    Redis that restarted are gone. Duplicates of messages that did survive do nothing."""
    ids = list(Experiment.objects.active().values_list("pk", flat=True))
    for experiment_id in ids:
        try:
            enqueue_advance(experiment_id, resend_queued=True)
        except (redis.RedisError, DatabaseError):
            log.exception("experiment %s: could not send its advance", experiment_id)
    return len(ids)


# Model packages on request (experiments/exports.py) -------------------------------------------------
# A completed trial's package and the best architecture retrained on train+val run as jobs on the
# trials queue (they train). Idempotent: a Redis lock per artifact keeps a duplicate message from
# working on it in parallel, and exports' conditional claim (pending/running -> running) makes a
# duplicate of a finished job do nothing.
EXPORT_TIME_LIMIT_S = 6 * 3600


def _has_best_package(experiment: Experiment, best: Trial) -> bool:
    """The best trial's package exists or is being made. Packages of other trials (any member may
    ask for one while the search runs) do not count: the final export is the best trial's."""
    return (
        experiment.artifacts.filter(kind=ArtifactKind.MODEL_ZIP, trial=best, status__in=exports.LIVE_STATUSES)
        .exists()
    )


def enqueue_artifact_job(artifact_id: int, kind: str) -> None:
    """Called by exports on commit of the request (tests replace it to capture the messages)."""
    actor = retrain_on_train_and_val if kind == ArtifactKind.RETRAINED_ZIP else package_trial
    actor.send(artifact_id)


@dramatiq.actor(queue_name=TRIALS_QUEUE, max_retries=3, min_backoff=5000, time_limit=EXPORT_TIME_LIMIT_S * 1000,
                on_retry_exhausted="artifact_job_gave_up")
def package_trial(artifact_id: int) -> None:
    """Export a completed trial's model (its stored weights, or a deterministic retrain)."""
    _run_artifact_job(artifact_id, exports.build_trial_package)


@dramatiq.actor(queue_name=TRIALS_QUEUE, max_retries=3, min_backoff=5000, time_limit=EXPORT_TIME_LIMIT_S * 1000,
                on_retry_exhausted="artifact_job_gave_up")
def retrain_on_train_and_val(artifact_id: int) -> None:
    """Retrain the best architecture on train+val and export it as its own package."""
    _run_artifact_job(artifact_id, exports.build_retrained_package)


def _run_artifact_job(artifact_id: int, job) -> None:
    _set_torch_threads()
    key, token = _key("artifact", artifact_id), uuid.uuid4().hex
    client = _redis()
    if not client.set(key, token, nx=True, ex=EXPORT_TIME_LIMIT_S):
        return  # a duplicate message while another worker holds the job
    try:
        job(artifact_id)
    except TimeLimitExceeded:
        connection.close()  # the interrupt may have landed mid-statement: start afresh
        exports.fail(artifact_id, f"stopped by the time limit ({EXPORT_TIME_LIMIT_S}s)")
    finally:
        if client.get(key) == token.encode():
            client.delete(key)


@dramatiq.actor(queue_name=CONTROL_QUEUE, max_retries=3, time_limit=60 * 1000)
def artifact_job_gave_up(message_data: dict, retry_info: dict) -> None:
    """A package job that kept raising (the database stayed away) ends as failed, with a reason,
    rather than showing "running" for ever."""
    exports.fail(message_data["args"][0],
                 f"{message_data['actor_name']} kept failing ({retry_info.get('retries')} retries); see the worker log")
