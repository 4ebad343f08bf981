"""Sign-in protection, for the login page, the token endpoint and the admin alike.

- A lockout: SIGNIN_MAX_FAILURES wrong passwords for one username from one address within
  SIGNIN_WINDOW_MINUTES lock that pair for SIGNIN_LOCKOUT_MINUTES (SIGNIN_MAX_FAILURES_PER_IP
  for one address over any usernames); while locked, even the right password is refused, and
  refused before any password is hashed, so a locked-out try costs next to nothing.
  State lives in the "signin" cache (Redis when REDIS_URL is set, shared by every web process).
- POST /api/auth/token/: throttled per address (SIGNIN_RATE), locked out like the login page;
  a new token once the old one has expired (experiments/api/tokens.py).
"""

from __future__ import annotations

import hashlib
import math
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from .tokens import token_expired

SIGNIN_CACHE = "signin"


# Lockout ------------------------------------------------------------------------------------------
def client_ip(request) -> str:
    # REMOTE_ADDR only: a forwarded-for header is the client's to invent. Behind a proxy every
    # client shares the proxy's address, and the lockout is then per username.
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _keys(request, username: str) -> dict[str, int]:
    """Failure counters and their limits: one for the username at this address, one for the address."""
    ip = client_ip(request)
    who = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return {f"signin:fail:{who}:{ip}": settings.SIGNIN_MAX_FAILURES,
            f"signin:fail-ip:{ip}": settings.SIGNIN_MAX_FAILURES_PER_IP}  # fmt: skip


def seconds_locked(request, username: str) -> int:
    """How long sign-in stays refused for `username` from this address; 0 when it is not."""
    cache, now = caches[SIGNIN_CACHE], time.time()
    until = [u for u in cache.get_many([f"{key}:locked" for key in _keys(request, username)]).values() if u]
    return max([0, *(math.ceil(u - now) for u in until)])


def record_failure(request, username: str) -> None:
    cache = caches[SIGNIN_CACHE]
    window, lockout = settings.SIGNIN_WINDOW_MINUTES * 60, settings.SIGNIN_LOCKOUT_MINUTES * 60
    for key, limit in _keys(request, username).items():
        cache.add(key, 0, timeout=window)  # the window starts at the first failure
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
            failures = 1
        if failures >= limit:
            cache.set(f"{key}:locked", time.time() + lockout, timeout=lockout)
            cache.delete(key)


def record_success(request, username: str) -> None:
    # The address's counter stays: one good account must not launder guesses at others.
    user_key = next(iter(_keys(request, username)))
    caches[SIGNIN_CACHE].delete(user_key)


def locked_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (f"Too many failed sign-in attempts for this account from your address; "
            f"try again in {minutes} minute{'s' if minutes != 1 else ''}.")  # fmt: skip


class LockoutBackend(ModelBackend):
    """ModelBackend behind the lockout. Raising PermissionDenied makes django.contrib.auth's
    authenticate() stop at once: no other backend runs and no password is hashed."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if request is None or not username:  # no address to count against (e.g. the test client)
            return super().authenticate(request, username=username, password=password, **kwargs)
        username = str(username)
        if seconds_locked(request, username):
            raise PermissionDenied(locked_message(seconds_locked(request, username)))
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(request, username)
        else:
            record_success(request, username)
        return user


# Tokens -------------------------------------------------------------------------------------------
class SignInRateThrottle(SimpleRateThrottle):
    """Requests to the token endpoint per address, signed in or not (DEFAULT_THROTTLE_RATES["signin"])."""

    scope = "signin"
    cache = caches[SIGNIN_CACHE]

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


class ObtainExpiringToken(ObtainAuthToken):
    """POST {"username", "password"} -> {"token", "expires_at"}: the user's token, a new one once
    the old has expired. Throttled per address; 429 while the username is locked out."""

    throttle_classes = (SignInRateThrottle,)
    authentication_classes = ()  # an expired token in the header must not stop getting a new one

    def post(self, request, *args, **kwargs):
        seconds = seconds_locked(request, str(request.data.get("username", "")))
        if seconds:
            raise Throttled(wait=seconds, detail=locked_message(seconds))
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token, created = Token.objects.get_or_create(user=user)
        if not created and token_expired(token):
            token.delete()
            token = Token.objects.create(user=user)
        ttl = settings.API_TOKEN_TTL_HOURS
        expires = (token.created + timedelta(hours=ttl)).isoformat() if ttl else None
        return Response({"token": token.key, "expires_at": expires})
