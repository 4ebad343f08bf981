"""Who did what in a project (ActivityLog), and the comments on experiments and trials."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from ..choices import ActivityVerb, Role
from .projects import Project


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
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="comments")
    trial = models.ForeignKey("experiments.Trial", null=True, blank=True, on_delete=models.CASCADE, related_name="comments")
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
    def post(cls, author, experiment, body: str, trial=None) -> Comment:
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
