"""Websocket consumers through the real ASGI application (origin check, session auth, routing)."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections

from experiments.live import broadcast
from experiments.live.consumers import FORBIDDEN
from nasweb.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture(autouse=True)
def _own_channel_prefix(settings):
    # Groups are named after database ids; a prefix of our own keeps other test sessions' events
    # (same ids, same Redis) out of our sockets.
    settings.CHANNEL_LAYERS = {
        "default": {
            **django_settings.CHANNEL_LAYERS["default"],
            "CONFIG": {**django_settings.CHANNEL_LAYERS["default"]["CONFIG"], "prefix": f"w2-{uuid.uuid4().hex[:8]}"},
        }
    }


@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections():
    """Consumers query from asgiref's worker thread; its connection would outlive the test and
    keep PostgreSQL from dropping the test database."""
    yield
    await sync_to_async(connections.close_all)()


def session_cookie(client, user) -> tuple[bytes, bytes]:
    client.force_login(user)
    return (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode())


async def connect(path: str, headers) -> tuple[WebsocketCommunicator, bool, int | None]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    if connected and not await communicator.receive_nothing(timeout=0.5):
        # Refused users get accepted and then closed with 4403, so the page can tell why.
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return communicator, False, output.get("code")
    return communicator, connected, code


async def test_it_refuses_an_anonymous_connection(experiment):
    communicator, connected, code = await connect(f"/ws/experiments/{experiment.pk}/", [ORIGIN])
    assert not connected
    assert code == FORBIDDEN
    await communicator.disconnect()


async def test_it_refuses_a_foreign_origin(client, owner, experiment):
    cookie = await sync_to_async(session_cookie)(client, owner)
    communicator = WebsocketCommunicator(
        application, f"/ws/experiments/{experiment.pk}/", headers=[(b"origin", b"http://evil.example"), cookie]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    await communicator.disconnect()


async def test_it_refuses_a_non_member(client, outsider, experiment, project):
    cookie = await sync_to_async(session_cookie)(client, outsider)
    for path in (f"/ws/experiments/{experiment.pk}/", f"/ws/projects/{project.pk}/"):
        communicator, connected, code = await connect(path, [ORIGIN, cookie])
        assert not connected, path
        assert code == FORBIDDEN
        await communicator.disconnect()


async def test_it_refuses_an_experiment_that_does_not_exist(client, owner):
    cookie = await sync_to_async(session_cookie)(client, owner)
    communicator, connected, code = await connect("/ws/experiments/999999/", [ORIGIN, cookie])
    assert not connected and code == FORBIDDEN
    await communicator.disconnect()


async def test_a_member_receives_trial_events_with_a_sequence_number(client, viewer, experiment, trial_factory):
    cookie = await sync_to_async(session_cookie)(client, viewer)
    communicator, connected, _ = await connect(f"/ws/experiments/{experiment.pk}/", [ORIGIN, cookie])
    assert connected
    trial = await sync_to_async(trial_factory)(experiment)

    await sync_to_async(broadcast.trial_created)(trial)
    await sync_to_async(broadcast.trial_epoch)(trial, 1, {"val_acc": 0.5})

    created = await communicator.receive_json_from(timeout=5)
    assert created["type"] == "trial.created"
    assert created["experiment"] == experiment.pk
    assert created["trial"]["id"] == trial.pk and created["trial"]["state"] == "queued"
    epoch = await communicator.receive_json_from(timeout=5)
    assert epoch["type"] == "trial.epoch" and epoch["values"] == {"val_acc": 0.5}
    assert epoch["seq"] == created["seq"] + 1
    assert created["seq"] >= 1
    await communicator.disconnect()


async def test_a_member_of_the_project_receives_status_changes(client, viewer, project, experiment):
    cookie = await sync_to_async(session_cookie)(client, viewer)
    communicator, connected, _ = await connect(f"/ws/projects/{project.pk}/", [ORIGIN, cookie])
    assert connected

    await sync_to_async(broadcast.experiment_status)(experiment)

    event = await communicator.receive_json_from(timeout=5)
    assert event["type"] == "experiment.status"
    assert event["experiment_state"]["id"] == experiment.pk
    assert event["experiment_state"]["status"] == "draft"
    await communicator.disconnect()


async def test_messages_from_the_client_change_nothing(client, owner, experiment):
    cookie = await sync_to_async(session_cookie)(client, owner)
    communicator, connected, _ = await connect(f"/ws/experiments/{experiment.pk}/", [ORIGIN, cookie])
    assert connected
    await communicator.send_json_to({"type": "experiment.status", "status": "cancelled"})
    assert await communicator.receive_nothing(timeout=0.3)
    await experiment.arefresh_from_db()
    assert experiment.status == "draft"
    await communicator.disconnect()
