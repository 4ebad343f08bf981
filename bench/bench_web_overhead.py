"""Overhead of the web platform: the same small search through Dramatiq workers and in-process.

1. The engine alone: search_engine.loop.run_search in this process (what the CLI runs).
2. The web platform: an Experiment row, `Experiment.start()`, Redis, one control worker process
   and one trial worker process (as `manage.py up --workers 1` starts them), every trial written
   to the database and broadcast, until the last budgeted trial is recorded.

Both use the same seed, one torch thread and parallelism 1, so they run the same architectures in
the same order (the script checks that the best scores agree). Each side first runs a one-trial
warm-up so that neither pays one-off import costs inside the timing. The web time runs from
`start()` to the last trial's `finished_at`; the export that follows is reported apart (the engine
side does not export). Rounds alternate engine and web so that load changes on a shared machine
hit both; besides the wall-time ratio (target <= 1.10) the script prints the time per trial spent
outside the engine's evaluate() on each side: the platform's fixed cost per trial (messages,
database rows, broadcasts), which decides the ratio for a given trial length.

    python bench/bench_web_overhead.py                     # digits, mlp, random, 10 trials x 2 epochs
    python bench/bench_web_overhead.py --trials 20 --epochs 3 --strategy evolution

Uses a throw-away SQLite database and embedded Redis unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from webenv import ROOT, setup_django, stop_redis
from webenv import configure_environment as _configure_web_environment


def configure_environment() -> None:
    _configure_web_environment(WORKER_TORCH_THREADS="1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--space", default="mlp")
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    configure_environment()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up below on SIGTERM too
    started_redis = setup_django()
    import torch
    from django.conf import settings


    torch.set_num_threads(1)

    config = {
        "space": args.space, "space_config": {}, "strategy": args.strategy, "strategy_config": {},
        "estimator": "train", "estimator_config": {"epochs": args.epochs, "threads": 1, "device": "cpu"},
    }  # fmt: skip
    print(f"search: {args.dataset}, {args.space}, {args.strategy}, {args.trials} trials x {args.epochs} epochs, "
          f"seed {args.seed}, 1 worker, parallelism 1")

    run_engine(config, args.dataset, 1, args.seed)  # warm-up
    workers = start_workers(settings)
    rounds = []
    try:
        run_web(config, args.dataset, 1, args.seed, "warm-up")
        for r in range(args.repeats):  # alternating, so that load changes hit both sides alike
            engine_s, engine_eval, engine_best = run_engine(config, args.dataset, args.trials, args.seed)
            web_s, web_eval, export_s, web_best, timeline = run_web(config, args.dataset, args.trials, args.seed, f"round {r}")
            rounds.append((engine_s, engine_eval, web_s, web_eval))
            print(f"round {r + 1}: engine {engine_s:6.2f} s (evaluate {engine_eval:6.2f} s), "
                  f"web {web_s:6.2f} s (evaluate {web_eval:6.2f} s, then export {export_s:.2f} s); {timeline}")
            if abs(web_best - engine_best) > 1e-9:
                print(f"  best scores differ: engine {engine_best:.4f}, web {web_best:.4f}")
    finally:
        stop_workers(workers)
        if started_redis:
            stop_redis()
    ratio = statistics.median(w / e for e, _, w, _ in rounds)
    engine_over = statistics.median((e - ee) / args.trials for e, ee, _, _ in rounds) * 1000
    web_over = statistics.median((w - we) / args.trials for _, _, w, we in rounds) * 1000
    per_trial = statistics.median(ee / args.trials for _, ee, _, _ in rounds)
    print(f"best val_acc {engine_best:.4f} on both sides: {'yes' if abs(web_best - engine_best) < 1e-9 else 'NO'}")
    print(f"per trial: evaluate {per_trial:.3f} s; outside evaluate: engine {engine_over:.0f} ms, web {web_over:.0f} ms")
    print(f"wall-time ratio web / engine (median of {len(rounds)}): {ratio:.3f}  (target <= 1.10)")
    return 0


def run_engine(config: dict, dataset: str, trials: int, seed: int) -> tuple[float, float]:
    from search_engine.constraints import Constraints
    from search_engine.data import load_builtin
    from search_engine.loop import run_search
    from search_engine.registry import create_estimator, create_space, create_strategy
    from search_engine.types import Budget

    started = time.perf_counter()
    task = load_builtin(dataset, seed=seed)
    space = create_space(config["space"], **config["space_config"])
    result = run_search(
        task=task, space=space, strategy=create_strategy(config["strategy"], space, seed=seed),
        estimator=create_estimator(config["estimator"], **config["estimator_config"]),
        constraints=Constraints(), budget=Budget(trials=trials), seed=seed,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    evaluated = sum(o.duration_s for o in result.outcomes)
    return elapsed, evaluated, result.best.objective if result.best else float("nan")


def start_workers(settings) -> list[subprocess.Popen]:
    from nasweb.management.commands.worker import worker_command, worker_environment

    # The same workers as `manage.py up --workers 1`.
    log_dir = Path(tempfile.mkdtemp(prefix="nas-bench-logs-"))
    procs = []
    for name, command in (("control", worker_command(1, 2, "control")), ("trials", worker_command(1, 1, "trials"))):
        log = open(log_dir / f"{name}.log", "w")
        procs.append(subprocess.Popen(command, cwd=ROOT, env=worker_environment(1), stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    # No readiness wait: the warm-up experiment that follows absorbs the workers' start-up.
    time.sleep(1)
    if any(p.poll() is not None for p in procs):
        raise SystemExit(f"workers did not start; see {log_dir}")
    return procs


def stop_workers(procs) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_web(config: dict, dataset: str, trials: int, seed: int, label: str):
    from django.contrib.auth import get_user_model
    from django.db.models import Max

    from experiments.choices import TERMINAL_TRIAL_STATES
    from experiments.models import Dataset, Experiment, Project

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = Project.create_for(user, f"bench {label}")
    ds = Dataset.objects.create(project=project, name=dataset, source="builtin", builtin_name=dataset)
    experiment = Experiment.objects.create(
        project=project, dataset=ds, name=label, budget_trials=trials, parallelism=1, seed=seed, device="cpu",
        created_by=user, **config,
    )  # fmt: skip
    experiment.start()
    experiment.refresh_from_db()
    deadline = time.monotonic() + 3600
    while experiment.counted_trials().filter(state__in=TERMINAL_TRIAL_STATES).count() < trials:
        if experiment.is_terminal or time.monotonic() > deadline:
            break
        time.sleep(0.05)
        experiment.refresh_from_db()
    last = experiment.trials.aggregate(last=Max("finished_at"))["last"]
    while not experiment.is_terminal and time.monotonic() < deadline:
        time.sleep(0.05)
        experiment.refresh_from_db()
    web_s = (last - experiment.started_at).total_seconds()
    export_s = (experiment.finished_at - last).total_seconds()
    best = experiment.best_trial()
    trials = list(experiment.trials.exclude(started_at=None).order_by("number"))
    per_trial = [t.duration_s for t in trials if t.duration_s]
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in zip(trials, trials[1:])]
    inside = [(t.finished_at - t.started_at).total_seconds() - t.duration_s for t in trials if t.duration_s]
    timeline = ""
    if gaps:
        timeline = (f"between trials {statistics.median(gaps) * 1000:.0f} ms, in a trial outside evaluate "
                    f"{statistics.median(inside) * 1000:.0f} ms (medians)")
    project.experiments.all().delete()  # datasets are protected while used
    project.delete()  # rows only; artifacts stay in the throw-away data directory
    return web_s, sum(per_trial), export_s, best.objective if best else float("nan"), timeline


if __name__ == "__main__":
    raise SystemExit(main())
