"""Model downloads: the streamed, permission-checked ZIP; packages of any completed trial made by a
background job; the best architecture retrained on train+val.

Models run OUTSIDE the app, as a user with only the ZIP and their original data would run them:
the package is unzipped into a temporary folder with the raw source data next to it (a built-in
dataset's NPZ made with the command the card gives, an upload's own file), and `python -I` from that
folder (no Django, no search_engine) runs TorchScript and ONNX on the raw test rows, `predict.py
--rows test` and the card's python block, each of which must give the card's test accuracy.

Actors run in-process (actor.fn) against the test database, their messages captured by `outbox`
and played back by `drain`, as in test_tasks.py. Experiments are tiny: digits, mlp, random, 3
trials of one epoch.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
import zipfile

import numpy as np
import pytest
from django.core.files.base import ContentFile

from experiments.api.serializers import ArtifactSerializer
from experiments.choices import ArtifactKind, ArtifactStatus, ExperimentStatus, TrialState
from experiments.engine import build
from experiments.jobs import actors, locks, packages
from experiments.live import broadcast, payloads
from experiments.models import ActivityLog, ActivityVerb, Artifact, Dataset
from tests.web.actors import drain

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit must fire (jobs are sent on commit)


# Fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    # Files in a folder of this test's own; Redis locks under a namespace of this test's own.
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DRAMATIQ_BROKER = {
        **settings.DRAMATIQ_BROKER,
        "OPTIONS": {**settings.DRAMATIQ_BROKER["OPTIONS"], "namespace": f"dl-test-{uuid.uuid4().hex}"},
    }


@pytest.fixture
def events(monkeypatch):
    """(type, payload) of every broadcast, in order."""
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(broadcast, "send", lambda experiment_id, event_type, payload, project_id=None:
                        sent.append((event_type, payload)))  # fmt: skip
    return sent


@pytest.fixture
def finished(experiment_factory, outbox, owner):
    """A completed search on digits (mlp, random, 3 trials, 1 epoch) with its best model exported."""
    experiment = experiment_factory(name="Digits MLP")
    experiment.start(by=owner)
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    return experiment


def _artifact(experiment, trial=None, *, status=ArtifactStatus.READY, body=b"PK zip bytes") -> Artifact:
    artifact = Artifact(experiment=experiment, trial=trial, kind=ArtifactKind.MODEL_ZIP, status=status)
    if status == ArtifactStatus.READY:
        artifact.size_bytes = len(body)
        artifact.file.save("model.zip", ContentFile(body), save=False)
    artifact.save()
    return artifact


# Running a package outside the app ------------------------------------------------------------------
OUTSIDE = r"""
import json, pathlib, sys
for name in ("django", "search_engine", "experiments", "nasweb"):
    sys.modules[name] = None  # any import of these fails: the package must stand alone
import numpy as np, onnxruntime as ort, torch

folder = pathlib.Path(sys.argv[1])
X, y = np.load(folder / "X_test.npy"), np.load(folder / "y_test.npy")
model_dir = folder / "model"
scripted = torch.jit.load(str(model_dir / "model.pt")).eval()
with torch.no_grad():
    ts_pred = scripted(torch.from_numpy(X)).argmax(1).numpy()
session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
onnx_pred = session.run(None, {session.get_inputs()[0].name: X})[0].argmax(1)
print(json.dumps({"torchscript_correct": int((ts_pred == y).sum()), "onnx_correct": int((onnx_pred == y).sum()),
                  "n": int(len(y)),
                  "foreign": sorted(m for m, mod in sys.modules.items()
                                     if mod is not None and m.split(".")[0] in ("django", "search_engine"))}))
"""


def _python_outside(folder, *args: str, home) -> subprocess.CompletedProcess:
    # -I and a bare environment: no PYTHONPATH, no user site, no script folder on sys.path.
    return subprocess.run(
        [sys.executable, "-I", *args], cwd=folder, capture_output=True, text=True, timeout=180,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(home)},
    )  # fmt: skip


def _place_raw_data(model_dir, experiment) -> str:
    """The dataset's raw file next to the unzipped package, under the name the card gives it; for
    a built-in dataset made exactly as the card says."""
    raw_input = json.loads((model_dir / "architecture.json").read_text())["raw_input"]
    dataset = experiment.dataset
    if dataset.source == "builtin":
        card = (model_dir / "MODEL_CARD.md").read_text()
        command = re.search(r"```sh\npython -c '(.*?)'\n```", card).group(1)
        assert command == "; ".join(raw_input["make_file"])
        done = subprocess.run([sys.executable, "-c", command], cwd=model_dir, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    else:
        with dataset.file.open("rb") as src:
            (model_dir / raw_input["file"]).write_bytes(src.read())
    return raw_input["file"]


def run_outside(zip_bytes: bytes, experiment, tmp_path) -> dict:
    """Unzip the package, put the raw source data next to it and run, with `python -I` from that
    folder: TorchScript and ONNX on the raw test rows, predict.py --rows test, the card's snippet."""
    folder = tmp_path / f"outside-{uuid.uuid4().hex[:6]}"
    model_dir = folder / "model"
    with zipfile.ZipFile(__import__("io").BytesIO(zip_bytes)) as zf:
        zf.extractall(model_dir)
    task = build.load_task(experiment.dataset, experiment.seed)
    np.save(folder / "X_test.npy", task.X_test_raw)  # the rows as the source holds them
    np.save(folder / "y_test.npy", task.y_test.numpy().astype(np.int64))
    done = _python_outside(folder, "-c", OUTSIDE, str(folder), home=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    raw_file = _place_raw_data(model_dir, experiment)
    card = (model_dir / "MODEL_CARD.md").read_text()
    result["card_accuracy"] = re.search(r"Test accuracy of the exported model .*: \*\*([0-9.]+) \(", card).group(1)
    done = _python_outside(model_dir, "predict.py", raw_file, "--rows", "test", home=tmp_path)
    assert done.returncode == 0, done.stderr
    result["predict_accuracy"] = re.search(r"^accuracy ([0-9.]+) \(", done.stdout, re.M).group(1)
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 1
    (model_dir / "card_snippet.py").write_text(blocks[0])
    done = _python_outside(model_dir, "card_snippet.py", home=tmp_path)
    assert done.returncode == 0, done.stderr
    result["snippet_output"] = done.stdout.strip()
    return result


def assert_reproduced(result: dict, reported: float) -> None:
    """The card's accuracy is the trial's, and predict.py and the snippet print it on the raw data."""
    assert result["torchscript_correct"] / result["n"] == reported
    assert result["onnx_correct"] / result["n"] == reported
    assert result["card_accuracy"] == f"{reported:.4f}"
    assert result["predict_accuracy"] == result["card_accuracy"]
    assert result["snippet_output"] == f"accuracy {result['card_accuracy']}"
    assert result["foreign"] == []


def download(client, artifact) -> bytes:
    response = client.get(f"/api/artifacts/{artifact.pk}/download/")
    assert response.status_code == 200, response.content[:300]
    assert response.streaming
    return b"".join(response.streaming_content)


# Downloads --------------------------------------------------------------------------------------------
def test_it_streams_the_zip_to_every_member_and_logs_who_downloaded(
    experiment, trial_factory, client_for, owner, editor, viewer
):
    artifact = _artifact(experiment, trial_factory(experiment, state="completed", objective=0.9), body=b"PK" * 5000)
    for user in (owner, editor, viewer):
        response = client_for(user).get(f"/api/artifacts/{artifact.pk}/download/")
        assert response.status_code == 200
        assert response.streaming  # FileResponse: sent in blocks from storage
        assert response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"].startswith("attachment;")
        assert artifact.file.name.rsplit("/", 1)[-1] in response["Content-Disposition"]
        assert b"".join(response.streaming_content) == b"PK" * 5000
    logged = ActivityLog.objects.filter(verb=ActivityVerb.MODEL_DOWNLOADED, target_id=artifact.pk)
    assert sorted(logged.values_list("actor_name", flat=True)) == sorted(u.username for u in (owner, editor, viewer))


def test_it_refuses_the_download_to_non_members_and_anonymous_users(experiment, outsider_client, api_client):
    artifact = _artifact(experiment)
    assert outsider_client.get(f"/api/artifacts/{artifact.pk}/download/").status_code == 404
    assert outsider_client.get(f"/api/artifacts/{artifact.pk}/").status_code == 404
    assert api_client.get(f"/api/artifacts/{artifact.pk}/download/").status_code == 401
    assert not ActivityLog.objects.filter(verb=ActivityVerb.MODEL_DOWNLOADED).exists()


def test_the_download_page_link_sends_anonymous_browsers_to_log_in(experiment, client):
    artifact = _artifact(experiment)
    # A browser (not an API client) following a Download link while logged out: no file.
    response = client.get(f"/api/artifacts/{artifact.pk}/download/")
    assert response.status_code in (401, 403)


def test_a_package_still_being_made_cannot_be_downloaded(experiment, trial_factory, viewer_client):
    artifact = _artifact(experiment, trial_factory(experiment, state="completed"), status=ArtifactStatus.RUNNING)
    response = viewer_client.get(f"/api/artifacts/{artifact.pk}/download/")
    assert response.status_code == 409 and "running" in response.json()["detail"]


def test_the_api_and_the_events_describe_an_artifact_alike(experiment, trial_factory):
    artifact = _artifact(experiment, trial_factory(experiment, state="completed"))
    artifact = Artifact.objects.select_related("trial").get(pk=artifact.pk)
    rest, event = ArtifactSerializer(artifact).data, payloads.artifact_summary(artifact)
    assert set(rest) == set(event)
    dates = ("created_at", "finished_at")  # both ISO 8601 ("Z" from DRF, "+00:00" from isoformat)
    assert {k: v for k, v in rest.items() if k not in dates} == {k: v for k, v in event.items() if k not in dates}


# The best model, outside the app ----------------------------------------------------------------------
def test_the_best_models_zip_runs_outside_the_app_with_the_reported_test_accuracy(finished, viewer_client, tmp_path):
    best = finished.best_trial()
    artifact = Artifact.objects.get(experiment=finished, kind=ArtifactKind.MODEL_ZIP)
    assert artifact.trial_id == best.pk and artifact.metrics["retrained"] is False
    blob = download(viewer_client, artifact)

    with zipfile.ZipFile(__import__("io").BytesIO(blob)) as zf:
        assert {"model.pt", "model.onnx", "weights.safetensors", "architecture.json", "MODEL_CARD.md"} <= set(
            zf.namelist()
        )
        card = zf.read("MODEL_CARD.md").decode()
        description = json.loads(zf.read("architecture.json"))
    # The card: dataset, test metrics, measured params / FLOPs / latency against limits, seeds,
    # versions, and code that loads and runs the model.
    for needle in ("digits", "Test accuracy", "| params |", "| flops |", "| latency_ms |", "trial seed",
                   "Search seed 0", "torch ", "onnxruntime ", "torch.jit.load", "ort.InferenceSession",
                   f'project "{finished.project.name}"', "built-in `digits`", "python predict.py digits.npz"):  # fmt: skip
        assert needle in card, needle
    assert {"labels.json", "split.json", "predict.py"} <= set(zf.namelist())
    # Since issue 10 the model takes load_digits().data as it is and standardises inside the graph.
    assert description["normalize"] is not None and description["raw_input"]["scale"] == 16.0

    result = run_outside(blob, finished, tmp_path)
    reported = best.metrics["test_acc"]
    assert_reproduced(result, reported)
    assert artifact.metrics["exported_test_acc"] == reported
    print(f"\nbest trial #{best.number}: reported test_acc {reported:.4f}; outside the app TorchScript "
          f"{result['torchscript_correct']}/{result['n']}, ONNX {result['onnx_correct']}/{result['n']}")  # fmt: skip


def test_an_uploaded_csvs_package_runs_on_the_file_itself(experiment_factory, project, owner, outbox,
                                                          viewer_client, tmp_path):  # fmt: skip
    from sklearn.datasets import load_iris

    d = load_iris()
    lines = ["sepal length,sepal width,petal length,petal width,species"]
    lines += [",".join([*(f"{v:g}" for v in row), str(d.target_names[t])]) for row, t in zip(d.data, d.target)]
    body = ("\n".join(lines) + "\n").encode()
    dataset = Dataset(project=project, name="flowers", source="csv", options={"target": "species"},
                      checksum=hashlib.sha256(body).hexdigest(), size_bytes=len(body), created_by=owner)  # fmt: skip
    dataset.file.save("flowers.csv", ContentFile(body), save=False)
    dataset.save()
    experiment = experiment_factory(name="Flowers MLP", dataset=dataset)
    experiment.start(by=owner)
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    best = experiment.best_trial()
    artifact = Artifact.objects.get(experiment=experiment, kind=ArtifactKind.MODEL_ZIP)
    blob = download(viewer_client, artifact)
    with zipfile.ZipFile(__import__("io").BytesIO(blob)) as zf:
        card = zf.read("MODEL_CARD.md").decode()
        assert json.loads(zf.read("labels.json")) == ["setosa", "versicolor", "virginica"]
    assert f"uploaded CSV `flowers.csv` (sha256 {dataset.checksum})" in card
    assert "python predict.py flowers.csv --rows test" in card
    result = run_outside(blob, experiment, tmp_path)
    assert_reproduced(result, best.metrics["test_acc"])
    print(f"\nuploaded CSV, best trial #{best.number}: card {result['card_accuracy']}, predict.py "
          f"{result['predict_accuracy']}, snippet {result['snippet_output']}")


# Packages of any completed trial ----------------------------------------------------------------------
def test_a_non_best_trials_package_is_made_by_a_job_and_reproduces_its_accuracy(
    experiment_factory, outbox, events, client_for, viewer, editor, tmp_path
):
    experiment = experiment_factory(name="Digits MLP")
    experiment.start()
    drain(outbox, skip=("watch_experiment", "finalize_experiment"))  # every trial done, not yet finalized
    best = experiment.best_trial()
    other = experiment.trials.filter(state=TrialState.COMPLETED).exclude(pk=best.pk).order_by("number").first()
    assert other is not None and not Artifact.objects.exists()

    # A viewer asks (a read: a derived file of a trial they can see); asking again reuses the job.
    response = client_for(viewer).post(f"/api/trials/{other.pk}/package/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and response.json()["trial_number"] == other.number
    again = client_for(editor).post(f"/api/trials/{other.pk}/package/")
    assert again.status_code == 202 and again.json()["id"] == response.json()["id"]
    assert [m.actor_name for m in outbox].count("package_trial") == 1
    artifact = Artifact.objects.get(pk=response.json()["id"])
    assert artifact.created_by == viewer

    # The finalize still exports the best trial: another trial's package is not the final export.
    actors.finalize_experiment.fn(experiment.pk, "trial budget spent")
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert Artifact.objects.filter(trial=best, kind=ArtifactKind.MODEL_ZIP, status=ArtifactStatus.READY).exists()

    events.clear()
    assert "package_trial" in drain(outbox)
    artifact.refresh_from_db()
    assert artifact.status == ArtifactStatus.READY, artifact.error
    reported = other.metrics["test_acc"]
    # Its weights were not stored (not the best when it finished, and finalize cleaned up): the job
    # retrained it with the trial's seed, and got the trial's model back.
    assert artifact.metrics["retrained"] is True
    assert artifact.metrics["retrained_test_acc"] == reported
    assert artifact.metrics["reproduced"] is True
    assert artifact.metrics["exported_test_acc"] == reported
    assert artifact.progress["phase"] == "done" and [p["epoch"] for p in artifact.progress["history"]] == [1]

    types = [t for t, _ in events]
    assert types[0] == "artifact.progress" and types[-1] == "artifact.ready"
    phases = [p["artifact"]["progress"].get("phase") for t, p in events if t == "artifact.progress"]
    assert phases[0] == "preparing" and "training" in phases and "exporting" in phases
    epochs = [p["artifact"]["progress"]["epoch"] for t, p in events
              if t == "artifact.progress" and p["artifact"]["progress"].get("phase") == "training"]  # fmt: skip
    assert epochs == [0, 1]  # training starts, then one event per epoch
    assert events[-1][1]["artifact"]["status"] == "ready"

    blob = download(client_for(viewer), artifact)
    with zipfile.ZipFile(__import__("io").BytesIO(blob)) as zf:
        card = zf.read("MODEL_CARD.md").decode()
    assert f"model of trial #{other.number}" in card and "equal to the trial's" in card
    result = run_outside(blob, experiment, tmp_path)
    assert_reproduced(result, reported)
    print(f"\nnon-best trial #{other.number}: reported test_acc {reported:.4f}; job's retrain "
          f"{artifact.metrics['retrained_test_acc']:.4f}; outside the app TorchScript "
          f"{result['torchscript_correct']}/{result['n']}, ONNX {result['onnx_correct']}/{result['n']}")  # fmt: skip

    # Duplicates: a message delivered again does nothing; asking again returns the ready package.
    events.clear()
    name = artifact.file.name
    actors.package_trial.fn(artifact.pk)
    artifact.refresh_from_db()
    assert artifact.file.name == name and events == []
    response = client_for(viewer).post(f"/api/trials/{other.pk}/package/")
    assert response.status_code == 200 and response.json()["id"] == artifact.pk
    assert outbox == []


def test_the_best_trials_package_is_the_final_export(finished, viewer_client, outbox):
    best = finished.best_trial()
    exported = Artifact.objects.get(experiment=finished, kind=ArtifactKind.MODEL_ZIP)
    response = viewer_client.post(f"/api/trials/{best.pk}/package/")
    assert response.status_code == 200 and response.json()["id"] == exported.pk
    assert outbox == []


def test_it_refuses_packages_that_cannot_be_made(experiment_factory, trial_factory, client_for, viewer, outsider,
                                                 outbox):  # fmt: skip
    experiment = experiment_factory()
    queued = trial_factory(experiment)
    response = client_for(viewer).post(f"/api/trials/{queued.pk}/package/")
    assert response.status_code == 409 and "only a completed trial" in response.json()["detail"]

    proxy = experiment_factory(estimator="synflow", estimator_config={})
    scored = trial_factory(proxy, state="completed", objective=1.0)
    response = client_for(viewer).post(f"/api/trials/{scored.pk}/package/")
    assert response.status_code == 409 and "without training" in response.json()["detail"]

    done = trial_factory(experiment, state="completed", objective=0.5)
    assert client_for(outsider).post(f"/api/trials/{done.pk}/package/").status_code == 404
    assert not Artifact.objects.exists() and outbox == []


def test_a_failed_job_says_why_and_a_new_request_starts_afresh(experiment_factory, trial_factory, viewer_client,
                                                              outbox, events, monkeypatch):  # fmt: skip
    experiment = experiment_factory(status=ExperimentStatus.COMPLETED)
    trial = trial_factory(experiment, state="completed", objective=0.5, metrics={"test_acc": 0.5})
    first = viewer_client.post(f"/api/trials/{trial.pk}/package/").json()

    def broken(*args, **kwargs):
        raise ValueError("the dataset file is gone")

    monkeypatch.setattr(build, "build_search", broken)
    drain(outbox)
    failed = Artifact.objects.get(pk=first["id"])
    assert failed.status == ArtifactStatus.FAILED and failed.error == "ValueError: the dataset file is gone"
    assert events[-1][0] == "artifact.failed"

    second = viewer_client.post(f"/api/trials/{trial.pk}/package/")
    assert second.status_code == 202 and second.json()["id"] != first["id"]


def test_a_duplicate_delivered_while_a_worker_holds_the_job_does_nothing(experiment_factory, trial_factory,
                                                                        viewer_client, outbox, monkeypatch):  # fmt: skip
    experiment = experiment_factory(status=ExperimentStatus.COMPLETED)
    trial = trial_factory(experiment, state="completed", objective=0.5)
    artifact_id = viewer_client.post(f"/api/trials/{trial.pk}/package/").json()["id"]
    calls = []
    monkeypatch.setattr(packages, "build_trial_package", calls.append)

    locks.redis_client().set(locks.key("artifact", artifact_id), "another-worker")  # its lock, held
    actors.package_trial.fn(artifact_id)
    assert calls == [] and Artifact.objects.get(pk=artifact_id).status == ArtifactStatus.PENDING

    locks.redis_client().delete(locks.key("artifact", artifact_id))
    actors.package_trial.fn(artifact_id)
    assert calls == [artifact_id]


def test_a_job_stopped_by_the_time_limit_is_failed_with_the_reason(experiment_factory, trial_factory,
                                                                  viewer_client, outbox, monkeypatch):  # fmt: skip
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    experiment = experiment_factory(status=ExperimentStatus.COMPLETED)
    trial = trial_factory(experiment, state="completed", objective=0.5)
    artifact_id = viewer_client.post(f"/api/trials/{trial.pk}/package/").json()["id"]

    def too_long(artifact_id):
        Artifact.objects.filter(pk=artifact_id).update(status=ArtifactStatus.RUNNING)
        raise TimeLimitExceeded()

    monkeypatch.setattr(packages, "build_trial_package", too_long)
    actors.package_trial.fn(artifact_id)
    artifact = Artifact.objects.get(pk=artifact_id)
    assert artifact.status == ArtifactStatus.FAILED and "time limit" in artifact.error
    assert not locks.redis_client().exists(locks.key("artifact", artifact_id))  # the lock is released


# Retrain on train+val ------------------------------------------------------------------------------------
def test_retraining_the_best_on_train_and_val_makes_its_own_package(finished, client_for, viewer, editor, outbox,
                                                                    events, tmp_path):  # fmt: skip
    best = finished.best_trial()
    assert client_for(viewer).post(f"/api/experiments/{finished.pk}/retrain/").status_code == 403
    response = client_for(editor).post(f"/api/experiments/{finished.pk}/retrain/", {"epochs": 2}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "retrained_zip" and body["trial"] == best.pk and body["progress"]["epochs"] == 2
    again = client_for(editor).post(f"/api/experiments/{finished.pk}/retrain/", {"epochs": 2}, format="json")
    assert again.json()["id"] == body["id"]
    assert [m.actor_name for m in outbox] == ["retrain_on_train_and_val"]

    events.clear()
    drain(outbox)
    artifact = Artifact.objects.get(pk=body["id"])
    assert artifact.status == ArtifactStatus.READY, artifact.error
    task = build.load_task(finished.dataset, finished.seed)
    metrics = artifact.metrics
    assert metrics["retrained_on"] == "train+val" and metrics["epochs"] == 2
    assert metrics["train_samples"] == len(task.y_train) + len(task.y_val)
    assert 0.0 < metrics["test_acc"] <= 1.0 and metrics["exported_test_acc"] == metrics["test_acc"]
    assert metrics["trial_test_acc"] == best.metrics["test_acc"]
    assert [p["epoch"] for p in artifact.progress["history"]] == [1, 2]
    assert all(set(p) == {"epoch", "train_loss", "train_acc"} for p in artifact.progress["history"])

    epochs = [p["artifact"]["progress"]["epoch"] for t, p in events
              if t == "artifact.progress" and p["artifact"]["progress"].get("phase") == "training"]  # fmt: skip
    assert epochs == [0, 1, 2]
    assert events[-1][0] == "artifact.ready" and events[-1][1]["artifact"]["metrics"]["test_acc"] == metrics["test_acc"]

    blob = download(client_for(viewer), artifact)
    with zipfile.ZipFile(__import__("io").BytesIO(blob)) as zf:
        card = zf.read("MODEL_CARD.md").decode()
    assert "retrained on train+val" in card and "no early stopping" in card
    assert re.search(rf"Test accuracy of this retrained model: {metrics['test_acc']:.4f}", card)
    result = run_outside(blob, finished, tmp_path)
    assert_reproduced(result, metrics["test_acc"])
    print(f"\nretrained on train+val ({metrics['train_samples']} samples, 2 epochs): test_acc {metrics['test_acc']:.4f} "
          f"(trial: {best.metrics['test_acc']:.4f}); outside the app TorchScript "
          f"{result['torchscript_correct']}/{result['n']}")  # fmt: skip

    # A duplicate message does nothing; other epochs are another package.
    events.clear()
    actors.retrain_on_train_and_val.fn(artifact.pk)
    assert events == [] and Artifact.objects.get(pk=artifact.pk).file.name == artifact.file.name
    other = client_for(editor).post(f"/api/experiments/{finished.pk}/retrain/", {"epochs": 3}, format="json")
    assert other.status_code == 202 and other.json()["id"] != artifact.pk


def test_retrain_is_refused_while_the_search_runs_and_for_bad_options(experiment_factory, editor_client, outbox):
    running = experiment_factory(status=ExperimentStatus.RUNNING)
    response = editor_client.post(f"/api/experiments/{running.pk}/retrain/")
    assert response.status_code == 409 and "still running" in response.json()["detail"]
    done = experiment_factory(status=ExperimentStatus.COMPLETED)
    response = editor_client.post(f"/api/experiments/{done.pk}/retrain/", {"epochs": 0}, format="json")
    assert response.status_code == 400 and "epochs" in response.json()
    response = editor_client.post(f"/api/experiments/{done.pk}/retrain/")
    assert response.status_code == 409 and "No trial completed" in response.json()["detail"]
    assert outbox == []
