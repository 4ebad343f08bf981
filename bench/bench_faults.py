"""Figures under faults, from real processes (the scenarios of tests/faults, timed):

- recovery: a trial worker SIGKILLed mid-trial under `manage.py up`; seconds until its trial runs
  again on the replacement process (the bound is lease + 30 s), and until the experiment ends;
- Redis restart: the broker killed for 4 s mid-run; seconds from its return to the experiment's end;
- floods: 300 MiB streamed to /api/datasets/preview/ and /login/ with a 1 MiB upload limit; the
  answer, how much was sent before it, and the growth of the web server's RSS;
- shutdown: seconds from SIGTERM to the exit of `manage.py up`, every child gone.

    python bench/bench_faults.py            # lease 3 s, as in the tests
    python bench/bench_faults.py --lease 10

A throw-away SQLite database (PostgreSQL when DATABASE_URL is set) and a redis-server of its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nasweb.settings")

import django  # noqa: E402

django.setup()

from tests.faults import conftest as faults  # noqa: E402
from tests.faults.proc import alive, descendants, free_port  # noqa: E402
from tests.faults.test_server import FLOOD, LIMIT, Flood, PeakRss, _answers  # noqa: E402

MiB = 1 << 20


def _session(tmp: Path, lease: int):
    data_dir = tmp / "data"
    data_dir.mkdir()
    db = faults.Database(None, data_dir / "db.sqlite3")
    db.data_dir = data_dir
    if os.environ.get("DATABASE_URL"):
        raise SystemExit("bench_faults uses SQLite; unset DATABASE_URL")
    redis = faults.RedisServer(tmp)
    redis.start()
    env = faults.base_env(db, redis.url)
    env["TRIAL_LEASE_SECONDS"] = str(lease)
    procs = faults.Processes(tmp, env)
    procs.shell("from django.core.management import call_command; call_command('migrate', verbosity=0)")
    return db, redis, procs


def _up(procs) -> tuple:
    port = free_port()
    up = procs.start(f"up-{port}", "up", "--port", str(port), "--workers", "2", "--threads", "1")
    faults.wait_for("up runs", lambda: "NAS Studio is running at" in up.log_path.read_text(), 120, log=up.log_path)
    return up, port


def recovery(db, procs) -> None:
    up, _ = _up(procs)
    experiment_id = faults.start_experiment(procs, epochs=60, trials=4, parallelism=1)
    trial = faults.wait_for("a trial trains", lambda: faults.running_trial(db, experiment_id), 90, log=up.log_path)
    os.kill(faults.worker_pid(trial), signal.SIGKILL)
    killed = time.monotonic()

    def again():
        now = next(t for t in db.trials(experiment_id) if t["id"] == trial["id"])
        return now["attempt"] > trial["attempt"] and now["state"] != "queued"

    faults.wait_for("re-run", again, 120, poll=0.05, log=up.log_path)
    rerun = time.monotonic() - killed
    faults.wait_until_finished(db, experiment_id, 180, log=up.log_path)
    states = [t["state"] for t in db.trials(experiment_id)]
    print(f"worker killed under up: trial re-run after {rerun:.1f}s (lease {procs.env['TRIAL_LEASE_SECONDS']}s), "
          f"experiment {db.experiment(experiment_id)['status']} {time.monotonic() - killed:.1f}s after the kill, "
          f"trials {states}")  # fmt: skip
    shutdown(up)


def redis_restart(db, redis, procs) -> None:
    worker = procs.start("worker", "worker", "--queues", "all", "--processes", "2", "--threads", "2")
    experiment_id = faults.start_experiment(procs, epochs=30, trials=6, parallelism=2)
    faults.wait_for("a trial trains", lambda: faults.running_trial(db, experiment_id), 90, log=worker.log_path)
    redis.kill()
    time.sleep(4)
    redis.start()
    back = time.monotonic()
    faults.wait_until_finished(db, experiment_id, 180, log=worker.log_path)
    states = [t["state"] for t in db.trials(experiment_id)]
    print(f"redis down 4 s mid-run: experiment {db.experiment(experiment_id)['status']} "
          f"{time.monotonic() - back:.1f}s after Redis came back, trials {states}")  # fmt: skip
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)


def floods(procs) -> None:
    port = free_port()
    server = procs.start("serve", "serve", "--port", str(port), UPLOAD_MAX_BYTES=str(LIMIT))
    faults.wait_for("serve answers", lambda: _answers(port), 60, log=server.log_path)
    cases = [("/api/datasets/preview/", "multipart/form-data; boundary=x", False),
             ("/api/datasets/preview/", "multipart/form-data; boundary=x", True),
             ("/login/", "application/x-www-form-urlencoded", False)]  # fmt: skip
    for path, content_type, declared in cases:
        flood = Flood(port, path, content_type, FLOOD, declared)
        with PeakRss(server.pid) as rss:
            started = time.monotonic()
            status = flood.run(timeout=120)
        print(f"{FLOOD // MiB} MiB {'declared' if declared else 'chunked'} to {path} (limit {LIMIT // MiB} MiB): "
              f"{status} after {time.monotonic() - started:.2f}s, {flood.sent / MiB:.0f} MiB sent, "
              f"server RSS {rss.before:.0f} -> {rss.peak:.0f} MB (+{rss.growth:.1f})")  # fmt: skip
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def shutdown(up) -> None:
    children = descendants(up.pid)
    started = time.monotonic()
    up.send_signal(signal.SIGTERM)
    up.wait(timeout=60)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in children if alive(p)]
    print(f"up stopped in {seconds:.2f}s ({len(children)} children, {len(left)} left)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=int, default=faults.LEASE_S, help="TRIAL_LEASE_SECONDS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        db, redis, procs = _session(Path(tmp), args.lease)
        try:
            floods(procs)
            recovery(db, procs)
            redis_restart(db, redis, procs)
        finally:
            procs.end_all()
            redis.kill()


if __name__ == "__main__":
    main()
