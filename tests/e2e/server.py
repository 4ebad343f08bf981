"""`manage.py up` for browser tests: its own data directory, SQLite and embedded Redis, so it
shares nothing with the other tests (DATABASE_URL / REDIS_URL are removed on purpose)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "CHANNELS_PREFIX", "DRAMATIQ_NAMESPACE")}  # fmt: skip
    env.update(NAS_DATA_DIR=str(data_dir), DEBUG="true", WORKER_TORCH_THREADS="1",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # fmt: skip
    return env


def manage(env: dict, *args: str) -> str:
    """Run a management command against the server's data directory; returns its stdout."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    return done.stdout


@contextlib.contextmanager
def running_up(env: dict, log_path: Path):
    """`manage.py up` on a free port until the block ends (then SIGTERM); yields its base URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--port", str(port), "--workers", "1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"NAS Studio is running" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"manage.py up did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log_path.read_text()[-3000:])
