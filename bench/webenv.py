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


def setup_django() -> bool:
    """django.setup() and migrate; start the embedded Redis when REDIS_URL is unset. Returns
    whether this process started that Redis (then it should call stop_redis() at the end)."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from nasweb import embedded_redis

    call_command("migrate", verbosity=0)
    if not settings.EMBEDDED_REDIS:
        return False
    started = not embedded_redis.answers(Path(settings.DATA_DIR) / "redis.sock")
    embedded_redis.ensure_running(settings.DATA_DIR)
    return started


def stop_redis() -> None:
    from django.conf import settings

    from nasweb import embedded_redis

    embedded_redis.stop(settings.DATA_DIR)
