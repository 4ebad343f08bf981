"""Template tags for the team parts of pages that other views render: the comments section of
the experiment and trial pages, the latest activity on the project page, the sign-up link.

They fetch what they show (a fixed number of queries, however long the page), so the views that
render those pages need not know about comments or activity."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from ..models import Comment

register = template.Library()

RECENT_ACTIVITY = 20


@register.filter
def ago(moment) -> str:
    """"just now", "5 minutes ago", "2 days, 3 hours ago"."""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


@register.simple_tag
def signup_enabled() -> bool:
    return settings.SIGNUP_ENABLED


@register.inclusion_tag("experiments/_comments.html", takes_context=True)
def comments_for(context, experiment, trial=None):
    """The discussion of an experiment (its own comments and its trials') or of one trial, with a
    form to add to it. Every member may comment; the author or an owner may delete."""
    request = context["request"]
    user = request.user
    role = context.get("role") or experiment.project.role_of(user)
    if trial is None:
        comments = Comment.objects.filter(experiment=experiment).select_related("author", "trial")
        action = reverse("experiment-comment", args=[experiment.pk])
    else:
        comments = Comment.objects.filter(trial=trial).select_related("author")
        action = reverse("trial-comment", args=[trial.pk])
    comments = list(comments)
    for comment in comments:
        comment.deletable = comment.can_be_deleted_by(user, role)
    return {
        "comments": comments,
        "action": action,
        "on_trial": trial is not None,
        "max_length": Comment.MAX_LENGTH,
        "csrf_token": context.get("csrf_token"),
        "user": user,
    }


@register.inclusion_tag("experiments/_activity_list.html")
def recent_activity(project, limit: int = RECENT_ACTIVITY):
    entries = list(project.activity.order_by("-created_at", "-id")[: limit + 1])
    return {"entries": entries[:limit], "more": len(entries) > limit, "project": project, "compact": True}
