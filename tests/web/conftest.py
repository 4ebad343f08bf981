import pytest

from tests.web.actors import capture_messages


@pytest.fixture
def outbox(monkeypatch):
    """Messages sent during the test, kept in order instead of reaching Redis; run them with
    tests.web.actors.drain()."""
    return capture_messages(monkeypatch)
