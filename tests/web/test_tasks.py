"""The Dramatiq actors, called directly (actor.fn) against the test database.

Messages the actors send are captured instead of reaching Redis (the `outbox` fixture); `drain`
plays them back in order the way one worker would. Experiments are tiny: iris, the mlp space,
one epoch per trial.
"""

from __future__ import annotations

import threading
import time
import uuid
import zipfile
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError, transaction
from django.utils import timezone

from experiments.choices import TERMINAL_TRIAL_STATES, ArtifactKind, ExperimentStatus, TrialState
from experiments.engine import build, storage
from experiments.jobs import actors, guards, locks, recovery, service, trial_run
from experiments.models import Artifact, Dataset, Experiment, Trial, TrialMetric
from tests.web.actors import drain

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit must fire; threads must see rows


@pytest.fixture(autouse=True)
def _own_redis_namespace(settings):
    # Locks and watch-chain keys live in Redis under the broker's namespace: a fresh one per
    # test, so tests (and other sessions on the same server) never see each other's keys.
    settings.DRAMATIQ_BROKER = {
        **settings.DRAMATIQ_BROKER,
        "OPTIONS": {**settings.DRAMATIQ_BROKER["OPTIONS"], "namespace": f"w2-test-{uuid.uuid4().hex}"},
    }


@pytest.fixture
def progress(monkeypatch):
    """Events set when a trial running in another thread starts and reports an epoch. The test
    thread waits on these rather than polling the database, which an in-memory SQLite test
    database (shared cache: table locks, no busy wait) would turn into spurious lock errors."""
    from experiments.live import broadcast

    started, epoch = threading.Event(), threading.Event()
    real_started, real_epoch = broadcast.trial_started, broadcast.trial_epoch

    def trial_started(trial):
        real_started(trial)
        started.set()

    def trial_epoch(trial, step, values):
        real_epoch(trial, step, values)
        epoch.set()

    monkeypatch.setattr(broadcast, "trial_started", trial_started)
    monkeypatch.setattr(broadcast, "trial_epoch", trial_epoch)
    return started, epoch


def while_training(verb) -> None:
    """Call an experiment verb from the test thread while a trial trains in another one (retried
    on SQLite's shared-cache "table is locked", which a real database would wait out)."""
    for _ in range(100):
        try:
            with transaction.atomic():
                return verb()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    raise AssertionError("the database stayed locked")


def names(outbox) -> list[str]:
    return [m.actor_name for m in outbox]


@pytest.fixture
def make_experiment(experiment_factory, iris_dataset):
    """A draft experiment that really runs: iris, mlp (max depth 2), random, one epoch per trial."""

    def make(**overrides) -> Experiment:
        fields = dict(
            dataset=iris_dataset, estimator_config={"epochs": 1, "batch_size": 32},
            budget_trials=4, parallelism=2,
        )  # fmt: skip
        fields.update(overrides)
        return experiment_factory(**fields)

    return make


def test_it_creates_parallelism_trials_and_sends_one_run_each(make_experiment, outbox):
    experiment = make_experiment(parallelism=3, budget_trials=5)
    experiment.start()
    assert names(outbox) == ["advance_experiment"]
    actors.advance_experiment.fn(*outbox.pop(0).args)

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING
    queued = list(experiment.trials.filter(state=TrialState.QUEUED).values_list("pk", flat=True))
    assert len(queued) == 3
    runs = [m.args[0] for m in outbox if m.actor_name == "run_trial"]
    assert sorted(runs) == sorted(queued)
    assert sorted(experiment.trials.values_list("number", flat=True)) == list(range(experiment.trials.count()))


def test_it_never_creates_more_trials_than_the_budget(make_experiment, outbox):
    experiment = make_experiment(parallelism=8, budget_trials=3)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    assert experiment.counted_trials().count() == 3


def test_a_duplicate_advance_creates_nothing_more(make_experiment, outbox):
    experiment = make_experiment(parallelism=2, budget_trials=6)
    experiment.start()
    actors.advance_experiment.fn(experiment.pk)
    actors.advance_experiment.fn(experiment.pk)
    actors.advance_experiment.fn(experiment.pk)
    assert experiment.trials.count() == 2


def test_a_duplicate_run_trial_does_nothing(make_experiment, outbox):
    experiment = make_experiment(parallelism=1, budget_trials=2)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()
    actors.run_trial.fn(trial.pk)
    trial.refresh_from_db()
    assert trial.state == TrialState.COMPLETED
    assert trial.attempt == 1
    points = TrialMetric.objects.filter(trial=trial).count()
    assert points == 1

    actors.run_trial.fn(trial.pk)  # delivered again
    trial.refresh_from_db()
    assert trial.attempt == 1 and trial.state == TrialState.COMPLETED
    assert TrialMetric.objects.filter(trial=trial).count() == points


def test_it_runs_to_completion_with_exactly_the_budgeted_trials(make_experiment, outbox):
    experiment = make_experiment(parallelism=2, budget_trials=4)
    experiment.start()
    ran = drain(outbox)

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert experiment.counted_trials().count() == 4
    assert experiment.counted_trials().filter(state__in=TERMINAL_TRIAL_STATES).count() == 4
    assert ran.count("finalize_experiment") >= 1
    best = experiment.best_trial()
    assert best is not None and f"best trial #{best.number}" in experiment.status_message
    artifact = Artifact.objects.get(experiment=experiment)
    assert artifact.kind == ArtifactKind.MODEL_ZIP and artifact.trial_id == best.pk
    with artifact.file.open("rb") as fh, zipfile.ZipFile(fh) as zf:
        files = set(zf.namelist())
        card = zf.read("MODEL_CARD.md").decode()
    assert {"model.pt", "model.onnx", "weights.safetensors", "architecture.json", "MODEL_CARD.md"} <= files
    assert "iris" in card and "load_model" in card and "torch" in card
    # The exported weights are the trial's own: re-measured test accuracy equals the trial's.
    assert artifact.metrics["exported_test_acc"] == pytest.approx(best.metrics["test_acc"])
    assert artifact.metrics["retrained"] is False


def test_finalize_twice_makes_one_artifact(make_experiment, outbox):
    experiment = make_experiment(parallelism=1, budget_trials=1)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "finalize_experiment"))
    actors.finalize_experiment.fn(experiment.pk, "trial budget spent")
    actors.finalize_experiment.fn(experiment.pk, "trial budget spent")
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert Artifact.objects.filter(experiment=experiment).count() == 1


def test_finalize_retrains_when_the_weights_are_gone(make_experiment, outbox):
    from django.core.files.storage import default_storage

    experiment = make_experiment(parallelism=1, budget_trials=1)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "finalize_experiment"))
    best = experiment.best_trial()
    default_storage.delete(storage.weights_path(best))
    actors.finalize_experiment.fn(experiment.pk, "trial budget spent")
    artifact = Artifact.objects.get(experiment=experiment)
    assert artifact.metrics["retrained"] is True
    # Same seed, same architecture, same batches: the retrained model matches the trial.
    assert artifact.metrics["exported_test_acc"] == pytest.approx(best.metrics["test_acc"])


def _kill_worker(trial: Trial) -> None:
    """What a worker that died mid-trial leaves behind: running, and no heartbeat since long ago."""
    assert trial.claim("host:1234:dead") is not None
    Trial.objects.filter(pk=trial.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.TRIAL_LEASE_SECONDS + 5)
    )


def test_a_dead_workers_trial_is_requeued_then_failed(make_experiment, outbox, settings):
    settings.TRIAL_MAX_ATTEMPTS = 2
    experiment = make_experiment(parallelism=1, budget_trials=1)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()

    _kill_worker(trial)
    outbox.clear()
    actors.advance_experiment.fn(experiment.pk)
    trial.refresh_from_db()
    assert trial.state == TrialState.QUEUED and "stopped heartbeating" in trial.error
    assert [m.args[0] for m in outbox if m.actor_name == "run_trial"] == [trial.pk]

    _kill_worker(trial)  # second attempt dies too
    outbox.clear()
    actors.advance_experiment.fn(experiment.pk)
    trial.refresh_from_db()
    assert trial.state == TrialState.FAILED
    assert "gave up after 2 attempts" in trial.error

    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.FAILED  # the only trial failed: nothing to export
    assert "no trial completed" in experiment.status_message
    assert experiment.counted_trials().count() == 1


def test_the_watchdog_reaps_when_every_worker_died(make_experiment, outbox):
    experiment = make_experiment(parallelism=1, budget_trials=1)
    experiment.start()
    actors.advance_experiment.fn(*outbox.pop(0).args)
    watch = [m for m in outbox if m.actor_name == "watch_experiment"]
    assert watch, "advance starts a watch chain"
    assert watch[0].options["captured_delay"] > 0
    trial = experiment.trials.get()
    _kill_worker(trial)
    outbox.clear()

    actors.watch_experiment.fn(*watch[0].args)  # nobody else is left to notice

    trial.refresh_from_db()
    assert trial.state == TrialState.QUEUED
    assert "run_trial" in names(outbox)
    assert "watch_experiment" in names(outbox)  # the chain goes on while the experiment runs


def test_a_late_result_from_a_reaped_worker_is_dropped(make_experiment, outbox):
    experiment = make_experiment(parallelism=1, budget_trials=1)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()
    old_token = trial.claim("host:1:slow")
    Trial.objects.filter(pk=trial.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    actors.advance_experiment.fn(experiment.pk)  # re-queued
    drain(outbox)  # a new worker runs it to the end
    trial.refresh_from_db()
    assert trial.state == TrialState.COMPLETED and trial.attempt == 2
    assert not trial.complete(old_token, state=TrialState.FAILED, objective=None, metrics={}, constraint_values={})


def test_pause_stops_new_trials_and_resume_continues(make_experiment, outbox):
    experiment = make_experiment(parallelism=1, budget_trials=3)
    experiment.start()
    actors.advance_experiment.fn(*outbox.pop(0).args)
    first = experiment.trials.get()

    experiment.pause()
    drain(outbox)  # the queued trial's message arrives while paused: it waits
    first.refresh_from_db()
    assert first.state == TrialState.QUEUED
    actors.advance_experiment.fn(experiment.pk)
    assert experiment.trials.count() == 1

    experiment.refresh_from_db()
    experiment.resume()
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert experiment.counted_trials().count() == 3


def test_pause_lets_a_running_trial_finish(make_experiment, outbox, progress):
    experiment = make_experiment(parallelism=1, budget_trials=2, estimator_config={"epochs": 40, "batch_size": 8})
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()
    worker = threading.Thread(target=actors.run_trial.fn, args=(trial.pk,))
    worker.start()
    assert progress[0].wait(60), "the trial never started"
    while_training(experiment.pause)
    worker.join(timeout=60)
    trial.refresh_from_db()
    assert trial.state == TrialState.COMPLETED
    outbox.clear()
    actors.advance_experiment.fn(experiment.pk)  # the advance it sends: paused, so no new trial
    assert experiment.trials.count() == 1


def test_cancel_stops_a_running_trial_within_seconds(make_experiment, outbox, monkeypatch, progress):
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.2)
    experiment = make_experiment(
        parallelism=1, budget_trials=1,
        estimator_config={"epochs": 500, "batch_size": 4, "cosine": False},
    )  # fmt: skip
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()

    worker = threading.Thread(target=actors.run_trial.fn, args=(trial.pk,))
    worker.start()
    assert progress[1].wait(60), "the trial never reported an epoch"

    while_training(experiment.cancel)
    cancelled_at = time.monotonic()
    worker.join(timeout=30)
    stopped_after = time.monotonic() - cancelled_at

    assert not worker.is_alive()
    assert stopped_after < 5, f"took {stopped_after:.1f}s to stop"
    trial.refresh_from_db()
    assert trial.state == TrialState.CANCELLED
    assert trial.finished_at is not None and trial.lease_token is None
    assert TrialMetric.objects.filter(trial=trial).count() < 500


def test_cancel_interrupts_a_long_epoch(make_experiment, outbox, monkeypatch, digits_dataset, progress):
    """The stop lands inside the epoch, not at its end: one epoch here takes far longer than the wait."""
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.2)
    experiment = make_experiment(
        dataset=digits_dataset,
        parallelism=1, budget_trials=1,
        estimator_config={"epochs": 1, "batch_size": 2, "data_fraction": 1.0},
        space_config={"max_depth": 1},
    )  # fmt: skip
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()
    # Make every batch slow so that one epoch takes minutes.
    import torch

    real_step = torch.optim.Adam.step

    def slow_step(self, *args, **kwargs):
        time.sleep(0.05)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", slow_step)
    worker = threading.Thread(target=actors.run_trial.fn, args=(trial.pk,))
    worker.start()
    assert progress[0].wait(60), "the trial never started"
    time.sleep(0.5)
    while_training(experiment.cancel)
    worker.join(timeout=30)  # an epoch takes minutes here; bench/bench_cancel_latency.py prints the time
    assert not worker.is_alive()
    trial.refresh_from_db()
    assert trial.state == TrialState.CANCELLED
    assert not TrialMetric.objects.filter(trial=trial).exists()  # stopped before the first epoch ended


def test_a_bad_configuration_fails_the_experiment_with_the_reason(make_experiment, outbox):
    experiment = make_experiment(space="nb201", space_config={})  # needs image data; iris is tabular
    experiment.start()
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status in (ExperimentStatus.FAILED,)
    assert experiment.status_message


def test_an_exhausted_grid_finishes_below_the_budget(make_experiment, outbox, monkeypatch):
    from search_engine.spaces import mlp

    # A grid of 4 architectures (depth 1, one width/activation/dropout; batch norm x residual).
    monkeypatch.setattr(mlp, "WIDTHS", mlp.WIDTHS[:1])
    monkeypatch.setattr(mlp, "ACTIVATIONS", {"relu": mlp.ACTIVATIONS["relu"]})
    monkeypatch.setattr(mlp, "DROPOUTS", mlp.DROPOUTS[:1])
    experiment = make_experiment(
        strategy="grid", strategy_config={}, space_config={"max_depth": 1}, budget_trials=10, parallelism=3,
    )  # fmt: skip
    experiment.start()
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert "exhausted" in experiment.status_message
    assert experiment.trials.pending().count() == 0
    fingerprints = list(experiment.trials.values_list("fingerprint", flat=True))
    assert len(fingerprints) == len(set(fingerprints)) == 4


def test_static_constraints_are_recorded_and_cost_no_budget(make_experiment, outbox):
    experiment = make_experiment(constraints={"max_params": 300}, budget_trials=2, parallelism=2)
    experiment.start()
    drain(outbox)
    experiment.refresh_from_db()
    infeasible = experiment.trials.filter(state=TrialState.INFEASIBLE, started_at__isnull=True)
    for trial in infeasible:
        assert trial.constraint_values["params"]["ok"] is False
        assert "params" in trial.error
    assert all(
        t.constraint_values["params"]["value"] <= 300 for t in experiment.trials.exclude(pk__in=infeasible)
    )
    if experiment.status == ExperimentStatus.COMPLETED:
        assert experiment.counted_trials().count() == 2



def test_an_advance_that_keeps_failing_fails_the_experiment(make_experiment, outbox):
    assert actors.advance_experiment.options["on_retry_exhausted"] == "experiment_gave_up"
    experiment = make_experiment()
    experiment.start()
    actors.experiment_gave_up.fn({"args": [experiment.pk], "actor_name": "advance_experiment"}, {"retries": 10})
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.FAILED
    assert "advance_experiment kept failing" in experiment.status_message


def test_start_up_recovery_resends_queued_trials(make_experiment, outbox):
    """After a restart of the embedded Redis every queued message is gone; `up` recovers."""
    experiment = make_experiment(parallelism=2, budget_trials=2)
    experiment.start()
    actors.advance_experiment.fn(*outbox.pop(0).args)
    outbox.clear()  # the run_trial messages are lost

    assert recovery.recover_active_experiments() == 1
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert experiment.counted_trials().filter(state=TrialState.COMPLETED).count() == 2


# Faults inside one process (tests/faults runs them as real processes) ------------------------------------
@pytest.fixture
def fresh_service():
    """This process's worker health (jobs/service.py) as a new process has it, before and after."""
    service.reset()
    yield service
    service.reset()


def test_the_heartbeat_starts_at_the_claim_before_any_set_up(make_experiment, outbox, monkeypatch, settings):
    settings.TRIAL_LEASE_SECONDS = 2  # a heartbeat every 0.5 s
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.1)
    experiment = make_experiment(parallelism=1, budget_trials=1)
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()
    beats = []
    real_build = build.build_search

    def slow_build(*args, **kwargs):  # a cold start: imports, the first dataset load
        beats.append(Trial.objects.get(pk=trial.pk).heartbeat_at)
        time.sleep(1.5)
        beats.append(Trial.objects.get(pk=trial.pk).heartbeat_at)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(build, "build_search", slow_build)
    actors.run_trial.fn(trial.pk)
    assert beats[1] > beats[0], "nothing beat while the trial was being set up"
    trial.refresh_from_db()
    assert trial.state == TrialState.COMPLETED and trial.attempt == 1


def _failing_at_once(monkeypatch):
    """Every trial of this process fails within milliseconds, as on a worker whose torch import
    was left half done."""
    real = trial_run.evaluate

    class Broken:
        def __init__(self, estimator):
            self.estimator = estimator

        def __getattr__(self, name):
            return getattr(self.estimator, name)

        def estimate(self, *args, **kwargs):
            raise ImportError("cannot import name 'config' from partially initialized module 'torch._inductor'")

    monkeypatch.setattr(trial_run, "evaluate", lambda candidate, **kw: real(candidate, **{**kw, "estimator": Broken(kw["estimator"])}))


def test_a_worker_whose_trials_fail_at_once_takes_itself_out_of_service(make_experiment, outbox, monkeypatch,
                                                                        fresh_service):  # fmt: skip
    experiment = make_experiment(parallelism=1, budget_trials=4)
    experiment.start()
    with monkeypatch.context() as patched:
        _failing_at_once(patched)
        while outbox and service.available():
            message = outbox.pop(0)
            if message.actor_name != "watch_experiment":
                actors.advance_experiment.broker.get_actor(message.actor_name).fn(*message.args, **message.kwargs)

    assert "3 trials in a row failed within" in service.out_of_service_reason()
    assert "torch._inductor" in service.out_of_service_reason()
    trials = list(experiment.trials.order_by("number"))
    assert [t.state for t in trials] == [TrialState.QUEUED] * 3  # re-queued, not failed
    assert all("took itself out of service" in t.error for t in trials)
    assert sorted(m.args[0] for m in outbox if m.actor_name == "run_trial") == [t.pk for t in trials]
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING

    # While out of service it takes no trial: the message goes back for another worker.
    outbox.clear()
    actors.run_trial.fn(trials[0].pk)
    assert names(outbox) == ["run_trial"] and Trial.objects.get(pk=trials[0].pk).state == TrialState.QUEUED

    service.reset()  # the supervisor's fresh process
    drain(outbox)
    actors.advance_experiment.fn(experiment.pk, resend_queued=True)
    drain(outbox)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED, experiment.status_message
    assert experiment.trials.filter(state=TrialState.COMPLETED).count() == 4 == experiment.trials.count()


def _one_trial_training(experiment, outbox, progress) -> tuple[Trial, threading.Thread]:
    """Start `experiment` and its one trial in a worker thread; return once it reported an epoch."""
    experiment.start()
    drain(outbox, skip=("watch_experiment", "run_trial"))
    trial = experiment.trials.get()
    worker = threading.Thread(target=actors.run_trial.fn, args=(trial.pk,))
    worker.start()
    assert progress[1].wait(60), "the trial never reported an epoch"
    outbox.clear()
    return trial, worker


def test_a_stopping_worker_hands_its_running_trial_back(make_experiment, outbox, monkeypatch, progress,
                                                         fresh_service):  # fmt: skip
    monkeypatch.setattr(guards, "CANCEL_POLL_SECONDS", 0.1)
    experiment = make_experiment(parallelism=1, budget_trials=1,
                                 estimator_config={"epochs": 500, "batch_size": 4, "cosine": False})  # fmt: skip
    trial, worker = _one_trial_training(experiment, outbox, progress)

    service.shutting_down.set()  # SIGTERM to the worker process
    worker.join(timeout=30)

    assert not worker.is_alive()
    trial.refresh_from_db()
    assert trial.state == TrialState.QUEUED and trial.attempt == 0 and trial.lease_token is None
    assert "its worker stopped" in trial.error
    assert not TrialMetric.objects.filter(trial=trial).exists()
    assert [m.args[0] for m in outbox if m.actor_name == "run_trial"] == [trial.pk]


def test_queued_trials_whose_message_was_lost_are_sent_again(make_experiment, outbox):
    experiment = make_experiment(parallelism=2, budget_trials=2)
    experiment.start()
    actors.advance_experiment.fn(*outbox.pop(0).args)
    queued = sorted(experiment.trials.values_list("pk", flat=True))
    Trial.objects.filter(pk__in=queued).update(created_at=timezone.now() - timedelta(seconds=60))
    outbox.clear()

    actors.advance_experiment.fn(experiment.pk)  # their messages are on their way: nothing to do
    assert "run_trial" not in names(outbox)

    locks.redis_client().flushdb()  # Redis restarted: messages and markers are gone
    actors.advance_experiment.fn(experiment.pk)
    assert sorted(m.args[0] for m in outbox if m.actor_name == "run_trial") == queued


def test_the_periodic_check_advances_every_active_experiment_once_per_interval(make_experiment, outbox):
    experiment = make_experiment()
    experiment.start()
    outbox.clear()
    assert recovery.sweep() == 1
    assert [(m.actor_name, m.args) for m in outbox] == [("advance_experiment", (experiment.pk,))]
    assert recovery.sweep() == 0  # this interval's sweep is done (on any machine)


def _gone_dataset(project, owner):
    return Dataset.objects.create(
        project=project, name="Flowers", source="csv", file="datasets/1/0123/flowers.csv", kind="tabular",
        input_shape=[4], num_classes=3, created_by=owner,
    )  # fmt: skip


def test_a_trial_whose_dataset_file_is_gone_fails_the_experiment_naming_the_dataset(
    make_experiment, outbox, project, owner, trial_factory
):
    experiment = make_experiment(dataset=_gone_dataset(project, owner), parallelism=2)
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING)
    first, second = trial_factory(experiment), trial_factory(experiment)

    actors.run_trial.fn(first.pk)

    first.refresh_from_db()
    experiment.refresh_from_db()
    assert first.state == TrialState.FAILED
    assert first.error == "the file of dataset “Flowers” is gone from storage; upload it again and start a new experiment"
    assert experiment.status == ExperimentStatus.FAILED
    assert "“Flowers” is gone" in experiment.status_message
    assert str(settings.MEDIA_ROOT) not in experiment.status_message + first.error
    actors.run_trial.fn(second.pk)  # the rest never starts
    assert Trial.objects.get(pk=second.pk).state == TrialState.CANCELLED


def test_a_gone_dataset_file_is_noticed_whatever_a_worker_cached(project, owner, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path)
    rows = "\n".join(f"{i % 7}.5,{i % 5}.0,{'abc'[i % 3]}" for i in range(60))
    name = default_storage.save("datasets/1/x/flowers.csv", ContentFile(f"a,b,label\n{rows}\n"))
    dataset = Dataset.objects.create(project=project, name="Flowers", source="csv", file=name, created_by=owner,
                                     options={"target": "label"})
    build.clear_task_cache()
    assert build.load_task(dataset, 0) is build.load_task(dataset, 0)  # cached in this process
    default_storage.delete(name)
    with pytest.raises(build.DatasetMissing, match="“Flowers” is gone"):
        build.load_task(dataset, 0)
