"""/api/experiments/: roles, config validation, state verbs, the live-page snapshot."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments.choices import ExperimentStatus, TrialState
from experiments.models import Experiment, Project, TrialMetric

pytestmark = pytest.mark.django_db


def payload(on_dataset, **overrides) -> dict:
    return {
        "project": on_dataset.project_id,
        "dataset": on_dataset.pk,
        "name": "Wide MLPs",
        "space": "mlp",
        "space_config": {"max_depth": 2},
        "strategy": "random",
        "estimator": "train",
        "estimator_config": {"epochs": 1},
        "budget_trials": 5,
        **overrides,
    }


@pytest.fixture
def clients(owner_client, editor_client, viewer_client, outsider_client):
    return {"owner": owner_client, "editor": editor_client, "viewer": viewer_client, "outsider": outsider_client}


# Roles ------------------------------------------------------------------------------------------
ROLE_MATRIX = {
    # role: (list, retrieve, create, update, start, cancel)
    "owner": (200, 200, 201, 200, 200, 200),
    "editor": (200, 200, 201, 200, 200, 200),
    "viewer": (200, 200, 403, 403, 403, 403),
    # An outsider's project reads as "does not exist" (400 on the field), its experiments as 404.
    "outsider": (200, 404, 400, 404, 404, 404),
}


@pytest.mark.parametrize("role", ROLE_MATRIX)
def test_it_applies_the_role_matrix(role, clients, experiment_factory, digits_dataset, enqueue_calls):
    client = clients[role]
    expected = ROLE_MATRIX[role]
    experiment = experiment_factory()
    url = f"/api/experiments/{experiment.pk}/"

    listed = client.get("/api/experiments/")
    created = client.post("/api/experiments/", payload(digits_dataset), format="json")
    got = (
        listed.status_code,
        client.get(url).status_code,
        created.status_code,
        client.patch(url, {"name": "Renamed"}, format="json").status_code,
        client.post(url + "start/").status_code,
        client.post(f"/api/experiments/{experiment_factory().pk}/cancel/").status_code,
    )
    assert got == expected, (created.json(),)
    visible = listed.json()["count"]
    assert visible == (0 if role == "outsider" else 1)
    if role == "outsider":
        assert "project" in created.json()


def test_it_answers_anonymous_requests_with_401_or_403(api_client, experiment):
    assert api_client.get("/api/experiments/").status_code in (401, 403)
    assert api_client.post(f"/api/experiments/{experiment.pk}/start/").status_code in (401, 403)


def test_it_refuses_a_viewer_before_validating(viewer_client, digits_dataset):
    response = viewer_client.post("/api/experiments/", payload(digits_dataset, strategy="nope"), format="json")
    assert response.status_code in (400, 403)  # never 201
    response = viewer_client.post("/api/experiments/", payload(digits_dataset), format="json")
    assert response.status_code == 403
    assert not Experiment.objects.exists()


# Creating -------------------------------------------------------------------------------------
def test_it_creates_an_experiment_with_resolved_options(editor_client, editor, digits_dataset):
    response = editor_client.post(
        "/api/experiments/",
        payload(digits_dataset, strategy="evolution", strategy_config={"population_size": 6},
                constraints={"max_params": 50000}),
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft"
    assert body["created_by"] == editor.username
    # Stored with every default filled in, so the experiment page shows (and reruns) exactly this.
    assert body["strategy_config"] == {"population_size": 6, "sample_size": 5}
    assert body["space_config"] == {"max_depth": 2}
    assert body["estimator_config"]["epochs"] == 1
    assert body["constraints"] == {"max_params": 50000, "max_flops": None, "max_size_mb": None, "max_latency_ms": None}
    assert body["trial_counts"] == {}
    assert body["best"] is None
    assert body["my_role"] == "editor"
    assert Experiment.objects.get(pk=body["id"]).strategy_config["sample_size"] == 5


def test_it_accepts_an_image_space_on_image_data(owner_client, digits_dataset):
    response = owner_client.post(
        "/api/experiments/", payload(digits_dataset, space="nb201", space_config={"C": 8}), format="json"
    )
    assert response.status_code == 201, response.json()


INVALID = [
    ({"strategy": "annealing"}, "strategy", "unknown strategy 'annealing'"),
    ({"strategy": "evolution", "strategy_config": {"population_size": 1}}, "strategy_config",
     "population_size: must be >= 2, got 1"),
    ({"strategy": "evolution", "strategy_config": {"population_size": 4, "sample_size": 9}}, "strategy_config",
     "sample_size: must be <= population_size"),
    ({"strategy_config": {"temperature": 3}}, "strategy_config", "temperature: unknown option"),
    ({"space": "transformer"}, "space", "unknown space 'transformer'"),
    ({"space_config": {"max_depth": 99}}, "space_config", "max_depth: must be <= 8"),
    ({"space_config": "deep"}, "space_config", "expected an object"),
    ({"estimator": "oracle"}, "estimator", "unknown estimator 'oracle'"),
    ({"estimator_config": {"epochs": 0}}, "estimator_config", "epochs: must be >= 1"),
    ({"estimator_config": {"optimizer": "lbfgs"}}, "estimator_config", "optimizer: 'lbfgs' is not one of"),
    ({"constraints": {"max_params": -5}}, "constraints", "max_params: must be a positive number"),
    ({"constraints": {"max_watts": 5}}, "constraints", "max_watts: unknown constraint"),
    ({"parallelism": 0}, "parallelism", "greater than or equal to 1"),
    ({"parallelism": 65}, "parallelism", "less than or equal to 64"),
    ({"budget_trials": 0}, "budget_trials", "greater than or equal to 1"),
    ({"budget_trials": 10001}, "budget_trials", "less than or equal to 10000"),
    ({"budget_wall_time_s": 0}, "budget_wall_time_s", "greater than or equal to 1"),
    ({"device": "tpu"}, "device", "not a valid choice"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "field", "reason"), INVALID, ids=[i[1] + "-" + i[2][:20] for i in INVALID])
def test_it_rejects_an_invalid_config_naming_the_field(owner_client, digits_dataset, overrides, field, reason):
    response = owner_client.post("/api/experiments/", payload(digits_dataset, **overrides), format="json")
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field], body
    assert reason in body[field][0], body


def test_it_rejects_an_image_space_on_tabular_data(owner_client, iris_dataset):
    response = owner_client.post("/api/experiments/", payload(iris_dataset, space="nb201", space_config={}), format="json")
    assert response.status_code == 400
    assert "nb201 needs image data" in response.json()["space"][0]
    response = owner_client.post("/api/experiments/", payload(iris_dataset, space="mobilenet", space_config={}),
                                 format="json")
    assert "mobilenet needs image data" in response.json()["space"][0]


def test_it_reports_independent_errors_together(owner_client, digits_dataset):
    response = owner_client.post(
        "/api/experiments/",
        payload(digits_dataset, strategy="annealing", estimator_config={"epochs": 0}, parallelism=0),
        format="json",
    )
    # Field checks (parallelism) come first; the engine checks run once those pass.
    assert set(response.json()) == {"parallelism"}
    response = owner_client.post(
        "/api/experiments/", payload(digits_dataset, strategy="annealing", estimator_config={"epochs": 0}), format="json"
    )
    assert set(response.json()) == {"strategy", "estimator_config"}


def test_it_refuses_a_dataset_of_another_project(owner_client, owner, digits_dataset):
    from experiments.models import Dataset

    other = Project.create_for(owner, "Other")
    foreign = Dataset.objects.create(project=other, name="iris", source="builtin", builtin_name="iris",
                                     kind="tabular", input_shape=[4], num_classes=3)  # fmt: skip
    response = owner_client.post("/api/experiments/", payload(digits_dataset, dataset=foreign.pk), format="json")
    assert response.status_code == 400
    assert response.json() == {"dataset": ["must belong to the experiment's project"]}


def test_it_hides_datasets_of_projects_the_user_is_not_in(outsider_client, outsider_project, digits_dataset):
    body = payload(digits_dataset, project=outsider_project.pk)
    response = outsider_client.post("/api/experiments/", body, format="json")
    assert response.status_code == 400
    assert "does not exist" in response.json()["dataset"][0]


# Editing and deleting ----------------------------------------------------------------------------
def test_it_revalidates_a_partial_update(owner_client, experiment):
    url = f"/api/experiments/{experiment.pk}/"
    response = owner_client.patch(url, {"strategy": "evolution", "strategy_config": {"population_size": 1}},
                                  format="json")  # fmt: skip
    assert response.status_code == 400
    assert "population_size" in response.json()["strategy_config"][0]

    response = owner_client.patch(url, {"strategy": "evolution"}, format="json")
    assert response.status_code == 200, response.json()
    experiment.refresh_from_db()
    assert experiment.strategy == "evolution"
    assert experiment.strategy_config == {"population_size": 20, "sample_size": 5}
    assert experiment.space_config == {"max_depth": 2}


def test_it_keeps_the_project_of_an_experiment(owner_client, owner, experiment):
    other = Project.create_for(owner, "Other")
    response = owner_client.patch(f"/api/experiments/{experiment.pk}/", {"project": other.pk}, format="json")
    assert response.status_code == 200
    experiment.refresh_from_db()
    assert experiment.project_id != other.pk


def test_it_edits_only_drafts(owner_client, experiment):
    experiment.start()
    response = owner_client.patch(f"/api/experiments/{experiment.pk}/", {"name": "Late"}, format="json")
    assert response.status_code == 409
    assert "draft" in response.json()["detail"]
    experiment.refresh_from_db()
    assert (experiment.name, experiment.status) != ("Late", ExperimentStatus.DRAFT)


def test_it_deletes_drafts_and_finished_experiments_only(editor_client, experiment_factory):
    draft, running, cancelled = experiment_factory(), experiment_factory(), experiment_factory()
    running.start()
    cancelled.cancel()
    assert editor_client.delete(f"/api/experiments/{draft.pk}/").status_code == 204
    assert editor_client.delete(f"/api/experiments/{cancelled.pk}/").status_code == 204
    response = editor_client.delete(f"/api/experiments/{running.pk}/")
    assert response.status_code == 409
    assert Experiment.objects.filter(pk=running.pk).exists()


def test_it_clones_an_experiment_as_a_draft(editor_client, editor, experiment):
    experiment.start()
    response = editor_client.post(f"/api/experiments/{experiment.pk}/clone/")
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["cloned_from"], body["created_by"]) == ("draft", experiment.pk, editor.username)
    assert body["name"] == f"{experiment.name} (copy)"
    assert body["space_config"] == experiment.space_config


# Verbs -----------------------------------------------------------------------------------------
def test_it_enqueues_the_start_only_after_commit(owner_client, experiment, enqueue_calls,
                                                 django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = owner_client.post(f"/api/experiments/{experiment.pk}/start/")
        assert enqueue_calls == []  # the worker must find the row already queued
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["started_at"] is not None
    assert enqueue_calls == [experiment.pk]
    assert callbacks


def test_it_answers_409_to_a_second_start(owner_client, experiment, enqueue_calls):
    assert owner_client.post(f"/api/experiments/{experiment.pk}/start/").status_code == 200
    response = owner_client.post(f"/api/experiments/{experiment.pk}/start/")
    assert response.status_code == 409
    assert response.json() == {"detail": "cannot go from queued to queued"}


def test_it_pauses_resumes_and_cancels(editor_client, experiment, enqueue_calls, trial_factory,
                                       django_capture_on_commit_callbacks):  # fmt: skip
    url = f"/api/experiments/{experiment.pk}/"
    queued_trial = trial_factory(experiment)
    with django_capture_on_commit_callbacks(execute=True):
        assert editor_client.post(url + "resume/").status_code == 409  # a draft is not paused
        assert editor_client.post(url + "start/").json()["status"] == "queued"
        assert editor_client.post(url + "pause/").json()["status"] == "paused"
        assert editor_client.post(url + "pause/").status_code == 409
        assert editor_client.post(url + "resume/").json()["status"] == "queued"
        response = editor_client.post(url + "cancel/")
    assert response.json()["status"] == "cancelled"
    assert response.json()["trial_counts"] == {"cancelled": 1}
    assert editor_client.post(url + "cancel/").status_code == 409
    assert enqueue_calls == [experiment.pk, experiment.pk]
    queued_trial.refresh_from_db()
    assert queued_trial.state == TrialState.CANCELLED


# Lists ------------------------------------------------------------------------------------------
def test_it_filters_experiments_by_project_and_status(owner_client, owner, experiment_factory):
    draft, running = experiment_factory(), experiment_factory()
    running.start()
    elsewhere = Project.create_for(owner, "Elsewhere")
    assert owner_client.get(f"/api/experiments/?project={elsewhere.pk}").json()["count"] == 0
    body = owner_client.get(f"/api/experiments/?project={draft.project_id}&status=queued").json()
    assert [e["id"] for e in body["results"]] == [running.pk]
    body = owner_client.get("/api/experiments/?status=queued&status=draft").json()
    assert {e["id"] for e in body["results"]} == {draft.pk, running.pk}
    assert owner_client.get("/api/experiments/?status=bogus").status_code == 400


def test_it_lists_trial_counts_and_best_without_a_query_per_row(owner_client, experiment_factory, trial_factory,
                                                                 django_assert_max_num_queries):  # fmt: skip
    def add(n):
        for _ in range(n):
            experiment = experiment_factory()
            trial_factory(experiment, state=TrialState.COMPLETED, objective=0.5)
            trial_factory(experiment, state=TrialState.COMPLETED, objective=0.75)
            trial_factory(experiment, state=TrialState.FAILED)

    add(2)
    with CaptureQueriesContext(connection) as few:
        owner_client.get("/api/experiments/")
    add(20)
    with django_assert_max_num_queries(len(few)):
        body = owner_client.get("/api/experiments/").json()
    assert body["count"] == 22
    first = body["results"][0]
    assert first["trial_counts"] == {"completed": 2, "failed": 1}
    assert first["best"]["objective"] == 0.75
    assert set(first["best"]) == {"id", "number", "objective", "metrics"}


def test_it_paginates_experiments(owner_client, experiment_factory):
    for _ in range(3):
        experiment_factory()
    body = owner_client.get("/api/experiments/?limit=2").json()
    assert (body["count"], len(body["results"])) == (3, 2)
    assert body["next"] is not None and body["previous"] is None


# Snapshot ---------------------------------------------------------------------------------------
def _fill(experiment, trial_factory, n):
    trials = []
    for i in range(n):
        state = [TrialState.COMPLETED, TrialState.RUNNING, TrialState.FAILED, TrialState.QUEUED][i % 4]
        objective = round(0.5 + (i % 7) / 20, 3) if state == TrialState.COMPLETED else None
        trials.append(trial_factory(experiment, number=i, state=state, objective=objective,
                                    metrics={"val_acc": objective} if objective else {}))  # fmt: skip
    TrialMetric.objects.bulk_create(
        TrialMetric(trial=t, step=step, values={"train_loss": 1.0 / (step + 1), "val_acc": 0.5})
        for t in trials if t.state == TrialState.RUNNING for step in range(2)
    )  # fmt: skip
    return trials


def test_it_snapshots_the_experiment_trials_and_curves(viewer_client, experiment, trial_factory):
    trials = _fill(experiment, trial_factory, 8)
    body = viewer_client.get(f"/api/experiments/{experiment.pk}/snapshot/").json()
    assert set(body) == {"seq", "experiment", "trials", "curves", "progress"}
    assert body["progress"] == []  # one-shot jobs only (tests/web/test_oneshot_web.py)
    assert isinstance(body["seq"], int)
    assert body["experiment"]["id"] == experiment.pk
    assert body["experiment"]["trial_counts"] == {"completed": 2, "running": 2, "failed": 2, "queued": 2}
    assert body["experiment"]["best"]["number"] == 4  # 0.7 beats trial 0's 0.5
    assert [t["number"] for t in body["trials"]] == list(range(8))
    assert set(body["trials"][0]) >= {"id", "number", "state", "objective", "arch", "metrics", "error"}
    running = [str(t.pk) for t in trials if t.state == TrialState.RUNNING]
    assert set(body["curves"]) == set(running)
    assert body["curves"][running[0]] == [{"step": 0, "train_loss": 1.0, "val_acc": 0.5},
                                          {"step": 1, "train_loss": 0.5, "val_acc": 0.5}]  # fmt: skip


def test_it_snapshots_trials_exactly_as_broadcast_summarises_them(viewer_client, experiment, trial_factory):
    import json

    from django.utils import timezone

    from experiments.live import payloads

    trial = trial_factory(experiment, state=TrialState.FAILED, objective=0.25, attempt=2, duration_s=3.5,
                          started_at=timezone.now(), finished_at=timezone.now(), budget={"epochs": 3},
                          metrics={"val_acc": 0.25, "params": 100}, error="Traceback\n  line 1\nValueError: bad")  # fmt: skip
    body = viewer_client.get(f"/api/experiments/{experiment.pk}/snapshot/").json()
    expected = json.loads(json.dumps(payloads.trial_summary(trial)))  # what a websocket event carries
    assert body["trials"] == [expected]
    assert expected["error"] == "ValueError: bad"


def test_it_reads_the_sequence_number_before_the_rows(viewer_client, experiment, monkeypatch):
    from experiments.live import broadcast

    seen = {}
    with CaptureQueriesContext(connection) as queries:

        def current_seq(experiment_id):
            seen["queries_before"] = len(queries)
            seen["experiment_id"] = experiment_id
            return 41

        monkeypatch.setattr(broadcast, "current_seq", current_seq)
        body = viewer_client.get(f"/api/experiments/{experiment.pk}/snapshot/").json()
    assert body["seq"] == 41
    assert seen == {"queries_before": 0, "experiment_id": experiment.pk}


def test_it_snapshots_with_a_constant_number_of_queries(viewer_client, experiment_factory, trial_factory,
                                                        django_assert_max_num_queries):  # fmt: skip
    small, large = experiment_factory(), experiment_factory()
    _fill(small, trial_factory, 10)
    _fill(large, trial_factory, 200)
    with CaptureQueriesContext(connection) as few:
        assert len(viewer_client.get(f"/api/experiments/{small.pk}/snapshot/").json()["trials"]) == 10
    with django_assert_max_num_queries(len(few)):
        assert len(viewer_client.get(f"/api/experiments/{large.pk}/snapshot/").json()["trials"]) == 200


def test_it_hides_the_snapshot_from_outsiders(outsider_client, experiment):
    assert outsider_client.get(f"/api/experiments/{experiment.pk}/snapshot/").status_code == 404


# Artifacts --------------------------------------------------------------------------------------
def test_it_lists_and_downloads_artifacts_for_members_only(viewer_client, outsider_client, experiment, settings,
                                                           tmp_path):  # fmt: skip
    from django.core.files.base import ContentFile

    from experiments.models import Artifact

    settings.MEDIA_ROOT = tmp_path
    artifact = Artifact(experiment=experiment, kind="model_zip", size_bytes=5, metrics={"test_acc": 0.9})
    artifact.file.save("best_model.zip", ContentFile(b"PK..."), save=True)

    listed = viewer_client.get(f"/api/artifacts/?experiment={experiment.pk}").json()
    assert [a["id"] for a in listed["results"]] == [artifact.pk]
    response = viewer_client.get(f"/api/artifacts/{artifact.pk}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"PK..."
    assert 'filename="best_model.zip"' in response["Content-Disposition"]
    assert outsider_client.get(f"/api/artifacts/{artifact.pk}/download/").status_code == 404
    assert outsider_client.get("/api/artifacts/").json()["count"] == 0
