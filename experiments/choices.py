from django.db import models

from search_engine import types as engine_types


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}


def role_at_least(role: str | None, needed: str) -> bool:
    """The one role rule: viewers read, editors change experiments and datasets, owners manage
    the project and its members; each role includes the ones below it. None is "not a member"."""
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (ExperimentStatus.QUEUED, ExperimentStatus.RUNNING)
TERMINAL_STATUSES = (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED, ExperimentStatus.CANCELLED)


class TrialState(models.TextChoices):
    # Same strings as the engine's, so records convert without a mapping table.
    QUEUED = engine_types.QUEUED, "Queued"
    RUNNING = engine_types.RUNNING, "Running"
    COMPLETED = engine_types.COMPLETED, "Completed"
    PRUNED = engine_types.PRUNED, "Pruned"
    INFEASIBLE = engine_types.INFEASIBLE, "Infeasible"
    FAILED = engine_types.FAILED, "Failed"
    CANCELLED = engine_types.CANCELLED, "Cancelled"


PENDING_TRIAL_STATES = (TrialState.QUEUED, TrialState.RUNNING)
TERMINAL_TRIAL_STATES = tuple(s for s in TrialState.values if s not in PENDING_TRIAL_STATES)


class DatasetSource(models.TextChoices):
    BUILTIN = "builtin", "Built-in"
    CSV = "csv", "CSV"
    NPZ = "npz", "NPZ"
    ZIP = "zip", "ZIP of image folders"


class ArtifactStatus(models.TextChoices):
    # Artifacts made on request (a trial's package, a retrained model) are background jobs.
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ArtifactKind(models.TextChoices):
    MODEL_ZIP = "model_zip", "Model package (ZIP)"
    RETRAINED_ZIP = "retrained_zip", "Retrained model package (ZIP)"


# Artifacts whose existence makes a new request for the same package unnecessary, and those whose
# background job has not finished.
LIVE_ARTIFACT_STATUSES = (ArtifactStatus.PENDING, ArtifactStatus.RUNNING, ArtifactStatus.READY)
JOB_ARTIFACT_STATUSES = (ArtifactStatus.PENDING, ArtifactStatus.RUNNING)


class ActivityVerb(models.TextChoices):
    # The label reads after the actor's name: "olivia started experiment “Digits MLP”".
    EXPERIMENT_CREATED = "experiment.created", "created experiment"
    EXPERIMENT_CLONED = "experiment.cloned", "cloned an experiment into"
    EXPERIMENT_STARTED = "experiment.started", "started experiment"
    EXPERIMENT_PAUSED = "experiment.paused", "paused experiment"
    EXPERIMENT_RESUMED = "experiment.resumed", "resumed experiment"
    EXPERIMENT_CANCELLED = "experiment.cancelled", "cancelled experiment"
    EXPERIMENT_RENAMED = "experiment.renamed", "renamed experiment"
    EXPERIMENT_DELETED = "experiment.deleted", "deleted experiment"
    DATASET_UPLOADED = "dataset.uploaded", "added dataset"
    DATASET_DELETED = "dataset.deleted", "deleted dataset"
    DATASET_RENAMED = "dataset.renamed", "renamed dataset"
    MODEL_DOWNLOADED = "model.downloaded", "downloaded"
    MEMBER_INVITED = "member.invited", "invited"
    MEMBER_ROLE_CHANGED = "member.role_changed", "changed the role of"
    MEMBER_REMOVED = "member.removed", "removed"
    COMMENT_POSTED = "comment.posted", "commented on"
