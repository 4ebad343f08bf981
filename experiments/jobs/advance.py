"""Bring an experiment forward: reap dead trials, top up to `parallelism` running trials within the
budget, or finalize when the budget is spent and nothing is pending.

    Experiment.start() --on commit--> advance --on commit--> run_trial (one per trial)
    run_trial (trial done) --inline--> advance --...--> finalize (budget spent)
    watch (every lease/2 s while the experiment is active) --> advance
    one-shot experiments: Experiment.start() --> run_oneshot (one resumable job) --> advance

One round is optimistic: phase 1 (locked, short) decides how many trials may start, phase 2
(unlocked) asks the strategy and screens static constraints, phase 3 (locked again) writes the
trials only if no other advance wrote any meanwhile; otherwise the round is tried again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from search_engine.loop import propose
from search_engine.registry import ConfigError

from ..choices import ACTIVE_STATUSES, ExperimentStatus, TrialState
from ..engine import build, records
from ..live import broadcast
from ..models import Experiment, Trial
from . import enqueue, queues

log = logging.getLogger(__name__)

# propose() screens up to this many statically infeasible candidates per advance.
MAX_INFEASIBLE_PER_ADVANCE = 200
# Optimistic retries when another advance wrote trials while this one was proposing.
ADVANCE_ATTEMPTS = 5
WALL_TIME_SPENT = "wall-time budget spent"
# A queued trial older than this without a message on its way gets one again.
QUEUED_GRACE_S = 5


def advance(experiment_id: int, resend_queued: bool = False) -> None:
    for _ in range(ADVANCE_ATTEMPTS):
        if _advance_once(experiment_id, resend_queued):
            return
        resend_queued = False
    log.info("experiment %s: other advances kept writing trials; leaving the top-up to them", experiment_id)


def advance_now(experiment_id: int) -> None:
    """Top up right here: this worker is free now, and a round trip through the broker (a
    message to the control worker, whose idle poll may be sleeping) would sit between every
    two trials of a sequential search. Should it fail, the message path (with retries) takes over."""
    try:
        advance(experiment_id)
    except Exception:  # noqa: BLE001
        log.exception("experiment %s: advance after a trial failed; sending it instead", experiment_id)
        enqueue.advance(experiment_id)


@dataclass
class _Room:
    """What phase 1 found: how many trials may start, after which trial number."""

    experiment: Experiment
    room: int
    last_number: int


@dataclass
class _Proposal:
    search: build.Search
    accepted: list
    infeasible: list
    finished_reason: str | None


def _advance_once(experiment_id: int, resend_queued: bool) -> bool:
    """One optimistic round; False when another advance created trials meanwhile (retry)."""
    with transaction.atomic():
        room = _make_room(experiment_id, resend_queued)
    if room is None:
        return True
    try:
        proposal = _propose(room)
    except ConfigError as exc:  # DatasetError too: the configuration or data cannot run at all
        room.experiment.finish(ExperimentStatus.FAILED, f"cannot run this search: {exc}")
        return True
    with transaction.atomic():
        return _write_trials(experiment_id, room.last_number, proposal)


def _make_room(experiment_id: int, resend_queued: bool) -> _Room | None:
    """Phase 1, under the experiment's row lock (see ExperimentQuerySet.lock for the race). None
    when nothing is to be proposed now."""
    experiment = Experiment.objects.lock(experiment_id)
    if experiment is None or experiment.status not in ACTIVE_STATUSES:
        return None  # draft, paused or finished: nothing to do (resume sends a new advance)
    if experiment.status == ExperimentStatus.QUEUED and experiment.mark_running():
        resend_queued = True  # after a resume, trials queued before the pause need a message
    transaction.on_commit(lambda: enqueue.watchdog(experiment_id))
    if experiment.oneshot and not experiment.oneshot_result:
        # The one-shot job runs before any trial: (re)send it unless a worker holds it (after
        # a resume, a restart, or a worker that died: see jobs/oneshot.py).
        transaction.on_commit(lambda: enqueue.oneshot(experiment_id))
        return None
    resend = set(reap_stale(experiment))
    if resend_queued:
        resend.update(experiment.trials.filter(state=TrialState.QUEUED).values_list("pk", flat=True))
    else:
        resend.update(_lost_messages(experiment))
    for trial_id in sorted(resend):
        enqueue.run_trial_on_commit(trial_id)

    counts = experiment.count_by_state()
    pending = counts.get(TrialState.QUEUED, 0) + counts.get(TrialState.RUNNING, 0)
    counted = experiment.counted_trials().count()
    if experiment.wall_time_spent():
        # Trials not started yet will not start; running ones finish (as the CLI does).
        for trial in experiment.trials.cancel_queued("wall-time budget spent before it started"):
            transaction.on_commit(lambda t=trial: broadcast.trial_finished(t))
        if counts.get(TrialState.RUNNING, 0) == 0:
            enqueue.send_on_commit(queues.FINALIZE, experiment_id, WALL_TIME_SPENT)
        return None
    if counted >= experiment.budget_trials:
        if pending == 0:
            enqueue.send_on_commit(queues.FINALIZE, experiment_id, "trial budget spent")
        return None
    room = min(experiment.parallelism - pending, experiment.budget_trials - counted)
    if room <= 0:
        return None
    return _Room(experiment, room, experiment.last_trial_number())


def _lost_messages(experiment: Experiment) -> list[int]:
    """Queued trials whose run_trial message is gone (a Redis restart, a send that failed during
    an outage). Trials younger than QUEUED_GRACE_S are left alone: their message is sent when the
    transaction that created them commits."""
    ids = list(experiment.trials.unsent_queued(QUEUED_GRACE_S).values_list("pk", flat=True))
    try:
        return enqueue.without_message(ids)
    except redis.RedisError:
        log.warning("experiment %s: cannot tell which queued trials lost their message", experiment.pk)
        return []


def reap_stale(experiment: Experiment) -> list[int]:
    """Re-queue (or fail, after the last attempt) running trials whose worker stopped
    heartbeating. Returns the ids of re-queued trials; the caller sends run_trial for them."""
    lease = settings.TRIAL_LEASE_SECONDS
    requeued = []
    for trial in experiment.trials.stale(lease).select_for_update():
        reason = f"worker {trial.worker or '?'} stopped heartbeating (lease of {lease}s expired)"
        state = trial.requeue_or_fail(settings.TRIAL_MAX_ATTEMPTS, reason)
        log.warning("trial %s: %s -> %s", trial, reason, state)
        if state == TrialState.QUEUED:
            requeued.append(trial.pk)
            transaction.on_commit(lambda t=trial: broadcast.trial_created(t))
        else:
            transaction.on_commit(lambda t=trial: broadcast.trial_finished(t))
    return requeued


def _propose(room: _Room) -> _Proposal:
    """Phase 2, unlocked: ask the strategy and screen static constraints. This builds networks
    (milliseconds to seconds), too long to hold a lock that every heartbeat would wait for."""
    search = build.build_search(room.experiment)
    history = build.history(room.experiment)
    accepted, infeasible = propose(
        search.strategy, history, room.room, task=search.task, constraints=search.constraints,
        next_number=room.last_number + 1, max_infeasible=MAX_INFEASIBLE_PER_ADVANCE,
    )  # fmt: skip
    finished_reason = None
    if not accepted:
        finished_reason = (
            "search space exhausted" if search.strategy.is_finished(history + [o.record() for o in infeasible])
            else f"no statically feasible candidate in {MAX_INFEASIBLE_PER_ADVANCE} proposals"
        )
    return _Proposal(search, accepted, infeasible, finished_reason)


def _write_trials(experiment_id: int, last_number: int, proposal: _Proposal) -> bool:
    """Phase 3, locked again: write the trials only if no other advance wrote any meanwhile."""
    experiment = Experiment.objects.lock(experiment_id)
    if experiment is None or experiment.status not in ACTIVE_STATUSES:
        return True
    if experiment.last_trial_number() != last_number:
        return False
    now = timezone.now()
    new_trials = [
        Trial(experiment=experiment, finished_at=now, **records.infeasible_trial_fields(o))
        for o in proposal.infeasible
    ]
    # propose() numbered infeasible and accepted candidates in one sequence; keep its numbers.
    numbers = _accepted_numbers(last_number + 1, proposal.infeasible, len(proposal.accepted))
    new_trials += [
        Trial(experiment=experiment, state=TrialState.QUEUED,
              **records.queued_trial_fields(proposal.search.space, number, cand, values))
        for number, (cand, values) in zip(numbers, proposal.accepted)
    ]  # fmt: skip
    new_trials.sort(key=lambda t: t.number)
    created = Trial.objects.bulk_create(new_trials)
    if not proposal.accepted and not experiment.trials.pending().exists():
        # Nothing left to try and nothing running: the search ends below its trial budget.
        enqueue.send_on_commit(queues.FINALIZE, experiment_id, proposal.finished_reason)
    for trial in created:
        transaction.on_commit(lambda t=trial: broadcast.trial_created(t))
        if trial.state == TrialState.QUEUED:
            enqueue.run_trial_on_commit(trial.pk)
    return True


def _accepted_numbers(first: int, infeasible, n_accepted: int) -> list[int]:
    """The numbers propose() gave the accepted candidates: the sequence from `first` minus
    the numbers its infeasible outcomes took."""
    taken = {o.number for o in infeasible}
    numbers, number = [], first
    while len(numbers) < n_accepted:
        if number not in taken:
            numbers.append(number)
        number += 1
    return numbers
