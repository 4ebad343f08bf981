"""Middleware: the request body limit on the wire (ASGI; the websocket origin check is in
nasweb/origin.py), and two Django middlewares: a JSON 413 for oversize API bodies (ApiBodyLimit) and the login page's lockout
answer (SignInLockout).

Django's ASGI handler reads the whole request body into a temporary file before any view (and so
any upload handler, experiments.uploads.limits) runs; without this, a 10 GB upload would fill the
disk before the 413. nasweb/asgi.py wraps the HTTP app: `"http": RequestBodyLimit(django_asgi_app)`.
"""

from __future__ import annotations

import json
import re

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import JsonResponse
from django.shortcuts import render

from experiments.api.auth import locked_message, seconds_locked
from experiments.api.limits import body_limit, body_too_large
from experiments.uploads import MULTIPART_OVERHEAD_BYTES, UploadTooLarge

# With the router's format suffixes (/api/datasets.json, /api/datasets/preview.json/).
UPLOAD_PATHS = re.compile(r"^/(api/datasets(\.[a-z0-9]+)?/?|api/datasets/preview(\.[a-z0-9]+)?/?|projects/\d+/datasets/new/)$")


class RequestBodyLimit:
    """Every request with a body (POST, PUT, PATCH) is bounded on the wire: the upload URLs by
    UPLOAD_MAX_BYTES, every other URL by DATA_UPLOAD_MAX_MEMORY_SIZE. A body over its limit is
    refused on its declared length, or while its chunks arrive, before Django spools it to disk
    (a 300 MiB POST to /login/ was read whole before its 403)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        upload = bool(UPLOAD_PATHS.match(scope["path"]))
        limit = settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES if upload else body_limit()
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, int(declared), upload)
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
            await self._refuse(scope, send, None, upload)  # the total is unknown: it was never read

    @staticmethod
    async def _refuse(scope, send, size: int | None, upload: bool) -> None:
        if upload:
            refusal = UploadTooLarge(None, size, settings.UPLOAD_MAX_BYTES)
            detail, message = refusal.detail, refusal.message
        else:
            detail = body_too_large(size)
            message = detail["detail"]
        if scope["path"].startswith("/api/"):
            body, content_type = json.dumps(detail).encode(), b"application/json"
        else:
            body, content_type = message.encode(), b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


# Django middleware ------------------------------------------------------------------------------
class ApiBodyLimit:
    """An /api/ body (other than a multipart upload, which UPLOAD_MAX_BYTES bounds) declared over
    DATA_UPLOAD_MAX_MEMORY_SIZE gets a JSON 413 before anything reads it; without this the CSRF
    check or a form parser would meet the limit first and answer with Django's HTML page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and not request.content_type.startswith("multipart/"):
            declared = request.META.get("CONTENT_LENGTH") or ""
            if declared.isdigit() and int(declared) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                return JsonResponse(body_too_large(int(declared)), status=413, headers={"Connection": "close"})
        return self.get_response(request)


class _LockedOutForm(AuthenticationForm):
    """The login form showing only the lockout: it never authenticates, so nothing is hashed."""

    def __init__(self, request, message: str, **kwargs):
        super().__init__(request, **kwargs)
        self.lockout_message = message

    def clean(self):
        raise forms.ValidationError(self.lockout_message, code="locked_out")


class SignInLockout:
    """POST /login/ while the username is locked out at this address (experiments.api.auth): 429,
    the login page with the reason and a Retry-After. After the CSRF middleware (process_view order)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name != "login":
            return None
        seconds = seconds_locked(request, request.POST.get("username", ""))
        if not seconds:
            return None
        form = _LockedOutForm(request, locked_message(seconds), data=request.POST)
        form.is_valid()
        context = {"form": form, "next": request.POST.get("next", "")}
        response = render(request, "registration/login.html", context, status=429)
        response["Retry-After"] = str(seconds)
        return response
