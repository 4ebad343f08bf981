"""`manage.py worker`: Dramatiq worker processes set up for training trials.

`manage.py up` starts its workers through this command, and so does every extra machine of a
scale-out (same DATABASE_URL, REDIS_URL and file storage):

    python manage.py worker --processes 4 --torch-threads 2

It runs django_dramatiq's `rundramatiq` with one thread per process (a process trains one trial at
a time; torch gets --torch-threads CPU threads for it) and this environment for Dramatiq:
- dramatiq_queue_prefetch=1: a busy worker does not hold queued trials an idle one could run;
- dramatiq_worker_timeout=50: an idle worker polls Redis at least every 50 ms (default 1000),
  the wait between a trial's message and its start;
- MALLOC_ARENA_MAX=1: actors run in a worker thread, and glibc's per-thread malloc arenas made
  PyTorch training in such a thread about 30% slower than in a main thread on the test machine.
Each can be overridden by setting it in the environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from experiments.jobs.queues import WORKER_QUEUES

POLL_MS = 50
SHUTDOWN_MS = 3000


def worker_environment(torch_threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["WORKER_TORCH_THREADS"] = str(torch_threads)
    env["OMP_NUM_THREADS"] = str(torch_threads)
    env.setdefault("dramatiq_queue_prefetch", "1")
    env.setdefault("dramatiq_worker_timeout", str(POLL_MS))
    env.setdefault("MALLOC_ARENA_MAX", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def worker_command(processes: int, threads: int, queues: str) -> list[str]:
    return [
        sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rundramatiq",
        "--processes", str(processes), "--threads", str(threads), "--queues", *WORKER_QUEUES[queues],
        "--worker-shutdown-timeout", str(SHUTDOWN_MS),
    ]  # fmt: skip


class Command(BaseCommand):
    help = "Run Dramatiq workers for NAS Studio (one trial per process at a time)."

    def add_arguments(self, parser):
        parser.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                            help="worker processes (trials that run at once on this machine)")
        parser.add_argument("--torch-threads", type=int, default=settings.WORKER_TORCH_THREADS,
                            help="torch CPU threads per trial")
        parser.add_argument("--queues", choices=sorted(WORKER_QUEUES), default="all",
                            help="trials (training and export), control (bookkeeping) or all")
        parser.add_argument("--threads", type=int, default=None,
                            help="Dramatiq threads per process (default: 1, or 2 for --queues control)")

    def handle(self, *args, processes, torch_threads, queues, threads, **options):
        if processes < 1 or torch_threads < 1:
            raise CommandError("--processes and --torch-threads must be at least 1")
        threads = threads or (2 if queues == "control" else 1)
        command = worker_command(processes, threads, queues)
        # exec: this process becomes rundramatiq (which execs dramatiq), so a signal sent to
        # this pid reaches Dramatiq's main process directly.
        os.execve(sys.executable, command, worker_environment(torch_threads))
