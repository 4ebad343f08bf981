"""Architecture pictures (drawn by the engine: search_engine/spaces/drawing.py).

    /trials/<id>/arch.svg                 one trial's drawing as an SVG document (the experiment
                                          page's table tooltip and the compare page fetch it)
    /experiments/<id>/diff/?a=<n>&b=<n>   two trials of one experiment, by number: both drawings
                                          with the changed choices highlighted, both learning
                                          curves overlaid; without a and b, a picker

Both fetch through `for_user`, so a trial of another project is a 404.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.safestring import mark_safe

from search_engine.registry import ConfigError, create_space
from search_engine.spaces.drawing import changed_choices, choice_list, draw_architecture

from ..models import Experiment, Trial


def space_of(experiment: Experiment):
    """The experiment's search space, or None when its stored config no longer builds one."""
    try:
        return create_space(experiment.space, **(experiment.space_config or {}))
    except (ConfigError, TypeError):
        return None


def arch_svg(space, arch: dict, highlight=()) -> str:
    """The drawing of `arch` (SVG text, every label escaped by the engine), safe to inline; a
    stored architecture the space no longer accepts is shown as its list of choices."""
    try:
        if space is not None:
            return mark_safe(draw_architecture(space, arch or {}, highlight))  # escaped by the engine
    except ConfigError:
        pass
    return mark_safe(choice_list(arch or {}, highlight, getattr(space, "name", "")))


def arch_string(space, arch: dict) -> str:
    """The benchmark's string form (NAS-Bench-201), "" for spaces without one."""
    to_string = getattr(space, "to_string", None)
    try:
        return to_string(arch) if callable(to_string) else ""
    except ConfigError:
        return ""


@login_required
def trial_arch_svg(request, pk: int):
    trial = get_object_or_404(Trial.objects.for_user(request.user).select_related("experiment"), pk=pk)
    response = HttpResponse(arch_svg(space_of(trial.experiment), trial.arch), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=3600"  # a trial's architecture never changes
    return response


def _trial_side(space, trial: Trial, changed: list[str]) -> dict:
    return {
        "trial": trial,
        "svg": arch_svg(space, trial.arch, changed),
        "string": arch_string(space, trial.arch),
        "points": list(trial.points.order_by("step").values("step", "values")),
    }


def _picked(experiment: Experiment, raw: str | None):
    """(trial, problem) for one `a` / `b` parameter: a trial number of this experiment."""
    if raw is None or not raw.strip():
        return None, ""
    if not raw.strip().isdigit():
        return None, f"“{raw}” is not a trial number."
    trial = experiment.trials.filter(number=int(raw)).first()
    return trial, "" if trial else f"Trial #{int(raw)} is not in this experiment."


@login_required
def trial_diff(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
    (a, problem_a), (b, problem_b) = _picked(experiment, request.GET.get("a")), _picked(experiment, request.GET.get("b"))
    context = {"experiment": experiment, "project": experiment.project, "a": request.GET.get("a", ""),
               "b": request.GET.get("b", ""), "problems": [p for p in (problem_a, problem_b) if p]}  # fmt: skip
    if a is None or b is None:
        status = 404 if any("is not in" in p for p in context["problems"]) else 400 if context["problems"] else 200
        return render(request, "experiments/trial_diff.html", context, status=status)
    space = space_of(experiment)
    changed = changed_choices(space, a.arch or {}, b.arch or {})
    sides = [_trial_side(space, a, changed), _trial_side(space, b, changed)]
    context.update(
        sides=sides,
        changes=[(label, (a.arch or {}).get(label), (b.arch or {}).get(label)) for label in changed],
        page={"trials": [{"number": s["trial"].number, "id": s["trial"].pk, "points": s["points"]} for s in sides]},
    )
    return render(request, "experiments/trial_diff.html", context)
