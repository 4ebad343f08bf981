"""Object permissions by project role.

Querysets are already scoped by membership (`for_user`), so a non-member never reaches these
checks: the object is simply not found (404). A member who may look but not change gets 403.
The rule itself is choices.role_at_least; where there is no object yet (creates), views call
Project.require_role.
"""

from __future__ import annotations

from django.db.models import CharField, OuterRef, Subquery, Value
from rest_framework import permissions

from ..choices import Role, role_at_least
from ..models import Membership, Project, Trial


def role_subquery(user, project_ref: str = "project"):
    """The requesting user's role in the row's project, as a subquery for `.annotate(my_role=...)`,
    so that permission checks and the `my_role` field cost no query per object. The one way to
    annotate a role: the API's querysets and the project list page use it alike."""
    if not user.is_authenticated:  # the schema generator asks without a user
        return Value(None, output_field=CharField())
    return Subquery(
        Membership.objects.filter(project=OuterRef(project_ref), user=user).values("role")[:1]
    )


def project_of(obj) -> Project:
    if isinstance(obj, Project):
        return obj
    if isinstance(obj, Trial):
        return obj.experiment.project
    return obj.project


def role_for(obj, user) -> str | None:
    role = getattr(obj, "my_role", None)
    if role is None:
        role = project_of(obj).role_of(user)
    return role


class ProjectRole(permissions.BasePermission):
    """Members read; editors change experiments and datasets; owners change the project itself."""

    message = "Your role in this project does not allow this."

    def has_object_permission(self, request, view, obj) -> bool:
        role = role_for(obj, request.user)
        if request.method in permissions.SAFE_METHODS:
            return role is not None
        needed = Role.OWNER if isinstance(obj, Project) else Role.EDITOR
        needed = getattr(view, "required_roles", {}).get(view.action, needed)
        return role_at_least(role, needed)

