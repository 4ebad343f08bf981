"""The one-shot job of an experiment (weight-sharing supernet, DARTS).

It first runs ONE long job that trains a supernet and reads its top architectures out of it;
those then train as normal trials through the `fixed` strategy. The job checkpoints after every
epoch (engine.storage.checkpoint_dir), so it survives its worker:
- Claim: a RedisLease per experiment (enqueue.oneshot_key), with a time to live of one trial
  lease, extended by the job's guard thread, names the worker that runs the job. A duplicate
  message finds it taken and does nothing; a job that already has a result is never run again.
- A killed worker stops extending the lease, which expires after TRIAL_LEASE_SECONDS. The
  experiment is still active without a result, so the next advance (the watchdog sends one
  every lease/2 s) sends run_oneshot again, and the new run resumes from the last checkpoint.
  Dramatiq's own redelivery of the dead worker's message and its retries (each one resumes)
  lead to the same place: whichever message comes first claims the job, the others do nothing.
- Pause and cancel are seen by the guard (one indexed SELECT per CANCEL_POLL_SECONDS) and stop
  the job at the end of the current epoch, right after its checkpoint; resume sends advance,
  which sends run_oneshot again.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, transaction

from search_engine.oneshot import CheckpointError, fixed_strategy_config
from search_engine.registry import ConfigError, create_strategy

from ..choices import ACTIVE_STATUSES, TERMINAL_STATUSES, ExperimentStatus
from ..engine import build, records, storage
from ..live import broadcast
from ..models import Experiment, ExperimentProgress
from . import advance, enqueue
from .guards import LEASE_LOST, ONESHOT_WALL_TIME, OneShotGuard
from .locks import RedisLease, redis_client

log = logging.getLogger(__name__)


def run_oneshot(experiment_id: int) -> None:
    redis_client().delete(enqueue.oneshot_sent_key(experiment_id))  # this message is taken: advance may send again
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None or not experiment.oneshot or experiment.oneshot_result:
        return
    if experiment.status not in ACTIVE_STATUSES:
        return  # paused: resume sends advance, which sends this again
    lease = RedisLease.claim(enqueue.oneshot_key(experiment_id), settings.TRIAL_LEASE_SECONDS)
    if lease is None:
        return  # a duplicate message, or another worker runs the job
    next_step = None
    try:
        # Read again under the claim: the previous holder may have finished just before it.
        experiment = Experiment.objects.select_related("dataset", "project").filter(pk=experiment_id).first()
        if experiment is None or experiment.oneshot_result or experiment.status not in ACTIVE_STATUSES:
            return
        if experiment.status == ExperimentStatus.QUEUED:
            experiment.mark_running()
        enqueue.watchdog(experiment_id)
        next_step = _run(experiment, lease)
    finally:
        lease.release()
    if next_step == "resend":
        enqueue.oneshot(experiment_id)
    elif next_step == "advance":
        advance.advance_now(experiment_id)  # the top architectures start training now


def _run(experiment: Experiment, lease: RedisLease) -> str | None:
    """Run the job to its end or to a stop. Returns "advance" when its result was recorded (the
    trials start), "resend" when it stopped for a pause but the experiment is active again (a
    pause and resume within one epoch), else None."""
    experiment_id = experiment.pk
    try:
        space = build.build_space(experiment)
        job = build.build_oneshot(experiment, space)
        task = build.load_task(experiment.dataset, experiment.seed)
        folder = storage.checkpoint_dir(experiment_id)
        storage.fetch_checkpoint(experiment_id)
    except ConfigError as exc:  # DatasetError too: this configuration or data cannot run at all
        _end(experiment, ExperimentStatus.FAILED, f"cannot run the one-shot job: {exc}")
        return None

    guard = OneShotGuard(experiment, lease).start()
    try:
        result = _run_job(experiment, job, task, folder, guard)
    except (ConfigError, FloatingPointError) as exc:  # the same on every retry: say why and stop
        _end(experiment, ExperimentStatus.FAILED, f"the one-shot job failed: {exc}")
        return None
    finally:
        guard.close()
    return _after_run(experiment, job, result, space, lease, guard.stop_reason)


def _run_job(experiment: Experiment, job, task, folder, guard: OneShotGuard):
    report = _reporter(experiment)
    try:
        return job.run(task, report, checkpoint_dir=folder, resume=True, should_stop=guard.should_stop)
    except CheckpointError as exc:
        # Written by another configuration under this experiment's id (a database reset with the
        # media folder kept) or damaged: it cannot be continued, so the job starts over.
        log.warning("experiment %s: %s; starting the one-shot job afresh", experiment.pk, exc)
        ExperimentProgress.objects.filter(experiment_id=experiment.pk).delete()
        return job.run(task, report, checkpoint_dir=folder, resume=False, should_stop=guard.should_stop)


def _reporter(experiment: Experiment):
    experiment_id = experiment.pk

    def report(step: int, values: dict) -> None:
        values = records.jsonable(values)
        replayed = bool(values.pop("replayed", False))
        phase = str(values.get("phase") or "train")[:20]
        try:
            # Upsert: a resumed job reports its last checkpointed epoch again.
            ExperimentProgress.objects.update_or_create(
                experiment_id=experiment_id, phase=phase, step=step, defaults={"values": values}
            )
        except DatabaseError:
            log.warning("experiment %s: could not store one-shot progress %s %s", experiment_id, phase, step,
                        exc_info=True)  # fmt: skip
        if phase == "train" and not replayed:
            try:
                storage.push_checkpoint(experiment_id)  # remote storage: the epoch just written
            except Exception:  # noqa: BLE001 - the next epoch pushes again; a resume redoes at most a few
                log.warning("experiment %s: could not copy the checkpoint to storage", experiment_id, exc_info=True)
        broadcast.experiment_progress(experiment, {**values, "phase": phase, "step": step,
                                                   **({"replayed": True} if replayed else {})})  # fmt: skip

    return report


def _after_run(experiment: Experiment, job, result, space, lease: RedisLease, stop_reason: str | None) -> str | None:
    experiment_id = experiment.pk
    if result.completed:
        if not _record_result(experiment_id, result, space, lease):
            return None
        storage.delete_checkpoint(experiment_id)
        return "advance"
    if stop_reason == LEASE_LOST:
        log.warning("experiment %s: one-shot lease lost; the job's new owner carries on", experiment_id)
        return None
    if stop_reason == ONESHOT_WALL_TIME:
        _end(experiment, ExperimentStatus.FAILED,
             f"wall-time budget spent during the one-shot job "
             f"(epoch {result.epochs_done} of {job.config['epochs']} trained)")
        return None
    status = Experiment.objects.status_of(experiment_id)
    if status is None or status in TERMINAL_STATUSES:
        storage.delete_checkpoint(experiment_id)  # cancelled: nothing will resume it
        return None
    # Paused: the checkpoint waits for resume. Active again (paused and resumed within one
    # epoch): the resume's advance found the job still held, so it is sent again from here.
    return "resend" if status in ACTIVE_STATUSES else None


def _end(experiment: Experiment, status: str, message: str) -> None:
    experiment.finish(status, message)
    try:
        storage.delete_checkpoint(experiment.pk)
    except Exception:  # noqa: BLE001 - a leftover checkpoint costs disk space, nothing else
        log.exception("experiment %s: could not delete the one-shot checkpoint", experiment.pk)


def _record_result(experiment_id: int, result, space, lease: RedisLease) -> bool:
    """Store the job's result and turn the experiment into a `fixed` search over its top
    architectures (budget: at most as many trials as architectures; the original is kept in
    oneshot_result). False when nothing was stored (already done, or not ours to do)."""
    if not result.top_archs:
        experiment = Experiment.objects.filter(pk=experiment_id).first()
        if experiment is not None:
            _end(experiment, ExperimentStatus.FAILED, "the one-shot job returned no architecture")
        return False
    strategy = create_strategy("fixed", space, seed=0, **fixed_strategy_config(result, space))
    stored = result.to_dict()
    stored.pop("history", None)  # every epoch is in ExperimentProgress already
    with transaction.atomic():
        # Locked: a duplicate of this job (its lease expired mid-record) must not store twice.
        experiment = Experiment.objects.lock(experiment_id)
        # Paused is fine (the work is done; resume goes on with the trials); finished is not.
        if experiment is None or experiment.oneshot_result or experiment.is_terminal:
            return False
        if not lease.held():
            return False  # another worker owns the job now and records its own (identical) result
        budget = min(experiment.budget_trials, len(result.top_archs))
        stored.update(budget_trials_requested=experiment.budget_trials, budget_trials=budget)
        stored = records.jsonable(stored)
        experiment.adopt_oneshot_result(stored, dict(strategy.config), budget)
        payload = {"phase": "result", "step": 0, "budget_trials": budget, "strategy_config": dict(strategy.config),
                   "oneshot_result": stored}  # fmt: skip
        transaction.on_commit(lambda: broadcast.experiment_progress(experiment, payload))
    return True
