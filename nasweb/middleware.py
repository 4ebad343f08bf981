"""ASGI middleware: the upload size limit on the wire.

Django's ASGI handler reads the whole request body into a temporary file before any view (and so
any upload handler, experiments.uploads.limits) runs; without this, a 10 GB upload would fill the
disk before the 413. nasweb/asgi.py wraps the HTTP app: `"http": RequestBodyLimit(django_asgi_app)`.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

from experiments.uploads import MULTIPART_OVERHEAD_BYTES, UploadTooLarge

UPLOAD_PATHS = re.compile(r"^/(api/datasets/|api/datasets/preview/|projects/\d+/datasets/new/)$")


class RequestBodyLimit:
    """For POSTs to the upload URLs: refuse a body over the limit on its declared length, or while
    its chunks arrive, before Django spools it; every other request passes through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not UPLOAD_PATHS.match(scope["path"]):
            return await self.app(scope, receive, send)
        limit = settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, int(declared))
        received, over, started = 0, False, False

        async def counted_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if over and not started:
            await self._refuse(scope, send, None)  # the total is unknown: it was never read

    @staticmethod
    async def _refuse(scope, send, size: int | None) -> None:
        refusal = UploadTooLarge(None, size, settings.UPLOAD_MAX_BYTES)
        if scope["path"].startswith("/api/"):
            body, content_type = json.dumps(refusal.detail).encode(), b"application/json"
        else:
            body, content_type = refusal.message.encode(), b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
