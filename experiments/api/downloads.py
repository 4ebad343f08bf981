"""Model packages on request (experiments/jobs/packages.py): a completed trial's package, and the best
architecture retrained on train+val. Both answer with the artifact: 202 while its job is pending
or running (the page follows it over the websocket), 200 when the package is ready. Asking again
returns the same artifact. Downloads themselves are ArtifactViewSet.download."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ..choices import ArtifactStatus, Role
from ..jobs import packages
from ..models import Experiment, StateError, Trial
from .serializers import ArtifactSerializer
from .views import CONFLICT, Conflict


class RetrainSerializer(serializers.Serializer):
    epochs = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=packages.MAX_RETRAIN_EPOCHS,
        help_text="Training epochs; by default the best trial's epoch budget.",
    )  # fmt: skip


def _job_response(artifact) -> Response:
    ready = artifact.status == ArtifactStatus.READY
    return Response(ArtifactSerializer(artifact).data, status=status.HTTP_200_OK if ready else status.HTTP_202_ACCEPTED)


JOB_RESPONSES = {200: ArtifactSerializer, 202: ArtifactSerializer, 409: CONFLICT}


class TrialPackageView(APIView):
    """POST: the model package (ZIP) of a completed trial. Any member may ask: viewers read and
    download, and a package is a file derived from a trial they can already see."""

    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Package a completed trial's model for download", request=None, responses=JOB_RESPONSES)
    def post(self, request, pk: int):
        trial = get_object_or_404(Trial.objects.for_user(request.user).select_related("experiment"), pk=pk)
        try:
            artifact, _ = packages.request_package(trial, request.user)
        except StateError as exc:
            raise Conflict(str(exc)) from None
        return _job_response(artifact)


class ExperimentRetrainView(APIView):
    """POST {"epochs": N (optional)}: retrain the best architecture on train+val as a background
    job producing its own package. Editors only: it costs compute."""

    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Retrain the best architecture on train+val", request=RetrainSerializer,
                   responses=JOB_RESPONSES)  # fmt: skip
    def post(self, request, pk: int):
        experiment = get_object_or_404(Experiment.objects.for_user(request.user).select_related("project"), pk=pk)
        experiment.project.require_role(request.user, Role.EDITOR)
        options = RetrainSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        try:
            artifact, _ = packages.request_retrain(experiment, request.user, options.validated_data.get("epochs"))
        except StateError as exc:
            raise Conflict(str(exc)) from None
        return _job_response(artifact)
