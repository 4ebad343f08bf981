"""Pages: compare experiments side by side, and "clone and edit" an experiment.

    /projects/<id>/compare/?ids=3,5,8   charts and table; the data comes from /api/experiments/compare/
    /experiments/<id>/clone/            the new-experiment form, prefilled with this experiment's
                                        configuration (seed included); saving creates the clone

Both fetch through `for_user`, so an experiment of another project is a 404; cloning needs the
editor role (403 for viewers).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from .api.compare import compared_experiments, parse_ids
from .choices import Role
from .forms import (
    CONSTRAINT_FIELDS,
    DIRECT_FIELDS,
    ONESHOT_PREFIX,
    REGISTRIES,
    ExperimentForm,
    option_field_name,
)
from .models import Experiment, Project
from .views import _require


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
            "dataUrl": f"{reverse('api:experiment-compare')}?ids={query}&project={project.pk}",
            "wsPaths": {e.pk: f"/ws/experiments/{e.pk}/" for e in experiments},
            "experimentUrl": reverse("experiment-detail", args=[0]),
            "trialUrl": reverse("trial-detail", args=[0]),
            "csvUrl": reverse("api:experiment-trials-csv", args=[0]),
            "jsonUrl": reverse("api:experiment-trials-json", args=[0]),
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
def clone_initial(source: Experiment, form: ExperimentForm) -> dict:
    """The new-experiment form's values for a copy of `source`: its name with " (copy)", dataset,
    components with every stored option, constraints, budget, seed and device. The clone starts
    as a draft unless the person ticks "Start right away"."""
    initial = {name: getattr(source, name) for name in DIRECT_FIELDS}
    initial.update(name=f"{source.name} (copy)"[:100], dataset=str(source.dataset_id), start_now=False)
    initial.update(
        {k: v for k, v in (source.constraints or {}).items() if k in CONSTRAINT_FIELDS and v is not None}
    )
    for kind in REGISTRIES:
        component = getattr(source, kind)
        for option, value in (getattr(source, f"{kind}_config") or {}).items():
            field_name = option_field_name(kind, component, option)
            if field_name in form.fields:  # an option the registry no longer has keeps its default
                initial[field_name] = _as_input(form.fields[field_name], value)
    if source.oneshot:
        # The job runs again in the copy; the trial budget is the one asked for, not the one the
        # job's result trimmed it to.
        name = source.oneshot.get("name", "")
        initial["method"] = ONESHOT_PREFIX + name
        initial["budget_trials"] = (source.oneshot_result or {}).get("budget_trials_requested", source.budget_trials)
        for option, value in (source.oneshot.get("config") or {}).items():
            field_name = option_field_name("oneshot", name, option)
            if field_name in form.fields:
                initial[field_name] = _as_input(form.fields[field_name], value)
    return initial


def _as_input(field: forms.Field, value):
    """A stored option value as its input shows it: lists of words comma-separated (as typed), any
    other list as JSON (the form parses both), so the saved clone gets the same values back."""
    if isinstance(value, list) and not isinstance(field, forms.MultipleChoiceField):
        if all(isinstance(v, str) and "," not in v for v in value) and value:
            return ", ".join(value)
        return json.dumps(value) if value else ""
    return value


class CloneForm(ExperimentForm):
    """The new-experiment form for a copy of `source`. The same inputs and the same validation (the
    form's types, the engine's options, the API's serializer); the one difference is that the new
    row names its source, which the serializer keeps read-only (an API client can not claim a
    lineage), so that the activity log says "cloned" and the page can link back."""

    def __init__(self, source: Experiment, *args, **kwargs):
        super().__init__(source.project, *args, **kwargs)
        self.source = source
        if not self.is_bound:
            self.initial = clone_initial(source, self)

    def save(self, request):
        return super().save(request, cloned_from=self.source)


@login_required
def experiment_clone(request, pk: int):
    source = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    project = source.project
    _require(project, request.user, Role.EDITOR)
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
