"""Safety nets: the periodic check of every active experiment, the watch chain of one, and the
advance sent for every active experiment at start-up.

Dead workers: a running trial heartbeats from its claim on (guards.TrialGuard), and advance
reaps trials whose heartbeat is older than the lease (re-queue, or fail after TRIAL_MAX_ATTEMPTS)
and re-sends queued trials whose message is gone. Something has to call advance when nobody
finishes a trial (every worker died, or Redis restarted and took the messages with it):
- `sweep()` runs in a loop in every `manage.py worker` supervisor (so also under `manage.py up`).
  A loop in a process, not a message, so a broker restart cannot end it; a RedisLease that expires
  by itself lets one sweep per interval do the work, whatever the number of machines.
- the watch is a self-rescheduling delayed message, one chain per experiment (a RedisLease names
  the chain's owner), for workers started without our supervisor (plain `rundramatiq`).
`manage.py up` also sends one advance per active experiment at start-up, because messages queued
in the embedded Redis do not survive a restart.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import DatabaseError

from ..choices import ACTIVE_STATUSES, TrialState
from ..live import broadcast
from ..models import Experiment, Trial
from . import advance, enqueue
from .locks import RedisLease, key

log = logging.getLogger(__name__)


def watch(experiment_id: int, token: str) -> None:
    """Periodic look while an experiment is active: reaps trials of dead workers (through
    advance) and retries a finalize that did not happen. Ends when the experiment is paused or
    finished; the next advance starts a new chain."""
    lease = enqueue.watch_lease(experiment_id, token)
    if not lease.held():
        return  # another chain owns this experiment
    status = Experiment.objects.status_of(experiment_id)
    if status in ACTIVE_STATUSES:
        advance.advance(experiment_id)
    elif status is not None and Trial.objects.filter(experiment_id=experiment_id, state=TrialState.RUNNING).exists():
        _reap_after_stop(experiment_id)
    else:
        lease.release()
        return
    # Ours for three more intervals; if it expired meanwhile (a slow advance), take it again
    # unless another chain did.
    if lease.extend() or lease.take():
        enqueue.watch(experiment_id, token)


def _reap_after_stop(experiment_id: int) -> None:
    """Running trials of a paused or finished experiment whose worker died: a finished
    experiment's are cancelled; a paused one's wait for resume (advance reaps them then)."""
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None or not experiment.is_terminal:
        return
    for trial in experiment.trials.stale(settings.TRIAL_LEASE_SECONDS):
        if trial.cancel_abandoned("the experiment ended while this trial's worker was gone"):
            broadcast.trial_finished(trial)


def recover_active_experiments() -> int:
    """Send an advance (re-sending queued trials) for every active experiment: messages held by a
    Redis that restarted are gone. Duplicates of messages that did survive do nothing."""
    ids = list(Experiment.objects.active().values_list("pk", flat=True))
    for experiment_id in ids:
        try:
            enqueue.advance(experiment_id, resend_queued=True)
        except (redis.RedisError, DatabaseError):
            log.exception("experiment %s: could not send its advance", experiment_id)
    return len(ids)


def sweep() -> int:
    """The periodic check; returns how many experiments it looked at (0 when another process's
    sweep holds this interval). Sends an advance per active experiment, and cancels running trials of finished experiments whose worker is gone."""
    interval = settings.WORKER_SWEEP_SECONDS
    if RedisLease.claim(key("sweep", 0), interval) is None:
        return 0
    active = list(Experiment.objects.active().values_list("pk", flat=True))
    for experiment_id in active:
        enqueue.advance(experiment_id)  # duplicates do nothing: advance locks the row
    ended = (
        Trial.objects.stale(settings.TRIAL_LEASE_SECONDS).exclude(experiment__status__in=ACTIVE_STATUSES)
        .values_list("experiment_id", flat=True).distinct()
    )  # fmt: skip
    for experiment_id in ended:
        _reap_after_stop(experiment_id)
    return len(active)
