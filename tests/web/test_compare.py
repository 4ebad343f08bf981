"""Comparing experiments (page and API), CSV/JSON exports, and "clone and edit" with a reproducible
rerun. Trials are rows made by trial_factory, except in the last test, which runs two tiny searches."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django import forms
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments.choices import ExperimentStatus, TrialState
from experiments.models import ActivityLog, ActivityVerb, Experiment
from tests.web.actors import drain

pytestmark = pytest.mark.django_db

COMPARE_API = "/api/experiments/compare/"




def finished_trial(trial_factory, experiment, *, objective, params, latency_ms=1.0, after_s=10.0, **metrics):
    """A completed trial that finished `after_s` seconds after the experiment started."""
    finished = experiment.started_at + timedelta(seconds=after_s)
    return trial_factory(
        experiment, state=TrialState.COMPLETED, objective=objective, started_at=finished - timedelta(seconds=1),
        finished_at=finished, duration_s=1.0,
        metrics={"val_acc": objective, "params": params, "latency_ms": latency_ms, **metrics},
    )  # fmt: skip


@pytest.fixture
def two_runs(experiment_factory, trial_factory):
    """A finished random search (3 trials: completed, failed, statically infeasible) and an
    evolution search with one completed and one running trial."""
    started = timezone.now() - timedelta(minutes=5)
    random_run = experiment_factory(name="Random", status=ExperimentStatus.COMPLETED, started_at=started,
                                    finished_at=started + timedelta(seconds=90))  # fmt: skip
    evolution = experiment_factory(name="Evolution", strategy="evolution", status=ExperimentStatus.RUNNING,
                                   started_at=started)  # fmt: skip
    finished_trial(
        trial_factory, random_run, objective=0.81, params=5000, after_s=20, test_acc=0.79, flops=9000
    )
    trial_factory(random_run, state=TrialState.FAILED, error="Traceback (most recent call last):\n  File x\nValueError: bad",
                  started_at=started, finished_at=started + timedelta(seconds=30))  # fmt: skip
    trial_factory(random_run, state=TrialState.INFEASIBLE, metrics={"params": 10**9})  # never trained
    finished_trial(
        trial_factory, evolution, objective=0.9, params=20000, latency_ms=2.5, after_s=45, test_acc=0.88
    )
    trial_factory(evolution, state=TrialState.RUNNING, started_at=started + timedelta(seconds=46))
    return random_run, evolution


# The compare page ----------------------------------------------------------------------------------
def test_it_shows_the_comparison_to_any_member(login, viewer, project, two_runs):
    random_run, evolution = two_runs
    response = login(viewer).get(f"/projects/{project.pk}/compare/?ids={evolution.pk},{random_run.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Random" in html and "Evolution" in html
    page = json.loads(html.split('id="page-data" type="application/json">')[1].split("</script>")[0])
    assert page["ids"] == [evolution.pk, random_run.pk]
    # The script fetches urls.compare with these ids and this project.
    assert (page["urls"]["compare"], page["project"]) == (COMPARE_API, project.pk)
    assert set(page["wsPaths"].values()) == {f"/ws/experiments/{e.pk}/" for e in two_runs}
    assert f"{COMPARE_API}?ids={evolution.pk},{random_run.pk}&amp;format=csv" in html
    assert "js/compare.js" in html and "plotly/plotly.min.js" in html


def test_it_404s_when_one_id_is_not_of_this_project(login, owner, project, outsider_project, experiment_factory,
                                                    two_runs, digits_dataset):  # fmt: skip
    from experiments.models import Dataset, Membership, Project

    random_run, _ = two_runs
    foreign = Experiment.objects.create(project=outsider_project, dataset=Dataset.objects.create(
        project=outsider_project, name="d", source="builtin", builtin_name="iris"), name="Foreign", space="mlp",
        strategy="random", estimator="train")  # fmt: skip
    client = login(owner)
    assert client.get(f"/projects/{project.pk}/compare/?ids={random_run.pk},{foreign.pk}").status_code == 404
    # Visible to the user, but in another of their projects: still not part of this comparison.
    mine = Project.create_for(owner, "Other")
    other = experiment_factory(project=mine, dataset=Dataset.objects.create(project=mine, name="d2", source="builtin",
                                                                            builtin_name="iris"))  # fmt: skip
    assert Membership.objects.filter(project=mine, user=owner).exists()
    assert client.get(f"/projects/{project.pk}/compare/?ids={random_run.pk},{other.pk}").status_code == 404
    assert client.get(f"/projects/{project.pk}/compare/?ids={random_run.pk},999999").status_code == 404


def test_it_404s_for_non_members(login, outsider, project, two_runs):
    ids = ",".join(str(e.pk) for e in two_runs)
    assert login(outsider).get(f"/projects/{project.pk}/compare/?ids={ids}").status_code == 404


def test_it_asks_for_two_experiments_and_offers_the_project_ones(login, viewer, project, two_runs):
    random_run, evolution = two_runs
    response = login(viewer).get(f"/projects/{project.pk}/compare/?ids={random_run.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Pick at least two experiments to compare." in html
    assert f'value="{random_run.pk}" id="pick-{random_run.pk}" checked' in html
    assert f'value="{evolution.pk}" id="pick-{evolution.pk}" >' in html
    assert "compare.js" not in html
    assert "Pick at least two" in login(viewer).get(f"/projects/{project.pk}/compare/").content.decode()


def test_it_refuses_what_is_not_an_id(login, viewer, project, two_runs):
    response = login(viewer).get(f"/projects/{project.pk}/compare/?ids=3,abc")
    assert response.status_code == 400
    assert "Cannot compare: &#x27;abc&#x27; is not an experiment id." in response.content.decode()


def test_it_turns_ticked_checkboxes_into_a_shareable_url(login, viewer, project, two_runs):
    random_run, evolution = two_runs
    response = login(viewer).get(f"/projects/{project.pk}/compare/", {"ids": [random_run.pk, evolution.pk]})
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/compare/?ids={random_run.pk},{evolution.pk}"


def test_the_project_page_offers_compare_checkboxes(login, viewer, project, two_runs):
    html = login(viewer).get(f"/projects/{project.pk}/").content.decode()
    assert f'action="/projects/{project.pk}/compare/" id="compare-form"' in html
    for experiment in two_runs:
        assert f'name="ids" value="{experiment.pk}" form="compare-form"' in html


# The compare API -----------------------------------------------------------------------------------
def test_it_returns_a_row_and_a_series_per_experiment(viewer_client, two_runs):
    random_run, evolution = two_runs
    response = viewer_client.get(COMPARE_API, {"ids": f"{random_run.pk},{evolution.pk}"})
    assert response.status_code == 200
    first, second = response.json()["experiments"]
    assert [first["id"], second["id"]] == [random_run.pk, evolution.pk]
    assert first["series"] == {
        "id": list(random_run.trials.order_by("number").values_list("pk", flat=True)),
        "number": [0, 1, 2],
        "state": ["completed", "failed", "infeasible"],
        "objective": [0.81, None, None],
        "finished_s": [20.0, 30.0, None],
        "params": [5000, None, 10**9],
        "latency_ms": [1.0, None, None],
    }
    assert {k: first[k] for k in ("strategy", "estimator", "space", "dataset", "status", "best_trial",
                                  "best_objective", "best_test_acc", "best_params", "best_flops",
                                  "best_latency_ms", "trials_spent", "budget_trials", "wall_time_s")} == {
        "strategy": "random", "estimator": "train", "space": "mlp", "dataset": "digits", "status": "completed",
        "best_trial": 0, "best_objective": 0.81, "best_test_acc": 0.79, "best_params": 5000, "best_flops": 9000,
        "best_latency_ms": 1.0, "trials_spent": 2, "budget_trials": 3, "wall_time_s": 90.0,
    }  # fmt: skip
    assert second["series"]["state"] == ["completed", "running"]
    assert second["series"]["finished_s"] == [45.0, None]
    assert second["best_objective"] == 0.9 and second["trials_spent"] == 1
    assert second["wall_time_s"] >= 300  # still running: counted up to now


def test_it_compares_with_a_constant_number_of_queries(viewer_client, experiment_factory, trial_factory,
                                                       django_assert_max_num_queries):  # fmt: skip
    started = timezone.now() - timedelta(hours=1)
    small = [experiment_factory(started_at=started) for _ in range(2)]
    large = [experiment_factory(started_at=started) for _ in range(3)]
    for experiment, n in [(small[0], 2), (small[1], 2), (large[0], 60), (large[1], 60), (large[2], 60)]:
        for i in range(n):
            finished_trial(trial_factory, experiment, objective=i / 100, params=1000 + i, after_s=i)
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(COMPARE_API, {"ids": ",".join(str(e.pk) for e in small)})
    with django_assert_max_num_queries(len(few)):
        body = viewer_client.get(COMPARE_API, {"ids": ",".join(str(e.pk) for e in large)}).json()
    assert [len(e["series"]["number"]) for e in body["experiments"]] == [60, 60, 60]
    assert body["experiments"][0]["best_objective"] == 0.59


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("", "pick at least two experiments to compare, e.g. ?ids=3,5"),
        ("7", "pick at least two experiments to compare, e.g. ?ids=3,5"),
        ("7,x", "'x' is not an experiment id"),
        (",".join(map(str, range(1, 23))), "at most 20 experiments can be compared at once, got 22"),
    ],
)
def test_it_names_the_problem_with_the_ids(viewer_client, ids, message):
    response = viewer_client.get(COMPARE_API, {"ids": ids})
    assert response.status_code == 400
    assert response.json() == {"ids": [message]}


def test_it_404s_the_comparison_when_one_id_is_hidden(viewer_client, outsider_client, project, two_runs,
                                                      outsider_project):  # fmt: skip
    ids = ",".join(str(e.pk) for e in two_runs)
    assert outsider_client.get(COMPARE_API, {"ids": ids}).status_code == 404
    assert viewer_client.get(COMPARE_API, {"ids": f"{two_runs[0].pk},999999"}).status_code == 404
    assert viewer_client.get(COMPARE_API, {"ids": ids, "project": outsider_project.pk}).status_code == 404
    assert viewer_client.get(COMPARE_API, {"ids": ids, "project": project.pk}).status_code == 200


def test_it_needs_a_login_to_compare(api_client, two_runs):
    ids = ",".join(str(e.pk) for e in two_runs)
    assert api_client.get(COMPARE_API, {"ids": ids}).status_code in (401, 403)


def test_it_exports_the_comparison_as_csv_and_json(viewer_client, two_runs):
    random_run, evolution = two_runs
    ids = f"{random_run.pk},{evolution.pk}"
    response = viewer_client.get(COMPARE_API, {"ids": ids, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="compare-{random_run.pk}-{evolution.pk}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["name"] for r in rows] == ["Random", "Evolution"]
    assert rows[0]["strategy"] == "random" and rows[0]["best_objective"] == "0.81"
    assert (
        rows[0]["best_test_acc"] == "0.79"
        and rows[0]["trials_spent"] == "2"
        and rows[0]["budget_trials"] == "3"
    )
    assert rows[1]["best_flops"] == ""  # not measured: empty, not "None"
    assert "series" not in rows[0]

    response = viewer_client.get(COMPARE_API, {"ids": ids, "format": "json"})
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="compare-{random_run.pk}-{evolution.pk}.json"'
    )
    table = json.loads(b"".join(response.streaming_content))
    assert [row["id"] for row in table] == [random_run.pk, evolution.pk]
    assert table[1]["best_objective"] == 0.9 and table[1]["strategy"] == "evolution"


# Trial exports ------------------------------------------------------------------------------------------
def test_it_exports_every_trial_as_csv(viewer_client, two_runs):
    random_run, _ = two_runs
    response = viewer_client.get(f"/api/experiments/{random_run.pk}/trials.csv")
    assert response.status_code == 200
    assert response.streaming
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="experiment-{random_run.pk}-random-trials.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert list(rows[0]) == [
        "number", "state", "objective", "val_acc", "test_acc", "params", "flops", "size_mb", "latency_ms",
        "train_time_s", "budget", "duration_s", "started_at", "finished_at", "error", "arch",
    ]  # fmt: skip
    assert [r["state"] for r in rows] == ["completed", "failed", "infeasible"]
    assert rows[0]["objective"] == "0.81" and rows[0]["params"] == "5000" and rows[0]["test_acc"] == "0.79"
    assert json.loads(rows[0]["arch"])["width_1"] == 32
    assert rows[0]["budget"] == "{}"
    assert rows[1]["error"] == "ValueError: bad" and rows[1]["objective"] == ""
    assert rows[2]["params"] == str(10**9) and rows[2]["started_at"] == ""


def test_it_exports_every_trial_as_json(viewer_client, two_runs):
    random_run, _ = two_runs
    response = viewer_client.get(f"/api/experiments/{random_run.pk}/trials.json")
    assert response["Content-Type"] == "application/json"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="experiment-{random_run.pk}-random-trials.json"'
    )
    body = json.loads(b"".join(response.streaming_content))
    assert body["experiment"]["id"] == random_run.pk and body["experiment"]["seed"] == 0
    assert body["experiment"]["strategy"] == "random"
    assert [t["number"] for t in body["trials"]] == [0, 1, 2]
    first = body["trials"][0]
    assert first["arch"]["depth"] == 1 and first["objective"] == 0.81 and first["latency_ms"] == 1.0
    assert body["trials"][1]["error"] == "ValueError: bad"


def test_it_exports_an_empty_experiment(viewer_client, experiment):
    body = json.loads(
        b"".join(viewer_client.get(f"/api/experiments/{experiment.pk}/trials.json").streaming_content)
    )
    assert body["trials"] == []
    text = b"".join(
        viewer_client.get(f"/api/experiments/{experiment.pk}/trials.csv").streaming_content
    ).decode()
    assert text.strip().startswith("number,state,objective") and len(text.strip().splitlines()) == 1


def test_it_lets_members_download_and_hides_exports_from_others(client_for, owner, editor, viewer, outsider,
                                                                api_client, experiment):  # fmt: skip
    for user in (owner, editor, viewer):
        for fmt in ("csv", "json"):
            response = client_for(user).get(f"/api/experiments/{experiment.pk}/trials.{fmt}")
            assert response.status_code == 200, (user, fmt)
            b"".join(response.streaming_content)
    for fmt in ("csv", "json"):
        assert client_for(outsider).get(f"/api/experiments/{experiment.pk}/trials.{fmt}").status_code == 404
        assert api_client.get(f"/api/experiments/{experiment.pk}/trials.{fmt}").status_code in (401, 403)
    assert client_for(viewer).get("/api/experiments/999999/trials.csv").status_code == 404


def test_it_accepts_a_csv_accept_header(viewer_client, experiment):
    response = viewer_client.get(f"/api/experiments/{experiment.pk}/trials.csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200


def test_it_streams_exports_with_a_constant_number_of_queries(viewer_client, experiment_factory, trial_factory,
                                                              django_assert_max_num_queries):  # fmt: skip
    started = timezone.now()
    small, large = experiment_factory(started_at=started), experiment_factory(started_at=started)
    for experiment, n in [(small, 2), (large, 150)]:
        for i in range(n):
            finished_trial(trial_factory, experiment, objective=i / 1000, params=i, after_s=i)
    for fmt in ("csv", "json"):
        with CaptureQueriesContext(connection) as few:
            b"".join(viewer_client.get(f"/api/experiments/{small.pk}/trials.{fmt}").streaming_content)
        with django_assert_max_num_queries(len(few)):
            content = b"".join(
                viewer_client.get(f"/api/experiments/{large.pk}/trials.{fmt}").streaming_content
            )
        assert content.count(b"completed") == 150


def test_the_experiment_page_links_the_exports(login, viewer, experiment):
    html = login(viewer).get(f"/experiments/{experiment.pk}/").content.decode()
    assert f'href="/api/experiments/{experiment.pk}/trials.csv"' in html
    assert f'href="/api/experiments/{experiment.pk}/trials.json"' in html


# Clone and edit -----------------------------------------------------------------------------------------
def posted(form) -> dict:
    """What the browser posts for a rendered (unbound) form: its initial values as inputs send them."""
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or value is False or value == "" or value == []:
            continue
        if value is True:
            value = "on"
        elif isinstance(field, forms.MultipleChoiceField):
            value = [str(v) for v in value]
        data[name] = value
    return data


def test_the_experiment_page_offers_clone_and_edit_to_editors_only(login, editor, viewer, experiment):
    assert (
        f'href="/experiments/{experiment.pk}/clone/"'
        in login(editor).get(f"/experiments/{experiment.pk}/").content.decode()
    )
    assert "/clone/" not in login(viewer).get(f"/experiments/{experiment.pk}/").content.decode()


def test_it_refuses_cloning_to_viewers_and_outsiders(login, viewer, outsider, experiment):
    assert login(viewer).get(f"/experiments/{experiment.pk}/clone/").status_code == 403
    assert login(viewer).post(f"/experiments/{experiment.pk}/clone/", {}).status_code == 403
    assert login(outsider).get(f"/experiments/{experiment.pk}/clone/").status_code == 404
    assert Experiment.objects.count() == 1


def test_it_prefills_the_form_with_the_source_configuration(login, editor, experiment_factory):
    source = experiment_factory(
        name="Digits evolution", strategy="evolution", strategy_config={"population_size": 4, "sample_size": 2},
        seed=1234, budget_trials=7, constraints={"max_params": 50000, "max_flops": None},
        space_config={"max_depth": 3},
    )  # fmt: skip
    response = login(editor).get(f"/experiments/{source.pk}/clone/")
    assert response.status_code == 200
    form = response.context["form"]
    values = {name: form[name].value() for name in form.fields}
    assert values["name"] == "Digits evolution (copy)"
    assert values["dataset"] == str(source.dataset_id)
    assert (values["space"], values["strategy"], values["estimator"]) == ("mlp", "evolution", "train")
    assert values["seed"] == 1234 and values["budget_trials"] == 7 and values["max_params"] == 50000
    assert values["max_flops"] is None and values["start_now"] is True  # starts like a new experiment (issue 12)
    assert values["strategy__evolution__population_size"] == 4
    assert values["estimator__train__epochs"] == 1 and values["space__mlp__max_depth"] == 3
    assert "seed 1234 included" in response.content.decode()


def test_it_creates_the_clone_as_a_draft_that_remembers_its_source(login, editor, experiment_factory,
                                                                   enqueue_calls):  # fmt: skip
    source = experiment_factory(strategy="evolution", strategy_config={"population_size": 4, "sample_size": 2}, seed=99,
                                status=ExperimentStatus.COMPLETED)  # fmt: skip
    client = login(editor)
    form = client.get(f"/experiments/{source.pk}/clone/").context["form"]
    # The clone form starts ticked like the new one (issue 12); unticked, the clone stays a draft.
    response = client.post(f"/experiments/{source.pk}/clone/", {**posted(form), "start_now": ""})
    clone = Experiment.objects.exclude(pk=source.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/experiments/{clone.pk}/"
    assert clone.status == ExperimentStatus.DRAFT and clone.cloned_from == source
    assert clone.name == f"{source.name} (copy)" and clone.created_by == editor
    source.refresh_from_db()
    for field in (
        "dataset_id",
        "space",
        "strategy",
        "estimator",
        "seed",
        "budget_trials",
        "parallelism",
        "device",
    ):
        assert getattr(clone, field) == getattr(source, field), field
    assert clone.strategy_config["population_size"] == 4
    assert clone.estimator_config["epochs"] == 1
    assert enqueue_calls == []
    logged = ActivityLog.objects.filter(project=source.project, target_id=clone.pk)
    assert list(logged.values_list("verb", flat=True)) == [ActivityVerb.EXPERIMENT_CLONED]


def test_it_shows_errors_for_an_empty_post(login, editor, experiment):
    response = login(editor).post(f"/experiments/{experiment.pk}/clone/", {})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert Experiment.objects.count() == 1


def test_it_starts_the_clone_when_asked_and_shows_errors_otherwise(login, editor, experiment, enqueue_calls,
                                                                    django_capture_on_commit_callbacks):  # fmt: skip
    client = login(editor)
    data = posted(client.get(f"/experiments/{experiment.pk}/clone/").context["form"])
    bad = client.post(
        f"/experiments/{experiment.pk}/clone/", {**data, "budget_trials": "0", "start_now": "on"}
    )
    assert bad.status_code == 200 and Experiment.objects.count() == 1
    assert bad.context["form"].errors["budget_trials"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/experiments/{experiment.pk}/clone/", {**data, "seed": "5", "start_now": "on"})
    clone = Experiment.objects.exclude(pk=experiment.pk).get()
    assert clone.status == ExperimentStatus.QUEUED and clone.seed == 5 and clone.cloned_from == experiment
    assert enqueue_calls == [clone.pk]


# A clone reruns the same search ---------------------------------------------------------------------------
def run_search(outbox, experiment) -> None:
    """Start and run the search the way one worker would (no watchdog, no model export)."""
    experiment.start()
    drain(outbox, skip=("watch_experiment", "finalize_experiment"))


@pytest.mark.django_db(transaction=True)  # on_commit must fire for start() and the actors
@pytest.mark.parametrize(
    ("strategy", "config"), [("random", {}), ("evolution", {"population_size": 2, "sample_size": 2})]
)
def test_a_clone_with_the_same_seed_searches_the_same_architectures(login, editor, experiment_factory, iris_dataset,
                                                                    outbox, strategy, config):  # fmt: skip
    source = experiment_factory(dataset=iris_dataset, strategy=strategy, strategy_config=config, seed=7,
                                estimator_config={"epochs": 1, "batch_size": 32}, budget_trials=4, parallelism=1)  # fmt: skip
    run_search(outbox, source)

    client = login(editor)
    client.post(
        f"/experiments/{source.pk}/clone/",
        {**posted(client.get(f"/experiments/{source.pk}/clone/").context["form"]), "start_now": ""},
    )
    clone = Experiment.objects.get(cloned_from=source)
    run_search(outbox, clone)

    def archs(experiment):
        return list(experiment.trials.order_by("number").values_list("arch", flat=True))

    assert clone.trials.filter(state=TrialState.COMPLETED).count() == 4
    assert len({json.dumps(a, sort_keys=True) for a in archs(source)}) > 1  # a real search, not one arch
    assert archs(clone) == archs(source)
