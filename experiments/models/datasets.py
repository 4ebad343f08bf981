"""Datasets of a project: a built-in one or an uploaded file, described from the task it loads."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models, transaction

from ..choices import ActivityVerb, DatasetSource
from .activity import ActivityLog
from .projects import Project


class DatasetQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(project__in=Project.objects.for_user(user))


def dataset_upload_path(instance: Dataset, filename: str) -> str:
    return f"datasets/{instance.project_id}/{uuid.uuid4().hex}/{filename}"


class Dataset(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    source = models.CharField(max_length=10, choices=DatasetSource.choices)
    builtin_name = models.CharField(max_length=50, blank=True)
    file = models.FileField(upload_to=dataset_upload_path, blank=True, max_length=300)
    options = models.JSONField(default=dict, blank=True)  # loader options: target column, image size
    checksum = models.CharField(max_length=64, blank=True)  # sha256 of the uploaded file
    size_bytes = models.BigIntegerField(default=0)
    kind = models.CharField(max_length=10, default="tabular")  # tabular | image
    input_shape = models.JSONField(default=list)
    num_classes = models.PositiveIntegerField(default=0)
    class_names = models.JSONField(default=list)
    class_counts = models.JSONField(default=list)
    num_rows = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self._state.adding:
            return super().save(*args, **kwargs)
        # Every path that adds a dataset (API, upload page, admin) names its creator on the row,
        # so the log entry is written here, in the same transaction as the row.
        with transaction.atomic():
            super().save(*args, **kwargs)
            ActivityLog.record(self.project_id, self.created_by, ActivityVerb.DATASET_UPLOADED, self,
                               source=self.source)  # fmt: skip

    def rename(self, name: str, by=None) -> None:
        """One column, logged in the same transaction."""
        previous, self.name = self.name, name
        with transaction.atomic():
            self.save(update_fields=["name"])
            ActivityLog.record(self.project_id, by, ActivityVerb.DATASET_RENAMED, self, previous_name=previous)

    @property
    def in_use(self) -> bool:
        return self.experiments.exists()

    def delete_by(self, user) -> None:
        """Delete and log who did. ProtectedError (experiments use it) rolls the log entry back too."""
        with transaction.atomic():
            ActivityLog.record(self.project_id, user, ActivityVerb.DATASET_DELETED, self, source=self.source)
            self.delete()

    def describe_from_task(self, task) -> None:
        info = task.describe()
        self.kind = info["kind"]
        self.input_shape = info["input_shape"]
        self.num_classes = info["num_classes"]
        self.class_names = info["class_names"]
        self.class_counts = info["class_counts"]
        self.num_rows = sum(info["sizes"].values())

