"""End to end through a real Dramatiq worker process and real Redis.

The worker is a separate process, so it must see this test's rows: that needs a database server
(PostgreSQL through DATABASE_URL, as in CI). SQLite test databases live in this process's memory,
so without DATABASE_URL the test is skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection

from experiments.choices import TERMINAL_TRIAL_STATES, ArtifactKind, ExperimentStatus, TrialState
from experiments.engine import build
from experiments.jobs import actors, enqueue
from experiments.models import Artifact, Experiment
from search_engine.loop import evaluate

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("DATABASE_URL"), reason="a worker process needs DATABASE_URL (PostgreSQL)"),
]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def namespace(monkeypatch):
    """A broker namespace of this test's own: the worker consumes only what this test sends."""
    from dramatiq.brokers.redis import RedisBroker

    name = f"w2-it-{uuid.uuid4().hex[:10]}"
    broker = RedisBroker(url=settings.REDIS_URL, namespace=name)

    def enqueue_advance(experiment_id, resend_queued=False):
        broker.enqueue(actors.advance_experiment.message(experiment_id))

    monkeypatch.setattr(enqueue, "advance", enqueue_advance)
    yield name
    broker.flush_all()
    broker.close()


@pytest.fixture
def worker(namespace, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL if not settings.EMBEDDED_REDIS else "",
        "NAS_DATA_DIR": str(settings.DATA_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DRAMATIQ_NAMESPACE": namespace,
        "CHANNELS_PREFIX": namespace,
    }
    if settings.EMBEDDED_REDIS:
        env.pop("REDIS_URL")
    log = open(tmp_path / "worker.log", "w+")  # a file, not a pipe: a full pipe would block the worker
    proc = subprocess.Popen(
        # `manage.py worker` is rundramatiq with the environment up and scale-out machines use.
        [sys.executable, "manage.py", "worker", "--queues", "all", "--processes", "1", "--threads", "2",
         "--torch-threads", "1"],
        cwd=settings.BASE_DIR, env=env, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc.log_path = tmp_path / "worker.log"
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything the worker forked
    except ProcessLookupError:
        pass
    log.close()


def test_a_small_experiment_runs_end_to_end_on_a_worker(worker, experiment_factory, iris_dataset):
    experiment = experiment_factory(
        dataset=iris_dataset, space="mlp", space_config={"max_depth": 2}, strategy="random",
        estimator="train", estimator_config={"epochs": 1, "batch_size": 16}, budget_trials=4, parallelism=2, seed=3,
    )  # fmt: skip
    experiment.start()

    deadline = time.monotonic() + 240
    while True:
        experiment.refresh_from_db()
        if experiment.is_terminal:
            break
        if worker.poll() is not None:
            pytest.fail(f"the worker exited early:\n{worker.log_path.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not finished in time: {experiment.status}, trials {list(experiment.trials.values_list('state', flat=True))}")
        time.sleep(0.5)

    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    counted = experiment.counted_trials()
    assert counted.count() == 4
    assert counted.filter(state__in=TERMINAL_TRIAL_STATES).count() == 4
    assert sorted(experiment.trials.values_list("number", flat=True)) == list(range(experiment.trials.count()))
    for trial in experiment.trials.filter(state=TrialState.COMPLETED):
        assert trial.points.count() == 1  # one epoch, one point
        assert trial.attempt == 1

    best = experiment.best_trial()
    scores = [t.objective for t in experiment.trials.filter(state=TrialState.COMPLETED)]
    assert best.objective == max(scores)
    artifact = Artifact.objects.get(experiment=experiment, kind=ArtifactKind.MODEL_ZIP)
    assert artifact.trial_id == best.pk

    # The best result is the engine's own: the same candidate, evaluated here with the same seed,
    # scores exactly what the worker recorded.
    search = build.build_search(Experiment.objects.get(pk=experiment.pk), with_strategy=False)
    again = evaluate(
        build.candidate_of(best), number=best.number, space=search.space, estimator=search.estimator,
        task=search.task, constraints=search.constraints, seed=experiment.seed, measure_latency=False,
    )  # fmt: skip
    assert again.objective == pytest.approx(best.objective)
    assert again.metrics["test_acc"] == pytest.approx(best.metrics["test_acc"])
