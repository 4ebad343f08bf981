"""`manage.py up` as a user runs it: no DATABASE_URL, no REDIS_URL, a fresh data directory.

It must migrate, start Redis, print the admin's credentials, serve pages, static files and
websockets, and leave no process behind after SIGTERM.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings

from tests.faults.proc import alive, descendants, free_port

pytestmark = pytest.mark.slow


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def websocket_handshake(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(data) < 4096:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and len(data.split(b"\r\n\r\n", 1)[1]) >= 4:
                break
        return data


@pytest.fixture
def up(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(NAS_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1", DEBUG="true")
    log_path = tmp_path / "up.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--port", str(port), "--workers", "1", "--threads", "1"],
            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    proc.port, proc.log_path, proc.data_dir = port, log_path, tmp_path / "data"
    yield proc
    if proc.poll() is None:  # the test failed before stopping it: leave nothing behind anyway
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in descendants(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    from nasweb.embedded_redis import stop

    stop(proc.data_dir)  # daemonized, so not among the descendants


def wait_until_up(proc, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = proc.log_path.read_text()
        if "NAS Studio is running at" in output:
            return output
        if proc.poll() is not None:
            pytest.fail(f"manage.py up exited with {proc.returncode}:\n{output[-4000:]}")
        time.sleep(0.3)
    pytest.fail(f"manage.py up did not come up in {timeout}s:\n{proc.log_path.read_text()[-4000:]}")


def test_up_serves_the_product_and_stops_every_process(up):
    output = wait_until_up(up)
    assert "username: admin" in output and "password: " in output

    status, _ = get(up.port, "/admin/login/")
    assert status == 200
    status, body = get(up.port, "/static/plotly/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000
    handshake = websocket_handshake(up.port, "/ws/experiments/1/")
    assert handshake.startswith(b"HTTP/1.1 101"), handshake[:200]
    frames = handshake.split(b"\r\n\r\n", 1)[1]
    assert frames[0] == 0x88 and int.from_bytes(frames[2:4], "big") == 4403  # close: not logged in

    # Control worker, trial workers and web server, and the processes Dramatiq forks for each
    # worker (the forks that must not outlive a stop); they may still be starting.
    deadline = time.monotonic() + 120
    while len(children := descendants(up.pid)) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(children) >= 5, children
    redis_pid = int((up.data_dir / "redis.pid").read_text())
    assert alive(redis_pid)

    up.send_signal(signal.SIGTERM)
    up.wait(timeout=60)
    assert "NAS Studio stopped." in up.log_path.read_text()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children | {redis_pid}):
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)]
    assert not alive(redis_pid)  # it started the embedded Redis, so it stops it
