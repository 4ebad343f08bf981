"""Production settings: refuse to start without SECRET_KEY, and pass `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(tmp_path, *args, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment.update(NAS_DATA_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_it_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    done = manage(tmp_path, "check", DEBUG="false")
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr


def test_it_passes_the_deployment_checks_in_production(tmp_path):
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", DEBUG="false",
                  SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="nas.example.com")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
