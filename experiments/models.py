"""Projects, datasets, experiments and trials. Domain verbs live here; views and actors call them.

Every queryset that reaches a user goes through `for_user(user)`, which scopes by membership.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import F
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .choices import (
    ACTIVE_STATUSES,
    PENDING_TRIAL_STATES,
    TERMINAL_STATUSES,
    TERMINAL_TRIAL_STATES,
    ArtifactKind,
    ArtifactStatus,
    DatasetSource,
    ExperimentStatus,
    Role,
    TrialState,
    role_at_least,
)


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
        return role_at_least(self.role_of(user), needed)

    def require_role(self, user, needed: str) -> str:
        """The user's role, or PermissionDenied (403 in pages and the API alike) when it is below
        `needed`. Membership itself is checked by fetching through `for_user` (a non-member gets
        404 before this), so this is only ever about the role."""
        role = self.role_of(user)
        if not role_at_least(role, needed):
            raise PermissionDenied(f"You need the {needed} role in project {self.name!r} to do this.")
        return role

    # -- members (views check that `by` is an owner; these keep the rules and the log) -----------
    def add_member(self, user, role: str, by=None) -> Membership:
        """Invite an existing user. Already a member: AlreadyMember (change_role is the verb for that)."""
        _check_role(role)
        with transaction.atomic():
            membership, created = Membership.objects.get_or_create(project=self, user=user, defaults={"role": role})
            if not created:
                raise AlreadyMember(
                    f"{user.get_username()} is already a member ({membership.role}); change their role instead."
                )
            ActivityLog.record(self, by, ActivityVerb.MEMBER_INVITED, user, role=role)
        return membership

    def change_role(self, user, role: str, by=None) -> Membership:
        """Membership.DoesNotExist when `user` is not a member; LastOwner when it would leave none."""
        _check_role(role)
        with transaction.atomic():
            membership = self.memberships.select_for_update().get(user=user)
            if membership.role == role:
                return membership
            self._keep_an_owner(user, role)
            previous, membership.role = membership.role, role
            membership.save(update_fields=["role"])
            ActivityLog.record(self, by, ActivityVerb.MEMBER_ROLE_CHANGED, user, role=role, previous_role=previous)
        return membership

    def set_member_role(self, user, role: str, by=None) -> Membership:
        """Add `user` with `role`, or give an existing member that role (the API's POST members/)."""
        try:
            return self.add_member(user, role, by)
        except AlreadyMember:
            return self.change_role(user, role, by)

    def remove_member(self, user, by=None) -> None:
        """Membership.DoesNotExist when `user` is not a member; LastOwner for the only owner."""
        with transaction.atomic():
            membership = self.memberships.select_for_update().get(user=user)
            self._keep_an_owner(user, None)
            membership.delete()
            ActivityLog.record(self, by, ActivityVerb.MEMBER_REMOVED, user, role=membership.role)

    def _keep_an_owner(self, user, new_role) -> None:
        # Lock the owners' rows: two owners demoting (or removing) each other at once must not
        # both succeed and leave the project with nobody who can manage it.
        owners = list(self.memberships.select_for_update().filter(role=Role.OWNER).values_list("user_id", flat=True))
        if new_role != Role.OWNER and owners == [user.pk]:
            raise LastOwner("A project needs at least one owner; make someone else owner first.")


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

    def save(self, *args, **kwargs):
        if not self._state.adding:
            return super().save(*args, **kwargs)
        # Every path that adds a dataset (API, upload page, admin) names its creator on the row,
        # so the log entry is written here, in the same transaction as the row.
        with transaction.atomic():
            super().save(*args, **kwargs)
            ActivityLog.record(self.project_id, self.created_by, ActivityVerb.DATASET_UPLOADED, self,
                               source=self.source)  # fmt: skip

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

    # A one-shot method (supernet / darts) that runs before the trials: {"name": ..., "config": {...}};
    # empty for ordinary searches. Its result (top architectures) lands in oneshot_result.
    oneshot = models.JSONField(default=dict, blank=True)
    oneshot_result = models.JSONField(default=dict, blank=True)

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

    def save(self, *args, **kwargs):
        if not self._state.adding:
            return super().save(*args, **kwargs)
        # The form, the API and clones all create through here and name the creator on the row.
        with transaction.atomic():
            super().save(*args, **kwargs)
            if self.cloned_from_id:
                ActivityLog.record(self.project_id, self.created_by, ActivityVerb.EXPERIMENT_CLONED, self,
                                   source=self.cloned_from_id, source_name=self.cloned_from.name)  # fmt: skip
            else:
                ActivityLog.record(self.project_id, self.created_by, ActivityVerb.EXPERIMENT_CREATED, self)

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

    # `by` is the user who asked (None for the system); the activity log names them.
    def start(self, by=None) -> None:
        from .tasks import enqueue_advance, enqueue_oneshot

        self._transition((ExperimentStatus.DRAFT,), ExperimentStatus.QUEUED, started_at=timezone.now())
        # A one-shot experiment begins with its one job (tasks.run_oneshot), the trials after it.
        enqueue = enqueue_oneshot if self.oneshot else enqueue_advance
        transaction.on_commit(lambda: enqueue(self.pk))
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_STARTED, self)

    def pause(self, by=None) -> None:
        self._transition(ACTIVE_STATUSES, ExperimentStatus.PAUSED)
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_PAUSED, self)

    def resume(self, by=None) -> None:
        from .tasks import enqueue_advance

        self._transition((ExperimentStatus.PAUSED,), ExperimentStatus.QUEUED)
        transaction.on_commit(lambda: enqueue_advance(self.pk))
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_RESUMED, self)

    def cancel(self, by=None) -> None:
        self._transition(
            (ExperimentStatus.DRAFT, ExperimentStatus.QUEUED, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED),
            ExperimentStatus.CANCELLED,
            finished_at=timezone.now(),
        )
        # Running trials see the status at their next epoch and stop themselves.
        self.trials.filter(state=TrialState.QUEUED).update(state=TrialState.CANCELLED, finished_at=timezone.now())
        if self.oneshot and not self.oneshot_result:
            # A running one-shot job drops its checkpoint when it sees the cancel; a paused one has
            # no worker left to do it.
            from .tasks import discard_oneshot_checkpoint

            transaction.on_commit(lambda: discard_oneshot_checkpoint(self.pk))
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_CANCELLED, self)

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

    def __str__(self):
        return f"{self.trial_id}@{self.step}"


class ExperimentProgress(models.Model):
    """Per-epoch progress of an experiment-level job (one-shot supernet / DARTS), upserted by
    (phase, step) because a resumed job replays its last epoch."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="progress_points")
    phase = models.CharField(max_length=20, default="train")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment_id", "phase", "step"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "phase", "step"], name="one_progress_point_per_step")
        ]

    def __str__(self):
        return f"{self.experiment_id} {self.phase} {self.step}"


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


# Members, activity and comments --------------------------------------------------------------------
class MembershipError(StateError):
    """A membership change the rules forbid (the API answers 409, the pages show the message)."""


class AlreadyMember(MembershipError):
    pass


class LastOwner(MembershipError):
    pass


class NoSuchUser(LookupError):
    """No account matches what was typed; the message says what was looked for."""


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(Role.values)})")


def find_user(username_or_email: str):
    """The user with this username or else, when it looks like an email address, the one with this
    email (case-insensitive: people type addresses as they like). Raises NoSuchUser."""
    typed = username_or_email.strip()
    users = get_user_model().objects
    user = users.filter(username=typed).first()
    if user is not None or "@" not in typed:
        if user is None:
            raise NoSuchUser(f"no user called {typed!r}")
        return user
    matches = list(users.filter(email__iexact=typed)[:2])
    if not matches:
        raise NoSuchUser(f"no user with the email {typed!r}")
    if len(matches) > 1:
        raise NoSuchUser(f"several users have the email {typed!r}; invite one of them by username")
    return matches[0]


class ActivityVerb(models.TextChoices):
    # The label reads after the actor's name: "olivia started experiment “Digits MLP”".
    EXPERIMENT_CREATED = "experiment.created", "created experiment"
    EXPERIMENT_CLONED = "experiment.cloned", "cloned an experiment into"
    EXPERIMENT_STARTED = "experiment.started", "started experiment"
    EXPERIMENT_PAUSED = "experiment.paused", "paused experiment"
    EXPERIMENT_RESUMED = "experiment.resumed", "resumed experiment"
    EXPERIMENT_CANCELLED = "experiment.cancelled", "cancelled experiment"
    DATASET_UPLOADED = "dataset.uploaded", "added dataset"
    DATASET_DELETED = "dataset.deleted", "deleted dataset"
    MODEL_DOWNLOADED = "model.downloaded", "downloaded"
    MEMBER_INVITED = "member.invited", "invited"
    MEMBER_ROLE_CHANGED = "member.role_changed", "changed the role of"
    MEMBER_REMOVED = "member.removed", "removed"
    COMMENT_POSTED = "comment.posted", "commented on"


class ActivityLogQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(project__in=Project.objects.for_user(user))


class ActivityLog(models.Model):
    """Who did what in a project. Rows are written by the verbs (and the download views) in the
    transaction that does the thing, so a rolled-back action leaves no entry."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="activity")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")  # fmt: skip
    actor_name = models.CharField(max_length=150, blank=True)  # kept when the account is deleted
    verb = models.CharField(max_length=30, choices=ActivityVerb.choices)
    # What it was done to, described as it was then: the row itself may be gone since.
    target_type = models.CharField(max_length=30, blank=True)
    target_id = models.BigIntegerField(null=True, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ActivityLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self):
        return f"{self.actor} {self.summary}"

    @classmethod
    def record(cls, project, user, verb: str, target=None, *, description: str = "", **details) -> ActivityLog:
        """Log `user` doing `verb` to `target` (a model instance) in `project` (instance or id).
        `description` overrides str(target); `details` are kept as JSON."""
        if user is not None and not user.is_authenticated:
            user = None
        return cls.objects.create(
            project_id=getattr(project, "pk", project),
            user=user,
            actor_name=user.get_username() if user is not None else "",
            verb=verb,
            target_type=target._meta.model_name if target is not None else "",
            target_id=target.pk if target is not None else None,
            target_repr=(description or (str(target) if target is not None else ""))[:200],
            details=details,
        )

    @property
    def actor(self) -> str:
        return self.actor_name or "NAS Studio"

    @property
    def action(self) -> str:
        return ActivityVerb(self.verb).label if self.verb in ActivityVerb.values else self.verb

    @property
    def suffix(self) -> str:
        details = self.details or {}
        if self.verb == ActivityVerb.MEMBER_INVITED:
            return f" as {details.get('role')}"
        if self.verb == ActivityVerb.MEMBER_ROLE_CHANGED:
            return f" from {details.get('previous_role')} to {details.get('role')}"
        if self.verb == ActivityVerb.EXPERIMENT_CLONED and details.get("source_name"):
            return f" from “{details['source_name']}”"
        if self.verb == ActivityVerb.COMMENT_POSTED and details.get("excerpt"):
            return f": “{details['excerpt']}”"
        return ""

    @property
    def summary(self) -> str:
        return f"{self.action} {self.target_repr}{self.suffix}".strip()

    @property
    def target_url(self) -> str:
        """A page about the target, when there is one (it may have been deleted since)."""
        details = self.details or {}
        try:
            if self.target_type == "experiment":
                return reverse("experiment-detail", args=[self.target_id])
            if self.target_type == "dataset" and self.verb != ActivityVerb.DATASET_DELETED:
                return reverse("dataset-detail", args=[self.target_id])
            if self.target_type == "trial":
                return reverse("trial-detail", args=[self.target_id])
            if details.get("trial"):
                return reverse("trial-detail", args=[details["trial"]])
            if details.get("experiment"):
                return reverse("experiment-detail", args=[details["experiment"]])
        except NoReverseMatch:
            pass
        return ""


class CommentQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(project__in=Project.objects.for_user(user))


class Comment(models.Model):
    """A note on an experiment, or on one of its trials. Every member may comment (viewers read
    and discuss); the author or an owner may delete."""

    MAX_LENGTH = 5000

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comments")  # for scoping
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="comments")
    trial = models.ForeignKey(Trial, null=True, blank=True, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField(max_length=MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CommentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["experiment", "trial", "created_at"])]

    def __str__(self):
        return f"{self.author} on {self.experiment_id}: {self.body[:40]}"

    @classmethod
    def post(cls, author, experiment: Experiment, body: str, trial: Trial | None = None) -> Comment:
        if trial is not None and trial.experiment_id != experiment.pk:
            raise ValueError("the trial belongs to another experiment")
        with transaction.atomic():
            comment = cls.objects.create(
                project_id=experiment.project_id, experiment=experiment, trial=trial, author=author, body=body
            )
            target, description = experiment, experiment.name
            if trial is not None:
                target, description = trial, f"trial #{trial.number} of {experiment.name}"
            excerpt = " ".join(body.split())
            ActivityLog.record(
                experiment.project_id, author, ActivityVerb.COMMENT_POSTED, target, description=description,
                comment=comment.pk, experiment=experiment.pk, excerpt=excerpt[:80] + ("…" if len(excerpt) > 80 else ""),
            )  # fmt: skip
        return comment

    def can_be_deleted_by(self, user, role: str | None) -> bool:
        return role == Role.OWNER or (self.author_id is not None and self.author_id == user.pk)
