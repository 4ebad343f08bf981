"""/api/trials/: filters, ordering, pagination, detail with points."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments.choices import TrialState
from experiments.models import TrialMetric

pytestmark = pytest.mark.django_db


@pytest.fixture
def trials(experiment, trial_factory):
    """Six trials: objectives 0.6, None (running), 0.9, None (failed), 0.7, 0.9."""
    specs = [
        (TrialState.COMPLETED, 0.6, 3.0),
        (TrialState.RUNNING, None, None),
        (TrialState.COMPLETED, 0.9, 1.0),
        (TrialState.FAILED, None, 0.5),
        (TrialState.PRUNED, 0.7, 2.0),
        (TrialState.COMPLETED, 0.9, 4.0),
    ]
    return [trial_factory(experiment, state=state, objective=objective, duration_s=duration)
            for state, objective, duration in specs]  # fmt: skip


def numbers(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [t["number"] for t in response.json()["results"]]


def test_it_lists_trials_of_an_experiment_in_number_order(viewer_client, experiment, trials, experiment_factory,
                                                         trial_factory):  # fmt: skip
    trial_factory(experiment_factory())  # another experiment's trial
    assert numbers(viewer_client.get(f"/api/trials/?experiment={experiment.pk}")) == [0, 1, 2, 3, 4, 5]
    assert viewer_client.get("/api/trials/").json()["count"] == 7


def test_it_filters_by_state(viewer_client, experiment, trials):
    url = f"/api/trials/?experiment={experiment.pk}"
    assert numbers(viewer_client.get(url + "&state=completed")) == [0, 2, 5]
    assert numbers(viewer_client.get(url + "&state=failed&state=running")) == [1, 3]
    assert numbers(viewer_client.get(url + "&min_objective=0.75")) == [2, 5]
    assert viewer_client.get(url + "&state=exploded").status_code == 400


def test_it_orders_by_objective_with_unscored_trials_last(viewer_client, experiment, trials):
    url = f"/api/trials/?experiment={experiment.pk}&ordering="
    # Ties (trials 2 and 5 at 0.9) keep creation order, so pages never overlap.
    assert numbers(viewer_client.get(url + "-objective")) == [2, 5, 4, 0, 1, 3]
    assert numbers(viewer_client.get(url + "objective")) == [0, 4, 2, 5, 1, 3]
    assert numbers(viewer_client.get(url + "-number")) == [5, 4, 3, 2, 1, 0]
    assert numbers(viewer_client.get(url + "duration_s")) == [3, 2, 4, 0, 5, 1]
    assert numbers(viewer_client.get(url + "-objective,duration_s")) == [2, 5, 4, 0, 3, 1]
    assert numbers(viewer_client.get(url + "arch")) == [0, 1, 2, 3, 4, 5]  # not orderable: ignored


def test_it_paginates_with_limit_and_offset(viewer_client, experiment, trials):
    url = f"/api/trials/?experiment={experiment.pk}&ordering=-objective&limit=4"
    first = viewer_client.get(url).json()
    assert (first["count"], first["previous"]) == (6, None)
    second = viewer_client.get(first["next"]).json()
    assert [t["number"] for t in first["results"] + second["results"]] == [2, 5, 4, 0, 1, 3]
    assert second["next"] is None


def test_it_lists_trials_with_a_constant_number_of_queries(viewer_client, experiment_factory, trial_factory,
                                                           django_assert_max_num_queries):  # fmt: skip
    small, large = experiment_factory(), experiment_factory()
    for i in range(10):
        trial_factory(small, state=TrialState.COMPLETED, objective=i / 10)
    for i in range(200):
        trial_factory(large, state=TrialState.COMPLETED, objective=i / 200)
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(f"/api/trials/?experiment={small.pk}")
    with django_assert_max_num_queries(len(few)):
        body = viewer_client.get(f"/api/trials/?experiment={large.pk}&limit=200").json()
    assert len(body["results"]) == 200


def test_it_shows_a_trial_with_its_points_and_whole_error(viewer_client, experiment, trial_factory):
    error = "Traceback (most recent call last):\n  File \"train.py\", line 3\nRuntimeError: out of memory"
    trial = trial_factory(experiment, state=TrialState.FAILED, error=error, metrics={"params": 1200},
                          constraint_values={"params": {"value": 1200, "limit": None, "ok": True}})  # fmt: skip
    TrialMetric.objects.create(trial=trial, step=1, values={"val_acc": 0.6})
    TrialMetric.objects.create(trial=trial, step=0, values={"val_acc": 0.4})

    body = viewer_client.get(f"/api/trials/{trial.pk}/").json()
    assert body["points"] == [{"step": 0, "values": {"val_acc": 0.4}}, {"step": 1, "values": {"val_acc": 0.6}}]
    assert body["error"] == error
    assert body["constraint_values"]["params"]["value"] == 1200
    assert body["arch"]["depth"] == 1
    listed = viewer_client.get(f"/api/trials/?experiment={experiment.pk}").json()["results"][0]
    assert listed["error"] == "RuntimeError: out of memory"
    assert "points" not in listed


def test_it_hides_trials_from_outsiders(outsider_client, experiment, trials):
    assert outsider_client.get(f"/api/trials/{trials[0].pk}/").status_code == 404
    assert outsider_client.get(f"/api/trials/?experiment={experiment.pk}").json()["count"] == 0


def test_it_does_not_let_anyone_write_trials(owner_client, trials):
    url = f"/api/trials/{trials[0].pk}/"
    assert owner_client.patch(url, {"objective": 1.0}, format="json").status_code == 405
    assert owner_client.delete(url).status_code == 405
    assert owner_client.post("/api/trials/", {}, format="json").status_code == 405
