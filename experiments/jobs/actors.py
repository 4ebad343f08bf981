"""The Dramatiq actors: the NAS loop of one experiment, spread over worker processes and machines.

Each actor takes ids, makes one call into the module that does the work, and is done. Each is
idempotent under at-least-once delivery (a row lock, a conditional update or a RedisLease
decides, so a duplicate message does nothing) and takes its queue, retries and time limit from
queues.py. django_dramatiq discovers this module (settings.DRAMATIQ_AUTODISCOVER_MODULES).
"""

from __future__ import annotations

import dramatiq
import torch
from django.conf import settings

from ..choices import ArtifactKind
from . import advance, finalize, oneshot, packages, recovery, trial_run
from .queues import (
    ADVANCE,
    ARTIFACT_JOB_GAVE_UP,
    EXPERIMENT_GAVE_UP,
    FINALIZE,
    PACKAGE_TRIAL,
    RETRAIN,
    RUN_ONESHOT,
    RUN_TRIAL,
    WATCH,
)

_threads_set = False


def _set_torch_threads() -> None:
    """Torch threads of this worker process (the estimator also sets them per trial)."""
    global _threads_set
    if not _threads_set:
        torch.set_num_threads(max(1, settings.WORKER_TORCH_THREADS))
        _threads_set = True


@dramatiq.actor(actor_name=ADVANCE.name, queue_name=ADVANCE.queue, max_retries=ADVANCE.max_retries,
                time_limit=ADVANCE.time_limit_ms, **ADVANCE.retry)
def advance_experiment(experiment_id: int, resend_queued: bool = False) -> None:
    _set_torch_threads()
    advance.advance(experiment_id, resend_queued)


@dramatiq.actor(actor_name=RUN_TRIAL.name, queue_name=RUN_TRIAL.queue, max_retries=RUN_TRIAL.max_retries,
                time_limit=RUN_TRIAL.time_limit_ms, **RUN_TRIAL.retry)
def run_trial(trial_id: int) -> None:
    _set_torch_threads()
    trial_run.run_trial(trial_id)


@dramatiq.actor(actor_name=RUN_ONESHOT.name, queue_name=RUN_ONESHOT.queue, max_retries=RUN_ONESHOT.max_retries,
                time_limit=RUN_ONESHOT.time_limit_ms, **RUN_ONESHOT.retry)
def run_oneshot(experiment_id: int) -> None:
    _set_torch_threads()
    oneshot.run_oneshot(experiment_id)


@dramatiq.actor(actor_name=FINALIZE.name, queue_name=FINALIZE.queue, max_retries=FINALIZE.max_retries,
                time_limit=FINALIZE.time_limit_ms, **FINALIZE.retry)
def finalize_experiment(experiment_id: int, reason: str = "") -> None:
    _set_torch_threads()
    finalize.finalize(experiment_id, reason)


@dramatiq.actor(actor_name=WATCH.name, queue_name=WATCH.queue, max_retries=WATCH.max_retries,
                time_limit=WATCH.time_limit_ms, **WATCH.retry)
def watch_experiment(experiment_id: int, token: str) -> None:
    recovery.watch(experiment_id, token)


@dramatiq.actor(actor_name=EXPERIMENT_GAVE_UP.name, queue_name=EXPERIMENT_GAVE_UP.queue,
                max_retries=EXPERIMENT_GAVE_UP.max_retries, time_limit=EXPERIMENT_GAVE_UP.time_limit_ms,
                **EXPERIMENT_GAVE_UP.retry)  # fmt: skip
def experiment_gave_up(message_data: dict, retry_info: dict) -> None:
    finalize.give_up(message_data, retry_info)


@dramatiq.actor(actor_name=PACKAGE_TRIAL.name, queue_name=PACKAGE_TRIAL.queue, max_retries=PACKAGE_TRIAL.max_retries,
                time_limit=PACKAGE_TRIAL.time_limit_ms, **PACKAGE_TRIAL.retry)
def package_trial(artifact_id: int) -> None:
    """Export a completed trial's model (its stored weights, or a deterministic retrain)."""
    _set_torch_threads()
    packages.run_job(artifact_id, ArtifactKind.MODEL_ZIP)


@dramatiq.actor(actor_name=RETRAIN.name, queue_name=RETRAIN.queue, max_retries=RETRAIN.max_retries,
                time_limit=RETRAIN.time_limit_ms, **RETRAIN.retry)
def retrain_on_train_and_val(artifact_id: int) -> None:
    """Retrain the best architecture on train+val and export it as its own package."""
    _set_torch_threads()
    packages.run_job(artifact_id, ArtifactKind.RETRAINED_ZIP)


@dramatiq.actor(actor_name=ARTIFACT_JOB_GAVE_UP.name, queue_name=ARTIFACT_JOB_GAVE_UP.queue,
                max_retries=ARTIFACT_JOB_GAVE_UP.max_retries, time_limit=ARTIFACT_JOB_GAVE_UP.time_limit_ms,
                **ARTIFACT_JOB_GAVE_UP.retry)  # fmt: skip
def artifact_job_gave_up(message_data: dict, retry_info: dict) -> None:
    """A package job that kept raising (the database stayed away) ends as failed, with a reason,
    rather than showing "running" for ever."""
    packages.fail(message_data["args"][0],
                  f"{message_data['actor_name']} kept failing ({retry_info.get('retries')} retries); see the worker log")
