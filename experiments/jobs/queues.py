"""Queue names, time limits and retry settings of every actor, in one place.

Short bookkeeping (advance, watch) runs on CONTROL_QUEUE so that it never waits behind training;
`manage.py up` gives that queue its own worker process. Training and export run on TRIALS_QUEUE.
`actors.py` declares each actor from its ActorSettings and `enqueue.py` addresses messages by the
same settings, so a name or a queue is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL_QUEUE = "nas-control"
TRIALS_QUEUE = "nas-trials"
# `manage.py worker --queues <choice>`: which queues a worker process consumes.
WORKER_QUEUES = {"trials": [TRIALS_QUEUE], "control": [CONTROL_QUEUE], "all": [CONTROL_QUEUE, TRIALS_QUEUE]}

# A trial longer than this is stopped (at its next safe point, by its guard) and failed.
TRIAL_TIME_LIMIT_S = 12 * 3600
# Dramatiq's own time limit injects an exception anywhere in the thread; for trials it is only a
# backstop behind the guard's cooperative one.
TRIAL_HARD_TIME_LIMIT_S = TRIAL_TIME_LIMIT_S + 3600
FINALIZE_TIME_LIMIT_S = 3600
ONESHOT_TIME_LIMIT_S = 6 * 3600
EXPORT_TIME_LIMIT_S = 6 * 3600
ADVANCE_TIME_LIMIT_S = 10 * 60
WATCH_TIME_LIMIT_S = 10 * 60
GAVE_UP_TIME_LIMIT_S = 60


@dataclass(frozen=True)
class ActorSettings:
    name: str
    queue: str
    max_retries: int
    time_limit_s: int
    # Optional Dramatiq options (min_backoff, max_backoff, on_retry_exhausted); Dramatiq's own
    # defaults apply to what is left out.
    retry: dict = field(default_factory=dict)

    @property
    def time_limit_ms(self) -> int:
        return self.time_limit_s * 1000


EXPERIMENT_GAVE_UP = ActorSettings("experiment_gave_up", CONTROL_QUEUE, 3, GAVE_UP_TIME_LIMIT_S)
ARTIFACT_JOB_GAVE_UP = ActorSettings("artifact_job_gave_up", CONTROL_QUEUE, 3, GAVE_UP_TIME_LIMIT_S)
ADVANCE = ActorSettings(
    "advance_experiment", CONTROL_QUEUE, 10, ADVANCE_TIME_LIMIT_S,
    {"min_backoff": 1000, "max_backoff": 30_000, "on_retry_exhausted": EXPERIMENT_GAVE_UP.name},
)  # fmt: skip
# No retries: a trial that breaks is recorded as failed, and one whose worker dies is re-queued
# by advance (bounded attempts).
RUN_TRIAL = ActorSettings("run_trial", TRIALS_QUEUE, 0, TRIAL_HARD_TIME_LIMIT_S)
# Each retry of a one-shot job resumes from its last checkpoint.
RUN_ONESHOT = ActorSettings(
    "run_oneshot", TRIALS_QUEUE, 5, ONESHOT_TIME_LIMIT_S,
    {"min_backoff": 10_000, "max_backoff": 600_000, "on_retry_exhausted": EXPERIMENT_GAVE_UP.name},
)  # fmt: skip
FINALIZE = ActorSettings(
    "finalize_experiment", TRIALS_QUEUE, 3, FINALIZE_TIME_LIMIT_S,
    {"min_backoff": 5000, "on_retry_exhausted": EXPERIMENT_GAVE_UP.name},
)  # fmt: skip
WATCH = ActorSettings("watch_experiment", CONTROL_QUEUE, 0, WATCH_TIME_LIMIT_S)
PACKAGE_TRIAL = ActorSettings(
    "package_trial", TRIALS_QUEUE, 3, EXPORT_TIME_LIMIT_S,
    {"min_backoff": 5000, "on_retry_exhausted": ARTIFACT_JOB_GAVE_UP.name},
)  # fmt: skip
RETRAIN = ActorSettings(
    "retrain_on_train_and_val", TRIALS_QUEUE, 3, EXPORT_TIME_LIMIT_S,
    {"min_backoff": 5000, "on_retry_exhausted": ARTIFACT_JOB_GAVE_UP.name},
)  # fmt: skip
