"""What an open socket may still see, read fresh from the database and the session store.

A socket keeps the user Channels resolved on connect; these checks ask again, because by the time
an `access.changed` message arrives the session may be logged out, the password changed (the
session's auth hash no longer matches), the account deactivated, or the membership gone.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.utils.crypto import constant_time_compare, salted_hmac

from ..models import Experiment, Project

_DIGEST_SALT = "experiments.live.access.session"


def session_digest(session_key: str | None) -> str | None:
    """A stand-in for a session key in channel-layer messages: the key itself is a credential."""
    return salted_hmac(_DIGEST_SALT, session_key).hexdigest() if session_key else None


def signed_in_user(session_key: str | None, user_id: int):
    """The user this session still signs in, or None (logged out, expired, signed in as someone
    else, password changed, account deactivated or deleted). Django's own get_user() would flush
    a stale session; this only reads, because consumers never write."""
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        if str(session[SESSION_KEY]) != str(user_id):
            return None
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)  # ModelBackend: None when inactive
    if user is None:
        return None
    session_hash = session.get(HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return user if any(constant_time_compare(session_hash, known) for known in hashes) else None


def experiment_project(user, experiment_id: int) -> int | None:
    """The project of the experiment when `user` may see it (the one membership scope), else None."""
    return Experiment.objects.for_user(user).filter(pk=experiment_id).values_list("project_id", flat=True).first()


def visible_project(user, project_id: int) -> int | None:
    return Project.objects.for_user(user).filter(pk=project_id).values_list("pk", flat=True).first()
