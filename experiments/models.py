"""Projects, datasets, experiments and trials. Domain verbs live here; views and actors call them.

Every queryset that reaches a user goes through `for_user(user)`, which scopes by membership.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from .choices import (
    ACTIVE_STATUSES,
    PENDING_TRIAL_STATES,
    TERMINAL_STATUSES,
    TERMINAL_TRIAL_STATES,
    ArtifactKind,
    DatasetSource,
    ExperimentStatus,
    Role,
    TrialState,
)

ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}


class StateError(Exception):
    """A verb that does not apply in the object's current state (the API answers 409)."""


# Projects ------------------------------------------------------------------------------------
class ProjectQuerySet(models.QuerySet):
    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user)


class Project(models.Model):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name

    @classmethod
    @transaction.atomic
    def create_for(cls, user, name: str, description: str = "") -> Project:
        project = cls.objects.create(name=name, description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
        return project

    def role_of(self, user) -> str | None:
        if not user.is_authenticated:
            return None
        membership = self.memberships.filter(user=user).only("role").first()
        return membership.role if membership else None

    def allows(self, user, needed: str) -> bool:
        role = self.role_of(user)
        return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]
        ordering = ["project_id", "user__username"]

    def __str__(self):
        return f"{self.user} in {self.project} ({self.role})"


# Datasets -------------------------------------------------------------------------------------
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

    @property
    def in_use(self) -> bool:
        return self.experiments.exists()

    def describe_from_task(self, task) -> None:
        info = task.describe()
        self.kind = info["kind"]
        self.input_shape = info["input_shape"]
        self.num_classes = info["num_classes"]
        self.class_names = info["class_names"]
        self.class_counts = info["class_counts"]
        self.num_rows = sum(info["sizes"].values())


# Experiments -----------------------------------------------------------------------------------
class ExperimentQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(project__in=Project.objects.for_user(user))

    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)


class Experiment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="experiments")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)

    # The search configuration: registry names plus JSON options, validated by engine_bridge.
    space = models.CharField(max_length=50)
    space_config = models.JSONField(default=dict, blank=True)
    strategy = models.CharField(max_length=50)
    strategy_config = models.JSONField(default=dict, blank=True)
    estimator = models.CharField(max_length=50)
    estimator_config = models.JSONField(default=dict, blank=True)
    constraints = models.JSONField(default=dict, blank=True)  # max_params, max_flops, ...
    budget_trials = models.PositiveIntegerField(default=20)
    budget_wall_time_s = models.PositiveIntegerField(null=True, blank=True)
    parallelism = models.PositiveSmallIntegerField(default=1)
    seed = models.PositiveIntegerField(default=0)
    device = models.CharField(max_length=10, default="cpu")

    status = models.CharField(max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT)
    status_message = models.TextField(blank=True)
    strategy_state = models.JSONField(default=dict, blank=True)
    cloned_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="clones")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ExperimentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "status"])]

    def __str__(self):
        return self.name

    # -- verbs ---------------------------------------------------------------------------------
    def _transition(self, allowed: tuple, new_status: str, **fields) -> None:
        """Conditional update: two clicks (or a click and a worker) racing on the same row
        must not both win, so the current status is part of the WHERE clause."""
        now = timezone.now()
        updated = Experiment.objects.filter(pk=self.pk, status__in=allowed).update(
            status=new_status, updated_at=now, **fields
        )
        if not updated:
            self.refresh_from_db(fields=["status"])
            raise StateError(f"cannot go from {self.status} to {new_status}")
        self.refresh_from_db()

    def start(self) -> None:
        from .tasks import enqueue_advance

        self._transition((ExperimentStatus.DRAFT,), ExperimentStatus.QUEUED, started_at=timezone.now())
        transaction.on_commit(lambda: enqueue_advance(self.pk))
        self.announce_status()

    def pause(self) -> None:
        self._transition(ACTIVE_STATUSES, ExperimentStatus.PAUSED)
        self.announce_status()

    def resume(self) -> None:
        from .tasks import enqueue_advance

        self._transition((ExperimentStatus.PAUSED,), ExperimentStatus.QUEUED)
        transaction.on_commit(lambda: enqueue_advance(self.pk))
        self.announce_status()

    def cancel(self) -> None:
        self._transition(
            (ExperimentStatus.DRAFT, ExperimentStatus.QUEUED, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED),
            ExperimentStatus.CANCELLED,
            finished_at=timezone.now(),
        )
        # Running trials see the status at their next epoch and stop themselves.
        self.trials.filter(state=TrialState.QUEUED).update(state=TrialState.CANCELLED, finished_at=timezone.now())
        self.announce_status()

    def finish(self, status: str, message: str = "") -> bool:
        """Move to a terminal status unless already there (a duplicate finalize does nothing)."""
        updated = Experiment.objects.filter(pk=self.pk).exclude(status__in=TERMINAL_STATUSES).update(
            status=status, status_message=message, finished_at=timezone.now(), updated_at=timezone.now()
        )
        self.refresh_from_db()
        if updated:
            self.announce_status()
        return bool(updated)

    def announce_status(self) -> None:
        from .broadcast import experiment_status

        transaction.on_commit(lambda: experiment_status(self))

    # -- queries ---------------------------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def counted_trials(self):
        """Trials that spend budget: everything but statically infeasible candidates (never trained)."""
        return self.trials.exclude(state=TrialState.INFEASIBLE, started_at__isnull=True)

    def best_trial(self):
        return self.trials.best_first().first()

    @classmethod
    def attach_trial_summaries(cls, experiments) -> list:
        """Set `trial_counts` ({state: n}) and `best` (a Trial or None) on each experiment, with two
        queries for the whole list: a page of experiments costs the same however many trials they have."""
        experiments = list(experiments)
        ids = [e.pk for e in experiments]
        counts: dict[int, dict[str, int]] = {pk: {} for pk in ids}
        rows = Trial.objects.filter(experiment_id__in=ids).values_list("experiment_id", "state")
        for experiment_id, state, n in rows.annotate(n=models.Count("id")).order_by():
            counts[experiment_id][state] = n
        best_ids = cls.objects.filter(pk__in=ids).annotate(
            best_id=models.Subquery(Trial.objects.filter(experiment=models.OuterRef("pk")).best_first().values("pk")[:1])
        ).values("best_id")
        best = {t.experiment_id: t for t in Trial.objects.filter(pk__in=best_ids)} if ids else {}
        for experiment in experiments:
            experiment.trial_counts = counts[experiment.pk]
            experiment.best = best.get(experiment.pk)
        return experiments

    def engine_config(self) -> dict:
        return {
            "space": self.space,
            "space_config": self.space_config,
            "strategy": self.strategy,
            "strategy_config": self.strategy_config,
            "estimator": self.estimator,
            "estimator_config": self.estimator_config,
            "constraints": self.constraints,
            "budget_trials": self.budget_trials,
            "budget_wall_time_s": self.budget_wall_time_s,
            "parallelism": self.parallelism,
            "seed": self.seed,
            "device": self.device,
        }


# Trials -----------------------------------------------------------------------------------------
class TrialQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(experiment__project__in=Project.objects.for_user(user))

    def pending(self):
        return self.filter(state__in=PENDING_TRIAL_STATES)

    def terminal(self):
        return self.filter(state__in=TERMINAL_TRIAL_STATES)

    def best_first(self):
        """Scored trials, best first (ties go to the earlier trial): the one definition of "best"."""
        return self.filter(state=TrialState.COMPLETED, objective__isnull=False).order_by("-objective", "number")

    def stale(self, lease_seconds: int):
        """Running trials whose worker stopped heartbeating (died, was killed, lost its host)."""
        cutoff = timezone.now() - timedelta(seconds=lease_seconds)
        return self.filter(state=TrialState.RUNNING, heartbeat_at__lt=cutoff)


class Trial(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="trials")
    number = models.PositiveIntegerField()
    arch = models.JSONField()
    fingerprint = models.CharField(max_length=64)
    budget = models.JSONField(default=dict, blank=True)  # e.g. {"epochs": 9} from hyperband
    meta = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=12, choices=TrialState.choices, default=TrialState.QUEUED)
    objective = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    constraint_values = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    lease_token = models.UUIDField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)

    objects = TrialQuerySet.as_manager()

    class Meta:
        ordering = ["experiment_id", "number"]
        constraints = [models.UniqueConstraint(fields=["experiment", "number"], name="unique_trial_number")]
        indexes = [models.Index(fields=["experiment", "state"]), models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self):
        return f"{self.experiment_id}#{self.number}"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_TRIAL_STATES

    def claim(self, worker: str) -> uuid.UUID | None:
        """Take the trial for this worker. Duplicate deliveries of the same message race here;
        the conditional UPDATE lets exactly one of them win."""
        token = uuid.uuid4()
        now = timezone.now()
        won = Trial.objects.filter(pk=self.pk, state=TrialState.QUEUED).update(
            state=TrialState.RUNNING,
            lease_token=token,
            attempt=F("attempt") + 1,
            heartbeat_at=now,
            started_at=now,
            worker=worker[:200],
        )
        if not won:
            return None
        self.refresh_from_db()
        return token

    def heartbeat(self, token) -> bool:
        """False when this worker no longer holds the lease (re-queued or cancelled meanwhile)."""
        return bool(
            Trial.objects.filter(pk=self.pk, lease_token=token, state=TrialState.RUNNING).update(
                heartbeat_at=timezone.now()
            )
        )

    def complete(self, token, *, state: str, objective, metrics: dict, constraint_values: dict,
                 error: str = "", duration_s: float | None = None) -> bool:
        """Record the outcome if this worker still holds the lease; a stale worker's late
        result is dropped rather than overwriting the re-run's."""
        updated = Trial.objects.filter(pk=self.pk, lease_token=token, state=TrialState.RUNNING).update(
            state=state,
            objective=objective,
            metrics=metrics,
            constraint_values=constraint_values,
            error=error,
            duration_s=duration_s,
            finished_at=timezone.now(),
            lease_token=None,
        )
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def requeue_or_fail(self, max_attempts: int, reason: str) -> str:
        """For a trial whose worker died: run it again, or give up after `max_attempts`."""
        if self.attempt >= max_attempts:
            Trial.objects.filter(pk=self.pk, state=TrialState.RUNNING).update(
                state=TrialState.FAILED, lease_token=None, finished_at=timezone.now(),
                error=f"{reason}; gave up after {self.attempt} attempts",
            )
        else:
            Trial.objects.filter(pk=self.pk, state=TrialState.RUNNING).update(
                state=TrialState.QUEUED, lease_token=None, error=reason
            )
        self.refresh_from_db()
        return self.state


class TrialMetric(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="points")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trial_id", "step"]
        constraints = [models.UniqueConstraint(fields=["trial", "step"], name="one_point_per_step")]


# Artifacts ----------------------------------------------------------------------------------------
def artifact_upload_path(instance: Artifact, filename: str) -> str:
    return f"artifacts/{instance.experiment_id}/{uuid.uuid4().hex}/{filename}"


class ArtifactQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(experiment__project__in=Project.objects.for_user(user))


class Artifact(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="artifacts")
    trial = models.ForeignKey(Trial, null=True, blank=True, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=20, choices=ArtifactKind.choices)
    file = models.FileField(upload_to=artifact_upload_path, max_length=300)
    size_bytes = models.BigIntegerField(default=0)
    checksum = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ArtifactQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

