"""Artifacts: model packages of an experiment, the final export and those made on request."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..choices import (
    JOB_ARTIFACT_STATUSES,
    LIVE_ARTIFACT_STATUSES,
    ActivityVerb,
    ArtifactKind,
    ArtifactStatus,
)
from .activity import ActivityLog
from .projects import Project
from .runs import Experiment, Trial


def artifact_upload_path(instance: Artifact, filename: str) -> str:
    return f"artifacts/{instance.experiment_id}/{uuid.uuid4().hex}/{filename}"


class ArtifactQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(experiment__project__in=Project.objects.for_user(user))

    def live(self):
        """Pending, running or ready: a new request for the same package is not needed."""
        return self.filter(status__in=LIVE_ARTIFACT_STATUSES)

    def claim_job(self, pk: int, kind: str) -> bool:
        """Take the job of a requested package. A conditional update decides: a duplicate message
        of a finished job (ready or failed) finds no row to claim. A job already "running" is
        taken over: the actor holds a Redis lease per artifact while it works, so a running row
        nobody holds is one whose worker died (or a Dramatiq retry after a transient error)."""
        return bool(
            self.filter(pk=pk, kind=kind, status__in=JOB_ARTIFACT_STATUSES).update(status=ArtifactStatus.RUNNING, error="")
        )

    def fail_job(self, pk: int, reason: str) -> bool:
        """Mark an unfinished job failed with a reason the page shows. False if it had finished."""
        return bool(
            self.filter(pk=pk, status__in=JOB_ARTIFACT_STATUSES).update(
                status=ArtifactStatus.FAILED, error=reason[:4000], finished_at=timezone.now()
            )
        )


class Artifact(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="artifacts")
    trial = models.ForeignKey(Trial, null=True, blank=True, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=20, choices=ArtifactKind.choices)
    file = models.FileField(upload_to=artifact_upload_path, max_length=300, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    checksum = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=ArtifactStatus.choices, default=ArtifactStatus.READY)
    progress = models.JSONField(default=dict, blank=True)  # live state of a background export/retrain
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ArtifactQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_kind_display()} of experiment {self.experiment_id}"

    def record_download(self, user) -> None:
        """Log that `user` downloaded this file (every download view calls this)."""
        experiment = self.experiment
        description = f"{self.get_kind_display()} of {experiment.name}"
        if self.trial_id:
            description += f" (trial #{self.trial.number})"
        ActivityLog.record(experiment.project_id, user, ActivityVerb.MODEL_DOWNLOADED, self, description=description,
                           experiment=experiment.pk, trial=self.trial_id, kind=self.kind)  # fmt: skip

    # -- a job's progress (conditional on `running`: a row failed or deleted meanwhile stays so) ----
    def save_progress(self) -> None:
        Artifact.objects.filter(pk=self.pk, status=ArtifactStatus.RUNNING).update(progress=self.progress)

    def mark_ready(self, *, size_bytes: int, checksum: str, metrics: dict, progress: dict) -> bool:
        """The job's file is stored (`self.file`): the package is ready. False when the row was
        deleted meanwhile (with its experiment); the caller then deletes the orphan file."""
        stored = Artifact.objects.filter(pk=self.pk, status=ArtifactStatus.RUNNING).update(
            status=ArtifactStatus.READY, file=self.file.name, size_bytes=size_bytes, checksum=checksum,
            metrics=metrics, progress=progress, error="", finished_at=timezone.now(),
        )  # fmt: skip
        if stored:
            self.refresh_from_db()
        return bool(stored)
