"""Live latency: from a trial's result commit to the event's arrival at a websocket client.

A real daphne server (as `manage.py up` runs it) serves nasweb.asgi:application; a logged-in
client holds ws/experiments/<id>/ open over loopback. This process plays the worker: for each
event it records a trial result exactly as run_trial does (`Trial.complete()` commits, then
`broadcast.trial_finished()`), and the client notes when the matching sequence number arrives.
Reported: p50 / p95 / max of commit -> arrival (target p95 <= 100 ms on loopback).

    python bench/bench_live_latency.py                 # 300 events, 20 ms apart
    python bench/bench_live_latency.py --events 1000 --gap-ms 5

Uses a throw-away SQLite database and embedded Redis unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

from webenv import ROOT, configure_environment, setup_django, stop_redis


class WebsocketClient:
    """The smallest websocket client that will do: handshake, then read unmasked server frames."""

    def __init__(self, port: int, path: str, cookie: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"websocket refused: {head.decode(errors='replace')}")
        self.sock.settimeout(None)
        self.arrivals: dict[int, float] = {}
        self.closed = threading.Event()

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def run(self) -> None:
        try:
            while True:
                b0, b1 = self._read(2)
                length = b1 & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._read(8))[0]
                payload = self._read(length)
                now = time.perf_counter()
                opcode = b0 & 0x0F
                if opcode == 8:
                    return
                if opcode == 1:
                    event = json.loads(payload)
                    self.arrivals[event["seq"]] = now
        except (ConnectionError, OSError):
            return
        finally:
            self.closed.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=20)
    args = parser.parse_args(argv)

    configure_environment()
    started_redis = setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from experiments.live import broadcast, payloads
    from experiments.models import Dataset, Experiment, Project, Trial


    user, _ = get_user_model().objects.get_or_create(username="bench-latency")
    project = Project.create_for(user, "bench latency")
    dataset = Dataset.objects.create(project=project, name="iris", source="builtin", builtin_name="iris")
    experiment = Experiment.objects.create(
        project=project, dataset=dataset, name="latency", space="mlp", strategy="random", estimator="train",
        status="running", created_by=user,
    )  # fmt: skip
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "nasweb.asgi:application"],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("daphne did not start") from None
                time.sleep(0.2)
        ws = WebsocketClient(port, f"/ws/experiments/{experiment.pk}/", cookie)
        reader = threading.Thread(target=ws.run, daemon=True)
        reader.start()
        time.sleep(0.5)  # the group_add has happened by now

        committed: dict[int, float] = {}
        arch = {"depth": 1, "width_1": 32, "activation": "relu", "dropout": 0.0, "batch_norm": False,
                "residual": False}  # fmt: skip
        for number in range(args.events):
            trial = Trial.objects.create(experiment=experiment, number=number, arch=arch, fingerprint=f"f{number}")
            token = trial.claim("bench")
            trial.complete(token, state="completed", objective=0.5, metrics={"val_acc": 0.5, "test_acc": 0.5},
                           constraint_values={}, duration_s=0.1)  # commits (autocommit)
            t0 = time.perf_counter()
            seq = broadcast.send(experiment.pk, payloads.TRIAL_FINISHED, {"trial": payloads.trial_summary(trial)})
            committed[seq] = t0
            time.sleep(args.gap_ms / 1000)
        time.sleep(1.0)
        latencies = sorted((ws.arrivals[s] - t0) * 1000 for s, t0 in committed.items() if s in ws.arrivals)
        lost = len(committed) - len(latencies)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        project.experiments.all().delete()  # datasets are protected while used
        project.delete()
        if started_redis:
            stop_redis()

    if not latencies:
        print("no event arrived")
        return 1
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    print(f"events: {len(committed)} sent, {len(latencies)} received, {lost} lost; database "
          f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, redis "
          f"{'embedded (unix socket)' if settings.EMBEDDED_REDIS else settings.REDIS_URL}")
    print(f"commit -> websocket arrival: p50 {statistics.median(latencies):.2f} ms, p95 {p95:.2f} ms, "
          f"max {latencies[-1]:.2f} ms  (target p95 <= 100 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
