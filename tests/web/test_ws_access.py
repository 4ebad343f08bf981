"""Open websockets lose what the user loses: a logout, a password change, a deactivation or a
removal from the project closes them with 4403 and nothing arrives after that; a role change that
still reads keeps them. And the origin check compares scheme, host and port.

Through the real ASGI application, session middleware and Redis channel layer, as test_consumers.py."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from experiments.choices import Role
from experiments.live import broadcast
from experiments.live.consumers import FORBIDDEN
from nasweb.asgi import application
from nasweb.origin import origin_allowed

# The channel prefix and connection clean-up fixtures apply here too (autouse, imported by name).
from tests.web.test_consumers import (  # noqa: F401
    HOST,
    ORIGIN,
    _close_thread_connections,
    _own_channel_prefix,
    connect,
    session_cookie,
)


def socket_test(test):
    """On the event loop, with a database the consumer's worker thread sees (real transactions)."""
    return pytest.mark.asyncio(pytest.mark.django_db(transaction=True)(test))


NEW_PASSWORD = "a-fresh-and-long-pass-phrase-42"


async def open_sockets(client, user, experiment, project) -> list[WebsocketCommunicator]:
    """The experiment page's and the project page's sockets of `user`, signed in through `client`."""
    cookie = await sync_to_async(session_cookie)(client, user)
    sockets = []
    for path in (f"/ws/experiments/{experiment.pk}/", f"/ws/projects/{project.pk}/"):
        communicator, connected, _ = await connect(path, [HOST, ORIGIN, cookie])
        assert connected, path
        sockets.append(communicator)
    return sockets


async def assert_closed_forbidden(sockets) -> None:
    for communicator in sockets:
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": FORBIDDEN}


async def broadcast_news(experiment, trial_factory) -> None:
    """A new trial (experiment socket) and a status change (project socket)."""
    trial = await sync_to_async(trial_factory)(experiment)
    await sync_to_async(broadcast.trial_created)(trial)
    await sync_to_async(broadcast.experiment_status)(experiment)


async def assert_nothing_more(sockets) -> None:
    for communicator in sockets:
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()


async def assert_still_streaming(sockets) -> None:
    for communicator, expected in zip(sockets, ("trial.created", "experiment.status"), strict=True):
        assert (await communicator.receive_json_from(timeout=5))["type"] == expected
        await communicator.disconnect()


# Logout and account changes -----------------------------------------------------------------------
@socket_test
async def test_it_closes_the_sockets_of_a_session_that_logs_out(client, viewer, experiment, project, trial_factory):
    sockets = await open_sockets(client, viewer, experiment, project)

    response = await sync_to_async(client.post)("/logout/")  # another request of the same session
    assert response.status_code == 302

    await assert_closed_forbidden(sockets)
    await broadcast_news(experiment, trial_factory)
    await assert_nothing_more(sockets)


@socket_test
async def test_a_logout_in_another_browser_keeps_this_one_streaming(client, viewer, experiment, project,
                                                                     trial_factory):  # fmt: skip
    sockets = await open_sockets(client, viewer, experiment, project)
    elsewhere = Client()
    await sync_to_async(elsewhere.force_login)(viewer)

    await sync_to_async(elsewhere.post)("/logout/")

    await broadcast_news(experiment, trial_factory)
    await assert_still_streaming(sockets)


@socket_test
async def test_a_login_elsewhere_keeps_the_sockets_open(client, viewer, password, experiment, project, trial_factory):
    sockets = await open_sockets(client, viewer, experiment, project)

    assert await sync_to_async(Client().login)(username=viewer.username, password=password)

    await broadcast_news(experiment, trial_factory)
    await assert_still_streaming(sockets)


@socket_test
async def test_a_password_change_closes_the_other_sessions_sockets(client, viewer, password, experiment, project,
                                                                    trial_factory):  # fmt: skip
    sockets = await open_sockets(client, viewer, experiment, project)
    elsewhere = Client()
    await sync_to_async(elsewhere.force_login)(viewer)

    response = await sync_to_async(elsewhere.post)(
        "/account/password/",
        {"old_password": password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, getattr(response, "context", None) and response.context["form"].errors

    await assert_closed_forbidden(sockets)
    await broadcast_news(experiment, trial_factory)
    await assert_nothing_more(sockets)


@socket_test
async def test_a_deactivated_account_loses_its_sockets(client, viewer, experiment, project, trial_factory):
    sockets = await open_sockets(client, viewer, experiment, project)

    viewer.is_active = False
    await viewer.asave()

    await assert_closed_forbidden(sockets)
    await broadcast_news(experiment, trial_factory)
    await assert_nothing_more(sockets)


# Membership -------------------------------------------------------------------------------------------
@socket_test
async def test_removal_by_an_owner_closes_the_members_sockets(client, client_for, owner, viewer, experiment, project,
                                                               trial_factory):  # fmt: skip
    sockets = await open_sockets(client, viewer, experiment, project)

    response = await sync_to_async(client_for(owner).delete)(f"/api/projects/{project.pk}/members/{viewer.username}/")
    assert response.status_code == 204
    assert (await sync_to_async(client_for(viewer).get)(f"/api/projects/{project.pk}/")).status_code == 404

    await assert_closed_forbidden(sockets)
    await broadcast_news(experiment, trial_factory)
    await assert_nothing_more(sockets)


@socket_test
async def test_removal_from_another_project_keeps_these_sockets(client, viewer, outsider, outsider_project,
                                                                 experiment, project, trial_factory):  # fmt: skip
    await sync_to_async(outsider_project.add_member)(viewer, Role.VIEWER, by=outsider)
    sockets = await open_sockets(client, viewer, experiment, project)

    await sync_to_async(outsider_project.remove_member)(viewer, by=outsider)

    await broadcast_news(experiment, trial_factory)
    await assert_still_streaming(sockets)


@socket_test
@pytest.mark.parametrize("new_role", [Role.EDITOR, Role.OWNER])
async def test_a_role_change_that_still_reads_keeps_the_sockets_open(client, client_for, owner, viewer, experiment,
                                                                      project, trial_factory, new_role):  # fmt: skip
    # Every role reads (viewer is the lowest), so no role change takes the stream away; the
    # sockets re-check and stay.
    sockets = await open_sockets(client, viewer, experiment, project)

    response = await sync_to_async(client_for(owner).post)(
        f"/api/projects/{project.pk}/members/", {"username": viewer.username, "role": new_role}, format="json"
    )
    assert response.status_code == 200

    await broadcast_news(experiment, trial_factory)
    await assert_still_streaming(sockets)


@socket_test
async def test_a_demoted_owner_keeps_reading(client, owner, editor, experiment, project, trial_factory):
    await sync_to_async(project.change_role)(editor, Role.OWNER, by=owner)
    sockets = await open_sockets(client, owner, experiment, project)

    await sync_to_async(project.change_role)(owner, Role.VIEWER, by=editor)

    await broadcast_news(experiment, trial_factory)
    await assert_still_streaming(sockets)


@socket_test
async def test_a_removal_rolled_back_keeps_the_sockets(client, owner, viewer, experiment, project, trial_factory):
    """The announcement waits for the commit: a removal that rolls back closes nothing."""
    sockets = await open_sockets(client, viewer, experiment, project)

    def remove_then_fail():
        with pytest.raises(RuntimeError), transaction.atomic():
            project.remove_member(viewer, by=owner)
            raise RuntimeError("rolled back")

    await sync_to_async(remove_then_fail)()

    await broadcast_news(experiment, trial_factory)
    await assert_still_streaming(sockets)


# Origin -----------------------------------------------------------------------------------------------
@socket_test
async def test_it_refuses_an_origin_on_another_port(client, viewer, experiment):
    cookie = await sync_to_async(session_cookie)(client, viewer)
    communicator = WebsocketCommunicator(
        application, f"/ws/experiments/{experiment.pk}/",
        headers=[(b"host", b"localhost:8000"), (b"origin", b"http://localhost:9999"), cookie],
    )  # fmt: skip
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    await communicator.disconnect()


@socket_test
async def test_it_accepts_the_sites_own_origin(client, viewer, experiment):
    cookie = await sync_to_async(session_cookie)(client, viewer)
    communicator, connected, _ = await connect(
        f"/ws/experiments/{experiment.pk}/", [(b"host", b"localhost:8000"), (b"origin", b"http://localhost:8000"), cookie]
    )
    assert connected
    await communicator.disconnect()


def scope(host: str | None, origin: str | None, scheme: str = "ws", *extra: tuple[bytes, bytes]) -> dict:
    headers = [(b"host", host.encode())] if host is not None else []
    headers += [(b"origin", origin.encode())] if origin is not None else []
    return {"type": "websocket", "scheme": scheme, "headers": [*headers, *extra]}


@pytest.mark.parametrize(
    ("host", "origin", "scheme", "allowed"),
    [
        ("localhost:8000", "http://localhost:8000", "ws", True),
        ("localhost:8000", "http://localhost:9999", "ws", False),  # another port
        ("localhost:8000", "http://localhost", "ws", False),  # the default port is another port
        ("localhost", "http://localhost:80", "ws", True),  # ... and the same when named
        ("localhost:8000", "https://localhost:8000", "ws", False),  # another scheme
        ("localhost:8443", "https://localhost:8443", "wss", True),
        ("localhost:8443", "http://localhost:8443", "wss", False),
        ("LocalHost:8000", "http://localhost:8000", "ws", True),  # host names ignore case
        ("[::1]:8000", "http://[::1]:8000", "ws", True),
        ("evil.example:8000", "http://evil.example:8000", "ws", False),  # DNS rebinding: Host not allowed
        ("localhost:8000", None, "ws", False),  # no Origin: refused, as Channels does
        (None, "http://localhost:8000", "ws", False),  # no Host: nothing to compare with
        ("localhost:8000", "null", "ws", False),  # sandboxed pages and file:// send "null"
        ("localhost:8000", "http://localhost:notaport", "ws", False),
    ],
)
def test_the_origin_must_match_scheme_host_and_port(host, origin, scheme, allowed):
    assert origin_allowed(scope(host, origin, scheme)) is allowed


def test_several_origin_headers_are_refused():
    assert not origin_allowed(scope("localhost:8000", "http://localhost:8000", "ws", (b"origin", b"http://evil.example")))


def test_behind_a_tls_proxy_the_forwarded_scheme_counts(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    forwarded = (b"x-forwarded-proto", b"https")
    assert origin_allowed(scope("localhost", "https://localhost", "ws", forwarded))
    assert not origin_allowed(scope("localhost", "http://localhost", "ws", forwarded))
    settings.SECURE_PROXY_SSL_HEADER = None
    assert not origin_allowed(scope("localhost", "https://localhost", "ws", forwarded))


def test_trusted_origins_are_accepted_with_their_port(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://nas.example.com", "https://*.lab.example.com:8443"]
    assert origin_allowed(scope("localhost:8000", "https://nas.example.com"))
    assert origin_allowed(scope("localhost:8000", "https://nas.example.com:443"))
    assert not origin_allowed(scope("localhost:8000", "https://nas.example.com:8443"))
    assert not origin_allowed(scope("localhost:8000", "http://nas.example.com"))
    assert origin_allowed(scope("localhost:8000", "https://gpu1.lab.example.com:8443"))
    assert not origin_allowed(scope("localhost:8000", "https://gpu1.lab.example.com"))
    assert not origin_allowed(scope("localhost:8000", "https://lab.example.com.evil.example:8443"))
