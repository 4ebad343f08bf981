"""Serializers: explicit fields, and every search option checked against the engine's registries.

A bad option is a 400 naming the field and the reason (`{"strategy_config": ["population_size: must be
>= 2, got 1"]}`), never a silent default: the engine's own ConfigError(field, reason) says what is wrong.
"""

from __future__ import annotations

import numpy as np
import torch
from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from search_engine.constraints import Constraints
from search_engine.oneshot import ONESHOT, create_oneshot
from search_engine.registry import ConfigError, create_estimator, create_space, create_strategy
from search_engine.task import Task

from ..choices import DatasetSource, ExperimentStatus, Role
from ..models import Artifact, Dataset, Experiment, Membership, Project, StateError, Trial, TrialMetric

DEVICES = ("cpu", "cuda", "auto")
MAX_BUDGET_TRIALS = 10_000
MAX_PARALLELISM = 64
CONSTRAINT_FIELDS = ("max_params", "max_flops", "max_size_mb", "max_latency_ms")


@extend_schema_field(OpenApiTypes.INT)
class UserProjectField(serializers.PrimaryKeyRelatedField):
    """A project of the requesting user: anyone else's reads as "does not exist", not "forbidden"."""

    def get_queryset(self):
        return Project.objects.for_user(self.context["request"].user)


class UserDatasetField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return Dataset.objects.for_user(self.context["request"].user)


# Projects ---------------------------------------------------------------------------------------
class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]
        read_only_fields = fields


class MemberWriteSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)

    def validate_username(self, value):
        user = get_user_model().objects.filter(username=value).first()
        if user is None:
            raise serializers.ValidationError(f"no user called {value!r}")
        return user


class ProjectSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    members = MemberSerializer(source="memberships", many=True, read_only=True)
    my_role = serializers.CharField(read_only=True, allow_null=True)
    experiment_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_by", "created_at", "my_role", "experiment_count", "members"]
        read_only_fields = ["id", "created_by", "created_at"]

    def create(self, validated_data):
        project = Project.create_for(self.context["request"].user, **validated_data)
        project.my_role, project.experiment_count = Role.OWNER, 0
        return project


# Datasets ---------------------------------------------------------------------------------------
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
        write_only=True, required=False, help_text="From POST /api/datasets/preview/: saves the previewed file."
    )
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
        from search_engine.data import BUILTIN_DATASETS

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
        from .permissions import require_role

        # Before any file is stored or loaded: a viewer's upload must cost nothing.
        require_role(attrs["project"], self.context["request"].user, Role.EDITOR)
        upload, token = attrs.pop("file", None), attrs.pop("upload_token", None)
        self._staged = None
        source = attrs.get("source")
        if source is None and upload is None and not token:
            source = attrs["source"] = DatasetSource.BUILTIN
        if source != DatasetSource.BUILTIN:
            return self._validate_upload(attrs, upload, token)
        from search_engine.data import load_dataset

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
        from search_engine.data import DatasetError

        from .. import uploads

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
            from ..uploads import save_dataset

            return save_dataset(self._staged, project=validated_data["project"], name=validated_data["name"],
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
    upload_token = serializers.CharField(required=False)
    options = serializers.JSONField(required=False, help_text='Loader options, e.g. {"target": "species"}.')

    def validate(self, attrs):
        from .. import uploads
        from .permissions import require_role

        user = self.context["request"].user
        require_role(attrs["project"], user, Role.EDITOR)
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


# Experiments ------------------------------------------------------------------------------------
def _config_error(kind: str, exc: ConfigError) -> dict:
    """Registry lookups fail on the name field (`space`); option errors on `<kind>_config`."""
    if exc.field == kind:
        return {kind: [exc.reason]}
    return {f"{kind}_config": [f"{exc.field}: {exc.reason}"]}


def _placeholder_task(dataset: Dataset) -> Task:
    """A Task with the dataset's shape and no rows: enough for a space to build a network."""
    empty = torch.zeros((0, *dataset.input_shape))
    labels = torch.zeros(0, dtype=torch.long)
    return Task(dataset.name, empty, labels, empty, labels, empty, labels, tuple(dataset.input_shape),
                max(dataset.num_classes, 2))  # fmt: skip


def check_space_fits(space, dataset: Dataset) -> None:
    """Build one network of the space for the dataset's shape (on the meta device: no memory, no
    initialisation, milliseconds even for large spaces), so a space that needs images refuses
    tabular data now rather than in every trial."""
    if not dataset.input_shape:
        return
    arch, task = space.sample(np.random.default_rng(0)), _placeholder_task(dataset)
    try:
        try:
            with torch.device("meta"):
                space.build(arch, task)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001  (something in the builder needs real tensors)
            space.build(arch, task)
    except ConfigError as exc:
        raise serializers.ValidationError({"space": [exc.reason]}) from None
    except Exception as exc:  # noqa: BLE001  (a person gets the reason, not a 500)
        raise serializers.ValidationError(
            {"space": [f"{space.name} can not build a network for {dataset.name!r}: {exc}"]}
        ) from None


def _create_estimator(name: str, config: dict):
    """create_estimator, with the `tabular` estimator's table given by name: it must be one of the
    CSV files in TABULAR_BENCHMARK_DIR (never a path of the person's choosing), and is stored by name."""
    if name != "tabular":
        return create_estimator(name, **config)
    from ..benchmarks import resolve_table

    table = config.get("path", "")
    estimator = create_estimator(name, **{**config, "path": str(resolve_table(table))})
    estimator.config["path"] = table
    return estimator


class BestTrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = ["id", "number", "objective", "metrics"]
        read_only_fields = fields


class ConstraintsField(serializers.JSONField):
    """{"max_params", "max_flops", "max_size_mb", "max_latency_ms"} (null = unconstrained),
    checked by the engine's Constraints; stored with every key, so readers need no defaults."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data) or {}
        if not isinstance(data, dict):
            raise serializers.ValidationError("expected an object like {\"max_params\": 100000}")
        try:
            constraints = Constraints.from_dict(data)
        except ConfigError as exc:
            raise serializers.ValidationError(f"{exc.field}: {exc.reason}") from None
        except TypeError as exc:
            raise serializers.ValidationError(str(exc)) from None
        out = {name: getattr(constraints, name) for name in CONSTRAINT_FIELDS}
        if "latency_device" in data:
            out["latency_device"] = constraints.latency_device
        return out

    def to_representation(self, value):
        return {**dict.fromkeys(CONSTRAINT_FIELDS), **(value or {})}


class ExperimentSerializer(serializers.ModelSerializer):
    project = UserProjectField()
    dataset = UserDatasetField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    constraints = ConstraintsField(required=False)
    budget_trials = serializers.IntegerField(min_value=1, max_value=MAX_BUDGET_TRIALS, default=20)
    budget_wall_time_s = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    parallelism = serializers.IntegerField(min_value=1, max_value=MAX_PARALLELISM, default=1)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    device = serializers.ChoiceField(choices=DEVICES, default="cpu")
    space_config = serializers.JSONField(required=False)
    strategy = serializers.CharField(
        max_length=50, required=False,
        help_text="A registered strategy. Leave it out with `oneshot`: the job's top architectures train "
                  "through the `fixed` strategy.",
    )  # fmt: skip
    strategy_config = serializers.JSONField(required=False)
    estimator_config = serializers.JSONField(required=False)
    oneshot = serializers.JSONField(
        required=False,
        help_text='A one-shot method run before the trials, e.g. {"name": "darts", "config": {"epochs": 10}} '
                  "(nb201 only; see GET /api/registry/ `oneshot`); {} for an ordinary search.",
    )  # fmt: skip
    trial_counts = serializers.SerializerMethodField()
    best = serializers.SerializerMethodField()
    my_role = serializers.CharField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Experiment
        fields = [
            "id", "project", "dataset", "name", "description",
            "space", "space_config", "strategy", "strategy_config", "estimator", "estimator_config",
            "constraints", "budget_trials", "budget_wall_time_s", "parallelism", "seed", "device",
            "oneshot", "oneshot_result",
            "status", "status_message", "cloned_from", "created_by", "created_at", "updated_at", "started_at",
            "finished_at", "trial_counts", "best", "my_role",
        ]  # fmt: skip
        read_only_fields = [
            "id", "oneshot_result", "status", "status_message", "cloned_from", "created_by", "created_at",
            "updated_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["project"].read_only = True  # an experiment never moves between projects
        return fields

    @extend_schema_field(
        {"type": "object", "additionalProperties": {"type": "integer"}, "example": {"completed": 3, "running": 1}}
    )
    def get_trial_counts(self, experiment) -> dict:
        counts = getattr(experiment, "trial_counts", None)
        if counts is None:
            Experiment.attach_trial_summaries([experiment])
            counts = experiment.trial_counts
        return counts

    @extend_schema_field(BestTrialSerializer(allow_null=True))
    def get_best(self, experiment):
        if not hasattr(experiment, "best"):
            Experiment.attach_trial_summaries([experiment])
        return BestTrialSerializer(experiment.best).data if experiment.best else None

    def _current(self, attrs: dict, name: str):
        """The value after this write: from the request, else (partial update) from the row."""
        if name in attrs:
            return attrs[name]
        if self.instance is not None:
            return getattr(self.instance, name)
        return {} if name.endswith("_config") else None

    def validate(self, attrs):
        errors: dict[str, list[str]] = {}
        project_id = attrs["project"].pk if "project" in attrs else getattr(self.instance, "project_id", None)
        dataset = self._current(attrs, "dataset")
        if dataset is not None and project_id is not None and dataset.project_id != project_id:
            errors["dataset"] = ["must belong to the experiment's project"]

        oneshot = self._current(attrs, "oneshot") or {}
        if oneshot:
            self._oneshot_strategy(attrs, errors)
        elif not self._current(attrs, "strategy"):
            errors["strategy"] = ["This field is required."]

        for kind in ("space", "strategy", "estimator"):
            config = self._current(attrs, f"{kind}_config") or {}
            if not isinstance(config, dict):
                errors[f"{kind}_config"] = ["expected an object of options, e.g. {}"]

        def build(kind: str, factory):
            if errors.get(f"{kind}_config"):
                return None
            try:
                component = factory(**(self._current(attrs, f"{kind}_config") or {}))
            except ConfigError as exc:
                errors.update(_config_error(kind, exc))
                return None
            except (TypeError, ValueError) as exc:  # a value no Option expected: still the person's to fix
                errors[f"{kind}_config"] = [str(exc)]
                return None
            attrs[f"{kind}_config"] = dict(component.config)  # stored resolved: every default spelled out
            return component

        space = build("space", lambda **cfg: create_space(self._current(attrs, "space"), **cfg))
        if space is not None and "strategy" not in errors:
            seed = self._current(attrs, "seed") or 0
            build("strategy", lambda **cfg: create_strategy(self._current(attrs, "strategy"), space, seed=seed, **cfg))
            if oneshot:
                self._validate_oneshot(attrs, oneshot, space, seed, errors)
        build("estimator", lambda **cfg: _create_estimator(self._current(attrs, "estimator"), cfg))
        if space is not None and dataset is not None and "dataset" not in errors:
            try:
                check_space_fits(space, dataset)
            except serializers.ValidationError as exc:
                errors.update(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _oneshot_strategy(self, attrs: dict, errors: dict) -> None:
        """A one-shot experiment's trials retrain the job's top architectures: its strategy is
        `fixed`, filled in when the job ends (until then an empty list that stops)."""
        if "strategy" in attrs and attrs["strategy"] != "fixed":
            errors["strategy"] = ["a one-shot experiment trains the job's top architectures with the `fixed` "
                                  "strategy; leave strategy out"]  # fmt: skip
            return
        if self._current(attrs, "strategy") != "fixed":  # left out, or a draft that had another strategy
            attrs["strategy"] = "fixed"
            attrs.setdefault("strategy_config", {"then": "stop"})
        elif self.instance is None:
            attrs.setdefault("strategy_config", {"then": "stop"})

    def _validate_oneshot(self, attrs: dict, oneshot, space, seed: int, errors: dict) -> None:
        """{"name", "config"} checked by building the job (create_oneshot); stored resolved."""
        if not isinstance(oneshot, dict) or set(oneshot) - {"name", "config"} or "name" not in oneshot:
            errors["oneshot"] = ['expected {"name": "supernet" or "darts", "config": {...options}}']
            return
        config = oneshot.get("config") or {}
        if not isinstance(config, dict):
            errors["oneshot"] = ["config: expected an object of options, e.g. {}"]
            return
        try:
            job = create_oneshot(str(oneshot["name"]), space, seed=seed, **config)
        except ConfigError as exc:
            field = "name" if exc.field == ONESHOT.kind else exc.field
            errors["oneshot"] = [f"{field}: {exc.reason}"]
            return
        except (TypeError, ValueError) as exc:
            errors["oneshot"] = [str(exc)]
            return
        attrs["oneshot"] = {"name": job.name, "config": dict(job.config)}

    def create(self, validated_data):
        validated_data.setdefault("constraints", dict.fromkeys(CONSTRAINT_FIELDS))
        return Experiment.objects.create(created_by=self.context["request"].user, **validated_data)

    def update(self, experiment, validated_data):
        # Conditional on still being a draft: saving the whole row would write back the status this
        # request read, undoing a start that committed in between.
        updated = Experiment.objects.filter(pk=experiment.pk, status=ExperimentStatus.DRAFT).update(
            updated_at=timezone.now(), **validated_data
        )
        if not updated:
            experiment.refresh_from_db(fields=["status"])
            raise StateError(f"only draft experiments can be edited; this one is {experiment.status}")
        experiment.refresh_from_db()
        return experiment


# Trials -------------------------------------------------------------------------------------------
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
        # Lists show the last line (the exception) only; the detail view has the whole traceback summary.
        lines = (trial.error or "").strip().splitlines()
        data["error"] = lines[-1][:300] if lines else ""
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
    """The fields of broadcast.artifact_summary (events carry the same shape)."""

    trial_number = serializers.IntegerField(source="trial.number", read_only=True, allow_null=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "experiment", "trial", "trial_number", "kind", "status", "progress", "error", "size_bytes",
                  "checksum", "metrics", "created_at", "finished_at", "download_url"]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, artifact) -> str:
        from django.urls import reverse

        return reverse("api:artifact-download", args=[artifact.pk])


# Snapshot (documentation only: the view builds it with broadcast.trial_summary) ---------------------
class SnapshotSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="Sequence number read before the queries: apply events after it.")
    experiment = ExperimentSerializer()
    trials = serializers.ListField(child=serializers.DictField(), help_text="broadcast.trial_summary of every trial")
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


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()

