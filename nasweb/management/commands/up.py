"""`manage.py up`: the whole product in one command.

Binds the port (and says so clearly when another process holds it), migrates the database,
starts the embedded Redis when REDIS_URL is unset, creates an admin on the first run (its
password is printed once and stored only as a hash), starts the workers and the web server
(uvicorn: HTTP + websockets, static files through WhiteNoise), keeps them running, and stops
every child process on Ctrl-C or SIGTERM within STOP_TIMEOUT_S.

Processes (each a group of its own, so a stop also ends what a child started):
- the control worker (`manage.py worker --queues control`: advance/watch, short bookkeeping that
  must not wait behind a training run), one process;
- the trial workers (`manage.py worker --queues trials`), `--workers` processes of one thread;
- the web server (`manage.py serve --fd`) on the socket bound here, so that a restarted server
  serves the same port and nobody else can take it meanwhile.
A child that exits is started again after a back-off (nasweb/management/processes.py); each
worker command also replaces its own worker processes and runs the periodic check.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from experiments.jobs.recovery import recover_active_experiments
from nasweb import embedded_redis

from ..processes import Child, StopFlag, Supervisor, exit_now

READY_TIMEOUT_S = 60
# The web server stops in 2 s (open websockets included), the workers in 3.5 s.
STOP_TIMEOUT_S = 4.5


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
        listener = _listen(host, port)  # first: a taken port is the most common mistake
        self.stop = StopFlag().install()
        self.supervisor = Supervisor(lambda line: self.stderr.write(line))
        self.started_redis = False
        try:
            self._run(listener, host, port, workers, threads)
        except StopRequested:
            pass
        finally:
            killed = self.supervisor.stop(STOP_TIMEOUT_S)
            if killed:
                self.stderr.write(f"killed after {STOP_TIMEOUT_S}s: {', '.join(killed)}")
            listener.close()
            if self.started_redis:
                embedded_redis.stop(settings.DATA_DIR)
            self.stop.restore()
            self.stdout.write("NAS Studio stopped.")
            self.stdout.flush()
        exit_now(0)

    def _check_stop(self) -> None:
        if self.stop:
            raise StopRequested(self.stop.signal_name)

    # -- start-up ---------------------------------------------------------------------------------
    def _run(self, listener: socket.socket, host: str, port: int, workers: int, threads: int) -> None:
        if settings.EMBEDDED_REDIS:
            socket_path = Path(settings.DATA_DIR) / "redis.sock"
            self.started_redis = not embedded_redis.answers(socket_path)
            embedded_redis.ensure_running(settings.DATA_DIR)
        self._check_stop()
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        self._check_stop()

        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        start = self.supervisor.start
        start(Child("control worker", [*manage, "worker", "--queues", "control", "--processes", "1",
                                       "--torch-threads", "1"], env))  # fmt: skip
        start(Child("trial workers", [*manage, "worker", "--queues", "trials", "--processes", str(workers),
                                      "--torch-threads", str(threads)], env))  # fmt: skip
        start(Child("web server", [*manage, "serve", "--fd", str(listener.fileno())], env,
                    pass_fds=(listener.fileno(),)))  # fmt: skip
        self._wait_until_serving(listener)
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
            self._check_stop()
            self.supervisor.keep_running()
            time.sleep(0.2)

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

    def _wait_until_serving(self, listener: socket.socket) -> None:
        """Until the web server answers HTTP on our socket. A TCP connect alone proves nothing:
        the socket listens (here) before the server runs."""
        address = listener.getsockname()[:2]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_stop()
            exited = self.supervisor.first_exited()
            if exited is not None:
                raise CommandError(f"the {exited.name} exited with code {exited.exited()} during start-up")
            if _answers_http(address):
                return
            time.sleep(0.2)
        raise CommandError(f"the web server did not answer on {address[0]}:{address[1]} within {READY_TIMEOUT_S}s")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR allows a port in TIME_WAIT (a quick restart), never one another socket listens on.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another server (or "
                           "another `manage.py up`) may hold the port: stop it, or choose one with --port.") from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


def _answers_http(address: tuple) -> bool:
    host = "127.0.0.1" if address[0] in ("0.0.0.0", "") else ("::1" if address[0] == "::" else address[0])
    conn = http.client.HTTPConnection(host, address[1], timeout=2)
    try:
        conn.request("GET", "/login/")
        return conn.getresponse().status > 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
