"""The health of this worker process: a shutdown in progress, and the breaker that takes a broken
process out of service.

A process can break in ways no single trial shows: a half-loaded library, a full disk, a lost
device. Each trial on it then fails at once, and without a breaker the worker would eat the
experiment's budget in seconds. So: when WORKER_FAST_FAILURES trials in a row (distinct trials)
each failed within WORKER_FAST_FAILURE_S, the process stops taking work and says why; the trials
of that streak go back to the queue, and the worker's supervisor (`manage.py worker`) replaces
the process after a back-off.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

log = logging.getLogger(__name__)

# The process was asked to stop (SIGTERM): running trials stop at their next safe point and go
# back to the queue. Set by `manage.py worker`'s consumer process.
shutting_down = threading.Event()

_lock = threading.Lock()
_streak: list[int] = []
_out_of_service_reason: str = ""


def available() -> bool:
    """Takes new work: neither stopping nor out of service."""
    return not shutting_down.is_set() and not _out_of_service_reason


def out_of_service_reason() -> str:
    return _out_of_service_reason


def note_trial(trial_id: int, failed_fast: bool) -> list[int]:
    """Record how a trial ended on this process. Returns the ids of the streak when it trips the
    breaker (the caller re-queues them and calls take_out_of_service), else []."""
    with _lock:
        if not failed_fast:
            _streak.clear()
            return []
        if trial_id not in _streak:
            _streak.append(trial_id)
        if len(_streak) < settings.WORKER_FAST_FAILURES:
            return []
        tripped = list(_streak)
        _streak.clear()
        return tripped


def take_out_of_service(reason: str) -> None:
    global _out_of_service_reason
    with _lock:
        if not _out_of_service_reason:
            _out_of_service_reason = reason
    log.error("this worker takes itself out of service: %s", reason)


def reset() -> None:
    """A fresh state (tests; a new process starts with one anyway)."""
    global _out_of_service_reason
    with _lock:
        _streak.clear()
        _out_of_service_reason = ""
    shutting_down.clear()
