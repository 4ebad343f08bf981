"""Experiment and trial pages. The experiment page's trials come from the snapshot API and the
websocket, never from the template, so its cost does not grow with the number of trials."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from search_engine.rules import CONSTRAINT_LIMITS

from ..choices import ACTIVE_STATUSES, TERMINAL_STATUSES, ExperimentStatus, Role, TrialState, role_at_least
from ..forms import ExperimentForm, RenameForm
from ..models import Experiment, Project, StateError, Trial
from .architectures import arch_string, arch_svg, space_of

ACTIONS = ("start", "pause", "resume", "cancel")
# Which statuses each button applies to (the model's verbs decide; this only hides buttons).
ACTION_STATUSES = {
    "start": [ExperimentStatus.DRAFT],
    "pause": list(ACTIVE_STATUSES),
    "resume": [ExperimentStatus.PAUSED],
    "cancel": [ExperimentStatus.DRAFT, *ACTIVE_STATUSES, ExperimentStatus.PAUSED],
}


@login_required
def experiment_new(request, pk: int):
    project = get_object_or_404(Project.objects.for_user(request.user), pk=pk)
    project.require_role(request.user, Role.EDITOR)
    # The dataset page's "New experiment" names its dataset: ?dataset=<id>.
    initial = {"dataset": request.GET["dataset"]} if request.GET.get("dataset", "").isdigit() else {}
    form = ExperimentForm(project, request.POST or None, initial=initial)
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


def _page_data(experiment: Experiment, can_control: bool) -> dict:
    """What the page's script reads: its URLs, the rules' keys and the button states."""
    return {
        "id": experiment.pk,
        "project": experiment.project_id,
        "wsPath": f"/ws/experiments/{experiment.pk}/",
        "canControl": can_control,
        "budgetTrials": experiment.budget_trials,
        "constraints": experiment.constraints,
        "choices": _space_choices(experiment),
        "actionStatuses": ACTION_STATUSES,
    }


@login_required
def experiment_detail(request, pk: int):
    experiment = get_object_or_404(
        Experiment.objects.for_user(request.user).select_related("project", "dataset", "created_by"), pk=pk
    )
    role = experiment.project.role_of(request.user)
    page = _page_data(experiment, can_control=role_at_least(role, Role.EDITOR))
    limits = experiment.constraints or {}
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
                (metric, limits[limit]) for metric, limit in CONSTRAINT_LIMITS.items() if limits.get(limit) is not None
            ],
            "deletable": experiment.status in (ExperimentStatus.DRAFT, *TERMINAL_STATUSES),
        },
    )


def _space_choices(experiment: Experiment) -> dict:
    """Label -> allowed values, for the parallel-coordinates axes (categorical -> index)."""
    space = space_of(experiment)
    return space.choices() if space is not None else {}


@login_required
@require_POST
def experiment_rename(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    experiment.project.require_role(request.user, Role.EDITOR)
    RenameForm.submit(request, lambda name: experiment.rename(name, by=request.user))
    return redirect("experiment-detail", pk=experiment.pk)


@login_required
@require_POST
def experiment_delete(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    experiment.project.require_role(request.user, Role.EDITOR)
    try:
        experiment.delete_by(request.user)
    except StateError as exc:
        messages.error(request, f"Cannot delete: {exc}.")
        return redirect("experiment-detail", pk=experiment.pk)
    messages.success(request, f"Experiment “{experiment.name}” deleted.")
    return redirect("project-detail", pk=experiment.project_id)


@login_required
@require_POST
def experiment_action(request, pk: int, action: str):
    if action not in ACTIONS:
        raise Http404
    experiment = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    experiment.project.require_role(request.user, Role.EDITOR)
    try:
        # One transaction, as in the API: the status change commits before the worker message
        # goes out (start/resume enqueue on commit) and cancel's two updates land together.
        with transaction.atomic():
            getattr(experiment, action)(by=request.user)
    except StateError as exc:
        messages.error(request, f"Cannot {action}: {exc}.")
    return redirect("experiment-detail", pk=experiment.pk)


def _constraint_rows(trial: Trial) -> list[dict]:
    """Each constrained or measured metric with its limit; `ok` as the worker recorded it."""
    metrics, measured_all = trial.metrics or {}, trial.constraint_values or {}
    limits = trial.experiment.constraints or {}
    rows = []
    for key, limit_key in CONSTRAINT_LIMITS.items():
        measured = measured_all.get(key) or {}
        value = measured.get("value", metrics.get(key))
        limit = measured.get("limit", limits.get(limit_key))
        if value is None and limit is None:
            continue
        ok = measured.get("ok", limit is None or value is None or value <= limit)
        rows.append({"name": key, "value": value, "limit": limit, "ok": ok})
    return rows


@login_required
def trial_detail(request, pk: int):
    trial = get_object_or_404(
        Trial.objects.for_user(request.user).select_related("experiment__project", "experiment__dataset"),
        pk=pk,
    )
    experiment = trial.experiment
    points = list(trial.points.values("step", "values"))
    metrics = trial.metrics or {}
    space = space_of(experiment)
    return render(
        request,
        "experiments/trial_detail.html",
        {
            "trial": trial,
            "experiment": experiment,
            "project": experiment.project,
            "metrics": [(k, round(v, 4) if isinstance(v, float) else v) for k, v in sorted(metrics.items())],
            "arch": list((trial.arch or {}).items()),
            "arch_svg": arch_svg(space, trial.arch),
            "arch_string": arch_string(space, trial.arch),
            "constraint_rows": _constraint_rows(trial),
            "page": {
                "trial": trial.pk,
                "experiment": experiment.pk,
                "state": trial.state,
                "wsPath": f"/ws/experiments/{experiment.pk}/",
                "points": points,
            },
        },
    )
