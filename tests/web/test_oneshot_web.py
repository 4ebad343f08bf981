"""One-shot experiments (supernet, DARTS), zero-cost scores and tabular benchmarks in the web app.

The API and the form validate one-shot configs against the engine's ONESHOT registry; run_oneshot
runs the job (called directly, like the other actors in test_tasks.py: messages land in `outbox`,
`drain` plays them back), writes ExperimentProgress rows, broadcasts them, survives a killed
worker by resuming from its checkpoint, and hands its top architectures to normal trials.
Experiments are tiny: digits, nb201 with C=4 and one cell per stage, one or a few epochs.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from datetime import timedelta

import pytest
from django.db import OperationalError, transaction
from django.urls import reverse
from django.utils import timezone

from experiments.choices import ArtifactKind, ExperimentStatus, TrialState
from experiments.engine import storage
from experiments.forms import option_field_name
from experiments.jobs import actors, enqueue, guards, locks
from experiments.live import broadcast
from experiments.models import Artifact, Experiment, ExperimentProgress
from search_engine.oneshot import ONESHOT, DartsJob, SupernetJob, load_checkpoint
from search_engine.spaces.nb201 import EDGE_LABELS, OPS, NB201Space
from tests.web.actors import drain

NB201 = {"C": 4, "N": 1}
SUPERNET = {"epochs": 1, "top_k": 2, "batch_size": 64, "monitor_archs": 1, "cycles": 6, "population_size": 4,
            "sample_size": 2}  # fmt: skip
DARTS = {"epochs": 3, "top_k": 2, "batch_size": 64, "warmup_fraction": 0.0}
ZERO_COST = ("synflow", "naswot", "grad_norm", "snip", "params")

pytestmark = pytest.mark.django_db
actor_test = pytest.mark.django_db(transaction=True)  # on_commit must fire; the guard thread must see rows


def payload(dataset, **overrides) -> dict:
    return {
        "project": dataset.project_id, "dataset": dataset.pk, "name": "Cells", "space": "nb201",
        "space_config": NB201, "estimator": "train", "estimator_config": {"epochs": 1}, "budget_trials": 5,
        "oneshot": {"name": "darts", "config": {"epochs": 2}}, **overrides,
    }  # fmt: skip


# Actors: captured messages, one Redis namespace per test -------------------------------------------
@pytest.fixture
def own_redis_namespace(settings):
    # The one-shot claim and the watchdog live in Redis under the broker's namespace: a fresh one
    # per test, so tests (and other sessions on the same server) never see each other's keys.
    settings.DRAMATIQ_BROKER = {
        **settings.DRAMATIQ_BROKER,
        "OPTIONS": {**settings.DRAMATIQ_BROKER["OPTIONS"], "namespace": f"oneshot-test-{uuid.uuid4().hex}"},
    }


@pytest.fixture
def outbox(outbox, own_redis_namespace, settings, tmp_path):
    """The shared outbox, with a MEDIA_ROOT of this test's own for checkpoints and artifacts."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return outbox


def names(outbox) -> list[str]:
    return [m.actor_name for m in outbox]


@pytest.fixture
def events(monkeypatch):
    """The values of every experiment.progress event, in order (the real broadcast still runs)."""
    sent: list[dict] = []
    real = broadcast.experiment_progress

    def experiment_progress(experiment, values):
        sent.append(values)
        real(experiment, values)

    monkeypatch.setattr(broadcast, "experiment_progress", experiment_progress)
    return sent


@pytest.fixture
def epochs_trained(monkeypatch):
    """The epochs each one-shot job really trains (a resumed job must not train one twice)."""
    trained: list[int] = []
    for job in (SupernetJob, DartsJob):
        real = job.train_epoch

        def train_epoch(self, epoch, real=real):
            trained.append(epoch)
            return real(self, epoch)

        monkeypatch.setattr(job, "train_epoch", train_epoch)
    return trained


@pytest.fixture
def oneshot_experiment(experiment_factory):
    """oneshot_experiment(name, config, **fields) -> a draft one-shot experiment on digits/nb201."""

    def make(name: str, config: dict, **fields) -> Experiment:
        return experiment_factory(**{
            "space": "nb201", "space_config": NB201, "strategy": "fixed", "strategy_config": {"then": "stop"},
            "estimator_config": {"epochs": 1, "batch_size": 64, "threads": 1, "device": "cpu"},
            "oneshot": {"name": name, "config": config}, "budget_trials": 5, **fields,
        })  # fmt: skip

    return make


def progress_steps(experiment, phase="train") -> list[int]:
    return list(ExperimentProgress.objects.filter(experiment=experiment, phase=phase)
                .order_by("step").values_list("step", flat=True))  # fmt: skip


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs in the job (not even `except Exception`)."""


# API validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"oneshot": {"name": "enas"}}, "oneshot", "name: unknown one-shot method 'enas'"),
        ({"oneshot": {"name": "darts", "config": {"epochs": 0}}}, "oneshot", "epochs: must be >= 1"),
        ({"oneshot": {"name": "darts", "config": {"remedy": "magic"}}}, "oneshot", "remedy: 'magic' is not one of"),
        ({"oneshot": {"name": "supernet", "config": {"learning_rate": 1}}}, "oneshot", "learning_rate: unknown option"),
        ({"oneshot": {"name": "darts"}, "space": "mlp", "space_config": {}}, "oneshot", "space: one-shot method 'darts' supports nb201"),
        ({"oneshot": "darts"}, "oneshot", 'expected {"name"'),
        ({"oneshot": {"name": "darts", "config": [1]}}, "oneshot", "config: expected an object"),
        ({"oneshot": {"name": "darts"}, "strategy": "random"}, "strategy", "leave strategy out"),
        ({"oneshot": {}}, "strategy", "required"),
    ],
)
def test_it_rejects_bad_oneshot_configs_naming_the_field(editor_client, digits_dataset, overrides, field, message):
    response = editor_client.post("/api/experiments/", payload(digits_dataset, **overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert message in " ".join(response.json()[field]), response.json()
    assert not Experiment.objects.exists()


def test_it_creates_a_oneshot_experiment_with_the_fixed_strategy(editor_client, digits_dataset):
    response = editor_client.post("/api/experiments/", payload(digits_dataset), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["strategy"] == "fixed" and body["strategy_config"] == {"archs": [], "then": "stop"}
    assert body["oneshot"]["name"] == "darts"
    assert body["oneshot"]["config"]["epochs"] == 2
    assert body["oneshot"]["config"]["remedy"] == "skip_cap"  # stored resolved, every default spelled out
    assert body["oneshot_result"] == {}


def test_it_lists_oneshot_methods_and_benchmark_tables_in_the_registry(viewer_client, settings, tmp_path):
    settings.TABULAR_BENCHMARK_DIR = tmp_path
    (tmp_path / "nb201-cifar10.csv").write_text("arch,val_acc\n")
    body = viewer_client.get("/api/registry/").json()
    assert set(body["oneshot"]) == set(ONESHOT.names()) >= {"supernet", "darts"}
    assert "epochs" in body["oneshot"]["darts"]["options"]
    assert body["benchmark_tables"] == ["nb201-cifar10.csv"]


def test_it_clones_a_oneshot_experiment_with_the_budget_asked_for(owner_client, oneshot_experiment):
    source = oneshot_experiment("supernet", SUPERNET, status=ExperimentStatus.COMPLETED, budget_trials=2,
                                strategy_config={"archs": ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]},
                                oneshot_result={"budget_trials_requested": 5, "budget_trials": 2})  # fmt: skip
    response = owner_client.post(f"/api/experiments/{source.pk}/clone/")
    assert response.status_code == 201
    clone = Experiment.objects.get(pk=response.json()["id"])
    assert clone.oneshot == source.oneshot and clone.oneshot_result == {}
    assert clone.budget_trials == 5
    assert clone.strategy == "fixed" and clone.strategy_config == {"archs": [], "then": "stop"}


# run_oneshot ---------------------------------------------------------------------------------------

@actor_test
def test_start_sends_the_oneshot_job_and_not_an_advance(outbox, oneshot_experiment):
    experiment = oneshot_experiment("supernet", SUPERNET)
    with transaction.atomic():
        experiment.start()
    assert names(outbox) == ["run_oneshot"]
    actors.advance_experiment.fn(experiment.pk)  # an advance meanwhile (a resume, the watchdog) sends no second one
    assert names(outbox) == ["run_oneshot", "watch_experiment"]
    assert not experiment.trials.exists()


@actor_test
def test_a_supernet_experiment_runs_end_to_end(outbox, oneshot_experiment, events):
    experiment = oneshot_experiment("supernet", SUPERNET, budget_trials=5)
    experiment.start()
    ran = drain(outbox)

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert ran[0] == "run_oneshot" and "finalize_experiment" in ran
    # Progress: one row per epoch and per search report, each broadcast with its phase and step.
    assert progress_steps(experiment) == [1]
    assert progress_steps(experiment, "search") == [6]
    row = ExperimentProgress.objects.get(experiment=experiment, phase="train", step=1)
    assert {"supernet_loss", "supernet_acc", "val_acc", "epoch"} <= set(row.values)
    sent = [(e["phase"], e["step"]) for e in events]
    assert sent == [("train", 1), ("search", 6), ("result", 0)]
    assert events[0]["supernet_loss"] == pytest.approx(row.values["supernet_loss"])
    # The result: the top architectures became the trials, trained as usual, and one was exported.
    result = experiment.oneshot_result
    assert result["method"] == "supernet" and result["completed"] is True
    assert result["budget_trials_requested"] == 5 and experiment.budget_trials == 2
    assert "history" not in result  # every epoch is in ExperimentProgress
    assert experiment.strategy == "fixed" and len(experiment.strategy_config["archs"]) == 2
    top = [entry["arch"] for entry in result["top_archs"]]
    trials = list(experiment.trials.order_by("number"))
    assert [t.arch for t in trials] == top
    assert all(t.state == TrialState.COMPLETED for t in trials)
    assert Artifact.objects.filter(experiment=experiment, kind=ArtifactKind.MODEL_ZIP).count() == 1
    assert load_checkpoint(storage.checkpoint_dir(experiment.pk)) is None  # cleaned up


@actor_test
def test_a_killed_worker_resumes_darts_from_the_last_checkpoint(outbox, oneshot_experiment, events, epochs_trained,
                                                               monkeypatch):  # fmt: skip
    experiment = oneshot_experiment("darts", DARTS, budget_trials=2)
    experiment.start()
    real = DartsJob.train_epoch

    def dies_in_epoch_2(self, epoch):
        if epoch == 2:
            raise WorkerKilled
        return real(self, epoch)

    monkeypatch.setattr(DartsJob, "train_epoch", dies_in_epoch_2)
    with pytest.raises(WorkerKilled):
        drain(outbox)
    assert epochs_trained == [1]  # killed in epoch 2, before its checkpoint
    assert load_checkpoint(storage.checkpoint_dir(experiment.pk))["epoch"] == 1
    assert progress_steps(experiment) == [1]
    monkeypatch.setattr(DartsJob, "train_epoch", real)
    epochs_trained.clear()

    # A killed worker would leave its claim until the lease runs out: meanwhile nothing is sent.
    client, key = locks.redis_client(), enqueue.oneshot_key(experiment.pk)
    client.set(key, "host:4242:dead-worker", ex=60)
    outbox.clear()
    actors.advance_experiment.fn(experiment.pk)
    assert "run_oneshot" not in names(outbox)
    client.delete(key)  # the lease expired
    actors.advance_experiment.fn(experiment.pk)  # what the watchdog does every lease/2 seconds
    assert names(outbox).count("run_oneshot") == 1
    drain(outbox)

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert epochs_trained == [2, 3]  # epoch 1 came from the checkpoint, not from training again
    assert progress_steps(experiment) == [1, 2, 3]
    replays = [e for e in events if e.get("replayed")]
    assert [(e["phase"], e["step"]) for e in replays] == [("train", 1)]
    # DARTS reports the softmaxed architecture weights, the discretised cell and the skip fraction.
    for row in ExperimentProgress.objects.filter(experiment=experiment, phase="train"):
        alphas = row.values["alphas"]
        assert set(alphas) == set(EDGE_LABELS)
        for weights in alphas.values():
            assert set(weights) == set(OPS) and sum(weights.values()) == pytest.approx(1, abs=1e-4)
        NB201Space().from_string(row.values["genotype"])
        assert 0 <= row.values["skip_fraction"] <= 1
    assert all("alphas" in e for e in events if e["phase"] == "train")
    assert experiment.oneshot_result["epochs_done"] == 3
    assert experiment.trials.filter(state=TrialState.COMPLETED).count() == 2


@actor_test
def test_a_duplicate_run_oneshot_does_nothing(outbox, oneshot_experiment, epochs_trained):
    experiment = oneshot_experiment("supernet", SUPERNET, budget_trials=1)
    experiment.start()
    client, key = locks.redis_client(), enqueue.oneshot_key(experiment.pk)
    client.set(key, "another-worker", ex=60)  # another worker runs the job
    actors.run_oneshot.fn(experiment.pk)
    assert epochs_trained == [] and not ExperimentProgress.objects.filter(experiment=experiment).exists()
    client.delete(key)

    drain(outbox, skip=("watch_experiment", "run_trial", "finalize_experiment"))
    experiment.refresh_from_db()
    assert experiment.oneshot_result and epochs_trained == [1]
    rows = list(ExperimentProgress.objects.filter(experiment=experiment).values_list("pk", "values"))
    trials = experiment.trials.count()

    actors.run_oneshot.fn(experiment.pk)  # delivered again after the job finished
    assert epochs_trained == [1]
    assert list(ExperimentProgress.objects.filter(experiment=experiment).values_list("pk", "values")) == rows
    assert experiment.trials.count() == trials


def _retrying(verb) -> None:
    """An experiment verb while the job's guard thread reads the row (SQLite's shared-cache test
    database reports a table lock instead of waiting, as a real database would)."""
    for _ in range(100):
        try:
            with transaction.atomic():
                return verb()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    raise AssertionError("the database stayed locked")


@actor_test
def test_pause_stops_the_job_after_its_epoch_and_resume_continues_it(outbox, oneshot_experiment, epochs_trained,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.05)
    config = {**SUPERNET, "epochs": 2, "top_k": 1, "monitor_archs": 0}
    experiment = oneshot_experiment("supernet", config, budget_trials=1)
    experiment.start()
    real = SupernetJob.train_epoch

    def paused_during_epoch_1(self, epoch):
        values = real(self, epoch)
        if epoch == 1:
            _retrying(lambda: Experiment.objects.get(pk=experiment.pk).pause())
            time.sleep(0.5)  # the guard polls every 0.05 s
        return values

    monkeypatch.setattr(SupernetJob, "train_epoch", paused_during_epoch_1)
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PAUSED and not experiment.oneshot_result
    assert progress_steps(experiment) == [1]
    assert load_checkpoint(storage.checkpoint_dir(experiment.pk))["epoch"] == 1  # kept for resume

    monkeypatch.setattr(SupernetJob, "train_epoch", real)
    epochs_trained.clear()
    with transaction.atomic():
        experiment.resume()
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert progress_steps(experiment) == [1, 2]
    assert experiment.trials.count() == 1


@actor_test
def test_cancel_ends_the_job_and_drops_its_checkpoint(outbox, oneshot_experiment, monkeypatch):
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.05)
    experiment = oneshot_experiment("darts", {**DARTS, "epochs": 4}, budget_trials=1)
    experiment.start()
    real = DartsJob.train_epoch

    def cancelled_in_epoch_1(self, epoch):
        values = real(self, epoch)
        if epoch == 1:
            _retrying(lambda: Experiment.objects.get(pk=experiment.pk).cancel())
            time.sleep(0.5)  # the guard polls every 0.05 s
        return values

    monkeypatch.setattr(DartsJob, "train_epoch", cancelled_in_epoch_1)
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.CANCELLED
    assert progress_steps(experiment) == [1]
    assert not experiment.trials.exists()
    assert load_checkpoint(storage.checkpoint_dir(experiment.pk)) is None


@actor_test
def test_cancelling_a_paused_job_drops_its_checkpoint_unless_a_worker_holds_it(outbox, oneshot_experiment):
    experiment = oneshot_experiment("darts", DARTS, status=ExperimentStatus.PAUSED)
    checkpoint = storage.checkpoint_dir(experiment.pk) / "checkpoint.pt"
    checkpoint.write_bytes(b"epoch 1")
    client, key = locks.redis_client(), enqueue.oneshot_key(experiment.pk)
    client.set(key, "a-worker-finishing-its-epoch", ex=60)
    with transaction.atomic():
        experiment.cancel()
    assert checkpoint.exists()  # that worker deletes it when it sees the cancel
    client.delete(key)
    enqueue.discard_oneshot_checkpoint(experiment.pk)
    assert not checkpoint.exists()

    other = oneshot_experiment("darts", DARTS, status=ExperimentStatus.PAUSED)
    checkpoint = storage.checkpoint_dir(other.pk) / "checkpoint.pt"
    checkpoint.write_bytes(b"epoch 1")
    with transaction.atomic():
        other.cancel()
    assert not checkpoint.exists()


@actor_test
def test_a_job_past_the_wall_time_budget_fails_the_experiment(outbox, oneshot_experiment, monkeypatch):
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.05)
    real = SupernetJob.train_epoch

    def slow_epoch(self, epoch):
        time.sleep(0.3)  # the guard looks meanwhile
        return real(self, epoch)

    monkeypatch.setattr(SupernetJob, "train_epoch", slow_epoch)
    experiment = oneshot_experiment("supernet", {**SUPERNET, "epochs": 3}, budget_wall_time_s=1)
    experiment.start()
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - timedelta(seconds=5))
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.FAILED
    assert "wall-time budget spent during the one-shot job (epoch 1 of 3 trained)" in experiment.status_message
    assert progress_steps(experiment) == [1]


# Snapshot and page ---------------------------------------------------------------------------------
def test_the_snapshot_includes_progress_and_trial_meta(viewer_client, oneshot_experiment, trial_factory,
                                                       django_assert_max_num_queries):  # fmt: skip
    experiment = oneshot_experiment("darts", DARTS)
    alphas = {edge: dict.fromkeys(OPS, 0.2) for edge in EDGE_LABELS}
    ExperimentProgress.objects.bulk_create([
        ExperimentProgress(experiment=experiment, phase="train", step=2, values={"phase": "train", "epoch": 2,
                                                                                 "supernet_loss": 1.5, "alphas": alphas}),
        ExperimentProgress(experiment=experiment, phase="train", step=1, values={"phase": "train", "epoch": 1,
                                                                                 "supernet_loss": 2.0, "alphas": alphas}),
    ])  # fmt: skip
    trial_factory(experiment, arch={"1<-0": "none"}, meta={"proxy": "synflow", "proxy_score": 12.5},
                  metrics={"val_acc": 0.5})  # fmt: skip
    body = viewer_client.get(f"/api/experiments/{experiment.pk}/snapshot/").json()
    assert [(p["phase"], p["step"], p["supernet_loss"]) for p in body["progress"]] == [("train", 1, 2.0),
                                                                                       ("train", 2, 1.5)]
    assert body["progress"][0]["alphas"] == alphas
    assert body["trials"][0]["meta"]["proxy_score"] == 12.5
    assert body["experiment"]["oneshot"]["name"] == "darts"


def test_the_page_shows_the_supernet_card_for_oneshot_experiments_only(client, viewer, oneshot_experiment,
                                                                       experiment_factory):  # fmt: skip
    client.force_login(viewer)
    darts = client.get(reverse("experiment-detail", args=[oneshot_experiment("darts", DARTS).pk])).content.decode()
    assert 'id="oneshot-card"' in darts and 'id="chart-alphas"' in darts and 'id="genotype-rows"' in darts
    assert 'id="proxy-card"' in darts
    supernet = oneshot_experiment("supernet", SUPERNET)
    html = client.get(reverse("experiment-detail", args=[supernet.pk])).content.decode()
    assert 'id="chart-supernet"' in html and 'id="chart-alphas"' not in html
    plain = client.get(reverse("experiment-detail", args=[experiment_factory().pk])).content.decode()
    assert 'id="oneshot-card"' not in plain and 'id="proxy-card"' in plain


# The new-experiment form ---------------------------------------------------------------------------
def _form_data(project, **overrides) -> dict:
    from experiments.forms import ExperimentForm

    form = ExperimentForm(project)
    data = {}
    for name, field in form.fields.items():
        value = form.get_initial_for_field(field, name)
        if value is None or value is False:
            continue
        data[name] = "on" if value is True else (", ".join(map(str, value)) if isinstance(value, list) else value)
    data.update(name="Cells", dataset="builtin:digits", start_now="", space="nb201",
                **{"space__nb201__C": "4", "space__nb201__N": "1", "estimator__train__epochs": "1"})
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_the_form_lists_oneshot_methods_and_zero_cost_estimators(client, editor, project):
    client.force_login(editor)
    html = client.get(reverse("experiment-new", args=[project.pk])).content.decode()
    assert 'name="method"' in html
    for name, info in ONESHOT.describe().items():
        assert f'<option value="oneshot:{name}"' in html
        for option in info["options"]:
            field = f'name="{option_field_name("oneshot", name, option)}"'
            assert (field in html) == (option not in ("device", "threads")), (name, option)
    assert "One-shot: DARTS" in html and "One-shot: supernet" in html
    for estimator in (*ZERO_COST, "tabular"):
        assert f'<option value="{estimator}"' in html
    assert '<option value="zc_prescreen"' in html


def test_the_form_creates_a_darts_experiment(client, editor, project):
    client.force_login(editor)
    data = _form_data(project, method="oneshot:darts",
                      **{"oneshot__darts__epochs": "3", "oneshot__darts__top_k": "2", "strategy": "evolution"})
    response = client.post(reverse("experiment-new", args=[project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    experiment = Experiment.objects.get()
    assert experiment.oneshot["name"] == "darts"
    assert experiment.oneshot["config"]["epochs"] == 3 and experiment.oneshot["config"]["top_k"] == 2
    assert experiment.strategy == "fixed"


def test_the_form_shows_oneshot_errors_next_to_the_input(client, editor, project):
    client.force_login(editor)
    url = reverse("experiment-new", args=[project.pk])
    html = client.post(url, _form_data(project, method="oneshot:darts", space="mlp",
                                       **{"space__mlp__max_depth": "2"})).content.decode()  # fmt: skip
    block = field_block(html, "method")
    assert "field-error" in block and "supports nb201, not &#x27;mlp&#x27;" in block, block
    html = client.post(url, _form_data(project, method="oneshot:darts", **{"oneshot__darts__epochs": "0"})).content.decode()
    block = field_block(html, "oneshot__darts__epochs")
    assert "field-error" in block and "must be &gt;= 1" in block
    assert not Experiment.objects.exists()


def field_block(html: str, field_name: str) -> str:
    """The markup of the form field (label, input, help, errors) holding the input `field_name`."""
    blocks = re.split(r'<div class="field(?=[" ])', html)
    return next(b for b in blocks if f'name="{field_name}"' in b)


def test_clone_and_edit_prefills_the_oneshot_method(client, editor, oneshot_experiment):
    source = oneshot_experiment("darts", {**DARTS, "epochs": 7}, status=ExperimentStatus.COMPLETED, budget_trials=2,
                                oneshot_result={"budget_trials_requested": 5, "budget_trials": 2})  # fmt: skip
    client.force_login(editor)
    html = client.get(reverse("experiment-clone", args=[source.pk])).content.decode()
    assert '<option value="oneshot:darts" selected>' in html
    assert 'name="oneshot__darts__epochs" value="7"' in html
    assert 'name="budget_trials" value="5"' in html


# Tabular benchmarks --------------------------------------------------------------------------------
def write_nb201_table(path, n=None):
    """Every nb201 cell (or the first n) with a synthetic accuracy: more convolutions score higher."""
    space = NB201Space()
    lines = ["arch,val_acc,test_acc,train_time_s"]
    for i, ops in enumerate(itertools.product(OPS, repeat=len(EDGE_LABELS))):
        if n is not None and i >= n:
            break
        score = sum(op.startswith("nor_conv") for op in ops) / 6
        lines.append(f"{space.to_string(dict(zip(EDGE_LABELS, ops)))},{0.5 + 0.4 * score:.4f},"
                     f"{0.45 + 0.4 * score:.4f},{10 + i % 7}")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def benchmark_dir(settings, tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    settings.TABULAR_BENCHMARK_DIR = folder
    return folder


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "not a table name"),
        ("../secret.csv", "not a table name"),
        ("missing.csv", "no table called 'missing.csv'"),
        ("notes.txt", "not a .csv table"),
        ("outside.csv", "not in the benchmark folder"),  # a symlink leading out of the folder
        ("", "pick a benchmark table"),
    ],
)
def test_the_api_refuses_tables_outside_the_benchmark_folder(editor_client, digits_dataset, benchmark_dir, tmp_path,
                                                            path, message):  # fmt: skip
    write_nb201_table(benchmark_dir / "small.csv", n=20)
    (benchmark_dir / "notes.txt").write_text("arch,val_acc\n")
    secret = write_nb201_table(tmp_path / "secret.csv", n=5)
    (benchmark_dir / "outside.csv").symlink_to(secret)
    data = payload(digits_dataset, oneshot={}, strategy="random", estimator="tabular", estimator_config={"path": path})
    response = editor_client.post("/api/experiments/", data, format="json")
    assert response.status_code == 400
    errors = " ".join(response.json()["estimator_config"])
    assert errors.startswith("path: ") and message in errors and "tables: small.csv" in errors
    assert str(tmp_path) not in errors  # no server path in the message


def test_the_api_stores_a_table_by_name(editor_client, digits_dataset, benchmark_dir):
    write_nb201_table(benchmark_dir / "small.csv", n=20)
    data = payload(digits_dataset, oneshot={}, strategy="random", estimator="tabular",
                   estimator_config={"path": "small.csv", "report_columns": ["test_acc"]})  # fmt: skip
    response = editor_client.post("/api/experiments/", data, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["estimator_config"]["path"] == "small.csv"
    bad = {**data, "estimator_config": {"path": "small.csv", "objective_column": "accuracy"}}
    response = editor_client.post("/api/experiments/", bad, format="json")
    assert response.status_code == 400 and "accuracy: no such column" in response.json()["estimator_config"][0]


def test_the_form_lists_the_benchmark_tables(client, editor, project, benchmark_dir):
    write_nb201_table(benchmark_dir / "nb201-digits.csv", n=5)
    (benchmark_dir / ".hidden.csv").write_text("arch\n")
    client.force_login(editor)
    html = client.get(reverse("experiment-new", args=[project.pk])).content.decode()
    block = field_block(html, "estimator__tabular__path")
    assert '<option value="nb201-digits.csv"' in block and ".hidden.csv" not in block


@actor_test
def test_a_tabular_experiment_runs_through_the_actors(outbox, experiment_factory, benchmark_dir):
    write_nb201_table(benchmark_dir / "nb201-all.csv")  # all 15,625 cells
    experiment = experiment_factory(
        space="nb201", space_config=NB201, strategy="evolution",
        strategy_config={"population_size": 3, "sample_size": 2}, estimator="tabular",
        estimator_config={"path": "nb201-all.csv", "report_columns": ["test_acc"], "cost_column": "train_time_s"},
        budget_trials=6, parallelism=2,
    )  # fmt: skip
    experiment.start()
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert "nothing to export" in experiment.status_message
    trials = list(experiment.trials.all())
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETED for t in trials)
    space = NB201Space()
    for trial in trials:
        score = sum(op.startswith("nor_conv") for op in trial.arch.values()) / 6
        assert trial.metrics["val_acc"] == pytest.approx(0.5 + 0.4 * score, abs=1e-4)
        assert trial.metrics["test_acc"] == pytest.approx(0.45 + 0.4 * score, abs=1e-4)
        assert trial.objective == trial.metrics["val_acc"]
        space.from_string(space.to_string(trial.arch))
