"""Trials, their per-epoch points, artifacts, and the documentation-only shapes of the snapshot
and the registry."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from search_engine.rules import error_line

from ...models import Artifact, Trial, TrialMetric
from .experiments import ExperimentSerializer


class TrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = [
            "id", "experiment", "number", "arch", "fingerprint", "budget", "meta", "state", "objective",
            "metrics", "constraint_values", "attempt", "worker", "error", "created_at", "started_at",
            "finished_at", "duration_s",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, trial):
        data = super().to_representation(trial)
        # Lists show the one-line summary only; the detail view has the whole traceback summary.
        data["error"] = error_line(trial.error)
        return data


class PointSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrialMetric
        fields = ["step", "values"]
        read_only_fields = fields


class TrialDetailSerializer(TrialSerializer):
    points = PointSerializer(many=True, read_only=True)

    class Meta(TrialSerializer.Meta):
        fields = [*TrialSerializer.Meta.fields, "points"]
        read_only_fields = fields

    def to_representation(self, trial):
        data = super().to_representation(trial)
        data["error"] = trial.error
        return data


class ArtifactSerializer(serializers.ModelSerializer):
    """The fields of payloads.artifact_summary (events carry the same shape)."""

    trial_number = serializers.IntegerField(source="trial.number", read_only=True, allow_null=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "experiment", "trial", "trial_number", "kind", "status", "progress", "error", "size_bytes",
                  "checksum", "metrics", "created_at", "finished_at", "download_url"]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, artifact) -> str:
        return reverse("api:artifact-download", args=[artifact.pk])


# Snapshot (documentation only: the view builds it with payloads.trial_summary) ---------------------
class SnapshotSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="Sequence number read before the queries: apply events after it.")
    experiment = ExperimentSerializer()
    trials = serializers.ListField(child=serializers.DictField(), help_text="payloads.trial_summary of every trial")
    curves = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()),
        help_text="trial id -> [{step, <metric>: value, ...}] for running and recently finished trials",
    )
    progress = serializers.ListField(
        child=serializers.DictField(),
        help_text="one-shot job points, [{phase, step, epoch, supernet_loss, ...}] as experiment.progress events",
    )


class RegistrySerializer(serializers.Serializer):
    spaces = serializers.DictField()
    strategies = serializers.DictField()
    estimators = serializers.DictField()
    oneshot = serializers.DictField(help_text="one-shot methods (supernet, darts) and their options")
    benchmark_tables = serializers.ListField(
        child=serializers.CharField(), help_text="CSV tables the `tabular` estimator's `path` may name"
    )
    datasets = serializers.DictField(child=serializers.CharField())
    devices = serializers.ListField(child=serializers.CharField())
