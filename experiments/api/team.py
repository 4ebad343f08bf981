"""The team side of the API: inviting members (by username or email), a project's activity log
and comments on experiments and trials.

Same rules as everywhere: rows are scoped by membership (`for_user`), so another project's activity
or comments are 404; any member may read and comment (viewers discuss what they read); a comment is
deleted by its author or an owner (403 for anyone else).
"""

from __future__ import annotations

import django_filters
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework import generics, mixins, permissions, serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from ..choices import Role
from ..models import ActivityLog, Comment, Experiment, NoSuchUser, Project, Trial, find_user
from .filters import ID_REGEX, MAX_ID, IdFilter, NullsLastOrderingFilter
from .permissions import role_for, role_subquery
from .serializers import UserScopedField


# Members ------------------------------------------------------------------------------------------
class MemberInviteSerializer(serializers.Serializer):
    """{"username": "vera"} or {"email": "Vera@Example.com"} (case-insensitive), plus a role;
    a username field holding an address is looked up by email too."""

    username = serializers.CharField(required=False, max_length=254)  # may hold an address
    email = serializers.EmailField(required=False, max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)

    def validate(self, attrs):
        field = "username" if attrs.get("username") else "email" if attrs.get("email") else None
        if field is None:
            raise serializers.ValidationError({"username": ["give the username or the email of an existing user"]})
        try:
            attrs["user"] = find_user(attrs[field])
        except NoSuchUser as exc:
            raise serializers.ValidationError({field: [str(exc)]}) from None
        return attrs


# Activity -----------------------------------------------------------------------------------------
class ActivityLogSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="actor", read_only=True)
    summary = serializers.CharField(read_only=True)
    url = serializers.CharField(source="target_url", read_only=True)

    class Meta:
        model = ActivityLog
        fields = ["id", "created_at", "user", "verb", "summary", "target_type", "target_id", "target_repr", "details",
                  "url"]  # fmt: skip
        read_only_fields = fields


class ProjectActivityView(generics.ListAPIView):
    """Who did what in the project, newest first (`?limit=&offset=`)."""

    serializer_class = ActivityLogSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator asks without a project
            return ActivityLog.objects.none()
        project = get_object_or_404(Project.objects.for_user(self.request.user), pk=self.kwargs["pk"])
        return project.activity.select_related("user").order_by("-created_at", "-id")


# Comments -----------------------------------------------------------------------------------------
class UserExperimentField(UserScopedField):
    model = Experiment


class UserTrialField(UserScopedField):
    model = Trial


class CommentSerializer(serializers.ModelSerializer):
    experiment = UserExperimentField(required=False)
    trial = UserTrialField(required=False, allow_null=True)
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    body = serializers.CharField(max_length=Comment.MAX_LENGTH, trim_whitespace=True)
    can_delete = serializers.SerializerMethodField()

    class Meta:
        model = Comment
        fields = ["id", "experiment", "trial", "author", "body", "created_at", "can_delete"]
        read_only_fields = ["id", "author", "created_at"]

    @extend_schema_field(serializers.BooleanField())
    def get_can_delete(self, comment) -> bool:
        user = self.context["request"].user
        return comment.can_be_deleted_by(user, role_for(comment, user))

    def validate(self, attrs):
        experiment, trial = attrs.get("experiment"), attrs.get("trial")
        if experiment is None and trial is None:
            raise serializers.ValidationError({"experiment": ["give the experiment (or the trial) to comment on"]})
        if experiment is None:
            attrs["experiment"] = trial.experiment
        elif trial is not None and trial.experiment_id != experiment.pk:
            raise serializers.ValidationError({"trial": [f"trial {trial.pk} is not a trial of experiment {experiment.pk}"]})
        return attrs

    def create(self, validated_data):
        comment = Comment.post(self.context["request"].user, validated_data["experiment"], validated_data["body"],
                               trial=validated_data.get("trial"))  # fmt: skip
        return comment


class CommentFilter(django_filters.FilterSet):
    experiment = IdFilter(field_name="experiment_id")
    # ?trial=ID: that trial's comments; ?trial=none: the experiment's own (not on a trial).
    trial = django_filters.CharFilter(method="filter_trial")

    class Meta:
        model = Comment
        fields = ["experiment", "trial"]

    def filter_trial(self, queryset, name, value):
        if value.lower() in ("none", "null", ""):
            return queryset.filter(trial__isnull=True)
        if not value.isdigit() or int(value) > MAX_ID:
            raise serializers.ValidationError({"trial": [f"expected a trial id or 'none', got {value!r}"]})
        return queryset.filter(trial_id=int(value))


class CommentPermission(permissions.BasePermission):
    """Members read and post (posting needs only membership, which the experiment field checks);
    deleting is for the author or an owner."""

    message = "Only the comment's author or a project owner can delete it."

    def has_object_permission(self, request, view, obj) -> bool:
        role = role_for(obj, request.user)
        if request.method in permissions.SAFE_METHODS:
            return role is not None
        return role is not None and obj.can_be_deleted_by(request.user, role)


class CommentViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Comments on an experiment (`?experiment=ID`) or one of its trials (`?trial=ID`), oldest first.
    POST {"experiment": ID, "body": "..."} or {"trial": ID, "body": "..."}: any member may comment."""

    serializer_class = CommentSerializer
    permission_classes = [IsAuthenticated, CommentPermission]
    filter_backends = [DjangoFilterBackend, NullsLastOrderingFilter]
    filterset_class = CommentFilter
    ordering_fields = ["created_at"]
    ordering = ["created_at", "id"]
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        user = self.request.user
        return Comment.objects.for_user(user).annotate(my_role=role_subquery(user)).select_related("author")
