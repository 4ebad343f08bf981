"""The typed payloads of live events, and the compact forms of rows they carry.

Every event reaches the page as `{"type": <event type>, "seq": n, "experiment": id, **payload}`;
the page names its handlers after the event type (TRIAL_CREATED -> "trial.created", ...). Inside
the channel layer the event travels in an Envelope whose `type` names the consumer's handler
("nas.event" -> `nas_event`), as Channels dispatches it.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from django.urls import reverse

from search_engine.rules import error_line

# Event types.
TRIAL_CREATED = "trial.created"
TRIAL_STARTED = "trial.started"
TRIAL_EPOCH = "trial.epoch"
TRIAL_FINISHED = "trial.finished"
EXPERIMENT_STATUS = "experiment.status"
EXPERIMENT_PROGRESS = "experiment.progress"  # one-shot / DARTS jobs: supernet loss, arch weights
# Model packages made on request (jobs/packages.py): queued, each epoch of a retrain, done.
ARTIFACT_PROGRESS = "artifact.progress"
ARTIFACT_READY = "artifact.ready"
ARTIFACT_FAILED = "artifact.failed"

# The consumer method that forwards an event (Channels maps "nas.event" to `nas_event`).
CONSUMER_HANDLER = "nas.event"


class TrialSummary(TypedDict):
    id: int
    number: int
    state: str
    objective: float | None
    arch: dict
    budget: dict
    metrics: dict
    meta: dict
    attempt: int
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    error: str


class ExperimentSummary(TypedDict):
    id: int
    project: int
    name: str
    status: str
    status_message: str
    started_at: str | None
    finished_at: str | None


class ArtifactSummary(TypedDict):
    id: int
    experiment: int
    trial: int | None
    trial_number: int | None
    kind: str
    status: str
    progress: dict
    error: str
    size_bytes: int
    checksum: str
    metrics: dict
    created_at: str | None
    finished_at: str | None
    download_url: str


# Payloads, one per event type -----------------------------------------------------------------------
class TrialPayload(TypedDict):  # TRIAL_CREATED, TRIAL_STARTED, TRIAL_FINISHED
    trial: TrialSummary


class TrialEpochPayload(TypedDict):  # TRIAL_EPOCH
    trial_id: int
    number: int
    step: int
    values: dict


class ExperimentStatusPayload(TypedDict):  # EXPERIMENT_STATUS
    experiment_state: ExperimentSummary


class ExperimentProgressPayload(TypedDict):  # EXPERIMENT_PROGRESS
    values: dict


class ArtifactPayload(TypedDict):  # ARTIFACT_PROGRESS, ARTIFACT_READY, ARTIFACT_FAILED
    artifact: ArtifactSummary


Payload = TrialPayload | TrialEpochPayload | ExperimentStatusPayload | ExperimentProgressPayload | ArtifactPayload


class Envelope(TypedDict):
    type: Literal["nas.event"]
    event: dict  # {"type": event type, "seq": n, "experiment": id, **payload}


def envelope(experiment_id: int, event_type: str, seq: int, payload: Payload) -> Envelope:
    return {"type": CONSUMER_HANDLER, "event": {"type": event_type, "seq": seq, "experiment": experiment_id, **payload}}


# Compact forms of rows ------------------------------------------------------------------------------
def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def trial_summary(trial) -> TrialSummary:
    """The compact form of a trial used by the snapshot API and by events alike."""
    return {
        "id": trial.pk,
        "number": trial.number,
        "state": trial.state,
        "objective": trial.objective,
        "arch": trial.arch,
        "budget": trial.budget,
        "metrics": trial.metrics or {},
        "meta": trial.meta or {},  # e.g. zc_prescreen's proxy_score, charted against accuracy
        "attempt": trial.attempt,
        "started_at": _iso(trial.started_at),
        "finished_at": _iso(trial.finished_at),
        "duration_s": trial.duration_s,
        "error": error_line(trial.error),
    }


def experiment_summary(experiment) -> ExperimentSummary:
    return {
        "id": experiment.pk,
        "project": experiment.project_id,
        "name": experiment.name,
        "status": experiment.status,
        "status_message": experiment.status_message,
        "started_at": _iso(experiment.started_at),
        "finished_at": _iso(experiment.finished_at),
    }


def artifact_summary(artifact) -> ArtifactSummary:
    """An artifact as the API's ArtifactSerializer gives it (a test compares the two), so the page
    renders an event and a REST row with the same code."""
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
        "created_at": _iso(artifact.created_at),
        "finished_at": _iso(artifact.finished_at),
        "download_url": reverse("api:artifact-download", args=[artifact.pk]),
    }
