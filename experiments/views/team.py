"""Pages for accounts and teams: sign-up, members, the activity log and comments.

Same rules as every page: fetch through `for_user` (a non-member gets 404), check the role with
Project.require_role (403), call one model verb, redirect or render. Password change is Django's
own view (see urls.py).

Who may do what: any member reads the members page and the activity log and comments (viewers
read and discuss); owners invite, change roles and remove; a comment is deleted by its author or
an owner.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..choices import Role, role_at_least
from ..forms import CommentForm, InviteForm, RoleForm, SignUpForm
from ..models import Comment, Experiment, Membership, MembershipError, Project, Trial

ACTIVITY_PAGE_SIZE = 50


# Accounts -----------------------------------------------------------------------------------------
def signup(request):
    # Read per request, so the setting can be flipped without touching the URLs.
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is turned off here; ask an administrator for an account.")
    if request.user.is_authenticated:
        return redirect("project-list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        messages.success(request, f"Welcome, {user.get_username()}. Create a project, or ask a teammate to invite you.")
        return redirect("project-list")
    return render(request, "registration/signup.html", {"form": form})


# Members ------------------------------------------------------------------------------------------
def _project(request, pk: int) -> Project:
    return get_object_or_404(Project.objects.for_user(request.user), pk=pk)


@login_required
def project_members(request, pk: int):
    """GET: everyone in the project with their role. POST (owners): invite an existing user."""
    project = _project(request, pk)
    role = project.role_of(request.user)
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        project.require_role(request.user, Role.OWNER)
        if form.is_valid():
            invitee, new_role = form.cleaned_data["user"], form.cleaned_data["role"]
            try:
                project.add_member(invitee, new_role, by=request.user)
            except MembershipError as exc:
                form.add_error("user", str(exc))
            else:
                messages.success(request, f"{invitee.get_username()} joined “{project.name}” as {new_role}.")
                return redirect("project-members", pk=project.pk)
    members = project.memberships.select_related("user").order_by("user__username")
    return render(request, "experiments/members.html", {
        "project": project,
        "role": role,
        "is_owner": role_at_least(role, Role.OWNER),
        "members": members,
        "owner_count": sum(1 for m in members if m.role == Role.OWNER),
        "roles": Role.choices,
        "form": form,
    })  # fmt: skip


def _managed_membership(request, pk: int, username: str) -> tuple[Project, Membership]:
    """The project and the membership an owner is about to change (403 for anyone else)."""
    project = _project(request, pk)
    project.require_role(request.user, Role.OWNER)
    membership = project.memberships.select_related("user").filter(user__username=username).first()
    if membership is None:
        raise Http404(f"{username!r} is not a member of this project")
    return project, membership


@login_required
@require_POST
def member_role(request, pk: int, username: str):
    project, membership = _managed_membership(request, pk, username)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Role: {' '.join(form.errors['role'])}")
    else:
        try:
            project.change_role(membership.user, form.cleaned_data["role"], by=request.user)
        except Membership.DoesNotExist:  # removed meanwhile
            raise Http404(f"{username!r} is not a member of this project") from None
        except MembershipError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{username} is now {form.cleaned_data['role']}.")
    return redirect("project-members", pk=project.pk)


@login_required
@require_POST
def member_remove(request, pk: int, username: str):
    project, membership = _managed_membership(request, pk, username)
    try:
        project.remove_member(membership.user, by=request.user)
    except Membership.DoesNotExist:
        raise Http404(f"{username!r} is not a member of this project") from None
    except MembershipError as exc:
        messages.error(request, str(exc))
        return redirect("project-members", pk=project.pk)
    if membership.user_id == request.user.pk:
        messages.success(request, f"You left “{project.name}”.")
        return redirect("project-list")
    messages.success(request, f"{username} was removed from “{project.name}”.")
    return redirect("project-members", pk=project.pk)


# Activity -----------------------------------------------------------------------------------------
@login_required
def project_activity(request, pk: int):
    project = _project(request, pk)
    role = project.role_of(request.user)
    page = Paginator(project.activity.order_by("-created_at", "-id"), ACTIVITY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "experiments/activity.html", {"project": project, "role": role, "page_obj": page})


# Comments -----------------------------------------------------------------------------------------
def _post_comment(request, experiment: Experiment, trial: Trial | None, back: str):
    form = CommentForm(request.POST)
    if form.is_valid():
        Comment.post(request.user, experiment, form.cleaned_data["body"], trial=trial)
        messages.success(request, "Comment posted.")
    else:
        messages.error(request, f"Comment not posted: {' '.join(form.errors['body'])}")
    return redirect(f"{back}#comments")


@login_required
@require_POST
def experiment_comment(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.for_user(request.user), pk=pk)
    return _post_comment(request, experiment, None, reverse("experiment-detail", args=[experiment.pk]))


@login_required
@require_POST
def trial_comment(request, pk: int):
    trial = get_object_or_404(Trial.objects.for_user(request.user).select_related("experiment"), pk=pk)
    return _post_comment(request, trial.experiment, trial, reverse("trial-detail", args=[trial.pk]))


@login_required
@require_POST
def comment_delete(request, pk: int):
    comment = get_object_or_404(Comment.objects.for_user(request.user).select_related("project"), pk=pk)
    if not comment.can_be_deleted_by(request.user, comment.project.role_of(request.user)):
        raise PermissionDenied("only the comment's author or a project owner can delete it")
    comment.delete()
    messages.success(request, "Comment deleted.")
    if comment.trial_id:
        return redirect(reverse("trial-detail", args=[comment.trial_id]) + "#comments")
    return redirect(reverse("experiment-detail", args=[comment.experiment_id]) + "#comments")
