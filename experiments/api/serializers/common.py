"""What every serializer module shares: the bounds on numbers, and relations that only reach the
requesting user's rows (anyone else's read as "does not exist", not "forbidden")."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ...models import Dataset, Project

DEVICES = ("cpu", "cuda", "auto")
MAX_BUDGET_TRIALS = 10_000
MAX_PARALLELISM = 64


class UserScopedField(serializers.PrimaryKeyRelatedField):
    """A row of `model` the requesting user can see (its `for_user` queryset): anyone else's reads
    as "does not exist", not "forbidden"."""

    model: type | None = None

    def get_queryset(self):
        return self.model.objects.for_user(self.context["request"].user)


@extend_schema_field(OpenApiTypes.INT)
class UserProjectField(UserScopedField):
    model = Project


class UserDatasetField(UserScopedField):
    model = Dataset


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
