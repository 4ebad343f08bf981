"""Architecture pictures on the pages (trial page, arch.svg, trial diff) and the forms and pages of
issue 12 item 4: dataset preselected, number errors named, clone starts like new, one device
field, rename and delete of experiments and datasets, Redoc without fonts from the internet."""

from __future__ import annotations

import re

import pytest

from experiments.choices import ExperimentStatus, TrialState
from experiments.forms import CloneForm, ExperimentForm
from experiments.models import ActivityLog, Dataset, Experiment, TrialMetric
from tests.web.test_pages import field_block, form_data

pytestmark = pytest.mark.django_db

CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
CELL_ARCH = {"1<-0": "nor_conv_3x3", "2<-0": "none", "2<-1": "skip_connect", "3<-0": "avg_pool_3x3",
             "3<-1": "none", "3<-2": "nor_conv_1x1"}  # fmt: skip




@pytest.fixture
def cells(experiment_factory, trial_factory):
    """An nb201 experiment with two completed trials (#0 the known cell, #1 two edges changed)."""
    experiment = experiment_factory(space="nb201", space_config={"C": 8, "N": 1})
    a = trial_factory(experiment, arch=CELL_ARCH, state=TrialState.COMPLETED, objective=0.9)
    b = trial_factory(experiment, arch={**CELL_ARCH, "2<-1": "nor_conv_1x1", "3<-2": "skip_connect"},
                      state=TrialState.COMPLETED, objective=0.8)  # fmt: skip
    for step, acc in enumerate([0.5, 0.7], start=1):
        TrialMetric.objects.create(trial=a, step=step, values={"val_acc": acc, "train_acc": acc})
        TrialMetric.objects.create(trial=b, step=step, values={"val_acc": acc - 0.1})
    return experiment, a, b


def edges(html: str) -> dict[str, tuple[str, bool]]:
    """data-edge -> (op, changed) of every drawn edge in `html`."""
    found = re.findall(r'<g class="edge( changed)?" data-choices="[^"]*" data-edge="([^"]+)" data-op="([^"]+)"', html)
    return {edge.replace("&lt;", "<"): (op, bool(changed)) for changed, edge, op in found}


# Architecture pictures ---------------------------------------------------------------------------
def test_the_trial_page_draws_the_cell_and_offers_its_string(login, viewer, cells):
    _, trial, _ = cells
    html = login(viewer).get(f"/trials/{trial.pk}/").content.decode()
    assert edges(html) == {"1<-0": ("nor_conv_3x3", False), "2<-1": ("skip_connect", False),
                           "3<-0": ("avg_pool_3x3", False), "3<-2": ("nor_conv_1x1", False)}  # fmt: skip
    assert f'value="{CELL}"' in html and 'data-copy="arch-string"' in html


def test_the_trial_page_draws_an_mlp(login, viewer, experiment, trial_factory):
    trial = trial_factory(experiment)
    html = login(viewer).get(f"/trials/{trial.pk}/").content.decode()
    assert 'data-space="mlp"' in html and "Linear 32" in html
    assert 'id="arch-string"' not in html  # no benchmark string for this space


def test_it_serves_a_trials_drawing_to_members_only(login, viewer, outsider, cells, client):
    _, trial, _ = cells
    response = login(viewer).get(f"/trials/{trial.pk}/arch.svg")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert len(edges(response.content.decode())) == 4
    assert login(outsider).get(f"/trials/{trial.pk}/arch.svg").status_code == 404
    client.logout()
    assert client.get(f"/trials/{trial.pk}/arch.svg").status_code == 302


def test_the_diff_highlights_exactly_the_changed_edges(login, viewer, cells):
    experiment, a, b = cells
    response = login(viewer).get(f"/experiments/{experiment.pk}/diff/?a={a.number}&b={b.number}")
    html = response.content.decode()
    assert response.status_code == 200
    sides = html.split('data-side="1"')
    assert {e for e, (_, changed) in edges(sides[0]).items() if changed} == {"2<-1", "3<-2"}
    assert {e for e, (_, changed) in edges(sides[1]).items() if changed} == {"2<-1", "3<-2"}
    assert edges(sides[1])["2<-1"] == ("nor_conv_1x1", True)
    assert re.findall(r'<tr data-choice="([^"]+)"', html) == ["2&lt;-1", "3&lt;-2"]
    page = response.context["page"]
    assert [len(t["points"]) for t in page["trials"]] == [2, 2]


def test_the_diff_asks_for_trials_it_can_not_find(login, viewer, outsider, cells):
    experiment, a, _ = cells
    client = login(viewer)
    assert client.get(f"/experiments/{experiment.pk}/diff/").status_code == 200
    assert client.get(f"/experiments/{experiment.pk}/diff/?a={a.number}&b=x").status_code == 400
    missing = client.get(f"/experiments/{experiment.pk}/diff/?a={a.number}&b=99")
    assert missing.status_code == 404 and "Trial #99 is not in this experiment." in missing.content.decode()
    assert login(outsider).get(f"/experiments/{experiment.pk}/diff/?a=0&b=1").status_code == 404


def test_the_experiment_and_compare_pages_know_where_drawings_are(login, viewer, cells, experiment_factory):
    experiment, _, _ = cells
    client = login(viewer)
    html = client.get(f"/experiments/{experiment.pk}/").content.decode()
    assert '"arch": "/trials/0/arch.svg"' in html and 'id="diff-form"' in html
    other = experiment_factory()
    html = client.get(f"/projects/{experiment.project_id}/compare/?ids={experiment.pk},{other.pk}").content.decode()
    assert 'id="best-arch-grid"' in html and '"arch": "/trials/0/arch.svg"' in html


# Forms -----------------------------------------------------------------------------------------
def test_the_dataset_page_preselects_its_dataset(login, editor, project, digits_dataset, iris_dataset):
    client = login(editor)
    html = client.get(f"/datasets/{iris_dataset.pk}/").content.decode()
    assert f'href="/projects/{project.pk}/experiments/new/?dataset={iris_dataset.pk}"' in html
    form = client.get(f"/projects/{project.pk}/experiments/new/?dataset={iris_dataset.pk}").context["form"]
    assert form["dataset"].value() == str(iris_dataset.pk)


def test_a_non_number_is_an_error_naming_the_field(login, editor, project):
    data = form_data(project, **{"estimator__train__epochs": "abc", "budget_trials": "many"})
    response = login(editor).post(f"/projects/{project.pk}/experiments/new/", data)
    html = response.content.decode()
    assert response.status_code == 200 and not Experiment.objects.exists()
    assert "epochs must be a whole number." in field_block(html, "estimator__train__epochs")
    assert "Trials must be a whole number." in field_block(html, "budget_trials")


def test_the_form_has_one_device_field(project):
    form = ExperimentForm(project)
    assert "device" in form.fields
    assert not [name for name in form.fields if name.startswith("estimator__") and name.endswith(("__device", "__threads"))]


def test_clone_starts_like_new(project, experiment):
    assert CloneForm(experiment).initial.get("start_now", True) is True
    assert ExperimentForm(project).fields["start_now"].initial is True


# Rename and delete -----------------------------------------------------------------------------
def test_an_editor_renames_an_experiment_in_any_status(login, editor, experiment):
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING)
    response = login(editor).post(f"/experiments/{experiment.pk}/rename/", {"name": "Digits, wider"})
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.name == "Digits, wider" and experiment.status == ExperimentStatus.RUNNING
    entry = ActivityLog.objects.filter(target_id=experiment.pk, verb="experiment.renamed").get()
    assert entry.user == editor and entry.details["previous_name"] == "Search 1"


def test_renaming_needs_a_name_and_the_editor_role(login, editor, viewer, experiment):
    login(editor).post(f"/experiments/{experiment.pk}/rename/", {"name": "  "})
    experiment.refresh_from_db()
    assert experiment.name == "Search 1"
    assert login(viewer).post(f"/experiments/{experiment.pk}/rename/", {"name": "Mine"}).status_code == 403


def test_an_editor_deletes_a_finished_experiment_but_not_a_running_one(login, editor, experiment_factory, project):
    done = experiment_factory(status=ExperimentStatus.COMPLETED)
    running = experiment_factory(status=ExperimentStatus.RUNNING)
    client = login(editor)
    assert client.post(f"/experiments/{done.pk}/delete/")["Location"] == f"/projects/{project.pk}/"
    assert not Experiment.objects.filter(pk=done.pk).exists()
    assert ActivityLog.objects.filter(target_id=done.pk, verb="experiment.deleted", user=editor).exists()
    response = client.post(f"/experiments/{running.pk}/delete/", follow=True)
    assert Experiment.objects.filter(pk=running.pk).exists()
    assert "can not be deleted; cancel it first" in response.content.decode()
    assert not ActivityLog.objects.filter(target_id=running.pk, verb="experiment.deleted").exists()


def test_an_editor_renames_a_dataset(login, editor, viewer, digits_dataset):
    assert login(viewer).post(f"/datasets/{digits_dataset.pk}/rename/", {"name": "x"}).status_code == 403
    login(editor).post(f"/datasets/{digits_dataset.pk}/rename/", {"name": "Handwritten digits"})
    assert Dataset.objects.get(pk=digits_dataset.pk).name == "Handwritten digits"
    assert ActivityLog.objects.filter(target_id=digits_dataset.pk, verb="dataset.renamed", user=editor).exists()


def test_the_pages_offer_rename_and_delete_to_editors_only(login, editor, viewer, experiment):
    assert 'id="rename-form"' in login(editor).get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'id="rename-form"' not in login(viewer).get(f"/experiments/{experiment.pk}/").content.decode()


def test_redoc_loads_nothing_from_other_hosts(login, viewer):
    html = login(viewer).get("/api/redoc/").content.decode()
    assert "redoc" in html.lower()
    assert not re.findall(r'(?:href|src)="(?:https?:)?//', html)
