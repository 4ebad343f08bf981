"""Project pages: the list of the user's projects, a new project, and a project's page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.shortcuts import get_object_or_404, redirect, render

from ..api.permissions import role_subquery
from ..choices import ACTIVE_STATUSES, Role, TrialState, role_at_least
from ..forms import ProjectForm
from ..models import Project, budget_spent_q


@login_required
def project_list(request):
    projects = Project.objects.for_user(request.user).annotate(
        my_role=role_subquery(request.user, "pk"),
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
    # One query for every row: best score and progress are aggregated, not fetched per experiment.
    experiments = project.experiments.select_related("dataset", "created_by").annotate(
        best_objective=Max("trials__objective", filter=Q(trials__state=TrialState.COMPLETED)),
        n_finished=Count("trials", filter=budget_spent_q("trials__")),
    )
    role = project.role_of(request.user)
    context = {
        "project": project,
        "role": role,
        "can_edit": role_at_least(role, Role.EDITOR),
        "experiments": experiments,
        "datasets": project.datasets.all(),
        "members": project.memberships.select_related("user"),
        "page": {
            "project": project.pk,
            "wsPath": f"/ws/projects/{project.pk}/",
        },
    }
    return render(request, "experiments/project_detail.html", context)
