"""One Dramatiq worker in this process: what each process of `manage.py worker` runs.

In-process rather than Dramatiq's CLI, whose main process stops its whole pool (and exits) when
one worker process dies, and whose worker processes die at a second SIGTERM. Here:
- SIGTERM or SIGINT (any number of them) asks for a stop: running trials reach their next safe
  point and go back to the queue (experiments.jobs.service.shutting_down), then Dramatiq's
  graceful stop puts prefetched messages back;
- a process that takes itself out of service (jobs/service.py) stops the same way and exits with
  EXIT_OUT_OF_SERVICE, after saying why; its supervisor starts a fresh process after a back-off.
"""

from __future__ import annotations

import logging
import time

import dramatiq
from django.conf import settings

from experiments.jobs import actors, service  # noqa: F401 - importing actors declares them on the broker
from experiments.jobs.queues import WORKER_QUEUES

from .processes import StopFlag, die_with_parent

log = logging.getLogger("nasweb.worker")

EXIT_OUT_OF_SERVICE = 75  # EX_TEMPFAIL: "try again later", on a fresh process
POLL_MS = 50
SHUTDOWN_MS = 3000


def run(queues: str, threads: int) -> int:
    die_with_parent()
    stop = StopFlag().install()
    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")  # starts the time-limit watcher, as Dramatiq's CLI does
    worker = dramatiq.Worker(broker, queues=set(WORKER_QUEUES[queues]), worker_threads=threads,
                             worker_timeout=POLL_MS)  # fmt: skip
    worker.start()
    log.info("worker process ready: queues %s, %s thread(s), lease %ss", ",".join(WORKER_QUEUES[queues]),
             threads, settings.TRIAL_LEASE_SECONDS)  # fmt: skip
    while not stop and service.available():
        time.sleep(0.1)
    service.shutting_down.set()
    reason = service.out_of_service_reason()
    if reason:
        log.error("stopping: out of service (%s)", reason)
    worker.stop(timeout=SHUTDOWN_MS)
    broker.close()
    return EXIT_OUT_OF_SERVICE if reason else 0
