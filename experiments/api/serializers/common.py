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
MAX_BUDGET_WALL_TIME_S = 366 * 24 * 3600  # a year: larger is a typo, and overflows the column at 2**31
# Free text (descriptions) is for a paragraph or a page, not a file: a limit keeps every list and
# snapshot that carries it small.
MAX_DESCRIPTION_LENGTH = 10_000
MAX_TOKEN_LENGTH = 2_000  # a signed upload_token carries the file name: a few hundred characters


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
