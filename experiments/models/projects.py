"""Projects and their members: the membership scope (`for_user`) and the role rule every page,
API view, consumer and download uses."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models, transaction

from ..choices import ActivityVerb, Role, role_at_least


class StateError(Exception):
    """A verb that does not apply in the object's current state (the API answers 409)."""


# Projects ------------------------------------------------------------------------------------
class ProjectQuerySet(models.QuerySet):
    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user)


class Project(models.Model):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name

    @classmethod
    @transaction.atomic
    def create_for(cls, user, name: str, description: str = "") -> Project:
        project = cls.objects.create(name=name, description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
        return project

    def role_of(self, user) -> str | None:
        if not user.is_authenticated:
            return None
        membership = self.memberships.filter(user=user).only("role").first()
        return membership.role if membership else None

    def allows(self, user, needed: str) -> bool:
        return role_at_least(self.role_of(user), needed)

    def require_role(self, user, needed: str) -> str:
        """The user's role, or PermissionDenied (403 in pages and the API alike) when it is below
        `needed`. Membership itself is checked by fetching through `for_user` (a non-member gets
        404 before this), so this is only ever about the role."""
        role = self.role_of(user)
        if not role_at_least(role, needed):
            raise PermissionDenied(f"You need the {needed} role in project {self.name!r} to do this.")
        return role

    def log(self, by, verb: str, target=None, **details):
        """Write an ActivityLog entry of this project. Through the reverse relation, because
        activity.py imports this module (ActivityLog belongs to a Project)."""
        return self.activity.model.record(self, by, verb, target, **details)

    # -- members (views check that `by` is an owner; these keep the rules and the log) -----------
    def add_member(self, user, role: str, by=None) -> Membership:
        """Invite an existing user. Already a member: AlreadyMember (change_role is the verb for that)."""
        _check_role(role)
        with transaction.atomic():
            membership, created = Membership.objects.get_or_create(project=self, user=user, defaults={"role": role})
            if not created:
                raise AlreadyMember(
                    f"{user.get_username()} is already a member ({membership.role}); change their role instead."
                )
            self.log(by, ActivityVerb.MEMBER_INVITED, user, role=role)
        return membership

    def change_role(self, user, role: str, by=None) -> Membership:
        """Membership.DoesNotExist when `user` is not a member; LastOwner when it would leave none."""
        _check_role(role)
        with transaction.atomic():
            membership = self.memberships.select_for_update().get(user=user)
            if membership.role == role:
                return membership
            self._keep_an_owner(user, role)
            previous, membership.role = membership.role, role
            membership.save(update_fields=["role"])
            self.log(by, ActivityVerb.MEMBER_ROLE_CHANGED, user, role=role, previous_role=previous)
        return membership

    def set_member_role(self, user, role: str, by=None) -> Membership:
        """Add `user` with `role`, or give an existing member that role (the API's POST members/)."""
        try:
            return self.add_member(user, role, by)
        except AlreadyMember:
            return self.change_role(user, role, by)

    def remove_member(self, user, by=None) -> None:
        """Membership.DoesNotExist when `user` is not a member; LastOwner for the only owner."""
        with transaction.atomic():
            membership = self.memberships.select_for_update().get(user=user)
            self._keep_an_owner(user, None)
            membership.delete()
            self.log(by, ActivityVerb.MEMBER_REMOVED, user, role=membership.role)

    def _keep_an_owner(self, user, new_role) -> None:
        # Lock the owners' rows: two owners demoting (or removing) each other at once must not
        # both succeed and leave the project with nobody who can manage it.
        owners = list(self.memberships.select_for_update().filter(role=Role.OWNER).values_list("user_id", flat=True))
        if new_role != Role.OWNER and owners == [user.pk]:
            raise LastOwner("A project needs at least one owner; make someone else owner first.")


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]
        ordering = ["project_id", "user__username"]

    def __str__(self):
        return f"{self.user} in {self.project} ({self.role})"



# Membership errors ---------------------------------------------------------------------------------
class MembershipError(StateError):
    """A membership change the rules forbid (the API answers 409, the pages show the message)."""


class AlreadyMember(MembershipError):
    pass


class LastOwner(MembershipError):
    pass


class NoSuchUser(LookupError):
    """No account matches what was typed; the message says what was looked for."""


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(Role.values)})")


def find_user(username_or_email: str):
    """The user with this username or else, when it looks like an email address, the one with this
    email (case-insensitive: people type addresses as they like). Raises NoSuchUser."""
    typed = username_or_email.strip()
    users = get_user_model().objects
    user = users.filter(username=typed).first()
    if user is not None or "@" not in typed:
        if user is None:
            raise NoSuchUser(f"no user called {typed!r}")
        return user
    matches = list(users.filter(email__iexact=typed)[:2])
    if not matches:
        raise NoSuchUser(f"no user with the email {typed!r}")
    if len(matches) > 1:
        raise NoSuchUser(f"several users have the email {typed!r}; invite one of them by username")
    return matches[0]

