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

log = logging.getLogger(__name__)

# Event types; the consumer forwards `type` as is, and the page names its handlers after them.
TRIAL_CREATED = "trial.created"
TRIAL_STARTED = "trial.started"
TRIAL_EPOCH = "trial.epoch"
TRIAL_FINISHED = "trial.finished"
EXPERIMENT_STATUS = "experiment.status"
EXPERIMENT_PROGRESS = "experiment.progress"  # one-shot / DARTS jobs: supernet loss, arch weights
# Model packages made on request (experiments/exports.py): queued, each epoch of a retrain, done.
ARTIFACT_PROGRESS = "artifact.progress"
ARTIFACT_READY = "artifact.ready"
ARTIFACT_FAILED = "artifact.failed"


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


def trial_summary(trial) -> dict:
    """The compact form of a trial used by the snapshot API and by events alike."""
    metrics = trial.metrics or {}
    error_lines = (trial.error or "").strip().splitlines()
    return {
        "id": trial.pk,
        "number": trial.number,
        "state": trial.state,
        "objective": trial.objective,
        "arch": trial.arch,
        "budget": trial.budget,
        "metrics": metrics,
        "meta": trial.meta or {},  # e.g. zc_prescreen's proxy_score, charted against accuracy
        "attempt": trial.attempt,
        "started_at": trial.started_at.isoformat() if trial.started_at else None,
        "finished_at": trial.finished_at.isoformat() if trial.finished_at else None,
        "duration_s": trial.duration_s,
        "error": error_lines[-1][:300] if error_lines else "",
    }


def experiment_summary(experiment) -> dict:
    return {
        "id": experiment.pk,
        "project": experiment.project_id,
        "name": experiment.name,
        "status": experiment.status,
        "status_message": experiment.status_message,
        "started_at": experiment.started_at.isoformat() if experiment.started_at else None,
        "finished_at": experiment.finished_at.isoformat() if experiment.finished_at else None,
    }


def send(experiment_id: int, event_type: str, payload: dict, project_id: int | None = None) -> int | None:
    """Publish one event; a broken channel layer must never fail a trial, so errors are logged."""
    try:
        seq = next_seq(experiment_id)
        message = {"type": "nas.event", "event": {"type": event_type, "seq": seq, "experiment": experiment_id, **payload}}
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(experiment_group(experiment_id), message)
        if project_id is not None:
            async_to_sync(layer.group_send)(project_group(project_id), message)
        return seq
    except Exception:  # noqa: BLE001
        log.exception("broadcast of %s for experiment %s failed", event_type, experiment_id)
        return None


def trial_created(trial) -> None:
    send(trial.experiment_id, TRIAL_CREATED, {"trial": trial_summary(trial)})


def trial_started(trial) -> None:
    send(trial.experiment_id, TRIAL_STARTED, {"trial": trial_summary(trial)})


def trial_epoch(trial, step: int, values: dict) -> None:
    send(trial.experiment_id, TRIAL_EPOCH, {"trial_id": trial.pk, "number": trial.number, "step": step, "values": values})


def trial_finished(trial) -> None:
    send(trial.experiment_id, TRIAL_FINISHED, {"trial": trial_summary(trial)})


def experiment_status(experiment) -> None:
    send(experiment.pk, EXPERIMENT_STATUS, {"experiment_state": experiment_summary(experiment)},
         project_id=experiment.project_id)


def experiment_progress(experiment, values: dict) -> None:
    send(experiment.pk, EXPERIMENT_PROGRESS, {"values": values})


def artifact_summary(artifact) -> dict:
    """An artifact as the API's ArtifactSerializer gives it (a test compares the two), so the page
    renders an event and a REST row with the same code."""
    from django.urls import reverse

    trial = artifact.trial if artifact.trial_id else None
    return {
        "id": artifact.pk,
        "experiment": artifact.experiment_id,
        "trial": artifact.trial_id,
        "trial_number": trial.number if trial is not None else None,
        "kind": artifact.kind,
        "status": artifact.status,
        "progress": artifact.progress or {},
        "error": artifact.error,
        "size_bytes": artifact.size_bytes,
        "checksum": artifact.checksum,
        "metrics": artifact.metrics or {},
        "created_at": artifact.created_at.isoformat() if artifact.created_at else None,
        "finished_at": artifact.finished_at.isoformat() if artifact.finished_at else None,
        "download_url": reverse("api:artifact-download", args=[artifact.pk]),
    }


def artifact_progress(artifact) -> None:
    """A package was requested (pending), started, or finished one more epoch."""
    send(artifact.experiment_id, ARTIFACT_PROGRESS, {"artifact": artifact_summary(artifact)})


def artifact_ready(artifact) -> None:
    send(artifact.experiment_id, ARTIFACT_READY, {"artifact": artifact_summary(artifact)})


def artifact_failed(artifact) -> None:
    send(artifact.experiment_id, ARTIFACT_FAILED, {"artifact": artifact_summary(artifact)})
