"""An experiment with 10,000 trials: page and API response times, and their query counts.

Trials are bulk-inserted (realistic architectures, metrics and constraint values; a few running
trials with learning curves). Each URL is requested through Django's test client as a logged-in
member, once to warm up, then `--repeats` times; reported: median time, response size and the
number of SQL queries. The same URLs on a 100-trial experiment show that the query count does not
grow with the number of trials (target: <= 300 ms at 10,000 trials).

    python bench/bench_many_trials.py
    python bench/bench_many_trials.py --trials 50000 --repeats 3

Uses a throw-away SQLite database and embedded Redis unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid

from webenv import configure_environment as _configure_web_environment
from webenv import setup_django, stop_redis


def configure_environment() -> None:
    _configure_web_environment(DEBUG="false")  # production settings: no debug costs in the timings
    os.environ.setdefault("SECRET_KEY", "bench-only-" + uuid.uuid4().hex)
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("SECURE_COOKIES", "false")


def fill(experiment, n: int, running: int = 8, points: int = 20) -> None:
    from django.utils import timezone

    from experiments.models import Trial, TrialMetric

    rng = random.Random(0)
    widths = [32, 64, 128, 256, 512]
    now = timezone.now()
    rows = []
    for number in range(n):
        depth = rng.randint(1, 4)
        arch = {"depth": depth, **{f"width_{i}": rng.choice(widths) for i in range(1, depth + 1)},
                "activation": rng.choice(["relu", "gelu", "tanh", "silu"]), "dropout": rng.choice([0.0, 0.1, 0.2]),
                "batch_norm": rng.random() < 0.5, "residual": rng.random() < 0.5}  # fmt: skip
        params = rng.randint(2_000, 400_000)
        state = "running" if number >= n - running else rng.choices(
            ["completed", "infeasible", "failed", "pruned"], [90, 6, 2, 2])[0]  # fmt: skip
        val = rng.uniform(0.6, 0.99)
        metrics = {} if state == "running" else {
            "val_acc": val, "test_acc": val - rng.uniform(0, 0.03), "train_acc": min(1.0, val + 0.02),
            "val_loss": rng.uniform(0.05, 1.0), "params": params, "flops": params * 2, "size_mb": params * 4e-6,
            "latency_ms": rng.uniform(0.05, 2.0), "epochs": 3, "train_time_s": rng.uniform(1, 30),
        }  # fmt: skip
        constraint_values = {
            "params": {"value": params, "limit": 300_000, "ok": params <= 300_000},
            "flops": {"value": params * 2, "limit": None, "ok": True},
            "size_mb": {"value": params * 4e-6, "limit": None, "ok": True},
        }
        rows.append(Trial(
            experiment=experiment, number=number, arch=arch, fingerprint=uuid.uuid4().hex, state=state,
            objective=val if state in ("completed", "pruned") else None, metrics=metrics,
            constraint_values=constraint_values, attempt=1, started_at=now, heartbeat_at=now,
            finished_at=None if state == "running" else now, duration_s=rng.uniform(1, 30),
            error="Traceback ...\nRuntimeError: boom" if state == "failed" else "",
        ))  # fmt: skip
    Trial.objects.bulk_create(rows, batch_size=2000)
    curves = []
    for trial in experiment.trials.filter(state="running"):
        for step in range(1, points + 1):
            curves.append(TrialMetric(trial=trial, step=step, values={
                "train_loss": 1 / step, "val_loss": 1.1 / step, "train_acc": 1 - 1 / (step + 1),
                "val_acc": 1 - 1.2 / (step + 2)}))  # fmt: skip
    TrialMetric.objects.bulk_create(curves, batch_size=2000)


def measure(client, url: str, repeats: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up
    if response.status_code != 200:
        return {"status": response.status_code}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return {"status": 200, "ms": statistics.median(times), "queries": len(queries), "kb": len(response.content) / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    configure_environment()
    started_redis = setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from experiments.models import Dataset, Experiment, Project


    user, _ = get_user_model().objects.get_or_create(username="bench-many")
    project = Project.create_for(user, "bench many trials")
    dataset = Dataset.objects.create(project=project, name="digits", source="builtin", builtin_name="digits",
                                     kind="image", input_shape=[1, 8, 8], num_classes=10)
    experiments = {}
    try:
        for n in (args.small, args.trials):
            experiment = Experiment.objects.create(
                project=project, dataset=dataset, name=f"{n} trials", space="mlp", strategy="random",
                estimator="train", budget_trials=n, status="running", created_by=user,
                constraints={"max_params": 300_000},
            )  # fmt: skip
            started = time.perf_counter()
            fill(experiment, n)
            print(f"inserted {n} trials in {time.perf_counter() - started:.1f} s")
            experiments[n] = experiment

        client = Client()
        client.force_login(user)
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(f"database {database}; median of {args.repeats} requests after a warm-up; DEBUG off")
        print(f"{'request':<44} {'trials':>7} {'ms':>9} {'queries':>8} {'KiB':>9}")
        for label, make_url in urls(reverse, NoReverseMatch):
            for n, experiment in experiments.items():
                url = make_url(experiment.pk)
                if url is None:
                    print(f"{label:<44} {'(no such page yet)':>20}")
                    break
                r = measure(client, url, args.repeats)
                if r["status"] != 200:
                    print(f"{label:<44} {n:>7} HTTP {r['status']}")
                    continue
                print(f"{label:<44} {n:>7} {r['ms']:>9.1f} {r['queries']:>8} {r['kb']:>9.1f}")
    finally:
        project.experiments.all().delete()  # datasets are protected while used
        project.delete()
        if started_redis:
            stop_redis()
    return 0


def urls(reverse, NoReverseMatch):
    def page(pk):
        try:
            return reverse("experiment-detail", args=[pk])
        except NoReverseMatch:
            return None

    return [
        ("experiment page (HTML)", page),
        ("snapshot API (every trial + curves)", lambda pk: f"/api/experiments/{pk}/snapshot/"),
        ("trial list API (first page)", lambda pk: f"/api/trials/?experiment={pk}"),
        ("trial list API, best first", lambda pk: f"/api/trials/?experiment={pk}&ordering=-objective"),
        ("trial list API, state=completed, offset 5000", lambda pk: f"/api/trials/?experiment={pk}&state=completed&offset=5000"),
        ("experiment API (counts + best)", lambda pk: f"/api/experiments/{pk}/"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
