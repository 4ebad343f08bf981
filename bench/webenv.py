"""Shared set-up of the web benchmarks: a throw-away data directory (SQLite + embedded Redis)
unless DATABASE_URL / REDIS_URL are set, and queue/channel names of their own so a benchmark
never reads another process's messages on a shared Redis."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def configure_environment(**overrides: str) -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["NAS_DATA_DIR"] = tempfile.mkdtemp(prefix="nas-bench-")
    run = uuid.uuid4().hex[:8]
    os.environ["DRAMATIQ_NAMESPACE"] = f"bench-{run}"
    os.environ["CHANNELS_PREFIX"] = f"bench-{run}"
    os.environ.update(overrides)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nasweb.settings")
