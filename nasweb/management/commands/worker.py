"""`manage.py worker`: supervised Dramatiq worker processes set up for training trials.

`manage.py up` starts its workers through this command, and so does every extra machine of a
scale-out (same DATABASE_URL, REDIS_URL and file storage):

    python manage.py worker --processes 4 --torch-threads 2

This process is a supervisor. It starts `--processes` worker processes (nasweb/management/
consumer.py: one Dramatiq worker each, one thread, so a process trains one trial at a time with
--torch-threads CPU threads), starts again any that dies or takes itself out of service (after a
back-off), and runs the periodic check of every active experiment (experiments.jobs.recovery.sweep)
every WORKER_SWEEP_SECONDS, so a Redis restart strands nothing. SIGTERM or SIGINT stops it: each
worker process gets one SIGTERM, running trials go back to the queue at their next safe point,
and whatever is still running after SHUTDOWN_TIMEOUT_S is killed.

The worker processes get this environment for Dramatiq:
- dramatiq_queue_prefetch=1: a busy worker does not hold queued trials an idle one could run;
- MALLOC_ARENA_MAX=1: actors run in a worker thread, and glibc's per-thread malloc arenas made
  PyTorch training in such a thread about 30% slower than in a main thread on the test machine.
Each can be overridden by setting it in the environment. An idle worker polls Redis every 50 ms
(consumer.POLL_MS), the wait between a trial's message and its start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from experiments.jobs import recovery
from experiments.jobs.queues import WORKER_QUEUES

from .. import consumer
from ..processes import Child, StopFlag, Supervisor, die_with_parent, exit_now

log = logging.getLogger("nasweb.worker")

# Worker processes get this long after their SIGTERM (their own graceful stop is 3 s).
SHUTDOWN_TIMEOUT_S = consumer.SHUTDOWN_MS / 1000 + 0.5


def worker_environment(torch_threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["WORKER_TORCH_THREADS"] = str(torch_threads)
    env["OMP_NUM_THREADS"] = str(torch_threads)
    env.setdefault("dramatiq_queue_prefetch", "1")
    env.setdefault("MALLOC_ARENA_MAX", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def worker_command(threads: int, queues: str, torch_threads: int) -> list[str]:
    """The command of one worker process (this command, in its --process mode)."""
    return [
        sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "worker", "--process",
        "--queues", queues, "--threads", str(threads), "--torch-threads", str(torch_threads),
    ]  # fmt: skip


class Command(BaseCommand):
    help = "Run supervised Dramatiq workers for NAS Studio (one trial per process at a time)."

    def add_arguments(self, parser):
        parser.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                            help="worker processes (trials that run at once on this machine)")
        parser.add_argument("--torch-threads", type=int, default=settings.WORKER_TORCH_THREADS,
                            help="torch CPU threads per trial")
        parser.add_argument("--queues", choices=sorted(WORKER_QUEUES), default="all",
                            help="trials (training and export), control (bookkeeping) or all")
        parser.add_argument("--threads", type=int, default=None,
                            help="Dramatiq threads per process (default: 1, or 2 for --queues control)")
        parser.add_argument("--process", action="store_true", help=argparse.SUPPRESS)  # a worker process of a supervisor

    def handle(self, *args, processes, torch_threads, queues, threads, process, **options):
        if processes < 1 or torch_threads < 1:
            raise CommandError("--processes and --torch-threads must be at least 1")
        threads = threads or (2 if queues == "control" else 1)
        if process:
            exit_now(consumer.run(queues, threads))
        die_with_parent()
        self._supervise(processes, threads, queues, torch_threads)
        exit_now(0)

    def _supervise(self, processes: int, threads: int, queues: str, torch_threads: int) -> None:
        stop = StopFlag().install()
        supervisor = Supervisor(lambda line: log.warning("%s", line))
        env = worker_environment(torch_threads)
        for number in range(1, processes + 1):
            supervisor.start(Child(f"worker process {number}/{processes} ({queues})",
                                   worker_command(threads, queues, torch_threads), env, own_group=False))
        sweeping = threading.Event()
        sweeper = threading.Thread(target=_sweep_loop, args=(sweeping,), name="sweep", daemon=True)
        sweeper.start()
        try:
            while not stop:
                supervisor.keep_running()
                time.sleep(0.2)
        finally:
            sweeping.set()
            killed = supervisor.stop(SHUTDOWN_TIMEOUT_S)
            if killed:
                log.warning("killed after %ss: %s", SHUTDOWN_TIMEOUT_S, ", ".join(killed))
            stop.restore()


def _sweep_loop(done: threading.Event) -> None:
    """The periodic check, beside the supervising loop (a slow database must not delay restarts)."""
    while not done.wait(settings.WORKER_SWEEP_SECONDS):
        try:
            recovery.sweep()
        except Exception:  # noqa: BLE001 - Redis or the database away: try again next time
            log.warning("periodic check failed; trying again in %ss", settings.WORKER_SWEEP_SECONDS, exc_info=True)
            connection.close()
    connection.close()
