"""`manage.py up`: the whole product in one command.

Migrates the database, starts the embedded Redis when REDIS_URL is unset, creates an admin on
the first run (its password is printed once and stored only as a hash), starts the Dramatiq
workers and the daphne web server (HTTP + websockets, static files through WhiteNoise), and
stops every child process on Ctrl-C or SIGTERM.

Processes (each child runs in its own process group, so stopping a group also stops the worker
processes Dramatiq forks):
- one control worker on the control queue (advance/watch: short bookkeeping that must not wait
  behind a training run),
- `--workers` trial workers on the trials queue, one thread each (see `manage.py worker`),
- daphne serving nasweb.asgi:application.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from experiments.jobs.recovery import recover_active_experiments
from nasweb import embedded_redis

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


class StopRequested(Exception):
    pass


class Command(BaseCommand):
    help = "Run NAS Studio: migrate, Redis, Dramatiq workers and the web server, until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8000, help="port to listen on")
        parser.add_argument(
            "--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2),
            help="trial worker processes (trials that run at once on this machine)",
        )  # fmt: skip
        parser.add_argument(
            "--threads", type=int, default=settings.WORKER_TORCH_THREADS,
            help="torch CPU threads per trial worker",
        )  # fmt: skip

    def handle(self, *args, host, port, workers, threads, **options):
        if workers < 1 or threads < 1:
            raise CommandError("--workers and --threads must be at least 1")
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.started_redis = False
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            self._run(host, port, workers, threads)
        except StopRequested:
            pass
        finally:
            # A second Ctrl-C must not cut the clean-up short.
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            self._stop_children()
            if self.started_redis:
                embedded_redis.stop(settings.DATA_DIR)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stdout.write("NAS Studio stopped.")

    def _on_signal(self, signum, frame):
        raise StopRequested(signal.Signals(signum).name)

    # -- start-up ---------------------------------------------------------------------------------
    def _run(self, host: str, port: int, workers: int, threads: int) -> None:
        if settings.EMBEDDED_REDIS:
            socket_path = Path(settings.DATA_DIR) / "redis.sock"
            self.started_redis = not embedded_redis.answers(socket_path)
            embedded_redis.ensure_running(settings.DATA_DIR)
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()

        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # See worker.py for the Dramatiq settings these workers get.
        self._spawn("control worker", [*manage, "worker", "--queues", "control", "--processes", "1",
                                       "--torch-threads", "1"], base_env)
        self._spawn("trial workers", [*manage, "worker", "--queues", "trials", "--processes", str(workers),
                                      "--torch-threads", str(threads)], base_env)
        self._spawn("web server", [
            sys.executable, "-m", "daphne", "-b", host, "-p", str(port),
            # Open websockets would otherwise hold the shutdown for daphne's default 10 s.
            "--application-close-timeout", "2", "nasweb.asgi:application",
        ], base_env)  # fmt: skip
        self._wait_until_listening(host, port)
        recovered = recover_active_experiments()
        if recovered:
            self.stdout.write(f"Resumed {recovered} active experiment(s).")
        shown = f"[{host}]" if ":" in host else host
        self.stdout.write(self.style.SUCCESS(
            f"NAS Studio is running at http://{shown}:{port}/  ({workers} trial worker(s), "
            f"{threads} torch thread(s) each). Press Ctrl-C to stop."
        ))  # fmt: skip
        self.stdout.flush()
        while True:
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise CommandError(f"the {name} exited with code {proc.returncode}; stopping")
            time.sleep(0.5)

    def _ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = "admin"
        while User.objects.filter(username=username).exists():
            username = f"admin{secrets.randbelow(10_000)}"
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        # Printed once, never written anywhere: only the hash is in the database.
        self.stdout.write(self.style.WARNING(
            "Created the administrator account (shown only this once; change it after logging in):\n"
            f"  username: {username}\n  password: {password}"
        ))  # fmt: skip

    def _spawn(self, name: str, command: list[str], env: dict) -> None:
        # Signals are held while the child starts, so a Ctrl-C cannot land between the fork
        # and our record of the child (which would leave it running).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, start_new_session=True)
            self.children.append((name, proc))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _wait_until_listening(self, host: str, port: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise CommandError(f"the {name} exited with code {proc.returncode} during start-up")
            try:
                with socket.create_connection((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port), 0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise CommandError(f"the web server did not listen on {host}:{port} within {READY_TIMEOUT_S}s")

    # -- shut-down -------------------------------------------------------------------------------
    def _stop_children(self) -> None:
        # The web server first (no new requests), then the workers.
        for _, proc in reversed(self.children):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"the {name} did not stop in {STOP_TIMEOUT_S}s; killing it")
        for _, proc in self.children:
            # Also the group's other members (Dramatiq's forked workers) if any outlived it.
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.children = []


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session made the child its group's leader
    except (ProcessLookupError, PermissionError):
        pass
