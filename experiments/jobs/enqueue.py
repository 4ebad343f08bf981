"""Sending work: what models, views and the job modules call to start an actor.

Messages are addressed by actor name and queue (queues.py), so this module needs neither the
actors nor the models: models import it at the top of their file, and the actors (which import
the models) are never imported by it. A message is built exactly as `actor.send` builds it.
"""

from __future__ import annotations

import logging
import uuid

import dramatiq
import redis
from django.conf import settings
from django.db import transaction

from ..choices import ArtifactKind
from ..engine import storage
from . import queues
from .locks import RedisLease, key, redis_client

log = logging.getLogger(__name__)


def send(actor: queues.ActorSettings, *args, delay_ms: int | None = None, **kwargs) -> dramatiq.Message:
    message = dramatiq.Message(queue_name=actor.queue, actor_name=actor.name, args=args, kwargs=kwargs, options={})
    return dramatiq.get_broker().enqueue(message, delay=delay_ms)


def send_on_commit(actor: queues.ActorSettings, *args, **kwargs) -> None:
    transaction.on_commit(lambda: send(actor, *args, **kwargs))


def advance(experiment_id: int, resend_queued: bool = False) -> None:
    """Called by Experiment.start()/resume() through transaction.on_commit."""
    if resend_queued:
        send(queues.ADVANCE, experiment_id, resend_queued=True)
    else:
        send(queues.ADVANCE, experiment_id)


# run_trial messages -------------------------------------------------------------------------------
# Each send leaves a marker in the same Redis as the message, living as long as a message may wait
# before a re-send. A Redis that restarted lost both, so the periodic check (advance) re-sends a
# queued trial without a marker; a duplicate is harmless (the claim decides).
def _sent_key(trial_id: int) -> str:
    return key("trial-sent", trial_id)


def resend_after_s() -> int:
    return max(60, 2 * settings.TRIAL_LEASE_SECONDS)


def run_trial(trial_id: int) -> None:
    send(queues.RUN_TRIAL, trial_id)
    redis_client().set(_sent_key(trial_id), b"1", ex=resend_after_s())


def run_trial_on_commit(trial_id: int) -> None:
    transaction.on_commit(lambda: run_trial(trial_id))


def without_message(trial_ids: list[int]) -> list[int]:
    """The trials among `trial_ids` with no run_trial message on its way (no marker)."""
    if not trial_ids:
        return []
    markers = redis_client().mget([_sent_key(pk) for pk in trial_ids])
    return [pk for pk, marker in zip(trial_ids, markers) if marker is None]


def finalize(experiment_id: int, reason: str) -> None:
    send(queues.FINALIZE, experiment_id, reason)


def artifact_job(artifact_id: int, kind: str) -> None:
    """Called on commit of a package request (tests replace it to capture the messages)."""
    send(queues.RETRAIN if kind == ArtifactKind.RETRAINED_ZIP else queues.PACKAGE_TRIAL, artifact_id)


# The one-shot job ------------------------------------------------------------------------------------
def oneshot_key(experiment_id: int) -> str:
    """The lease of an experiment's one-shot job (see jobs/oneshot.py)."""
    return key("oneshot", experiment_id)


def oneshot_sent_key(experiment_id: int) -> str:
    return key("oneshot-sent", experiment_id)


def oneshot(experiment_id: int) -> None:
    """Send run_oneshot unless a worker holds the job or a message is already on its way.

    Extra messages would be harmless (the lease decides); the "sent" marker only keeps the
    watchdog from piling them up while one waits behind long trials. It expires after two
    leases, and run_oneshot drops it as soon as a message is taken."""
    if RedisLease.is_held(oneshot_key(experiment_id)):
        return
    if RedisLease.claim(oneshot_sent_key(experiment_id), 2 * settings.TRIAL_LEASE_SECONDS, token="1"):
        send(queues.RUN_ONESHOT, experiment_id)


def discard_oneshot_checkpoint(experiment_id: int) -> None:
    """Delete the checkpoint of a job that will never resume, unless a worker runs the job (it
    deletes the checkpoint itself when it sees the experiment ended). Not a message: a cancelled
    paused job has no worker that would look, so this runs on commit of the cancel itself."""
    try:
        if not RedisLease.is_held(oneshot_key(experiment_id)):
            storage.delete_checkpoint(experiment_id)
    except Exception:  # noqa: BLE001 - a leftover checkpoint costs disk space, nothing else
        log.exception("experiment %s: could not delete the one-shot checkpoint", experiment_id)


# The watch chain -------------------------------------------------------------------------------------
def watch_interval_s() -> float:
    return max(1.0, settings.TRIAL_LEASE_SECONDS / 2)


def watch_lease(experiment_id: int, token: str) -> RedisLease:
    """The lease naming the owner of an experiment's watch chain: it lives three intervals, so a
    chain whose next message is late by less than that keeps it."""
    return RedisLease(key("watch", experiment_id), token, int(watch_interval_s() * 3) + 1)


def watch(experiment_id: int, token: str) -> None:
    send(queues.WATCH, experiment_id, token, delay_ms=int(watch_interval_s() * 1000))


def watchdog(experiment_id: int) -> None:
    """Start the watch chain of an experiment unless one is alive (its lease has not expired)."""
    lease = watch_lease(experiment_id, uuid.uuid4().hex)
    try:
        if lease.take():
            watch(experiment_id, lease.token)
    except redis.RedisError:
        log.exception("experiment %s: could not start its watchdog", experiment_id)
