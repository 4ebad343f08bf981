"""Runs: experiments, their trials, and the points both record (TrialMetric, ExperimentProgress).
Domain verbs live here; views and actors call them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..choices import (
    ACTIVE_STATUSES,
    PENDING_TRIAL_STATES,
    TERMINAL_STATUSES,
    TERMINAL_TRIAL_STATES,
    ActivityVerb,
    ExperimentStatus,
    TrialState,
)
from ..jobs import enqueue
from ..live import broadcast
from .activity import ActivityLog
from .datasets import Dataset
from .projects import Project, StateError


def budget_spent_q(prefix: str = "") -> Q:
    """`search_engine.rules.counts_against_budget` as a filter on finished trials, reached through
    `prefix` (e.g. "trials__" from an experiment): trained == started_at is set, since a candidate
    the static checks rejected never started."""
    return Q(**{f"{prefix}state__in": TERMINAL_TRIAL_STATES}) & ~Q(
        **{f"{prefix}state": TrialState.INFEASIBLE, f"{prefix}started_at__isnull": True}
    )


class ExperimentQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(project__in=Project.objects.for_user(user))

    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)

    def lock(self, pk: int):
        """The row, locked until the transaction ends (None when it is gone). Serialises the
        workers of one experiment: two advances (two trials finishing together, or a duplicate
        message) would otherwise both count the same pending trials, both number their new trial
        N, and together overshoot the trial budget. On PostgreSQL this is SELECT ... FOR UPDATE;
        SQLite ignores it, but settings open every SQLite transaction with BEGIN IMMEDIATE, which
        takes the database's write lock up front: the same mutual exclusion, coarser."""
        return self.select_for_update().filter(pk=pk).first()

    def status_of(self, pk: int) -> str | None:
        """One indexed read, for the guards that poll for a pause or cancel."""
        return self.filter(pk=pk).values_list("status", flat=True).first()


class Experiment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="experiments")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)

    # The search configuration: registry names plus JSON options, turned into engine objects by engine.build.
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
        self._transition((ExperimentStatus.DRAFT,), ExperimentStatus.QUEUED, started_at=timezone.now())
        # A one-shot experiment begins with its one job (jobs/oneshot.py), the trials after it.
        send = enqueue.oneshot if self.oneshot else enqueue.advance
        transaction.on_commit(lambda: send(self.pk))
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_STARTED, self)

    def pause(self, by=None) -> None:
        self._transition(ACTIVE_STATUSES, ExperimentStatus.PAUSED)
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_PAUSED, self)

    def resume(self, by=None) -> None:
        self._transition((ExperimentStatus.PAUSED,), ExperimentStatus.QUEUED)
        transaction.on_commit(lambda: enqueue.advance(self.pk))
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_RESUMED, self)

    def cancel(self, by=None) -> None:
        self._transition(
            (ExperimentStatus.DRAFT, ExperimentStatus.QUEUED, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED),
            ExperimentStatus.CANCELLED,
            finished_at=timezone.now(),
        )
        # Running trials see the status at their next epoch and stop themselves.
        self.trials.cancel_queued()
        if self.oneshot and not self.oneshot_result:
            # A running one-shot job drops its checkpoint when it sees the cancel; a paused one has
            # no worker left to do it.
            transaction.on_commit(lambda: enqueue.discard_oneshot_checkpoint(self.pk))
        self.announce_status()
        ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_CANCELLED, self)

    def rename(self, name: str, by=None) -> None:
        """In any status: nothing the search runs or packages reads the name. A single-column
        update, so a worker's status change committing meanwhile is not written back."""
        previous = self.name
        with transaction.atomic():
            Experiment.objects.filter(pk=self.pk).update(name=name, updated_at=timezone.now())
            self.name = name
            ActivityLog.record(self.project_id, by, ActivityVerb.EXPERIMENT_RENAMED, self, previous_name=previous)

    def delete_by(self, user) -> None:
        """Delete a draft or finished experiment (with its trials) and log who did. Conditional, as
        the API's delete: a start racing it either wins (the delete finds no row, StateError) or
        loses (its UPDATE finds none), so a queued experiment is never orphaned."""
        deletable = (ExperimentStatus.DRAFT, *TERMINAL_STATUSES)
        with transaction.atomic():
            ActivityLog.record(self.project_id, user, ActivityVerb.EXPERIMENT_DELETED, self, status=self.status)
            deleted, _ = Experiment.objects.filter(pk=self.pk, status__in=deletable).delete()
            if not deleted:
                status = Experiment.objects.status_of(self.pk) or "deleted"
                raise StateError(f"a {status} experiment can not be deleted; cancel it first")

    def mark_running(self) -> bool:
        """queued -> running, when a worker first works on the experiment (or after a resume).
        Conditional: a pause or cancel that lands meanwhile wins, and a duplicate does nothing."""
        updated = Experiment.objects.filter(pk=self.pk, status=ExperimentStatus.QUEUED).update(
            status=ExperimentStatus.RUNNING, updated_at=timezone.now()
        )
        if updated:
            self.status = ExperimentStatus.RUNNING
            self.announce_status()
        return bool(updated)

    def adopt_oneshot_result(self, result: dict, strategy_config: dict, budget_trials: int) -> None:
        """The one-shot job is done: the trials become a `fixed` search over its top architectures.
        The caller holds the row lock (jobs/oneshot.py) and has checked that no result is stored."""
        Experiment.objects.filter(pk=self.pk).update(
            oneshot_result=result, strategy="fixed", strategy_config=strategy_config, strategy_state={},
            budget_trials=budget_trials, updated_at=timezone.now(),
        )  # fmt: skip

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
        transaction.on_commit(lambda: broadcast.experiment_status(self))

    # -- queries ---------------------------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def wall_time_spent(self) -> bool:
        # Wall time counts from start(), pauses included: it bounds what the search may cost in time.
        if not self.budget_wall_time_s or not self.started_at:
            return False
        return (timezone.now() - self.started_at).total_seconds() >= self.budget_wall_time_s

    def counted_trials(self):
        """Trials that spend budget. This is `search_engine.rules.counts_against_budget` as a query
        (trained == started_at is set: a statically infeasible candidate never started), applied to
        every trial: pending ones count already, since they will when they finish, and advance must
        not propose past the budget meanwhile."""
        return self.trials.exclude(state=TrialState.INFEASIBLE, started_at__isnull=True)

    def count_by_state(self) -> dict[str, int]:
        rows = self.trials.values("state").annotate(n=models.Count("pk")).order_by()
        return {row["state"]: row["n"] for row in rows}

    def last_trial_number(self) -> int:
        """The highest trial number so far, -1 before the first trial."""
        top = self.trials.aggregate(top=models.Max("number"))["top"]
        return -1 if top is None else top

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



# Trials -----------------------------------------------------------------------------------------
class TrialQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(experiment__project__in=Project.objects.for_user(user))

    def pending(self):
        return self.filter(state__in=PENDING_TRIAL_STATES)

    def terminal(self):
        return self.filter(state__in=TERMINAL_TRIAL_STATES)

    def best_first(self):
        """Scored trials, best first: the one definition of "best" in the database, the same order
        as `search_engine.rules.best_key` (highest objective; on a tie the smaller model, unknown
        params last; then the earlier trial)."""
        return self.filter(state=TrialState.COMPLETED, objective__isnull=False).order_by(
            F("objective").desc(), F("metrics__params").asc(nulls_last=True), "number"
        )

    def cancel_queued(self, reason: str = "") -> list[Trial]:
        """Cancel the trials that have not started (`reason` becomes their error, when given) and
        return them, cancelled, for the broadcast. Conditional on `queued`: a worker that claimed
        one meanwhile keeps it, and its trial stops at its next look at the experiment."""
        queued = list(self.filter(state=TrialState.QUEUED))
        now = timezone.now()
        fields = {"state": TrialState.CANCELLED, "finished_at": now, **({"error": reason} if reason else {})}
        self.model.objects.filter(pk__in=[t.pk for t in queued], state=TrialState.QUEUED).update(**fields)
        for trial in queued:
            for name, value in fields.items():
                setattr(trial, name, value)
        return queued

    def reopen_failed(self, reason: str) -> list[int]:
        """Failed trials of active experiments back to the queue: they failed because their
        worker was broken (see jobs/service.py), so they did not spend budget. Returns their ids."""
        ids = list(self.filter(state=TrialState.FAILED, experiment__status__in=ACTIVE_STATUSES)
                   .values_list("pk", flat=True))  # fmt: skip
        self.model.objects.filter(pk__in=ids, state=TrialState.FAILED).update(
            state=TrialState.QUEUED, error=reason, objective=None, metrics={}, finished_at=None, duration_s=None,
        )  # fmt: skip
        TrialMetric.objects.filter(trial_id__in=ids).delete()
        return ids

    def unsent_queued(self, older_than_s: float):
        """Queued trials created more than `older_than_s` ago: candidates for a re-send (the
        caller asks Redis which of them have a message on its way)."""
        cutoff = timezone.now() - timedelta(seconds=older_than_s)
        return self.filter(state=TrialState.QUEUED, created_at__lt=cutoff)

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

    def release(self, token, reason: str, *, count_attempt: bool = False) -> bool:
        """Hand a running trial back to the queue because of its worker, not the trial: the
        worker is stopping, lost its database for a while, or took itself out of service. The
        points of the interrupted run go; the attempt is given back unless `count_attempt` (a
        run on a worker that may be broken still counts, so a trial that fails everywhere ends).
        Conditional on the lease token: a worker that lost the lease releases nothing."""
        with transaction.atomic():
            released = Trial.objects.filter(pk=self.pk, lease_token=token, state=TrialState.RUNNING).update(
                state=TrialState.QUEUED, lease_token=None, error=reason,
                attempt=F("attempt") if count_attempt else F("attempt") - 1,
            )  # fmt: skip
            if released:
                TrialMetric.objects.filter(trial_id=self.pk).delete()
        if released:
            self.refresh_from_db()
        return bool(released)

    def cancel_if_queued(self, reason: str) -> bool:
        """Cancel a trial whose experiment finished before it started. Conditional on `queued`:
        a duplicate message, or a worker that claimed it meanwhile, leaves the row alone."""
        cancelled = Trial.objects.filter(pk=self.pk, state=TrialState.QUEUED).update(
            state=TrialState.CANCELLED, finished_at=timezone.now(), error=reason
        )
        if cancelled:
            self.refresh_from_db()
        return bool(cancelled)

    def cancel_abandoned(self, reason: str) -> bool:
        """Cancel a running trial of a finished experiment whose worker is gone. Conditional on
        the lease token read with it: a worker that is alive after all and records its result
        first keeps that result."""
        cancelled = Trial.objects.filter(pk=self.pk, state=TrialState.RUNNING, lease_token=self.lease_token).update(
            state=TrialState.CANCELLED, lease_token=None, finished_at=timezone.now(), error=reason
        )
        if cancelled:
            self.refresh_from_db()
        return bool(cancelled)


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

