"""Websocket consumers: push an experiment's (or a project's) events to the page.

A consumer only listens: it checks the user on connect (the one membership scope,
`Project.objects.for_user`), joins the group that broadcast.py sends
to, and forwards each event as JSON text. It never writes to the database.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ..models import Experiment, Project
from . import broadcast

# Close code for "not logged in or not a member" (4000-4999 are free for applications).
FORBIDDEN = 4403


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self):
        user = self.scope.get("user")
        pk = self.scope["url_route"]["kwargs"]["pk"]
        if user is None or not user.is_authenticated or not await self.allowed(user, pk):
            # Accept first so the browser sees our close code instead of a failed handshake.
            await self.accept()
            await self.close(code=FORBIDDEN)
            return
        self.group = self.group_name(pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Clients have nothing to say; whatever they send is ignored."""

    async def nas_event(self, message):
        await self.send_json(message["event"])


class ExperimentConsumer(_GroupConsumer):
    """ws/experiments/<id>/: every trial and status event of one experiment."""

    @database_sync_to_async
    def allowed(self, user, pk) -> bool:
        return Experiment.objects.for_user(user).filter(pk=pk).exists()

    def group_name(self, pk) -> str:
        return broadcast.experiment_group(pk)


class ProjectConsumer(_GroupConsumer):
    """ws/projects/<id>/: status changes of the project's experiments (the project page)."""

    @database_sync_to_async
    def allowed(self, user, pk) -> bool:
        return Project.objects.for_user(user).filter(pk=pk).exists()

    def group_name(self, pk) -> str:
        return broadcast.project_group(pk)
