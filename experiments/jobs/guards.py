"""Threads that run beside a training job: heartbeat (or extend a lease) and watch for a stop.

Cancel stops a running trial within about a second: the trial's guard reads the experiment's
status every CANCEL_POLL_SECONDS and raises TrialStopped inside the training thread (the same
mechanism Dramatiq's time limit uses), so even a long epoch is interrupted mid-batch. A one-shot
job's guard only raises a flag, which the job reads after each epoch's checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from dramatiq.threading import raise_thread_exception

from ..choices import ACTIVE_STATUSES, ExperimentStatus
from ..models import Experiment, Trial
from .locks import RedisLease

log = logging.getLogger(__name__)

# How often a guard looks for a cancel; each look is one indexed SELECT.
CANCEL_POLL_SECONDS = 1.0

# Why a guard stopped its job.
CANCELLED_BY_USER = "cancelled"
LEASE_LOST = "lease lost"
ONESHOT_PAUSED = "paused"
ONESHOT_WALL_TIME = "wall-time budget spent"


def _heartbeat_s() -> float:
    return min(10.0, max(0.5, settings.TRIAL_LEASE_SECONDS / 4))


class TrialStopped(BaseException):
    """Raised inside the training thread to stop a trial (cancel, or this worker lost its lease).

    A BaseException, like Dramatiq's own interrupts, so the engine's `except Exception` that turns
    a broken trial into a failed Outcome does not swallow it."""


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
    """Runs beside a trial: heartbeats, watches for a cancel, and stops the training thread.

    The training thread's report callback holds `lock` while it writes to the database, and the
    watcher injects TrialStopped only while holding it, so a stop never lands mid-query. After
    `disarm()` returns no stop is pending or can arrive."""

    def __init__(self, trial: Trial, token, *, poll_s: float | None = None):
        super().__init__(f"trial-{trial.pk}-guard", poll_s)
        self.trial = trial
        self.token = token
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self.armed = True
        self.injected = False

    def tick(self) -> bool:
        status = Experiment.objects.status_of(self.trial.experiment_id)
        reason = None
        if status in (None, ExperimentStatus.CANCELLED, ExperimentStatus.FAILED):
            reason = CANCELLED_BY_USER
        elif self.beat_due():
            if self.trial.heartbeat(self.token):
                self.beat_done()
            else:
                reason = LEASE_LOST
        if reason:
            self.request_stop(reason)
        return reason is not None

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
