"""The REST API. Every queryset is scoped with `for_user`, so another project's rows are 404;
roles decide the rest (permissions.ProjectRole). Views fetch, call one model verb, render."""

from __future__ import annotations

import json
import logging
from collections import namedtuple
from operator import attrgetter

import redis
from django.db import transaction
from django.db.models import Count, Prefetch, ProtectedError, TextField
from django.db.models.functions import Cast
from django.http import FileResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from search_engine.data import BUILTIN_DATASETS
from search_engine.rules import best_of, params_of

from ..choices import TERMINAL_STATUSES, ArtifactStatus, ExperimentStatus, Role, TrialState
from ..engine.tables import list_tables
from ..live import broadcast, payloads
from ..models import (
    Artifact,
    Experiment,
    ExperimentProgress,
    Membership,
    Project,
    StateError,
    Trial,
    TrialMetric,
)
from . import serializers as s
from . import team
from .filters import ExperimentFilter, NullsLastOrderingFilter, TrialFilter
from .permissions import ProjectRole, role_subquery

log = logging.getLogger(__name__)

# Curves of this many recently finished trials come with the snapshot (besides every running one),
# so a finished experiment's page still shows how its last trials learned.
SNAPSHOT_FINISHED_CURVES = 10

CONFLICT = OpenApiResponse(s.DetailSerializer, description="Not possible in the current state")


# What the snapshot reads of each trial: everything payloads.trial_summary uses (a test compares
# the two), with the JSON columns fetched as text and decoded in one call, not 30,000 calls.
SNAPSHOT_COLUMNS = ("id", "number", "state", "objective", "attempt", "started_at", "finished_at", "duration_s", "error")
SNAPSHOT_JSON_COLUMNS = ("arch", "budget", "metrics", "meta")


class TrialRow(namedtuple("TrialRow", SNAPSHOT_COLUMNS + SNAPSHOT_JSON_COLUMNS)):
    """A trial without the model instance: building 10,000 instances costs more than the query."""

    __slots__ = ()

    @property
    def pk(self):
        return self.id


def snapshot_rows(trials) -> list[TrialRow]:
    texts = {f"{name}_json": Cast(name, TextField()) for name in SNAPSHOT_JSON_COLUMNS}
    rows = list(trials.annotate(**texts).values_list(*SNAPSHOT_COLUMNS, *texts))
    width = len(SNAPSHOT_COLUMNS)
    # One json.loads over every document: the per-call overhead, not parsing, is what costs.
    decoded = json.loads("[" + ",".join(text for row in rows for text in row[width:]) + "]") if rows else []
    k = len(SNAPSHOT_JSON_COLUMNS)
    return [TrialRow(*row[:width], *decoded[i * k : (i + 1) * k]) for i, row in enumerate(rows)]


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Not possible in the current state."
    default_code = "conflict"


class ScopedViewSet:
    permission_classes = [IsAuthenticated, ProjectRole]
    filter_backends = [DjangoFilterBackend, NullsLastOrderingFilter]
    lookup_value_regex = r"\d+"
    ordering_tiebreak = ("pk",)


# Projects ---------------------------------------------------------------------------------------
@extend_schema_view(
    destroy=extend_schema(responses={204: None, 409: CONFLICT}),
)
class ProjectViewSet(ScopedViewSet, viewsets.ModelViewSet):
    """Team workspaces. Whoever creates one becomes its owner; only owners change or delete it."""

    serializer_class = s.ProjectSerializer
    ordering_fields = ["name", "created_at"]
    ordering = ["name", "id"]

    def get_queryset(self):
        user = self.request.user
        return (
            Project.objects.for_user(user)
            .annotate(my_role=role_subquery(user, "pk"), experiment_count=Count("experiments", distinct=True))
            .select_related("created_by")
            .prefetch_related(Prefetch("memberships", Membership.objects.select_related("user")))
        )

    def perform_destroy(self, project):
        if project.experiments.active().exists():
            raise Conflict("Cancel or pause the project's running experiments first.")
        try:
            with transaction.atomic():
                # Experiments first: they protect their datasets, which the project's cascade reaches too.
                project.experiments.all().delete()
                project.delete()
        except ProtectedError:  # an experiment created meanwhile
            raise Conflict("The project changed while it was being deleted; try again.") from None

    @extend_schema(request=team.MemberInviteSerializer, responses={200: s.MemberSerializer(many=True), 409: CONFLICT})
    @action(detail=True, methods=["get", "post"])
    def members(self, request, pk=None):
        """GET lists the members; POST {"username" or "email", "role"} adds a member or changes a
        role (owners)."""
        project = self.get_object()
        if request.method == "POST":
            serializer = team.MemberInviteSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            try:
                project.set_member_role(serializer.validated_data["user"], serializer.validated_data["role"],
                                        by=request.user)  # fmt: skip
            except StateError as exc:  # the last owner
                raise Conflict(str(exc)) from None
        members = project.memberships.select_related("user").order_by("user__username")
        return Response(s.MemberSerializer(members, many=True).data)

    @extend_schema(request=None, responses={204: None, 404: None, 409: CONFLICT})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<username>[^/]+)")
    def remove_member(self, request, pk=None, username=None):
        project = self.get_object()
        membership = project.memberships.select_related("user").filter(user__username=username).first()
        try:
            if membership is None:
                raise Membership.DoesNotExist
            project.remove_member(membership.user, by=request.user)
        except Membership.DoesNotExist:  # also when removed meanwhile
            return Response({"detail": f"{username!r} is not a member."}, status=status.HTTP_404_NOT_FOUND)
        except StateError as exc:  # the last owner
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# Datasets: experiments/api/datasets.py (uploads, previews, samples) ------------------------------


# Experiments ------------------------------------------------------------------------------------
def _verb_schema(summary: str):
    return extend_schema(summary=summary, request=None, responses={200: s.ExperimentSerializer, 409: CONFLICT})


@extend_schema_view(
    update=extend_schema(responses={200: s.ExperimentSerializer, 409: CONFLICT}),
    partial_update=extend_schema(responses={200: s.ExperimentSerializer, 409: CONFLICT}),
    destroy=extend_schema(responses={204: None, 409: CONFLICT}),
)
class ExperimentViewSet(ScopedViewSet, viewsets.ModelViewSet):
    """Searches. Edited while draft, deleted while draft or finished; started, paused, resumed and
    cancelled through their actions. `?project=ID&status=running&status=queued` filter the list."""

    serializer_class = s.ExperimentSerializer
    filterset_class = ExperimentFilter
    ordering_fields = ["created_at", "name", "status", "started_at", "finished_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        user = self.request.user
        return (
            Experiment.objects.for_user(user)
            .annotate(my_role=role_subquery(user))
            .select_related("created_by")
        )

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None:
            Experiment.attach_trial_summaries(page)  # two queries for the page, not two per row
        return page

    def perform_create(self, serializer):
        role = serializer.validated_data["project"].require_role(self.request.user, Role.EDITOR)
        serializer.save().my_role = role

    def perform_update(self, serializer):
        try:
            serializer.save()
        except StateError as exc:
            raise Conflict(str(exc)) from None

    def perform_destroy(self, experiment):
        # Conditional delete: a start racing this request either wins (and the delete finds no
        # draft) or loses (and its UPDATE finds no row); a queued experiment is never orphaned.
        deletable = (ExperimentStatus.DRAFT, *TERMINAL_STATUSES)
        deleted, _ = Experiment.objects.filter(pk=experiment.pk, status__in=deletable).delete()
        if not deleted:
            raise Conflict(f"A {experiment.status} experiment can not be deleted; cancel it first.")

    def _run_verb(self, verb: str) -> Response:
        experiment = self.get_object()
        try:
            # One transaction: the status change commits before the worker message goes out
            # (Experiment.start/resume enqueue on commit).
            with transaction.atomic():
                getattr(experiment, verb)(by=self.request.user)
        except StateError as exc:
            raise Conflict(str(exc)) from None
        return Response(self.get_serializer(experiment).data)

    @_verb_schema("Start a draft experiment")
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._run_verb("start")

    @_verb_schema("Pause: running trials finish, no new ones start")
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._run_verb("pause")

    @_verb_schema("Resume a paused experiment")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._run_verb("resume")

    @_verb_schema("Cancel: queued trials are cancelled, running ones stop at their next epoch")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._run_verb("cancel")

    @extend_schema(summary="Copy the configuration into a new draft", request=None,
                   responses={201: s.ExperimentSerializer})  # fmt: skip
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        source = self.get_object()
        clone = Experiment.objects.create(cloned_from=source, created_by=request.user, **s.clone_config(source))
        clone.my_role = source.my_role
        return Response(self.get_serializer(clone).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Everything the experiment page draws, with the sequence number to resume events from",
                   responses={200: s.SnapshotSerializer})  # fmt: skip
    @action(detail=True, methods=["get"])
    def snapshot(self, request, pk=None):
        # Read the sequence number before any query: an event published meanwhile has a larger
        # number, so the page applies it even if the rows below already include it (events are
        # idempotent upserts); reading it after could skip an event the rows do not include.
        seq = self._current_seq(int(pk))
        experiment = self.get_object()
        trials = snapshot_rows(experiment.trials.order_by("number"))
        experiment.trial_counts = {}
        for trial in trials:
            experiment.trial_counts[trial.state] = experiment.trial_counts.get(trial.state, 0) + 1
        experiment.best = best_of(trials, state=attrgetter("state"), objective=attrgetter("objective"),
                                  params=lambda t: params_of(t.metrics), number=attrgetter("number"))

        running = [t.pk for t in trials if t.state == TrialState.RUNNING]
        finished = sorted((t for t in trials if t.finished_at and t.started_at),
                          key=lambda t: (t.finished_at, t.number))[-SNAPSHOT_FINISHED_CURVES:]  # fmt: skip
        curves: dict[int, list[dict]] = {pk: [] for pk in [*running, *(t.pk for t in finished)]}
        points = TrialMetric.objects.filter(trial_id__in=list(curves)).order_by("trial_id", "step")
        for trial_id, step, values in points.values_list("trial_id", "step", "values"):
            curves[trial_id].append({"step": step, **values})

        # One-shot jobs (supernet / DARTS): every epoch's point, shaped like experiment.progress events.
        progress = ExperimentProgress.objects.filter(experiment_id=experiment.pk).order_by("phase", "step")
        return Response({
            "seq": seq,
            "experiment": self.get_serializer(experiment).data,
            "trials": [payloads.trial_summary(t) for t in trials],
            "curves": curves,
            "progress": [{**values, "phase": phase, "step": step}
                         for phase, step, values in progress.values_list("phase", "step", "values")],
        })  # fmt: skip

    @staticmethod
    def _current_seq(experiment_id: int) -> int:
        try:
            return broadcast.current_seq(experiment_id)
        except (redis.RedisError, OSError):
            # No Redis means no workers and no live events either: the rows are still worth showing.
            log.warning("no sequence number for experiment %s: Redis is unreachable", experiment_id)
            return 0


# Trials -------------------------------------------------------------------------------------------
class TrialViewSet(ScopedViewSet, viewsets.ReadOnlyModelViewSet):
    """Trials, `?experiment=ID&state=completed&ordering=-objective` (unscored trials sort last).
    The detail adds the per-epoch points and the whole error text."""

    filterset_class = TrialFilter
    ordering_fields = ["number", "objective", "created_at", "started_at", "finished_at", "duration_s", "state"]
    ordering = ["experiment_id", "number"]

    def get_queryset(self):
        user = self.request.user
        queryset = Trial.objects.for_user(user).annotate(my_role=role_subquery(user, "experiment__project"))
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(Prefetch("points", TrialMetric.objects.order_by("step")))
        return queryset

    def get_serializer_class(self):
        return s.TrialDetailSerializer if self.action == "retrieve" else s.TrialSerializer


# Artifacts ----------------------------------------------------------------------------------------
class ArtifactViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Exported models of an experiment (`?experiment=ID`, `?trial=ID`); `download/` streams the
    file. Packages made on request (experiments/jobs/packages.py) show their job's status and progress."""

    serializer_class = s.ArtifactSerializer
    filterset_fields = ["experiment", "kind", "trial", "status"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        user = self.request.user
        return (
            Artifact.objects.for_user(user)
            .annotate(my_role=role_subquery(user, "experiment__project"))
            .select_related("trial")
        )

    @extend_schema(responses={(200, "application/zip"): bytes, 409: CONFLICT})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        artifact = self.get_object()
        if artifact.status != ArtifactStatus.READY or not artifact.file:
            raise Conflict(f"This package is {artifact.status}; it can be downloaded once it is ready.")
        name = artifact.file.name.rsplit("/", 1)[-1]
        # Streamed from storage in blocks (FileResponse), never read into memory whole.
        stream = artifact.file.storage.open(artifact.file.name, "rb")
        response = FileResponse(stream, as_attachment=True, filename=name, content_type="application/zip")
        artifact.record_download(request.user)  # once the file is there to be sent
        return response


# Registry ---------------------------------------------------------------------------------------
class RegistryView(APIView):
    """Every space, strategy, estimator and one-shot method with its options (one loop over the
    registries, serializers.COMPONENTS), the built-in datasets and devices:
    what a new-experiment form offers."""

    @extend_schema(responses={200: s.RegistrySerializer})
    def get(self, request):
        return Response({
            **{component.listing: component.registry.describe() for component in s.COMPONENTS.values()},
            "benchmark_tables": list_tables(),
            "datasets": dict(BUILTIN_DATASETS),
            "devices": list(s.DEVICES),
        })  # fmt: skip
