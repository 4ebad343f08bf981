"""Projects and their members."""

from __future__ import annotations

from rest_framework import serializers

from ...choices import Role
from ...models import Membership, Project
from .common import MAX_DESCRIPTION_LENGTH


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]
        read_only_fields = fields


class ProjectSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    members = MemberSerializer(source="memberships", many=True, read_only=True)
    my_role = serializers.CharField(read_only=True, allow_null=True)
    experiment_count = serializers.IntegerField(read_only=True, default=0)
    description = serializers.CharField(max_length=MAX_DESCRIPTION_LENGTH, allow_blank=True, required=False)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_by", "created_at", "my_role", "experiment_count", "members"]
        read_only_fields = ["id", "created_by", "created_at"]

    def create(self, validated_data):
        project = Project.create_for(self.context["request"].user, **validated_data)
        project.my_role, project.experiment_count = Role.OWNER, 0
        return project
