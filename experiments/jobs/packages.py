"""Model packages made on request, as background jobs on top of engine.packaging.

Each request produces an Artifact that moves pending -> running -> ready | failed, with its live
state on the row (`progress`, per epoch) and on the experiment's websocket group
(live.broadcast.artifact_progress / artifact_ready / artifact_failed). Two kinds:

- A completed trial's package (kind model_zip), for any completed trial, not only the best. The
  trial's stored weights are used when run_trial kept them (a best-so-far trial the final export
  has not cleaned up yet); otherwise the trial is retrained exactly as it ran: same architecture,
  budget, estimator configuration and trial seed, hence the same initial weights, batch order and
  dropout masks. On the CPU with the same torch build and thread count that is the same model bit
  for bit, so the job checks that its test accuracy equals the trial's and records the outcome
  (`metrics.reproduced`). On a GPU (non-deterministic cuDNN kernels) or another torch version the
  last bits of the weights may move and, rarely, a test prediction with them; the card then gives
  both accuracies instead of claiming they are equal.
- The best architecture retrained on train+val (kind retrained_zip): the experiment's estimator
  configuration, for the requested number of epochs or else the trial's epoch budget, starting
  from the trial's seed. No model selection on validation data (no early stopping, no best-epoch
  restore): the validation set is part of the training data now, so it can no longer say which
  epoch generalises best; the last epoch is kept. The test split is never trained on; the
  model's accuracy on it goes into the card and the artifact's metrics.

Who may ask: any member may request a completed trial's package. Viewers read and download; a
package is a file derived from a trial they can already see, so asking for one is a read, like a
download. A retrain spends compute like an experiment does, so it needs the editor role.

Duplicates: at most one pending, running or ready artifact per trial and kind (per trial and
epoch count for retrains). Asking again returns that one, so repeated clicks, or two members
asking at once, start one job. A failed one does not count: a new request starts afresh.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from django.core.files.base import ContentFile
from django.db import DatabaseError, connection, transaction
from dramatiq.middleware.time_limit import TimeLimitExceeded

from search_engine.loop import build_model, evaluate, trial_seed
from search_engine.registry import ESTIMATORS, create_estimator

from ..choices import ArtifactKind, ArtifactStatus, TrialState
from ..engine import build, packaging, records, storage
from ..live import broadcast
from ..models import Artifact, StateError, Trial
from . import enqueue, queues
from .locks import RedisLease, key

log = logging.getLogger(__name__)

MAX_RETRAIN_EPOCHS = 1000
# What a retrain on train+val sets whatever the experiment's estimator says: no selection on the
# validation set (it is trained on), and all of the training data (a low-fidelity search's
# subset ranks architectures; the final model should see everything).
TRAIN_AND_VAL_OVERRIDES = {"patience": 0, "restore_best": False, "data_fraction": 1.0}
# Per-epoch values kept in `progress["history"]` (the validation values of a train+val retrain
# are measured on data it trains on, so they are left out there).
TRIAL_CURVE_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")
TRAIN_CURVE_KEYS = ("train_loss", "train_acc")


class ExportRefused(StateError):
    """A package that cannot be made for this trial or experiment (the API answers 409)."""


# Requests (views call these) ------------------------------------------------------------------
def request_package(trial: Trial, user) -> tuple[Artifact, bool]:
    """The model package of a completed trial: the existing one, or a new pending one whose job is
    sent when the transaction commits. Returns (artifact, created)."""
    if trial.state != TrialState.COMPLETED:
        raise ExportRefused(f"Trial #{trial.number} is {trial.state}; only a completed trial has a model to package.")
    _require_trained_models(trial.experiment)
    return _request(trial, ArtifactKind.MODEL_ZIP, user, {"phase": "queued"})


def request_retrain(experiment, user, epochs: int | None = None) -> tuple[Artifact, bool]:
    """Retrain the best trial's architecture on train+val. Returns (artifact, created)."""
    if not experiment.is_terminal:
        raise ExportRefused("The search is still running; retrain its best model once it has finished.")
    best = experiment.best_trial()
    if best is None:
        raise ExportRefused("No trial completed, so there is no best architecture to retrain.")
    _require_trained_models(experiment)
    options = ESTIMATORS.get(experiment.estimator).options
    if not TRAIN_AND_VAL_OVERRIDES.keys() <= options.keys():
        raise ExportRefused(f"The {experiment.estimator!r} estimator cannot train without a validation set.")
    epochs = int(epochs or default_retrain_epochs(experiment, best))
    return _request(best, ArtifactKind.RETRAINED_ZIP, user, {"phase": "queued", "epoch": 0, "epochs": epochs},
                    match={"progress__epochs": epochs})  # fmt: skip


def default_retrain_epochs(experiment, trial: Trial) -> int:
    """The trial's epoch budget: a strategy's per-trial budget, else the estimator's `epochs`."""
    budget_epochs = (trial.budget or {}).get("epochs")
    if budget_epochs:
        return int(budget_epochs)
    return int(build.build_estimator(experiment).config.get("epochs") or 1)


def _require_trained_models(experiment) -> None:
    if not ESTIMATORS.get(experiment.estimator).trains_model:
        raise ExportRefused(
            f"The {experiment.estimator!r} estimator scores architectures without training them, "
            "so its trials have no model to package."
        )


def _request(trial: Trial, kind: str, user, progress: dict, match: dict | None = None) -> tuple[Artifact, bool]:
    with transaction.atomic():
        # The trial's row lock serialises requests for it: two clicks (or two members) asking at
        # once must not both find nothing and start two jobs. SQLite ignores FOR UPDATE, but its
        # BEGIN IMMEDIATE (settings) serialises the whole transaction the same way.
        Trial.objects.select_for_update().filter(pk=trial.pk).first()
        existing = (
            Artifact.objects.live().filter(trial=trial, kind=kind, **(match or {}))
            .order_by("-created_at", "-pk")
            .first()
        )
        if existing is not None:
            return existing, False
        artifact = Artifact.objects.create(
            experiment_id=trial.experiment_id, trial=trial, kind=kind, status=ArtifactStatus.PENDING,
            progress=progress, created_by=user if user is not None and user.is_authenticated else None,
        )  # fmt: skip
        transaction.on_commit(lambda: _announce_and_send(artifact))
    return artifact, True


def _announce_and_send(artifact: Artifact) -> None:
    broadcast.artifact_progress(artifact)
    enqueue.artifact_job(artifact.pk, artifact.kind)


# Jobs (the actors call these) -------------------------------------------------------------------
def run_job(artifact_id: int, kind: str) -> None:
    """One package job, unless another worker holds it: a RedisLease per artifact keeps a
    duplicate message from working on it in parallel, and the conditional claim
    (Artifact.objects.claim_job) makes a duplicate of a finished job do nothing."""
    lease = RedisLease.claim(key("artifact", artifact_id), queues.EXPORT_TIME_LIMIT_S)
    if lease is None:
        return  # a duplicate message while another worker holds the job
    # Looked up at call time, so a test can replace a job.
    job = build_retrained_package if kind == ArtifactKind.RETRAINED_ZIP else build_trial_package
    try:
        job(artifact_id)
    except TimeLimitExceeded:
        connection.close()  # the interrupt may have landed mid-statement: start afresh
        fail(artifact_id, f"stopped by the time limit ({queues.EXPORT_TIME_LIMIT_S}s)")
    finally:
        lease.release()


def build_trial_package(artifact_id: int) -> None:
    _run(artifact_id, ArtifactKind.MODEL_ZIP, _package_trial)


def build_retrained_package(artifact_id: int) -> None:
    _run(artifact_id, ArtifactKind.RETRAINED_ZIP, _retrain_on_train_and_val)


def fail(artifact_id: int, reason: str) -> bool:
    """Mark an unfinished job failed with a reason the page shows. False if it had finished."""
    failed = Artifact.objects.fail_job(artifact_id, reason)
    if failed:
        broadcast.artifact_failed(Artifact.objects.select_related("trial").get(pk=artifact_id))
    return bool(failed)


def _run(artifact_id: int, kind: str, make) -> None:
    artifact = _claim(artifact_id, kind)
    if artifact is None:
        return  # finished already (a duplicate message), or deleted with its experiment
    try:
        package, metrics, filename = make(artifact)
    except DatabaseError:
        raise  # transient: Dramatiq retries the message, and the retry takes the job over
    except Exception as exc:  # noqa: BLE001 - the page shows why there is nothing to download
        log.exception("artifact %s: %s failed", artifact_id, kind)
        lines = str(exc).strip().splitlines()
        fail(artifact_id, f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": "))
        return
    _store(artifact, package, metrics, filename)


def _claim(artifact_id: int, kind: str) -> Artifact | None:
    # A job taken over (its worker died) starts again from scratch.
    if not Artifact.objects.claim_job(artifact_id, kind):
        return None
    artifact = Artifact.objects.select_related("experiment__dataset", "experiment__project", "trial").get(pk=artifact_id)
    artifact.progress = {k: v for k, v in (artifact.progress or {}).items() if k == "epochs"}
    _save_progress(artifact, phase="preparing")
    return artifact


def _save_progress(artifact: Artifact, **values) -> None:
    artifact.progress = records.jsonable({**(artifact.progress or {}), **values})
    artifact.save_progress()
    broadcast.artifact_progress(artifact)


def _epoch_reporter(artifact: Artifact, keys: tuple[str, ...]):
    history: list[dict] = []

    def report(step: int, values: dict) -> None:
        point = {"epoch": step, **{k: values[k] for k in keys if k in values}}
        history[:] = [p for p in history if p["epoch"] != step] + [point]
        _save_progress(artifact, phase="training", epoch=step, history=history)

    return report


def _store(artifact: Artifact, package: packaging.ModelPackage, metrics: dict, filename: str) -> None:
    artifact.file.save(filename, ContentFile(package.zip_bytes), save=False)
    metrics = {**metrics, "exported_test_acc": package.test_acc, "files": package.files}
    progress = {**(artifact.progress or {}), "phase": "done"}
    stored = artifact.mark_ready(size_bytes=len(package.zip_bytes), checksum=package.sha256,
                                 metrics=records.jsonable(metrics), progress=records.jsonable(progress))
    if not stored:  # deleted meanwhile (with its experiment): keep no orphan file
        artifact.file.storage.delete(artifact.file.name)
        return
    broadcast.artifact_ready(artifact)


def _search_fields(trial: Trial) -> dict:
    """What the card and the page compare a package with: the trial's own measurements."""
    metrics = trial.metrics or {}
    keep = ("params", "flops", "size_mb", "latency_ms", "test_acc", "test_loss", "val_acc", "epochs", "best_epoch")
    return {f"trial_{k}": metrics[k] for k in keep if k in metrics} | {"trial_objective": trial.objective}


def _package_trial(artifact: Artifact):
    experiment, trial = artifact.experiment, artifact.trial
    search = build.build_search(experiment, with_strategy=False)
    try:
        model = storage.load_trained_model(experiment, trial, search)
    except OSError:  # the final export deleted the stored weights between the check and the read
        model = None
    metrics = {**(trial.metrics or {}), "objective": trial.objective, "retrained": model is None}
    extra: tuple[str, ...] = ()
    if model is None:
        epochs = (trial.budget or {}).get("epochs") or search.estimator.config.get("epochs")
        _save_progress(artifact, phase="training", epoch=0, epochs=epochs)
        # Exactly the call run_trial made (minus the latency measurement, which trains nothing):
        # same candidate, budget, estimator and search seed, hence the same trial seed.
        outcome = evaluate(
            build.candidate_of(trial), number=trial.number, space=search.space, estimator=search.estimator,
            task=search.task, constraints=search.constraints, seed=experiment.seed,
            report=_epoch_reporter(artifact, TRIAL_CURVE_KEYS), measure_latency=False,
        )  # fmt: skip
        if outcome.model is None:
            reason = (outcome.error or outcome.state).strip().splitlines()[-1:]
            raise RuntimeError(f"retraining trial #{trial.number} failed: {' '.join(reason)}")
        model = outcome.model
        retrained_acc, trial_acc = outcome.metrics.get("test_acc"), (trial.metrics or {}).get("test_acc")
        metrics.update(retrained_test_acc=retrained_acc, reproduced=retrained_acc == trial_acc)
        verdict = "equal to the trial's" if retrained_acc == trial_acc else f"the trial reported {trial_acc}"
        extra = (f"- Test accuracy of the retrained weights: {retrained_acc} ({verdict})",)
    _save_progress(artifact, phase="exporting")
    best = experiment.best_trial()
    title = f"best model (trial #{trial.number})" if best is not None and best.pk == trial.pk else (
        f"model of trial #{trial.number}"
    )
    package = packaging.export_package(experiment, trial, model, search, retrained=metrics["retrained"],
                                           title=title, extra_results=extra)  # fmt: skip
    return package, metrics, f"experiment-{experiment.pk}-trial-{trial.number}-model.zip"


def _retrain_on_train_and_val(artifact: Artifact):
    experiment, trial = artifact.experiment, artifact.trial
    search = build.build_search(experiment, with_strategy=False)
    epochs = int((artifact.progress or {}).get("epochs") or default_retrain_epochs(experiment, trial))
    task = search.task
    merged = dataclasses.replace(
        task, X_train=torch.cat([task.X_train, task.X_val]), y_train=torch.cat([task.y_train, task.y_val])
    )
    arch = search.space.validate(trial.arch)
    seed = trial_seed(experiment.seed, search.space, arch, trial.budget or {})
    model = build_model(search.space, arch, task, seed)
    config = {**build.estimator_config(experiment), **TRAIN_AND_VAL_OVERRIDES, "epochs": epochs}
    estimator = create_estimator(experiment.estimator, **config)
    _save_progress(artifact, phase="training", epoch=0, epochs=epochs)
    # Budget keys override the estimator's options, so epochs and data fraction go here too.
    result = estimator.estimate(arch, model, merged, {"seed": seed, "epochs": epochs, "data_fraction": 1.0},
                                _epoch_reporter(artifact, TRAIN_CURVE_KEYS))  # fmt: skip
    trained = result.metrics
    metrics = {
        "retrained_on": "train+val",
        "test_acc": trained["test_acc"],
        "test_loss": trained["test_loss"],
        "train_acc": trained["train_acc"],
        "train_loss": trained["train_loss"],
        "epochs": trained["epochs"],
        "train_samples": trained["train_samples"],
        "train_time_s": round(trained["train_time_s"], 3),
        "seed": seed,
        **_search_fields(trial),
    }
    _save_progress(artifact, phase="exporting")
    sizes = task.describe()["sizes"]
    provenance = (
        f"Weights come from retraining trial #{trial.number}'s architecture on the training and validation sets "
        f"together ({sizes['train']} + {sizes['val']} = {trained['train_samples']} samples) for {trained['epochs']} "
        f"epochs, from the trial's seed {seed} with the search's estimator settings. There is no early stopping and "
        "no best-epoch restore, since the validation set is part of the training data; the last epoch is kept. "
        "The test set was used only to measure the test accuracy reported here."
    )
    extra = (
        f"- Test accuracy of this retrained model: {trained['test_acc']:.4f} (test loss {trained['test_loss']:.4f}); "
        f"the search trial, trained on the training set alone, had {_fmt_acc(trial)}",
    )
    package = packaging.export_package(
        experiment, trial, model, search, retrained=True, provenance=provenance, extra_results=extra,
        title=f"best architecture (trial #{trial.number}) retrained on train+val",
    )  # fmt: skip
    return package, metrics, f"experiment-{experiment.pk}-trial-{trial.number}-retrained-train-val-{epochs}ep.zip"


def _fmt_acc(trial: Trial) -> str:
    value = (trial.metrics or {}).get("test_acc")
    return f"{value:.4f}" if isinstance(value, (int, float)) else "no test accuracy"
