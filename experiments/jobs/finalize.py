"""The end of a search: export the best model as an Artifact and mark the experiment completed
(or failed, with the reason). Weights come from the best trial when it stored them
(jobs/trial_run.py); otherwise the best architecture is retrained with the trial's seed."""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile
from django.db import DatabaseError, transaction

from search_engine.loop import evaluate

from ..choices import ACTIVE_STATUSES, ArtifactKind, ExperimentStatus
from ..engine import build, packaging, records, storage
from ..models import Artifact, Experiment, Trial
from . import enqueue, queues
from .locks import RedisLease, key

log = logging.getLogger(__name__)


def finalize(experiment_id: int, reason: str) -> None:
    # A Redis lease keeps a duplicate message from exporting a second time in parallel; the
    # locked check at the end guarantees one artifact even if the lease expired meanwhile.
    lease = RedisLease.claim(key("finalize", experiment_id), queues.FINALIZE_TIME_LIMIT_S)
    if lease is None:
        return
    try:
        _finalize(experiment_id, reason)
    finally:
        lease.release()


def _finalize(experiment_id: int, reason: str) -> None:
    experiment = Experiment.objects.select_related("dataset", "project").filter(pk=experiment_id).first()
    if experiment is None or experiment.status not in ACTIVE_STATUSES:
        return  # finished already, or paused: resume brings it back through advance
    if experiment.trials.pending().exists():
        return  # the advance after the last pending trial sends finalize again
    best = experiment.best_trial()
    if best is None:
        experiment.finish(ExperimentStatus.FAILED, f"{reason}; no trial completed ({_describe_counts(experiment)})")
        return
    summary = _best_summary(best)
    if _has_best_package(experiment, best):
        experiment.finish(ExperimentStatus.COMPLETED, f"{reason}; {summary}")
        return
    try:
        artifact = _export_best(experiment, best)
    except DatabaseError:
        raise  # transient: Dramatiq retries the message
    except Exception as exc:  # noqa: BLE001 - the person sees why there is no model to download
        log.exception("experiment %s: export failed", experiment_id)
        experiment.finish(ExperimentStatus.FAILED, f"{reason}; {summary}; exporting the model failed: {exc}")
        return
    if artifact is None:
        experiment.finish(ExperimentStatus.COMPLETED,
                          f"{reason}; {summary}; the estimator trains no model, so there is nothing to export")
        return
    with transaction.atomic():
        # Locked: a duplicate finalize whose lease expired must not store a second artifact.
        locked = Experiment.objects.lock(experiment_id)
        if locked.is_terminal or _has_best_package(locked, best):
            stored = artifact.file.name
            transaction.on_commit(lambda: artifact.file.storage.delete(stored))
            return
        artifact.save()
        locked.finish(ExperimentStatus.COMPLETED, f"{reason}; {summary}")
    try:
        storage.delete_weights(experiment_id)
    except Exception:  # noqa: BLE001 - leftover weight files cost disk space, nothing else
        log.exception("experiment %s: could not delete stored trial weights", experiment_id)


def _has_best_package(experiment: Experiment, best: Trial) -> bool:
    """The best trial's package exists or is being made. Packages of other trials (any member may
    ask for one while the search runs) do not count: the final export is the best trial's."""
    return experiment.artifacts.live().filter(kind=ArtifactKind.MODEL_ZIP, trial=best).exists()


def _export_best(experiment: Experiment, best: Trial) -> Artifact | None:
    search = build.build_search(experiment, with_strategy=False)
    model = storage.load_trained_model(experiment, best, search)
    retrained = model is None
    if model is None:
        if not search.estimator.trains_model:
            return None
        # Same architecture, budget and seed as the trial: same initial weights and batches.
        outcome = evaluate(
            build.candidate_of(best), number=best.number, space=search.space, estimator=search.estimator,
            task=search.task, constraints=search.constraints, seed=experiment.seed, measure_latency=False,
        )  # fmt: skip
        if outcome.model is None:
            raise RuntimeError(f"retraining trial #{best.number} failed: {outcome.error.strip().splitlines()[-1:]}")
        model = outcome.model
    package = packaging.export_package(experiment, best, model, search, retrained=retrained)
    artifact = Artifact(
        experiment=experiment, trial=best, kind=ArtifactKind.MODEL_ZIP, size_bytes=len(package.zip_bytes),
        checksum=package.sha256,
        metrics=records.jsonable({**(best.metrics or {}), "objective": best.objective,
                                  "exported_test_acc": package.test_acc, "files": package.files,
                                  "retrained": retrained}),
    )  # fmt: skip
    name = f"experiment-{experiment.pk}-trial-{best.number}-model.zip"
    artifact.file.save(name, ContentFile(package.zip_bytes), save=False)
    return artifact


def _best_summary(best: Trial) -> str:
    metrics = best.metrics or {}
    test = metrics.get("test_acc")
    text = f"best trial #{best.number}: val_acc {best.objective:.4f}"
    return text + (f", test_acc {test:.4f}" if isinstance(test, (int, float)) else "")


def _describe_counts(experiment: Experiment) -> str:
    counts = experiment.count_by_state()
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"


def give_up(message_data: dict, retry_info: dict) -> None:
    """An advance, one-shot job or finalize that kept raising (a bug, not a bad trial) ends the
    experiment as failed with a reason, rather than leaving it running for ever."""
    experiment = Experiment.objects.filter(pk=message_data["args"][0]).first()
    if experiment is not None:
        experiment.finish(
            ExperimentStatus.FAILED,
            f"{message_data['actor_name']} kept failing ({retry_info.get('retries')} retries); see the worker log",
        )
        if message_data["actor_name"] == queues.RUN_ONESHOT.name:
            enqueue.discard_oneshot_checkpoint(experiment.pk)
