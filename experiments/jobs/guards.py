"""Threads that run beside a training job: heartbeat (or extend a lease) and watch for a stop.

A guard never interrupts the training thread: it only sets a stop reason, which the training
thread reads at its safe points (jobs/trial_run.py: the start of every forward pass, i.e.
between batches, and every epoch's report) and turns into TrialStopped there, in our own code.
An exception injected into another thread (what Dramatiq's time limit does) can land anywhere,
in the middle of an import or a lock, and leave the process broken for every later trial.

Cancel stops a running trial within about a second plus one batch: the guard reads the
experiment's status every CANCEL_POLL_SECONDS. A one-shot job's guard raises the same kind of
flag, which the job reads after each epoch's checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from ..choices import ACTIVE_STATUSES, ExperimentStatus
from ..models import Experiment, Trial
from . import queues, service
from .locks import RedisLease

log = logging.getLogger(__name__)

# How often a guard looks for a cancel; each look is one indexed SELECT.
CANCEL_POLL_SECONDS = 1.0

# Why a guard stopped its job.
CANCELLED_BY_USER = "cancelled"
LEASE_LOST = "lease lost"
SHUTDOWN = "worker stopping"
TIME_LIMIT = "time limit"
ONESHOT_PAUSED = "paused"
ONESHOT_WALL_TIME = "wall-time budget spent"


def _heartbeat_s() -> float:
    return min(10.0, max(0.5, settings.TRIAL_LEASE_SECONDS / 4))


class TrialStopped(BaseException):
    """Raised by the training thread itself, at a safe point, once its guard asked for a stop.

    A BaseException, so the engine's `except Exception` that turns a broken trial into a failed
    Outcome does not swallow it."""


class _Guard:
    """The watcher thread: calls `tick()` every `poll_s` until `close()` or until tick says stop."""

    def __init__(self, name: str, poll_s: float | None):
        self.stop_reason: str | None = None
        self.poll_s = poll_s if poll_s is not None else CANCEL_POLL_SECONDS
        self.heartbeat_s = _heartbeat_s()
        self._last_beat = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _watch(self) -> None:
        try:
            while not self._done.wait(self.poll_s):
                try:
                    if self.tick():
                        return
                except (DatabaseError, redis.RedisError):
                    # A flaky database or Redis must not stop the job: look again at the next
                    # tick; if it stays away, the lease expires and the job runs elsewhere.
                    log.warning("%s could not look", self._thread.name, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def beat_due(self) -> bool:
        return time.monotonic() - self._last_beat >= self.heartbeat_s

    def beat_done(self) -> None:
        self._last_beat = time.monotonic()

    def tick(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)


class TrialGuard(_Guard):
    """Runs beside a trial from its claim on: heartbeats, and watches for a cancel, a shutdown of
    this worker and the trial time limit. `check()` is the training thread's side."""

    def __init__(self, trial: Trial, token, *, poll_s: float | None = None):
        super().__init__(f"trial-{trial.pk}-guard", poll_s)
        self.trial = trial
        self.token = token
        self.started = time.monotonic()

    def tick(self) -> bool:
        reason = None
        if service.shutting_down.is_set():
            reason = SHUTDOWN
        elif time.monotonic() - self.started > queues.TRIAL_TIME_LIMIT_S:
            reason = TIME_LIMIT
        else:
            status = Experiment.objects.status_of(self.trial.experiment_id)
            if status in (None, ExperimentStatus.CANCELLED, ExperimentStatus.FAILED):
                reason = CANCELLED_BY_USER
        if reason is None and self.beat_due():
            if self.trial.heartbeat(self.token):
                self.beat_done()
            else:
                reason = LEASE_LOST
        if reason is not None and self.stop_reason is None:
            self.stop_reason = reason
        # A shutdown keeps the heartbeat going while the trial reaches its safe point.
        return reason is not None and reason != SHUTDOWN

    def check(self) -> None:
        """The training thread's safe point: stop here if a stop was asked for."""
        if self.stop_reason is not None:
            raise TrialStopped(self.stop_reason)


class OneShotGuard(_Guard):
    """Runs beside a one-shot job: extends the lease and watches the experiment's status.

    `should_stop` (polled by the job after each epoch's checkpoint) only reads a flag, so the
    training thread never waits on the database. The lease is extended until `close()`, also
    after a stop was asked for: the current epoch still runs to its checkpoint, and the job must
    not look dead (and be started a second time) meanwhile."""

    def __init__(self, experiment: Experiment, lease: RedisLease, *, poll_s: float | None = None):
        super().__init__(f"oneshot-{experiment.pk}-guard", poll_s)
        self.experiment_id = experiment.pk
        self.lease = lease

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def tick(self) -> bool:
        if self.beat_due():
            if not self.lease.extend():
                self.stop_reason = LEASE_LOST
                return True
            self.beat_done()
        if self.stop_reason is None:
            self.stop_reason = self._look()
        return False

    def _look(self) -> str | None:
        experiment = (
            Experiment.objects.filter(pk=self.experiment_id).only("status", "started_at", "budget_wall_time_s").first()
        )
        if experiment is None or experiment.status not in ACTIVE_STATUSES:
            paused = experiment is not None and experiment.status == ExperimentStatus.PAUSED
            return ONESHOT_PAUSED if paused else CANCELLED_BY_USER
        return ONESHOT_WALL_TIME if experiment.wall_time_spent() else None
