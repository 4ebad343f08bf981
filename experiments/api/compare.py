"""Comparing experiments and exporting results.

    GET /api/experiments/compare/?ids=3,5,8[&project=ID]   the compare page's data: per experiment
        its table row and a compact, column-wise series of its trials
    GET /api/experiments/compare/?ids=3,5,8&format=csv|json the comparison table as a download
    GET /api/experiments/<id>/trials.csv | trials.json      every trial of one experiment, streamed

Every read goes through `Experiment.objects.for_user`, so an experiment of another project is a 404
(for the comparison: if any one of the ids is); any member, viewers included, may read and download.
The cost is a constant number of queries however many trials there are: trials are read with
values_list (JSON keys extracted by the database), never as model instances.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from operator import itemgetter

from django.http import Http404, StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from search_engine.rules import best_of, counts_against_budget, error_line, params_of

from ..models import Experiment, Trial
from .filters import MAX_ID

MAX_COMPARED = 20
# Rows per chunk of a streamed export: one write per chunk, not one per trial.
EXPORT_CHUNK = 500

# The comparison table, in column order (CSV header and JSON keys alike).
TABLE_COLUMNS = (
    "id", "name", "project", "status", "dataset", "space", "strategy", "estimator", "seed",
    "best_trial", "best_objective", "best_val_acc", "best_test_acc", "best_params", "best_flops",
    "best_latency_ms", "trials_spent", "budget_trials", "wall_time_s", "started_at", "finished_at",
)  # fmt: skip
# The compare page's per-trial series, one list per column.
SERIES_COLUMNS = ("id", "number", "state", "objective", "finished_s", "params", "latency_ms")
# A trial export, in column order.
TRIAL_METRICS = ("val_acc", "test_acc", "params", "flops", "size_mb", "latency_ms", "train_time_s")
TRIAL_COLUMNS = (
    "number", "state", "objective", *TRIAL_METRICS, "budget", "duration_s", "started_at", "finished_at",
    "error", "arch",
)  # fmt: skip


# Reading ids ------------------------------------------------------------------------------------
def parse_ids(values: Iterable[str]) -> list[int]:
    """`?ids=3,5,8` (or `?ids=3&ids=5`) -> [3, 5, 8], duplicates dropped, order kept.
    ValueError with a message a person can act on for anything that is not an id."""
    ids: list[int] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or int(part) > MAX_ID:
                raise ValueError(f"{part!r} is not an experiment id")
            if int(part) not in ids:
                ids.append(int(part))
    if len(ids) > MAX_COMPARED:
        raise ValueError(f"at most {MAX_COMPARED} experiments can be compared at once, got {len(ids)}")
    return ids


def compared_experiments(user, ids: list[int], project_id: int | None = None) -> list[Experiment]:
    """The experiments in the order asked for; Http404 unless every one is visible to the user
    (and, with `project_id`, in that project): a comparison never half-shows a foreign id."""
    experiments = Experiment.objects.for_user(user).select_related("dataset").filter(pk__in=ids)
    if project_id is not None:
        experiments = experiments.filter(project_id=project_id)
    found = {e.pk: e for e in experiments}
    if len(found) != len(ids):
        raise Http404("No such experiment.")
    return [found[pk] for pk in ids]


# The comparison ---------------------------------------------------------------------------------
def _seconds(later, earlier) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _series(experiments: list[Experiment]) -> tuple[dict, dict, dict]:
    """One query for every trial's compact row: per experiment the column-wise series, the trials
    spent and the best trial as (objective, number, trial id), both by search_engine.rules."""
    ids = [e.pk for e in experiments]
    by_id = {e.pk: e for e in experiments}
    series = {pk: {column: [] for column in SERIES_COLUMNS} for pk in ids}
    spent = dict.fromkeys(ids, 0)
    trials: dict[int, list[tuple]] = {pk: [] for pk in ids}  # (state, objective, params, number, trial id)
    rows = (
        Trial.objects.filter(experiment_id__in=ids)
        .order_by("experiment_id", "number")
        .values_list(
            "experiment_id",
            "id",
            "number",
            "state",
            "objective",
            "started_at",
            "finished_at",
            "metrics__params",
            "metrics__latency_ms",
        )
    )
    for experiment_id, pk, number, state, objective, started_at, finished_at, params, latency in rows:
        column = series[experiment_id]
        column["id"].append(pk)
        column["number"].append(number)
        column["state"].append(state)
        column["objective"].append(objective)
        column["finished_s"].append(_seconds(finished_at, by_id[experiment_id].started_at))
        column["params"].append(params)
        column["latency_ms"].append(latency)
        # A trial that never started was never trained: the static checks refused it.
        spent[experiment_id] += counts_against_budget(state, trained=started_at is not None)
        trials[experiment_id].append((state, objective, params_of({"params": params}), number, pk))
    best = {}
    for experiment_id, rows_of_one in trials.items():
        top = best_of(rows_of_one, state=itemgetter(0), objective=itemgetter(1), params=itemgetter(2),
                      number=itemgetter(3))  # fmt: skip
        if top is not None:
            best[experiment_id] = top[1], top[3], top[4]
    return series, spent, best


def comparison(experiments: list[Experiment]) -> list[dict]:
    """Per experiment: the table row plus `series`. Two queries whatever the trial count: every
    trial's compact row, then the metrics of each experiment's best trial."""
    series, spent, best = _series(experiments)
    best_metrics = dict(
        Trial.objects.filter(pk__in=[b[2] for b in best.values()]).values_list("id", "metrics")
    )
    now = timezone.now()
    out = []
    for experiment in experiments:
        top = best.get(experiment.pk)
        metrics = (best_metrics.get(top[2]) or {}) if top else {}
        out.append({
            "id": experiment.pk,
            "name": experiment.name,
            "project": experiment.project_id,
            "status": experiment.status,
            "dataset": experiment.dataset.name,
            "space": experiment.space,
            "strategy": experiment.strategy,
            "estimator": experiment.estimator,
            "seed": experiment.seed,
            "best_trial": top[1] if top else None,
            "best_trial_id": top[2] if top else None,
            "best_objective": top[0] if top else None,
            "best_val_acc": metrics.get("val_acc"),
            "best_test_acc": metrics.get("test_acc"),
            "best_params": metrics.get("params"),
            "best_flops": metrics.get("flops"),
            "best_latency_ms": metrics.get("latency_ms"),
            "trials_spent": spent[experiment.pk],
            "budget_trials": experiment.budget_trials,
            "wall_time_s": _seconds(experiment.finished_at or now, experiment.started_at),
            "started_at": _iso(experiment.started_at),
            "finished_at": _iso(experiment.finished_at),
            "series": series[experiment.pk],
        })  # fmt: skip
    return out


# Streaming ----------------------------------------------------------------------------------------
class _Echo:
    """csv.writer writes here and gets the line back, so rows can be yielded as they are made."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(header: Iterable[str], rows: Iterable[Iterable]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    chunk: list[str] = []
    for row in rows:
        chunk.append(writer.writerow(row))
        if len(chunk) >= EXPORT_CHUNK:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def _json_array(items: Iterable[dict]) -> Iterator[str]:
    yield "["
    chunk: list[str] = []
    first = True
    for item in items:
        chunk.append(("" if first else ",") + json.dumps(item))
        first = False
        if len(chunk) >= EXPORT_CHUNK:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "]"


def download(chunks: Iterator[str], filename: str, fmt: str) -> StreamingHttpResponse:
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# A text cell starting with one of these runs as a formula in a spreadsheet (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """`text` as a spreadsheet shows it literally: a leading formula character gets a `'` before it."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


def _cell(value):
    """CSV cells: JSON for structures (architectures, budgets), empty for missing values, text
    made safe for spreadsheets (numbers stay numbers: -0.5 is no formula)."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return csv_safe(value)
    return value


# Trials of one experiment -----------------------------------------------------------------------------
def trial_records(experiment: Experiment) -> Iterator[dict]:
    """Every trial as a flat record (TRIAL_COLUMNS), read in chunks with a server-side cursor where
    the database has one: memory stays flat however many trials the experiment has."""
    rows = (
        experiment.trials.order_by("number")
        .values_list(
            "number",
            "state",
            "objective",
            *(f"metrics__{m}" for m in TRIAL_METRICS),
            "budget",
            "duration_s",
            "started_at",
            "finished_at",
            "error",
            "arch",
        )
        .iterator(chunk_size=2000)
    )
    for row in rows:
        record = dict(zip(TRIAL_COLUMNS, row, strict=True))
        record["started_at"] = _iso(record["started_at"])
        record["finished_at"] = _iso(record["finished_at"])
        record["error"] = error_line(record["error"])
        yield record


def export_filename(experiment: Experiment, fmt: str) -> str:
    slug = slugify(experiment.name)[:60] or "experiment"
    return f"experiment-{experiment.pk}-{slug}-trials.{fmt}"


def experiment_header(experiment: Experiment) -> dict:
    return {
        "id": experiment.pk, "name": experiment.name, "project": experiment.project_id,
        "dataset": experiment.dataset.name, "space": experiment.space, "space_config": experiment.space_config,
        "strategy": experiment.strategy, "strategy_config": experiment.strategy_config,
        "estimator": experiment.estimator, "estimator_config": experiment.estimator_config,
        "constraints": experiment.constraints, "seed": experiment.seed, "budget_trials": experiment.budget_trials,
        "status": experiment.status, "started_at": _iso(experiment.started_at),
        "finished_at": _iso(experiment.finished_at),
    }  # fmt: skip


# Views ------------------------------------------------------------------------------------------------
class CSVRenderer(BaseRenderer):
    """Declared so that content negotiation accepts `?format=csv`; the views stream CSV themselves."""

    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode() if data is not None else b""


class CompareView(APIView):
    """Experiments side by side: per experiment its table row and, column-wise, every trial's
    number, state, objective, seconds since the experiment started when it finished, params and
    latency. `&format=csv` or `&format=json` downloads the table."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    @extend_schema(
        summary="Compare experiments (2 to 20 ids)",
        parameters=[
            OpenApiParameter(
                "ids", str, required=True, description="comma-separated experiment ids, e.g. 3,5,8"
            ),
            OpenApiParameter("project", int, description="refuse (404) ids outside this project"),
            OpenApiParameter("format", str, enum=["json", "csv"], description="download the table instead"),
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT),
            400: OpenApiResponse(description="bad ids"),
            404: OpenApiResponse(description="an id is not an experiment the user can see"),
        },
    )
    def get(self, request):
        try:
            ids = parse_ids(request.query_params.getlist("ids"))
        except ValueError as exc:
            raise ValidationError({"ids": [str(exc)]}) from None
        if len(ids) < 2:
            raise ValidationError({"ids": ["pick at least two experiments to compare, e.g. ?ids=3,5"]})
        project = request.query_params.get("project")
        if project is not None and (not project.isdigit() or int(project) > MAX_ID):
            raise ValidationError({"project": [f"{project!r} is not a project id"]})
        experiments = compared_experiments(request.user, ids, int(project) if project else None)
        rows = comparison(experiments)

        fmt = request.query_params.get("format")
        if fmt not in ("csv", "json"):
            return Response({"experiments": rows})
        filename = f"compare-{'-'.join(map(str, ids))}.{fmt}"
        table = [{column: row[column] for column in TABLE_COLUMNS} for row in rows]
        if fmt == "csv":
            lines = _csv_lines(TABLE_COLUMNS, ([_cell(r[c]) for c in TABLE_COLUMNS] for r in table))
            return download(lines, filename, "csv")
        return download(iter([json.dumps(table, indent=1)]), filename, "json")


class TrialExportView(APIView):
    """Every trial of an experiment as CSV or JSON, streamed: number, state, objective, the key
    metrics, budget, duration, the error line and the architecture (a JSON string in CSV)."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    @extend_schema(
        summary="Download an experiment's trials",
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, "application/json"): OpenApiTypes.OBJECT},
    )
    def get(self, request, pk: int, fmt: str):
        experiment = Experiment.objects.for_user(request.user).select_related("dataset").filter(pk=pk).first()
        if experiment is None:
            raise Http404("No such experiment.")
        records = trial_records(experiment)
        filename = export_filename(experiment, fmt)
        if fmt == "csv":
            lines = _csv_lines(TRIAL_COLUMNS, ([_cell(r[c]) for c in TRIAL_COLUMNS] for r in records))
            return download(lines, filename, "csv")
        head = json.dumps(experiment_header(experiment))
        return download(_json_document(head, records), filename, "json")


def _json_document(head: str, records: Iterator[dict]) -> Iterator[str]:
    yield f'{{"experiment": {head}, "trials": '
    yield from _json_array(records)
    yield "}"
