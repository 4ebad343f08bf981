"""Cancel latency: from Experiment.cancel() to the end of a running trial's worker.

A trial trains on digits with every optimiser step slowed down, so one epoch takes minutes; the
experiment is cancelled while the epoch runs, and the time until the trial's worker thread ends
(trial recorded as cancelled) is measured. The guard looks every CANCEL_POLL_SECONDS and stops
the training thread mid-batch, so the figure should stay near that interval, far below an epoch.
tests/web/test_tasks.py checks the behaviour (the stop lands inside the epoch); this prints the time.

    python bench/bench_cancel_latency.py               # 5 cancels, guard polling every 0.2 s
    python bench/bench_cancel_latency.py --runs 10 --poll-s 1.0

Uses a throw-away SQLite database and embedded Redis unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from webenv import configure_environment, setup_django, stop_redis

STEP_DELAY_S = 0.05


def _slow_optimiser_steps() -> None:
    import torch

    real_step = torch.optim.Adam.step

    def slow_step(self, *args, **kwargs):
        time.sleep(STEP_DELAY_S)
        return real_step(self, *args, **kwargs)

    torch.optim.Adam.step = slow_step


def _wait_until_running(trial, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        trial.refresh_from_db()
        if trial.state == "running":
            return
        time.sleep(0.05)
    raise SystemExit("the trial never started")


def one_cancel(project, dataset, user, actors) -> float:
    """Start a one-trial search, run its trial in a thread, cancel it mid-epoch; seconds to stop."""
    from experiments.models import Experiment

    experiment = Experiment.objects.create(
        project=project, dataset=dataset, name="cancel latency", space="mlp", space_config={"max_depth": 1},
        strategy="random", estimator="train", estimator_config={"epochs": 1, "batch_size": 2, "data_fraction": 1.0},
        budget_trials=1, parallelism=1, created_by=user,
    )  # fmt: skip
    experiment.start()
    actors.advance_experiment.fn(experiment.pk)  # writes the trial; its run_trial message is dropped
    trial = experiment.trials.get()
    worker = threading.Thread(target=actors.run_trial.fn, args=(trial.pk,))
    worker.start()
    _wait_until_running(trial)
    time.sleep(0.5)  # inside the first epoch
    experiment.cancel()
    cancelled_at = time.monotonic()
    worker.join(timeout=120)
    stopped_after = time.monotonic() - cancelled_at
    trial.refresh_from_db()
    if worker.is_alive() or trial.state != "cancelled":
        raise SystemExit(f"the trial did not stop (state {trial.state})")
    return stopped_after


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--poll-s", type=float, default=0.2, help="the guard's CANCEL_POLL_SECONDS")
    args = parser.parse_args(argv)

    configure_environment()
    started_redis = setup_django()
    import dramatiq
    from django.contrib.auth import get_user_model

    from experiments.jobs import actors, guards
    from experiments.models import Dataset, Project

    guards.CANCEL_POLL_SECONDS = args.poll_s
    # Messages go nowhere: this process plays the worker and calls the actors itself.
    dramatiq.get_broker().enqueue = lambda message, *, delay=None: message
    _slow_optimiser_steps()
    user, _ = get_user_model().objects.get_or_create(username="bench-cancel")
    project = Project.create_for(user, "bench cancel")
    dataset = Dataset.objects.create(project=project, name="digits", source="builtin", builtin_name="digits")
    try:
        seconds = [one_cancel(project, dataset, user, actors) for _ in range(args.runs)]
    finally:
        project.experiments.all().delete()  # datasets are protected while used
        project.delete()
        if started_redis:
            stop_redis()
    print(f"cancel -> trial stopped, {len(seconds)} runs, guard polling every {args.poll_s} s: "
          f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s "
          f"(an epoch here takes minutes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
