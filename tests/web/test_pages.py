"""HTML pages: login, membership scoping (404), roles (403, no buttons), the new-experiment form
(registry-driven, validated by the API's serializer) and the cost of the experiment page."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from experiments.choices import TrialState
from experiments.forms import EXPERIMENT_DECIDES, ExperimentForm, option_field_name
from experiments.models import Dataset, Experiment, TrialMetric
from search_engine.data import BUILTIN_DATASETS
from search_engine.registry import ESTIMATORS, SPACES, STRATEGIES

pytestmark = pytest.mark.django_db




def form_data(project, **overrides) -> dict:
    """What the browser posts for an untouched form, plus `overrides`."""
    form = ExperimentForm(project)
    data = {}
    for name, field in form.fields.items():
        value = form.get_initial_for_field(field, name)
        if value is None or value is False:
            continue
        if value is True:
            value = "on"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        data[name] = value
    data.update(name="Digits MLP", dataset="builtin:digits", start_now="")
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def field_block(html: str, field_name: str) -> str:
    """The markup of the form field (label, input, help, errors) holding the input `field_name`."""
    blocks = re.split(r'<div class="field(?=[" ])', html)
    return next(b for b in blocks if f'name="{field_name}"' in b)


# Login -------------------------------------------------------------------------------------------
def test_it_redirects_anonymous_users_to_login(client, experiment, trial_factory):
    trial = trial_factory(experiment)
    urls = [
        reverse("project-list"),
        reverse("project-create"),
        reverse("project-detail", args=[experiment.project_id]),
        reverse("experiment-new", args=[experiment.project_id]),
        reverse("experiment-detail", args=[experiment.pk]),
        reverse("trial-detail", args=[trial.pk]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url
    response = client.post(reverse("experiment-action", args=[experiment.pk, "start"]))
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == "draft"


def test_it_logs_in_through_the_form_and_out_with_post(client, owner, project):
    from tests.web.conftest import PASSWORD

    page = client.get(reverse("login"))
    assert b'name="username"' in page.content and b'name="password"' in page.content
    response = client.post(reverse("login"), {"username": owner.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("project-list")
    assert b"Vision" in client.get(reverse("project-list")).content
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("project-list")).status_code == 302


# Scoping and roles ---------------------------------------------------------------------------------
def test_it_lists_only_member_projects(login, owner, project, outsider_project):
    html = login(owner).get(reverse("project-list")).content.decode()
    assert "Vision" in html
    assert "Elsewhere" not in html


def test_it_gives_non_members_404(login, outsider, experiment, trial_factory):
    trial = trial_factory(experiment)
    client = login(outsider)
    for url in [
        reverse("project-detail", args=[experiment.project_id]),
        reverse("experiment-new", args=[experiment.project_id]),
        reverse("experiment-detail", args=[experiment.pk]),
        reverse("trial-detail", args=[trial.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("experiment-action", args=[experiment.pk, "start"])).status_code == 404


def test_it_hides_control_buttons_from_viewers(login, viewer, editor, experiment):
    url = reverse("experiment-detail", args=[experiment.pk])
    viewer_html = login(viewer).get(url).content.decode()
    assert 'id="controls"' not in viewer_html
    assert "data-action=" not in viewer_html
    assert '"canControl": false' in viewer_html
    editor_html = login(editor).get(url).content.decode()
    assert 'id="controls"' in editor_html
    assert 'data-action="start"' in editor_html


def test_it_refuses_actions_and_the_form_to_viewers(login, viewer, experiment, enqueue_calls):
    client = login(viewer)
    response = client.post(reverse("experiment-action", args=[experiment.pk, "start"]))
    assert response.status_code == 403
    experiment.refresh_from_db()
    assert experiment.status == "draft"
    assert enqueue_calls == []
    assert client.get(reverse("experiment-new", args=[experiment.project_id])).status_code == 403
    assert (
        client.post(
            reverse("experiment-new", args=[experiment.project_id]), form_data(experiment.project)
        ).status_code
        == 403
    )
    html = client.get(reverse("project-detail", args=[experiment.project_id])).content.decode()
    assert reverse("experiment-new", args=[experiment.project_id]) not in html


def test_it_starts_and_cancels_without_javascript(
    login, editor, experiment, enqueue_calls, django_capture_on_commit_callbacks
):
    client = login(editor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("experiment-action", args=[experiment.pk, "start"]))
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == "queued"
    assert enqueue_calls == [experiment.pk]
    # A verb that does not apply is a message on the page, not an error.
    response = client.post(reverse("experiment-action", args=[experiment.pk, "resume"]), follow=True)
    assert "Cannot resume" in response.content.decode()
    client.post(reverse("experiment-action", args=[experiment.pk, "cancel"]))
    experiment.refresh_from_db()
    assert experiment.status == "cancelled"
    assert client.post(reverse("experiment-action", args=[experiment.pk, "explode"])).status_code == 404
    assert client.get(reverse("experiment-action", args=[experiment.pk, "cancel"])).status_code == 405


# Projects --------------------------------------------------------------------------------------------
def test_it_creates_a_project_with_the_creator_as_owner(login, outsider):
    response = login(outsider).post(reverse("project-create"), {"name": "Speech", "description": ""})
    assert response.status_code == 302
    html = login(outsider).get(response["Location"]).content.decode()
    assert "Speech" in html and "owner" in html


def test_it_shows_experiments_with_status_and_best_score_in_one_query(
    login, owner, project, experiment_factory, trial_factory, iris_dataset
):
    first, second = experiment_factory(name="Alpha"), experiment_factory(name="Beta", status="running")
    trial_factory(first, state=TrialState.COMPLETED, objective=0.81, started_at="2025-01-01T00:00Z")
    trial_factory(first, state=TrialState.COMPLETED, objective=0.93, started_at="2025-01-01T00:00Z")
    trial_factory(first, state=TrialState.FAILED, objective=None, started_at="2025-01-01T00:00Z")
    trial_factory(first, state=TrialState.INFEASIBLE)  # statically infeasible: no budget spent
    trial_factory(second, state=TrialState.RUNNING)
    client = login(owner)
    url = reverse("project-detail", args=[project.pk])
    with CaptureQueriesContext(connection) as few:
        html = client.get(url).content.decode()
    assert "0.9300" in html
    assert "3 / 3" in html  # two completed and one failed spent budget; the infeasible one did not
    assert "badge-running" in html
    assert "iris" in html and "digits" in html  # datasets
    assert "eddie" in html and "vera" in html  # members
    for n in range(5):
        experiment_factory(name=f"More {n}")
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few)


# The new-experiment form --------------------------------------------------------------------------------
def test_it_lists_every_registered_option_and_builtin_dataset(login, editor, project):
    html = login(editor).get(reverse("experiment-new", args=[project.pk])).content.decode()
    for kind, registry in (("space", SPACES), ("strategy", STRATEGIES), ("estimator", ESTIMATORS)):
        for name, info in registry.describe().items():
            assert f'<option value="{name}"' in html, (kind, name)
            assert f'data-component="{name}"' in html
            for option in info["options"]:
                if option in EXPERIMENT_DECIDES.get(kind, ()):  # the one device field decides (issue 12)
                    assert f'name="{option_field_name(kind, name, option)}"' not in html, (kind, name, option)
                    continue
                assert f'name="{option_field_name(kind, name, option)}"' in html, (kind, name, option)
    for name in BUILTIN_DATASETS:
        assert f'value="builtin:{name}"' in html
    for field in (
        "max_params",
        "max_flops",
        "max_size_mb",
        "max_latency_ms",
        "budget_trials",
        "budget_wall_time_s",
        "parallelism",
        "seed",
        "device",
    ):
        assert f'name="{field}"' in html
    # Typed inputs with their defaults and help
    assert 'name="strategy__evolution__population_size" value="20"' in html
    assert 'type="number"' in html and 'type="checkbox"' in html


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"strategy": "evolution", "strategy__evolution__population_size": "1"},
            "strategy__evolution__population_size",
            "must be &gt;= 2",
        ),
        ({"max_params": "-5"}, "max_params", "must be a positive number"),
        ({"budget_trials": "0"}, "budget_trials", "greater than or equal to 1"),
        ({"space": "nb201", "dataset": "builtin:iris"}, "space", "nb201"),
        ({"name": ""}, "name", "required"),
    ],
)
def test_it_shows_field_errors_inline_and_creates_nothing(login, editor, project, overrides, field, message):
    response = login(editor).post(
        reverse("experiment-new", args=[project.pk]), form_data(project, **overrides)
    )
    assert response.status_code == 200
    html = response.content.decode()
    block = field_block(html, field)
    assert "field-error" in block, block
    assert message in block, block
    assert Experiment.objects.count() == 0
    assert Dataset.objects.count() == 0  # the built-in dataset picked was not added either


def test_it_shows_every_error_at_once(login, editor, project):
    data = form_data(
        project,
        strategy="evolution",
        max_params="-3",
        name="",
        **{
            "strategy__evolution__population_size": "1",
            "estimator__train__optimizer": "lion",
        },
    )
    html = login(editor).post(reverse("experiment-new", args=[project.pk]), data).content.decode()
    assert "must be &gt;= 2" in field_block(html, "strategy__evolution__population_size")  # the engine's rule
    assert "lion" in field_block(html, "estimator__train__optimizer")
    assert "must be a positive number" in field_block(html, "max_params")  # the serializer's
    assert "required" in field_block(html, "name")
    assert html.count('class="field-error"') == 4
    assert Experiment.objects.count() == 0 and Dataset.objects.count() == 0


def test_it_creates_a_draft(login, editor, project, enqueue_calls):
    data = form_data(
        project,
        strategy="evolution",
        **{
            "strategy__evolution__population_size": "4",
            "strategy__evolution__sample_size": "2",
            "estimator__train__epochs": "1",
            "max_params": "50000",
            "budget_trials": "5",
            "space__mlp__max_depth": "2",
        },
    )
    response = login(editor).post(reverse("experiment-new", args=[project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    experiment = Experiment.objects.get()
    assert response["Location"] == reverse("experiment-detail", args=[experiment.pk])
    assert experiment.status == "draft" and enqueue_calls == []
    assert experiment.dataset.builtin_name == "digits" and experiment.dataset.project == project
    assert experiment.strategy_config["population_size"] == 4
    assert experiment.estimator_config["epochs"] == 1
    assert experiment.space_config == {"max_depth": 2}
    assert experiment.constraints["max_params"] == 50000
    assert experiment.budget_trials == 5
    assert experiment.created_by == editor


def test_it_reads_list_options_as_words_or_json(login, editor, project):
    arch = {"depth": 1, "width_1": 64, "width_2": 32, "activation": "relu", "dropout": 0.0,
            "batch_norm": False, "residual": False}  # fmt: skip
    data = form_data(project, strategy="fixed", **{
        "space__mlp__max_depth": "2", "strategy__fixed__archs": json.dumps([arch]),
    })  # fmt: skip
    response = login(editor).post(reverse("experiment-new", args=[project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Experiment.objects.get().strategy_config["archs"] == [arch]
    data["strategy__fixed__archs"] = "[{oops"
    html = login(editor).post(reverse("experiment-new", args=[project.pk]), data).content.decode()
    assert "not a valid JSON array" in field_block(html, "strategy__fixed__archs")


def test_it_creates_and_starts_on_an_existing_dataset(
    login, editor, project, digits_dataset, enqueue_calls, django_capture_on_commit_callbacks
):
    data = form_data(project, dataset=str(digits_dataset.pk), start_now="on")
    with django_capture_on_commit_callbacks(execute=True):
        response = login(editor).post(reverse("experiment-new", args=[project.pk]), data)
    assert response.status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.status == "queued" and enqueue_calls == [experiment.pk]
    assert Dataset.objects.count() == 1


# The experiment and trial pages ------------------------------------------------------------------------
def _page_queries(client, experiment) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("experiment-detail", args=[experiment.pk]))
    assert response.status_code == 200
    return len(queries)


def test_it_renders_the_experiment_page_with_constant_queries(
    login, owner, experiment_factory, trial_factory
):
    from experiments.models import Trial

    small, large = experiment_factory(), experiment_factory()
    for experiment, n in ((small, 10), (large, 500)):
        Trial.objects.bulk_create([
            Trial(experiment=experiment, number=i, arch={"depth": 1}, fingerprint=f"f{i}",
                  state=TrialState.COMPLETED, objective=i / 1000, metrics={"params": 1000 + i})
            for i in range(n)
        ])  # fmt: skip
    client = login(owner)
    assert _page_queries(client, small) == _page_queries(client, large)
    html = client.get(reverse("experiment-detail", args=[large.pk])).content.decode()
    assert "plotly/plotly.min.js" in html and "js/experiment.js" in html
    assert "cdn" not in html.lower()
    assert html.count("data-trial=") == 0  # rows come from the snapshot API, not the template
    assert '"choices": {"depth": [1, 2]' in html  # parallel-coordinates axes from the space


def test_it_shows_the_trial_page(login, viewer, experiment_factory, trial_factory):
    experiment = experiment_factory(constraints={"max_params": 1000, "max_latency_ms": 2.0})
    trial = trial_factory(
        experiment, state=TrialState.INFEASIBLE, objective=0.5,
        metrics={"val_acc": 0.5, "test_acc": 0.48, "params": 5130, "latency_ms": 0.3},
        constraint_values={"params": {"value": 5130, "limit": 1000, "ok": False},
                           "latency_ms": {"value": 0.3, "limit": 2.0, "ok": True}},
        error="Traceback (most recent call last):\n  File \"x.py\"\nRuntimeError: boom at layer 2",
    )  # fmt: skip
    TrialMetric.objects.create(trial=trial, step=1, values={"val_acc": 0.4, "train_loss": 1.2})
    html = login(viewer).get(reverse("trial-detail", args=[trial.pk])).content.decode()
    assert "Trial #0" in html
    assert "width_1" in html and "relu" in html  # architecture
    assert "test_acc" in html and "0.48" in html  # metrics
    assert "RuntimeError: boom at layer 2" in html and "Traceback" in html  # whole error text
    assert "over the limit" in html  # params 5130 > 1000
    assert '"points": [{"step": 1, "values": {"val_acc": 0.4' in html
    assert "plotly/plotly.min.js" in html


def test_it_serves_plotly_from_the_installed_package(client):
    from django.contrib.staticfiles import finders

    path = finders.find("plotly/plotly.min.js")
    assert path and "site-packages" in path


def test_it_keeps_pages_free_of_inline_handlers_and_cdns(login, owner, experiment):
    client = login(owner)
    for url in [
        reverse("project-list"),
        reverse("project-detail", args=[experiment.project_id]),
        reverse("experiment-new", args=[experiment.project_id]),
        reverse("experiment-detail", args=[experiment.pk]),
    ]:
        html = client.get(url).content.decode()
        assert not re.search(r"https?://(cdn|unpkg|cdnjs)", html), url
        assert " onclick=" not in html, url
