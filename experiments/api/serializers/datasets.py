"""Datasets: built-ins by name, uploads by file or by the token of a preview. Every upload is
loaded before it is saved (experiments.uploads does the staging and the preview)."""

from __future__ import annotations

from rest_framework import serializers

from search_engine.data import BUILTIN_DATASETS, DatasetError, load_dataset
from search_engine.registry import ConfigError

from ... import uploads
from ...choices import DatasetSource, Role
from ...models import Dataset
from .common import MAX_TOKEN_LENGTH, UserProjectField


class DatasetSerializer(serializers.ModelSerializer):
    """Built-ins by name ({"source": "builtin", "builtin_name": "iris"}); uploads either in one
    multipart request ({"source": "csv", "file": ..., "options": '{"target": "species"}'}) or by
    the `upload_token` of POST /api/datasets/preview/. Every upload is loaded before it is saved."""

    project = UserProjectField()
    name = serializers.CharField(max_length=100, required=False, help_text="Defaults to the file's name.")
    source = serializers.ChoiceField(
        choices=DatasetSource.choices, required=False,
        help_text="builtin, csv, npz or zip; for uploads, guessed from the file name when left out.",
    )  # fmt: skip
    file = serializers.FileField(
        write_only=True, required=False, help_text="One-step upload (multipart): the CSV, NPZ or ZIP itself."
    )
    upload_token = serializers.CharField(
        write_only=True, required=False, max_length=MAX_TOKEN_LENGTH,
        help_text="From POST /api/datasets/preview/: saves the previewed file.",
    )  # fmt: skip
    file_name = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    in_use = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id", "project", "name", "source", "builtin_name", "options", "file", "upload_token", "file_name",
            "checksum", "size_bytes", "kind", "input_shape", "num_classes", "class_names", "class_counts",
            "num_rows", "in_use", "created_by", "created_at",
        ]  # fmt: skip
        read_only_fields = [
            "id", "checksum", "size_bytes", "kind", "input_shape", "num_classes", "class_names", "class_counts",
            "num_rows", "created_by", "created_at",
        ]  # fmt: skip

    def get_in_use(self, dataset) -> bool:
        annotated = getattr(dataset, "experiment_count", None)
        return dataset.in_use if annotated is None else annotated > 0

    def get_file_name(self, dataset) -> str:
        return dataset.file.name.rsplit("/", 1)[-1] if dataset.file else ""

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            # What a dataset is can not change under the experiments that used it; its name can.
            for name in ("project", "source", "builtin_name", "options", "file", "upload_token"):
                fields[name].read_only = True
        return fields

    def validate_builtin_name(self, value):
        if value not in BUILTIN_DATASETS:
            raise serializers.ValidationError(
                f"unknown built-in dataset {value!r} (known: {', '.join(sorted(BUILTIN_DATASETS))})"
            )
        return value

    def validate_options(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("expected an object of loader options, e.g. {\"seed\": 0}")
        return value

    def validate(self, attrs):
        if self.instance is not None:
            return attrs
        # Before any file is stored or loaded: a viewer's upload must cost nothing.
        attrs["project"].require_role(self.context["request"].user, Role.EDITOR)
        upload, token = attrs.pop("file", None), attrs.pop("upload_token", None)
        self._staged = None
        source = attrs.get("source")
        if source is None and upload is None and not token:
            source = attrs["source"] = DatasetSource.BUILTIN
        if source != DatasetSource.BUILTIN:
            return self._validate_upload(attrs, upload, token)
        attrs.setdefault("name", attrs.get("builtin_name", ""))
        spec = {"builtin": attrs.get("builtin_name", ""), **attrs.get("options", {})}
        try:
            self._task = load_dataset(spec)
        except ConfigError as exc:  # DatasetError is one
            field = "builtin_name" if exc.field in ("builtin", "dataset") else "options"
            message = exc.reason if field == "builtin_name" else f"{exc.field}: {exc.reason}"
            raise serializers.ValidationError({field: [message]}) from None
        return attrs

    def _validate_upload(self, attrs, upload, token):
        if attrs.get("builtin_name"):
            raise serializers.ValidationError({"builtin_name": ["only built-in datasets have one"]})
        try:
            staged = uploads.staged_upload(user=self.context["request"].user, project=attrs["project"],
                                           source=attrs.get("source"), file=upload, token=token)  # fmt: skip
        except uploads.UploadError as exc:
            raise serializers.ValidationError(exc.as_dict()) from None
        try:
            options = uploads.clean_options(staged.source, attrs.get("options"))
            self._task = uploads.load_staged(staged, options)
        except (uploads.UploadError, DatasetError) as exc:
            staged.discard()  # nothing of a refused upload is kept
            error = uploads.rejection(exc, staged.file) if isinstance(exc, DatasetError) else exc
            raise serializers.ValidationError(error.as_dict()) from None
        attrs.update(source=staged.source, options=options)
        attrs.setdefault("name", uploads.default_name(staged.file))
        self._staged = staged
        return attrs

    def create(self, validated_data):
        user = self.context["request"].user
        if self._staged is not None:
            return uploads.save_dataset(self._staged, project=validated_data["project"], name=validated_data["name"],
                                        options=validated_data["options"], task=self._task, user=user)  # fmt: skip
        dataset = Dataset(created_by=user, **validated_data)
        dataset.describe_from_task(self._task)
        dataset.save()
        return dataset


class DatasetPreviewSerializer(serializers.Serializer):
    """POST /api/datasets/preview/: a file (multipart), or the upload_token of an earlier preview
    with other options (another CSV target, another image size)."""

    project = UserProjectField()
    source = serializers.ChoiceField(
        choices=[c for c in DatasetSource.choices if c[0] != DatasetSource.BUILTIN], required=False,
        help_text="csv, npz or zip; guessed from the file name when left out.",
    )  # fmt: skip
    file = serializers.FileField(required=False)
    upload_token = serializers.CharField(required=False, max_length=MAX_TOKEN_LENGTH)
    options = serializers.JSONField(required=False, help_text='Loader options, e.g. {"target": "species"}.')

    def validate(self, attrs):
        user = self.context["request"].user
        attrs["project"].require_role(user, Role.EDITOR)
        try:
            staged = uploads.staged_upload(user=user, project=attrs["project"], source=attrs.get("source"),
                                           file=attrs.get("file"), token=attrs.get("upload_token"))  # fmt: skip
            attrs["preview"] = uploads.build_preview(staged, attrs.get("options"))
        except uploads.UploadError as exc:
            raise serializers.ValidationError(exc.as_dict()) from None
        return attrs


class DatasetPreviewResponseSerializer(serializers.Serializer):
    """Documentation only: uploads.build_preview makes the body."""

    upload_token = serializers.CharField(help_text="Give it to POST /api/datasets/ to save this file.")
    expires_at = serializers.DateTimeField()
    file = serializers.CharField()
    source = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    options = serializers.DictField(help_text="The options used, with the CSV target picked by default.")
    csv = serializers.DictField(allow_null=True, help_text="columns, kinds, missing, distinct, rows, n_rows, "
                                                         "suggested_target (CSV only)")  # fmt: skip
    dataset = serializers.DictField(allow_null=True, help_text="kind, input_shape, num_classes, num_rows, "
                                                             "sizes, classes [{name, count}], imbalance")  # fmt: skip
    samples = serializers.ListField(child=serializers.DictField(), help_text="[{class, images: [PNG data URIs]}]")
    problem = serializers.DictField(allow_null=True, help_text="{file, field, reason} when the chosen CSV "
                                                             "target does not work")  # fmt: skip
