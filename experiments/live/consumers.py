"""Websocket consumers: push an experiment's (or a project's) events to the page.

A consumer only listens: it checks the user on connect (the one membership scope,
`Project.objects.for_user`), joins the group that broadcast.py sends to, and forwards each event
as JSON text. It also joins its user's group, where broadcast.access_changed asks it to check
again (logout, password change, deactivation, removal from the project, a role change); a socket
whose user may no longer see the stream closes with 4403 and forwards nothing after that.
It never writes to the database.
"""

from __future__ import annotations

from collections.abc import Callable

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import access, broadcast

# Close code for "not logged in or not a member" (4000-4999 are free for applications).
FORBIDDEN = 4403


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    # Set by subclasses: the stream's group, and the project whose members may see it (None: the
    # user may not, or the stream does not exist).
    group_name: Callable[[int], str]
    project_of: Callable[..., int | None]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.joined: list[str] = []
        self.project_id: int | None = None
        self.session_key: str | None = None
        self.revoked = False

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self._refuse()
        # Join the user's group before the check: a removal committed between the check and the
        # join would otherwise go unheard and the socket would stay open.
        await self._join(broadcast.user_group(user.pk))
        pk = self.scope["url_route"]["kwargs"]["pk"]
        self.project_id = await database_sync_to_async(self.project_of)(user, pk)
        if self.project_id is None:
            return await self._refuse()
        self.session_key = self.scope["session"].session_key
        await self._join(self.group_name(pk))
        await self.accept()

    async def disconnect(self, code):
        await self._leave()

    async def receive_json(self, content, **kwargs):
        """Clients have nothing to say; whatever they send is ignored."""

    async def nas_event(self, message):
        # Events queued behind an access.changed that closed the socket must not reach the page.
        if not self.revoked:
            await self.send_json(message["event"])

    async def access_changed(self, message):
        if self.revoked or message["project"] not in (None, self.project_id):
            return
        ended = message["ended_session"]
        # A logging-out session is flushed only after the signal, so its own sockets close unasked.
        if (ended and ended == access.session_digest(self.session_key)) or not await self._still_allowed():
            await self._revoke()

    @database_sync_to_async
    def _still_allowed(self) -> bool:
        user = access.signed_in_user(self.session_key, self.scope["user"].pk)
        return user is not None and self.project_of(user, self.scope["url_route"]["kwargs"]["pk"]) == self.project_id

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.append(group)

    async def _leave(self) -> None:
        while self.joined:
            await self.channel_layer.group_discard(self.joined.pop(), self.channel_name)

    async def _refuse(self) -> None:
        await self._leave()
        # Accept first so the browser sees our close code instead of a failed handshake.
        await self.accept()
        await self.close(code=FORBIDDEN)

    async def _revoke(self) -> None:
        self.revoked = True
        await self._leave()
        await self.close(code=FORBIDDEN)


class ExperimentConsumer(_GroupConsumer):
    """ws/experiments/<id>/: every trial and status event of one experiment."""

    group_name = staticmethod(broadcast.experiment_group)
    project_of = staticmethod(access.experiment_project)


class ProjectConsumer(_GroupConsumer):
    """ws/projects/<id>/: status changes of the project's experiments (the project page)."""

    group_name = staticmethod(broadcast.project_group)
    project_of = staticmethod(access.visible_project)
