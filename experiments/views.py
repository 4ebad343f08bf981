"""HTML pages. Each view fetches through `for_user` (a non-member gets 404), calls at most one
verb, and renders; the experiment page's trials come from the snapshot API and the websocket,
never from the template, so its cost does not grow with the number of trials."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from search_engine.registry import ConfigError, create_space

from .choices import ACTIVE_STATUSES, TERMINAL_TRIAL_STATES, ExperimentStatus, Role, TrialState
from .forms import ExperimentForm, ProjectForm
from .models import Experiment, Membership, Project, StateError, Trial

ACTIONS = ("start", "pause", "resume", "cancel")
# Which statuses each button applies to (the model's verbs decide; this only hides buttons).
ACTION_STATUSES = {
    "start": [ExperimentStatus.DRAFT],
    "pause": list(ACTIVE_STATUSES),
    "resume": [ExperimentStatus.PAUSED],
    "cancel": [ExperimentStatus.DRAFT, *ACTIVE_STATUSES, ExperimentStatus.PAUSED],
}
CONSTRAINT_KEYS = (
    ("params", "max_params"),
    ("flops", "max_flops"),
    ("size_mb", "max_size_mb"),
    ("latency_ms", "max_latency_ms"),
)


def _require(project: Project, user, role: str) -> None:
    """403 unless the user's role is at least `role` (membership itself was checked by the
    for_user fetch, so a non-member never gets this far)."""
    if not project.allows(user, role):
        raise PermissionDenied(f"needs the {role} role in this project")


@login_required
def project_list(request):
    my_role = Membership.objects.filter(project=OuterRef("pk"), user=request.user).values("role")[:1]
    projects = Project.objects.for_user(request.user).annotate(
        my_role=Subquery(my_role),
        n_experiments=Count("experiments", distinct=True),
        n_active=Count("experiments", filter=Q(experiments__status__in=ACTIVE_STATUSES), distinct=True),
    )
    return render(request, "experiments/project_list.html", {"projects": projects, "form": ProjectForm()})


@login_required
def project_create(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = Project.create_for(request.user, **form.cleaned_data)
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("project-detail", pk=project.pk)
    return render(request, "experiments/project_form.html", {"form": form})


@login_required
def project_detail(request, pk: int):
    project = get_object_or_404(Project.objects.for_user(request.user), pk=pk)
    budget_spent = Q(trials__state__in=TERMINAL_TRIAL_STATES) & ~Q(
        trials__state=TrialState.INFEASIBLE, trials__started_at__isnull=True
    )
    # One query for every row: best score and progress are aggregated, not fetched per experiment.
    experiments = project.experiments.select_related("dataset", "created_by").annotate(
        best_objective=Max("trials__objective", filter=Q(trials__state=TrialState.COMPLETED)),
        n_finished=Count("trials", filter=budget_spent),
    )
    context = {
        "project": project,
        "role": project.role_of(request.user),
        "experiments": experiments,
        "datasets": project.datasets.all(),
        "members": project.memberships.select_related("user"),
        "page": {
            "project": project.pk,
            "wsPath": f"/ws/projects/{project.pk}/",
            "experimentApi": "/api/experiments/",
            "experimentUrl": reverse("experiment-detail", args=[0]),
        },
    }
    context["can_edit"] = context["role"] in (Role.OWNER, Role.EDITOR)
    return render(request, "experiments/project_detail.html", context)


@login_required
def experiment_new(request, pk: int):
    project = get_object_or_404(Project.objects.for_user(request.user), pk=pk)
    _require(project, request.user, Role.EDITOR)
    form = ExperimentForm(project, request.POST or None)
    experiment = form.save(request) if request.method == "POST" else None
    if experiment is not None:
        start = form.cleaned_data.get("start_now")
        if start:
            with transaction.atomic():
                experiment.start(by=request.user)
        messages.success(
            request,
            f"Experiment “{experiment.name}” created" + (" and started." if start else " as a draft."),
        )
        return redirect("experiment-detail", pk=experiment.pk)
    return render(request, "experiments/experiment_form.html", {"project": project, "form": form})


@login_required
def experiment_detail(request, pk: int):
    experiment = get_object_or_404(
        Experiment.objects.for_user(request.user).select_related("project", "dataset", "created_by"), pk=pk
    )
    role = experiment.project.role_of(request.user)
    page = {
        "id": experiment.pk,
        "project": experiment.project_id,
        "snapshotUrl": f"/api/experiments/{experiment.pk}/snapshot/",
        "apiUrl": f"/api/experiments/{experiment.pk}/",
        "wsPath": f"/ws/experiments/{experiment.pk}/",
        "trialUrl": reverse("trial-detail", args=[0]),
        "canControl": role in (Role.OWNER, Role.EDITOR),
        "budgetTrials": experiment.budget_trials,
        "constraints": experiment.constraints,
        "choices": _space_choices(experiment),
        "actionStatuses": ACTION_STATUSES,
        "artifactsUrl": f"/api/artifacts/?experiment={experiment.pk}",
    }
    return render(
        request,
        "experiments/experiment_detail.html",
        {
            "experiment": experiment,
            "project": experiment.project,
            "role": role,
            "page": page,
            "can_control": page["canControl"],
            "actions": ACTIONS,
            "trial_states": TrialState.choices,
            "allowed_actions": [
                a for a, statuses in ACTION_STATUSES.items() if experiment.status in statuses
            ],
            "artifacts": experiment.artifacts.select_related("trial"),
            "constraints": [
                (k.removeprefix("max_"), v)
                for k, v in (experiment.constraints or {}).items()
                if k.startswith("max_") and v is not None
            ],
        },
    )


def _space_choices(experiment: Experiment) -> dict:
    """Label -> allowed values, for the parallel-coordinates axes (categorical -> index)."""
    try:
        return create_space(experiment.space, **experiment.space_config).choices()
    except (ConfigError, TypeError):
        return {}


@login_required
@require_POST
def experiment_action(request, pk: int, action: str):
    if action not in ACTIONS:
        raise Http404
    experiment = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    _require(experiment.project, request.user, Role.EDITOR)
    try:
        # One transaction, as in the API: the status change commits before the worker message
        # goes out (start/resume enqueue on commit) and cancel's two updates land together.
        with transaction.atomic():
            getattr(experiment, action)(by=request.user)
    except StateError as exc:
        messages.error(request, f"Cannot {action}: {exc}.")
    return redirect("experiment-detail", pk=experiment.pk)


@login_required
def trial_detail(request, pk: int):
    trial = get_object_or_404(
        Trial.objects.for_user(request.user).select_related("experiment__project", "experiment__dataset"),
        pk=pk,
    )
    experiment = trial.experiment
    points = list(trial.points.values("step", "values"))
    metrics = trial.metrics or {}
    constraint_rows = []
    for key, limit_key in CONSTRAINT_KEYS:
        measured = (trial.constraint_values or {}).get(key) or {}
        value = measured.get("value", metrics.get(key))
        limit = measured.get("limit", (experiment.constraints or {}).get(limit_key))
        if value is None and limit is None:
            continue
        ok = measured.get("ok", limit is None or value is None or value <= limit)
        constraint_rows.append({"name": key, "value": value, "limit": limit, "ok": ok})
    return render(
        request,
        "experiments/trial_detail.html",
        {
            "trial": trial,
            "experiment": experiment,
            "project": experiment.project,
            "metrics": [(k, round(v, 4) if isinstance(v, float) else v) for k, v in sorted(metrics.items())],
            "arch": list((trial.arch or {}).items()),
            "constraint_rows": constraint_rows,
            "page": {
                "trial": trial.pk,
                "experiment": experiment.pk,
                "state": trial.state,
                "wsPath": f"/ws/experiments/{experiment.pk}/",
                "points": points,
            },
        },
    )
