"""Real processes under faults: `manage.py up`, `manage.py worker` and `manage.py serve`, started
from this test process, killed, cut off from Redis and flooded on purpose.

Each test gets a redis-server of its own (the real binary, on a free TCP port), so a test may
kill and restart it. The database is shared by the session: PostgreSQL when DATABASE_URL is set
(a database of this session's own, created and dropped here), else SQLite in a data directory of
the session's own. The processes and this test see the same rows; the test reads them with plain
SQL, so no Django database set-up is involved (tests/web's fixtures are not used here).

Small settings keep each scenario short: a 3 s lease (heartbeat 0.75 s, periodic check every
second), iris with the mlp space, trials of a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest

from tests.faults.proc import descendants, free_port

BASE_DIR = Path(__file__).resolve().parents[2]
LEASE_S = 3


def wait_for(what: str, condition, timeout: float, poll: float = 0.2, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    tail = log.read_text()[-6000:] if log and log.exists() else ""
    pytest.fail(f"{what}: not within {timeout}s\n{tail}")


# Database ----------------------------------------------------------------------------------------------
class Database:
    """The session's database, read with plain SQL."""

    def __init__(self, url: str | None, sqlite_path: Path):
        self.url = url
        self.sqlite_path = sqlite_path

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.url is None:
            with sqlite3.connect(self.sqlite_path, timeout=30) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()  # commits on leaving
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def experiment(self, pk: int) -> dict:
        status, message = self.rows("SELECT status, status_message FROM experiments_experiment WHERE id = %s", (pk,))[0]
        return {"status": status, "message": message}

    def trials(self, pk: int) -> list[dict]:
        rows = self.rows(
            "SELECT id, number, state, attempt, worker, error, duration_s FROM experiments_trial "
            "WHERE experiment_id = %s ORDER BY number", (pk,),
        )  # fmt: skip
        return [dict(zip(("id", "number", "state", "attempt", "worker", "error", "duration_s"), r)) for r in rows]


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("faults-data")
    server = os.environ.get("DATABASE_URL")
    url = None
    if server:
        name = f"faults_{os.getpid()}"
        parsed = urlparse(server)
        admin = urlunparse(parsed._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = urlunparse(parsed._replace(path=f"/{name}"))
    db = Database(url, data_dir / "db.sqlite3")
    db.data_dir = data_dir
    env = base_env(db, redis_url="redis://127.0.0.1:1/0")
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=BASE_DIR, env=env,
                   check=True, timeout=300)  # fmt: skip
    yield db
    if url:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def base_env(db: Database, redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        NAS_DATA_DIR=str(db.data_dir), PYTHONUNBUFFERED="1", DEBUG="true", REDIS_URL=redis_url,
        TRIAL_LEASE_SECONDS=str(LEASE_S), WORKER_SWEEP_SECONDS="1", WORKER_RESTART_MAX_BACKOFF_S="2",
        DRAMATIQ_NAMESPACE=f"faults-{uuid.uuid4().hex[:8]}", CHANNELS_PREFIX=f"faults-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    if db.url:
        env["DATABASE_URL"] = db.url
    return env


# Redis -------------------------------------------------------------------------------------------------
class RedisServer:
    """A redis-server of this test's own, which the test may kill and start again (same port)."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from nasweb.embedded_redis import redis_server_binary

        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for("redis-server answers", self._answers, 10, poll=0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


# Processes -----------------------------------------------------------------------------------------------
class Processes:
    """Every process a test started; all of them (and what they started) end with the test."""

    def __init__(self, tmp_path: Path, env: dict):
        self.tmp_path = tmp_path
        self.env = env
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, **env) -> subprocess.Popen:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=BASE_DIR, env={**self.env, **env},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        proc.log_path = log_path
        self.started.append(proc)
        return proc

    def shell(self, code: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=BASE_DIR, env=self.env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    def end_all(self) -> None:
        for proc in self.started:
            everyone = descendants(proc.pid) | {proc.pid}
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            for pid in everyone:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path, database, redis_server):
    procs = Processes(tmp_path, base_env(database, redis_server.url))
    yield procs
    procs.end_all()
    # A failed test may leave its experiment active; the next test's workers must not run it.
    database.rows("UPDATE experiments_experiment SET status = 'cancelled' WHERE status IN ('queued', 'running')")


START_EXPERIMENT = """
import json
from django.contrib.auth import get_user_model
from experiments.models import Dataset, Experiment, Project
options = json.loads({options!r})
user, _ = get_user_model().objects.get_or_create(username="faults")
project = Project.create_for(user, "Faults")
dataset = Dataset.objects.create(
    project=project, name="iris", source="builtin", builtin_name="iris", kind="tabular", input_shape=[4],
    num_classes=3, class_names=["setosa", "versicolor", "virginica"], class_counts=[50, 50, 50], num_rows=150)
experiment = Experiment.objects.create(
    project=project, dataset=dataset, name="faults", space="mlp", space_config={{"max_depth": 2}},
    strategy="random", estimator="train", device="cpu", created_by=user, **options)
experiment.start()
print("EXPERIMENT", experiment.pk)
"""


def start_experiment(processes: Processes, *, epochs: int, trials: int, parallelism: int = 1) -> int:
    """An iris/mlp random search, started (its advance goes to the test's Redis)."""
    options = {"estimator_config": {"epochs": epochs, "batch_size": 8, "threads": 1, "patience": 0},
               "budget_trials": trials, "parallelism": parallelism, "seed": 1}  # fmt: skip
    output = processes.shell(START_EXPERIMENT.format(options=json.dumps(options)))
    return int(output.split("EXPERIMENT", 1)[1].split()[0])


def wait_until_finished(database: Database, experiment_id: int, timeout: float, log: Path | None = None) -> dict:
    def finished():
        state = database.experiment(experiment_id)
        return state if state["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(f"experiment {experiment_id} finished (trials {database.trials(experiment_id)})",
                    finished, timeout, poll=0.3, log=log)  # fmt: skip


def running_trial(database: Database, experiment_id: int, with_points: bool = True) -> dict | None:
    """A running trial (that already reported an epoch, with `with_points`)."""
    sql = "SELECT t.id FROM experiments_trial t WHERE t.experiment_id = %s AND t.state = 'running'"
    if with_points:
        sql += " AND EXISTS (SELECT 1 FROM experiments_trialmetric m WHERE m.trial_id = t.id)"
    rows = database.rows(sql, (experiment_id,))
    if not rows:
        return None
    return next(t for t in database.trials(experiment_id) if t["id"] == rows[0][0])


def worker_pid(trial: dict) -> int:
    """The pid in a trial's `worker` (host:pid:thread)."""
    return int(trial["worker"].split(":")[1])
