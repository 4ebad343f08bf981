"""Workers that die, a Redis that restarts, a cold start with a short lease: the experiment ends
with exactly its budget of terminal trials, and nothing healthy is reaped."""

from __future__ import annotations

import http.client
import os
import signal
import time

import pytest

from tests.faults.conftest import (
    LEASE_S,
    running_trial,
    start_experiment,
    wait_for,
    wait_until_finished,
    worker_pid,
)
from tests.faults.proc import alive, descendants, free_port

pytestmark = pytest.mark.faults

TERMINAL = {"completed", "failed", "pruned", "infeasible", "cancelled"}
# About 1-2 s of training per trial on iris (150 rows, batches of 8).
EPOCHS = 60


def assert_budget_spent_exactly(database, experiment_id: int, budget: int, log=None) -> list[dict]:
    state = database.experiment(experiment_id)
    trials = database.trials(experiment_id)
    assert state["status"] == "completed", (state, trials, log.read_text()[-4000:] if log else "")
    assert len(trials) == budget, trials
    assert {t["state"] for t in trials} <= TERMINAL, trials
    assert sorted(t["number"] for t in trials) == list(range(budget))
    assert all(t["state"] == "completed" for t in trials), trials  # nothing failed for the infrastructure
    print(f"trial durations: {[round(t['duration_s'], 2) for t in trials]}")
    return trials


def kill_mid_trial(database, experiment_id: int, log) -> tuple[dict, float]:
    trial = wait_for("a trial trains", lambda: running_trial(database, experiment_id), 90, log=log)
    os.kill(worker_pid(trial), signal.SIGKILL)
    return trial, time.monotonic()


def rerun_seconds(database, experiment_id: int, trial: dict, killed_at: float, log) -> float:
    """Seconds from the kill until the trial runs again on another process."""

    def again():
        now = next(t for t in database.trials(experiment_id) if t["id"] == trial["id"])
        return now["attempt"] > trial["attempt"] and now["state"] != "queued"

    wait_for("the killed worker's trial runs again", again, LEASE_S + 30, poll=0.1, log=log)
    return time.monotonic() - killed_at


def test_a_worker_killed_under_up_is_replaced_and_its_trial_rerun(processes, database, up_port):
    up = processes.start("up", "up", "--port", str(up_port), "--workers", "1", "--threads", "1")
    wait_for("up is running", lambda: "NAS Studio is running at" in up.log_path.read_text(), 120, log=up.log_path)
    experiment_id = start_experiment(processes, epochs=EPOCHS, trials=2)

    trial, killed_at = kill_mid_trial(database, experiment_id, up.log_path)
    seconds = rerun_seconds(database, experiment_id, trial, killed_at, up.log_path)
    print(f"\nup: trial re-run {seconds:.1f}s after its worker was killed (lease {LEASE_S}s)")

    wait_until_finished(database, experiment_id, 120, log=up.log_path)
    trials = assert_budget_spent_exactly(database, experiment_id, 2, up.log_path)
    assert next(t for t in trials if t["id"] == trial["id"])["attempt"] == 2
    assert up.poll() is None, up.log_path.read_text()[-4000:]
    assert not alive(worker_pid(trial))
    status = http_status(up_port, "/login/")
    assert status == 200


def test_a_worker_killed_under_manage_py_worker_is_replaced(processes, database):
    worker = processes.start("worker", "worker", "--queues", "all", "--processes", "1", "--threads", "2",
                             "--torch-threads", "1")  # fmt: skip
    experiment_id = start_experiment(processes, epochs=EPOCHS, trials=2)

    trial, killed_at = kill_mid_trial(database, experiment_id, worker.log_path)
    seconds = rerun_seconds(database, experiment_id, trial, killed_at, worker.log_path)
    print(f"\nworker: trial re-run {seconds:.1f}s after its worker process was killed (lease {LEASE_S}s)")

    wait_until_finished(database, experiment_id, 120, log=worker.log_path)
    assert_budget_spent_exactly(database, experiment_id, 2, worker.log_path)
    assert worker.poll() is None  # the supervisor stayed; it replaced the process
    assert len(descendants(worker.pid)) >= 1


def test_a_redis_restart_mid_run_strands_nothing(processes, database, redis_server):
    worker = processes.start("worker", "worker", "--queues", "all", "--processes", "2", "--threads", "2",
                             "--torch-threads", "1")  # fmt: skip
    experiment_id = start_experiment(processes, epochs=EPOCHS // 2, trials=4, parallelism=2)
    wait_for("a trial trains", lambda: running_trial(database, experiment_id), 90, log=worker.log_path)

    redis_server.kill()
    time.sleep(4)  # trials finish meanwhile; their follow-up messages cannot be sent
    redis_server.start()  # empty: every queued message is gone
    back = time.monotonic()

    wait_until_finished(database, experiment_id, 120, log=worker.log_path)
    print(f"\nredis restart: experiment finished {time.monotonic() - back:.1f}s after Redis came back")
    assert_budget_spent_exactly(database, experiment_id, 4, worker.log_path)


def test_a_cold_start_with_a_short_lease_reaps_no_healthy_trial(processes, database):
    # Workers start now, cold (imports, first dataset load, first network), with a 2 s lease.
    processes.env["TRIAL_LEASE_SECONDS"] = "2"
    experiment_id = start_experiment(processes, epochs=EPOCHS // 4, trials=2, parallelism=2)
    worker = processes.start("worker", "worker", "--queues", "all", "--processes", "2", "--threads", "2",
                             "--torch-threads", "1")  # fmt: skip

    wait_until_finished(database, experiment_id, 120, log=worker.log_path)
    trials = assert_budget_spent_exactly(database, experiment_id, 2, worker.log_path)
    assert all(t["attempt"] == 1 for t in trials), trials
    assert not any("heartbeat" in (t["error"] or "") for t in trials), trials


@pytest.fixture
def up_port():
    return free_port()


def http_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()
