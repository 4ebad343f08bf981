"""Account changes that can end a user's right to see their open sockets' streams (registered in
ExperimentsConfig.ready). Membership changes announce themselves in Project.remove_member and
Project.change_role."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import access, broadcast


@receiver(user_logged_out, dispatch_uid="live-logout")
def _logged_out(sender, request, user, **kwargs):
    if user is None:  # logging out a session that was not logged in
        return
    session_key = request.session.session_key if request is not None and hasattr(request, "session") else None
    broadcast.access_changed(user.pk, None, ended_session=access.session_digest(session_key))


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="live-user-saved")
def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    # A password change (the session hash no longer matches) or a deactivation; a login's
    # last_login update is neither, and happens on every login.
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    broadcast.access_changed(instance.pk)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="live-user-deleted")
def _user_deleted(sender, instance, **kwargs):
    broadcast.access_changed(instance.pk)
