"""Engine tests need no database, Redis or Django settings (they run with `-p no:django`).

tests/conftest.py holds autouse fixtures for the web tests; these same-named fixtures shadow
them for everything under tests/engine/.
"""

import pytest


@pytest.fixture(scope="session", autouse=True)
def embedded_redis():
    yield None


@pytest.fixture(autouse=True)
def _fast_password_hashing():
    yield
