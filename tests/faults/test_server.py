"""The web server under floods and stops: an oversize body is refused on the wire with bounded
memory, `up` stops within 5 s leaving no process, and says clearly when its port is taken."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.faults.conftest import wait_for
from tests.faults.proc import alive, descendants, free_port, rss_mb

pytestmark = pytest.mark.faults

MiB = 1 << 20
LIMIT = 1 * MiB
FLOOD = 300 * MiB


class Flood:
    """Streams `total` bytes as a chunked POST while a thread reads the answer, so the answer is
    seen even when the server closes the connection mid-body."""

    def __init__(self, port: int, path: str, content_type: str, total: int, declare_length: bool = False):
        self.port, self.path, self.content_type, self.total = port, path, content_type, total
        self.declare_length = declare_length
        self.sent = 0
        self.answer = b""

    def run(self, timeout: float = 60) -> int:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        reader = threading.Thread(target=self._read, args=(sock,), daemon=True)
        reader.start()
        framing = f"Content-Length: {self.total}" if self.declare_length else "Transfer-Encoding: chunked"
        head = (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: {self.content_type}\r\n"
                f"{framing}\r\n\r\n")  # fmt: skip
        chunk = b"a" * MiB
        try:
            sock.sendall(head.encode())
            while self.sent < self.total and not self.answer:
                sock.sendall(chunk if self.declare_length else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.sent += len(chunk)
            if not self.declare_length and not self.answer:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection on us: what a refusal looks like
        reader.join(timeout=timeout)
        sock.close()
        status_line = self.answer.split(b"\r\n", 1)[0]
        return int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else 0

    def _read(self, sock: socket.socket) -> None:
        try:
            while b"\r\n\r\n" not in self.answer:
                data = sock.recv(65536)
                if not data:
                    return
                self.answer += data
        except OSError:
            return


class PeakRss:
    def __init__(self, pid: int):
        self.pid = pid
        self.before = rss_mb(pid)
        self.peak = self.before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        self._done.set()
        self._thread.join()

    def _sample(self):
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    @property
    def growth(self) -> float:
        return self.peak - self.before


@pytest.fixture
def server(processes):
    port = free_port()
    proc = processes.start("serve", "serve", "--port", str(port), UPLOAD_MAX_BYTES=str(LIMIT))
    wait_for("the web server answers", lambda: _answers(port), 60, log=proc.log_path)
    proc.port = port
    # The server's own process (manage.py serve runs uvicorn in itself).
    return proc


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /login/ HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1")
    except OSError:
        return False


@pytest.mark.parametrize("declare_length", [False, True], ids=["chunked", "content-length"])
def test_an_oversize_upload_is_refused_on_the_wire(server, declare_length):
    flood = Flood(server.port, "/api/datasets/preview/", "multipart/form-data; boundary=x", FLOOD, declare_length)
    with PeakRss(server.pid) as rss:
        status = flood.run()
    print(f"\npreview flood ({'declared' if declare_length else 'chunked'}): {status}, sent "
          f"{flood.sent / MiB:.0f} MiB, server RSS +{rss.growth:.1f} MB")  # fmt: skip
    assert status == 413, flood.answer[:300]
    assert rss.growth < 50
    assert flood.sent < 100 * MiB  # refused early, not after reading it all


def test_a_flood_on_login_keeps_server_memory_bounded(server):
    flood = Flood(server.port, "/login/", "application/x-www-form-urlencoded", FLOOD)
    with PeakRss(server.pid) as rss:
        status = flood.run(timeout=120)
    print(f"\nlogin flood: {status}, sent {flood.sent / MiB:.0f} MiB, server RSS +{rss.growth:.1f} MB")
    assert 400 <= status < 500, flood.answer[:300]
    assert rss.growth < 50


def test_a_flood_on_login_is_refused_with_413(server):
    assert Flood(server.port, "/login/", "application/x-www-form-urlencoded", FLOOD).run(timeout=120) == 413


def test_up_stops_within_5_seconds_leaving_no_process(processes):
    port = free_port()
    up = processes.start("up", "up", "--port", str(port), "--workers", "1", "--threads", "1")
    wait_for("up is running", lambda: "NAS Studio is running at" in up.log_path.read_text(), 120, log=up.log_path)
    # Web server, two worker supervisors and a worker process each.
    children = wait_for("every child started", lambda: len(descendants(up.pid)) >= 5, 60) and descendants(up.pid)

    started = time.monotonic()
    up.send_signal(signal.SIGTERM)
    up.wait(timeout=30)
    seconds = time.monotonic() - started
    wait_for("every child gone", lambda: not [p for p in children if alive(p)], 5)
    print(f"\nup stopped in {seconds:.2f}s")
    output = up.log_path.read_text()
    assert "NAS Studio stopped." in output and "killed after" not in output, output[-3000:]
    assert seconds < 5


def test_up_says_so_when_its_port_is_taken(processes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = processes.start("up", "up", "--port", str(port), "--workers", "1")
        assert up.wait(timeout=60) != 0
    output = up.log_path.read_text()
    assert f"cannot listen on 127.0.0.1:{port}" in output and "--port" in output, output[-2000:]
    assert "NAS Studio is running" not in output
