"""Child processes that are kept running: what `manage.py up` and `manage.py worker` supervise.

A supervised child that exits while nobody asked it to stop is started again after a back-off
(1 s, doubling up to WORKER_RESTART_MAX_BACKOFF_S while it keeps dying within RESTART_RESET_S of
its start). Stopping sends SIGTERM once, to each child's own pid only (a child forwards it to
what it runs: a second one, e.g. to a whole process group, would skip a graceful stop), waits,
then SIGKILLs each child's process group, so nothing it started outlives the stop.

Stop requests (SIGINT, SIGTERM) only set a flag that the supervising loop reads: a handler that
raised into the loop could land between a fork and the record of the child, and blocking the
signals around the fork would leave them blocked in the child.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A child that ran this long before exiting starts again after the shortest back-off.
RESTART_RESET_S = 30
SUPERVISED_BY = "NAS_SUPERVISED_BY"
_PR_SET_PDEATHSIG = 1


def exit_now(code: int) -> None:
    """Exit once everything is stopped and put back, skipping the interpreter's teardown: with
    torch loaded it costs seconds (1.5 s to 4 s measured), which every stop of `up` would add."""
    connections.close_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def die_with_parent() -> None:
    """When started by a supervisor, get SIGTERM if it dies (even by SIGKILL), so no worker runs
    on unsupervised. Linux only; elsewhere a no-op."""
    if os.environ.get(SUPERVISED_BY) != str(os.getppid()):
        return  # not ours, or the supervisor is already gone
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class StopFlag:
    """Set by SIGINT/SIGTERM; a second signal changes nothing."""

    def __init__(self):
        self.signal_name = ""
        self._previous = {}

    def install(self) -> StopFlag:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        self.signal_name = self.signal_name or signal.Signals(signum).name

    def __bool__(self) -> bool:
        return bool(self.signal_name)


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict
    pass_fds: tuple = ()
    # False: run in the supervisor's process group (a worker's consumers, so that killing the
    # supervisor's group also ends them); True: a group of its own.
    own_group: bool = True
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        env = {**self.env, SUPERVISED_BY: str(os.getpid())}
        self.proc = subprocess.Popen(self.command, cwd=settings.BASE_DIR, env=env, pass_fds=self.pass_fds,
                                     start_new_session=self.own_group)  # fmt: skip
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def backoff_s(self) -> float:
        return float(min(settings.WORKER_RESTART_MAX_BACKOFF_S, 2 ** max(0, self.quick_exits - 1)))

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.own_group:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the child and whatever it started
            except (ProcessLookupError, PermissionError):
                pass
        else:
            _kill(self.proc.pid, signal.SIGKILL)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    def __init__(self, say: Callable[[str], None]):
        self.children: list[Child] = []
        self.say = say

    def start(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.exited() is not None), None)

    def keep_running(self) -> None:
        """One look: schedule a restart for each child that exited, start those whose back-off ended."""
        now = time.monotonic()
        for child in self.children:
            code = child.exited()
            if code is not None and child.restart_at is None:
                child.exits.append(code)
                quick = now - child.started_at < RESTART_RESET_S
                child.quick_exits = child.quick_exits + 1 if quick else 1
                child.restart_at = now + child.backoff_s()
                self.say(f"the {child.name} (pid {child.pid}) exited with code {code}; "
                         f"starting it again in {child.backoff_s():.0f}s")  # fmt: skip
            elif code is not None and now >= child.restart_at:
                child.start()
                self.say(f"the {child.name} runs again (pid {child.pid})")

    def stop(self, timeout_s: float) -> list[str]:
        """SIGTERM each child once, wait up to `timeout_s`, then kill what is left (also the
        children's own children). Returns the names of those that had to be killed."""
        for child in reversed(self.children):  # the web server first: no new requests
            child.terminate()
        deadline = time.monotonic() + timeout_s
        killed = []
        for child in reversed(self.children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(child.name)
        for child in self.children:
            child.kill()
            try:
                child.proc.wait(timeout=2)
            except (subprocess.TimeoutExpired, AttributeError):
                pass
        self.children = []
        return killed
