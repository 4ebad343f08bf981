"""/api/datasets/: built-ins by name, uploads (CSV, NPZ, image ZIP) previewed then saved, or saved in
one multipart request; sample images of a saved dataset; deletion refused while experiments use it.

    POST /api/datasets/preview/   multipart {project, file, source?, options?}  -> preview + upload_token
                                  or {project, upload_token, options}           -> preview with other options
    POST /api/datasets/           {project, name?, upload_token, options}       -> 201 dataset
                                  multipart {project, name?, source?, file, options?} (one step)

Uploads are size-limited while they arrive (uploads.limits, 413) and refused with
400 {"file" or "options": ["<file>: <field>: <reason>"], "error": {file, field, reason}}.
"""

from __future__ import annotations

from django.db.models import Count, ProtectedError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from .. import uploads
from ..choices import Role
from ..models import Dataset
from . import serializers as s
from .filters import DatasetFilter
from .limits import BoundedJSONParser
from .permissions import role_subquery
from .views import CONFLICT, Conflict, ScopedViewSet

TOO_LARGE = OpenApiResponse(description="The upload is over UPLOAD_MAX_BYTES; nothing was stored")


@extend_schema_view(
    create=extend_schema(
        request={"application/json": s.DatasetSerializer, "multipart/form-data": s.DatasetSerializer},
        responses={201: s.DatasetSerializer, 413: TOO_LARGE},
    ),
    destroy=extend_schema(responses={204: None, 409: CONFLICT}),
)
class DatasetViewSet(ScopedViewSet, viewsets.ModelViewSet):
    """Datasets of a project (`?project=ID`). Built-ins are added by name: {"project", "name",
    "source": "builtin", "builtin_name": "digits"}; uploads by file or preview token. Shape and
    classes are filled in from the loaded data."""

    serializer_class = s.DatasetSerializer
    filterset_class = DatasetFilter
    parser_classes = [BoundedJSONParser, MultiPartParser, FormParser]
    ordering_fields = ["name", "created_at", "num_rows"]
    ordering = ["name", "id"]
    upload_actions = ("create", "preview")

    def get_queryset(self):
        user = self.request.user
        return (
            Dataset.objects.for_user(user)
            .annotate(my_role=role_subquery(user), experiment_count=Count("experiments"))
            .select_related("created_by")
        )

    def initial(self, request, *args, **kwargs):
        # Before authentication: the session CSRF check reads the form, which parses the body.
        if request.method == "POST" and self.action in self.upload_actions:
            uploads.limit_upload_size(request)
        super().initial(request, *args, **kwargs)

    def perform_create(self, serializer):
        role = serializer.validated_data["project"].require_role(self.request.user, Role.EDITOR)
        serializer.save().my_role = role

    def perform_destroy(self, dataset):
        # The foreign key protects the dataset, so an experiment created meanwhile still wins.
        try:
            uploads.delete_dataset(dataset, self.request.user)
        except ProtectedError:
            raise Conflict("Experiments use this dataset; delete them first.") from None

    @extend_schema(
        summary="Upload a file (or re-use a preview's token) and see what it holds before saving it",
        request={"multipart/form-data": s.DatasetPreviewSerializer, "application/json": s.DatasetPreviewSerializer},
        responses={200: s.DatasetPreviewResponseSerializer, 413: TOO_LARGE},
    )
    @action(detail=False, methods=["post"])
    def preview(self, request, format=None):
        serializer = s.DatasetPreviewSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data["preview"])

    @extend_schema(summary="Sample images (image data) or first rows (CSV) of the dataset",
                   responses={200: OpenApiResponse(description="{kind, samples: [{class, images}], csv, problem}")})
    @action(detail=True, methods=["get"])
    def samples(self, request, pk=None, format=None):
        return Response(uploads.dataset_samples(self.get_object()))
