"""Pages: compare experiments side by side, and "clone and edit" an experiment.

    /projects/<id>/compare/?ids=3,5,8   charts and table; the data comes from /api/experiments/compare/
    /experiments/<id>/clone/            the new-experiment form, prefilled with this experiment's
                                        configuration (seed included); saving creates the clone

Both fetch through `for_user`, so an experiment of another project is a 404; cloning needs the
editor role (403 for viewers).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from ..api.compare import compared_experiments, parse_ids
from ..choices import Role
from ..forms import CloneForm
from ..models import Experiment, Project


# Compare --------------------------------------------------------------------------------------------
@login_required
def experiment_compare(request, pk: int):
    project = get_object_or_404(Project.objects.for_user(request.user), pk=pk)
    raw = request.GET.getlist("ids")
    if len(raw) > 1:
        # The project page's checkboxes send ids=3&ids=5: answer with the short, shareable form.
        joined = ",".join(part for part in raw if part.strip())
        return redirect(
            f"{reverse('experiment-compare', args=[project.pk])}?{urlencode({'ids': joined}, safe=',')}"
        )
    try:
        ids = parse_ids(raw)
    except ValueError as exc:
        return _picker(request, project, ids=[], problem=f"Cannot compare: {exc}.", status=400)
    if len(ids) < 2:
        return _picker(request, project, ids=ids, problem="Pick at least two experiments to compare.")
    experiments = compared_experiments(request.user, ids, project.pk)  # 404 for any foreign id
    query = ",".join(map(str, ids))
    context = {
        "project": project,
        "experiments": experiments,
        "ids": query,
        "csv_url": f"{reverse('api:experiment-compare')}?ids={query}&format=csv",
        "json_url": f"{reverse('api:experiment-compare')}?ids={query}&format=json",
        "page": {
            "project": project.pk,
            "ids": ids,
            "wsPaths": {e.pk: f"/ws/experiments/{e.pk}/" for e in experiments},
        },
    }  # fmt: skip
    return render(request, "experiments/compare.html", context)


def _picker(request, project: Project, *, ids: list[int], problem: str, status: int = 200):
    """The compare page without a comparison: says what is missing and offers the project's
    experiments to pick from (the ones already asked for stay ticked)."""
    experiments = project.experiments.select_related("dataset").only(
        "id", "name", "status", "space", "strategy", "estimator", "dataset__name", "created_at"
    )
    context = {"project": project, "picker": experiments, "picked": set(ids), "problem": problem,
               "refused": status >= 400}  # fmt: skip
    return render(request, "experiments/compare.html", context, status=status)


# Clone and edit --------------------------------------------------------------------------------------
@login_required
def experiment_clone(request, pk: int):
    source = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    project = source.project
    project.require_role(request.user, Role.EDITOR)
    form = CloneForm(source, request.POST if request.method == "POST" else None)
    if request.method != "POST":
        messages.info(request, f"Configuration of “{source.name}” copied (seed {source.seed} included): "
                               "change what you like, then create the new experiment.")  # fmt: skip
        return render(request, "experiments/experiment_form.html", {"project": project, "form": form})

    with transaction.atomic():
        clone = form.save(request)
        start = clone is not None and form.cleaned_data.get("start_now")
        if start:
            clone.start(by=request.user)
    if clone is None:
        return render(request, "experiments/experiment_form.html", {"project": project, "form": form})
    messages.success(
        request,
        f"Experiment “{clone.name}” created from “{source.name}”"
        + (" and started." if start else " as a draft."),
    )
    return redirect("experiment-detail", pk=clone.pk)
