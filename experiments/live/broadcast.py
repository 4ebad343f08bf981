"""The one caller of the channel layer. Workers and views announce changes through here.

Group `experiment.<id>` carries every event of one experiment; group `project.<id>` carries
status changes for the project page. Each experiment event carries a sequence number from a
Redis counter (INCR is atomic across every worker machine), so a page that loaded a REST
snapshot at sequence N applies only events after N and re-syncs when it sees a gap.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from . import payloads
from .payloads import Payload

log = logging.getLogger(__name__)


def experiment_group(experiment_id: int) -> str:
    return f"experiment.{experiment_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _seq_key(experiment_id: int) -> str:
    return f"nas:seq:{experiment_id}"


def next_seq(experiment_id: int) -> int:
    return int(_redis().incr(_seq_key(experiment_id)))


def current_seq(experiment_id: int) -> int:
    """Read before querying a snapshot: events after it are newer than anything the snapshot misses."""
    return int(_redis().get(_seq_key(experiment_id)) or 0)


def send(experiment_id: int, event_type: str, payload: Payload, project_id: int | None = None) -> int | None:
    """Publish one event; a broken channel layer must never fail a trial, so errors are logged."""
    try:
        seq = next_seq(experiment_id)
        message = payloads.envelope(experiment_id, event_type, seq, payload)
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(experiment_group(experiment_id), message)
        if project_id is not None:
            async_to_sync(layer.group_send)(project_group(project_id), message)
        return seq
    except Exception:  # noqa: BLE001
        log.exception("broadcast of %s for experiment %s failed", event_type, experiment_id)
        return None


def trial_created(trial) -> None:
    send(trial.experiment_id, payloads.TRIAL_CREATED, {"trial": payloads.trial_summary(trial)})


def trial_started(trial) -> None:
    send(trial.experiment_id, payloads.TRIAL_STARTED, {"trial": payloads.trial_summary(trial)})


def trial_epoch(trial, step: int, values: dict) -> None:
    send(trial.experiment_id, payloads.TRIAL_EPOCH,
         {"trial_id": trial.pk, "number": trial.number, "step": step, "values": values})  # fmt: skip


def trial_finished(trial) -> None:
    send(trial.experiment_id, payloads.TRIAL_FINISHED, {"trial": payloads.trial_summary(trial)})


def experiment_status(experiment) -> None:
    send(experiment.pk, payloads.EXPERIMENT_STATUS,
         {"experiment_state": payloads.experiment_summary(experiment)}, project_id=experiment.project_id)  # fmt: skip


def experiment_progress(experiment, values: dict) -> None:
    send(experiment.pk, payloads.EXPERIMENT_PROGRESS, {"values": values})


def artifact_progress(artifact) -> None:
    """A package was requested (pending), started, or finished one more epoch."""
    send(artifact.experiment_id, payloads.ARTIFACT_PROGRESS, {"artifact": payloads.artifact_summary(artifact)})


def artifact_ready(artifact) -> None:
    send(artifact.experiment_id, payloads.ARTIFACT_READY, {"artifact": payloads.artifact_summary(artifact)})


def artifact_failed(artifact) -> None:
    send(artifact.experiment_id, payloads.ARTIFACT_FAILED, {"artifact": payloads.artifact_summary(artifact)})
