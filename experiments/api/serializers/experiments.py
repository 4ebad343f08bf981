"""Experiments: explicit fields, and every component and option checked by building it through
the engine's registries (components.COMPONENTS). A bad option is a 400 naming the field and the
reason (`{"strategy_config": ["population_size: must be >= 2, got 1"]}`), never a silent default."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from search_engine.constraints import Constraints
from search_engine.oneshot import create_oneshot
from search_engine.registry import ConfigError, create_space, create_strategy
from search_engine.rules import CONSTRAINT_KEYS

from ...choices import ExperimentStatus
from ...models import Experiment, StateError, Trial
from .common import (
    DEVICES,
    MAX_BUDGET_TRIALS,
    MAX_BUDGET_WALL_TIME_S,
    MAX_DESCRIPTION_LENGTH,
    MAX_PARALLELISM,
    UserDatasetField,
    UserProjectField,
)
from .components import COLUMN_KINDS, COMPONENTS, check_space_fits, create_tabular_aware_estimator

# What a copy of an experiment takes over: everything that decides what it searches, seed included.
CLONED_FIELDS = (
    "project", "dataset", "description", "space", "space_config", "strategy", "strategy_config", "estimator",
    "estimator_config", "constraints", "budget_trials", "budget_wall_time_s", "parallelism", "seed", "device",
    "oneshot",
)  # fmt: skip
# A one-shot experiment's `fixed` strategy before its job has filled in the architectures.
ONESHOT_STRATEGY_CONFIG = {"archs": [], "then": "stop"}


def clone_config(source: Experiment) -> dict:
    """The fields of a copy of `source` (the API's clone and the page's "clone and edit" alike):
    its name with " (copy)" and every configuration field. A one-shot job runs again in the copy,
    so its `fixed` list and its trimmed trial budget (the job's result) go back to what was asked."""
    config = {name: getattr(source, name) for name in CLONED_FIELDS}
    config["name"] = f"{source.name} (copy)"[:100]
    if source.oneshot:
        requested = (source.oneshot_result or {}).get("budget_trials_requested", source.budget_trials)
        config.update(strategy="fixed", strategy_config=dict(ONESHOT_STRATEGY_CONFIG), budget_trials=requested)
    return config


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
        out = {name: getattr(constraints, name) for name in CONSTRAINT_KEYS}
        if "latency_device" in data:
            out["latency_device"] = constraints.latency_device
        return out

    def to_representation(self, value):
        return {**dict.fromkeys(CONSTRAINT_KEYS), **(value or {})}


class ExperimentSerializer(serializers.ModelSerializer):
    project = UserProjectField()
    dataset = UserDatasetField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    constraints = ConstraintsField(required=False)
    budget_trials = serializers.IntegerField(min_value=1, max_value=MAX_BUDGET_TRIALS, default=20)
    budget_wall_time_s = serializers.IntegerField(min_value=1, max_value=MAX_BUDGET_WALL_TIME_S, allow_null=True,
                                                  required=False)  # fmt: skip
    description = serializers.CharField(max_length=MAX_DESCRIPTION_LENGTH, allow_blank=True, required=False)
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
        space = self._validate_components(attrs, oneshot, errors)
        if space is not None and dataset is not None and "dataset" not in errors:
            try:
                check_space_fits(space, dataset)
            except serializers.ValidationError as exc:
                errors.update(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _validate_components(self, attrs: dict, oneshot, errors: dict):
        """Build every component the config names (the one check of names and options), storing
        each config resolved, every default spelled out. Returns the space, or None if it failed."""
        for kind in COLUMN_KINDS:
            if not isinstance(self._current(attrs, f"{kind}_config") or {}, dict):
                errors[f"{kind}_config"] = ["expected an object of options, e.g. {}"]

        def build(kind: str, factory):
            if errors.get(f"{kind}_config"):
                return None
            config = self._current(attrs, f"{kind}_config") or {}
            component = _build(kind, self._current(attrs, kind), factory, config, errors)
            if component is not None:
                attrs[f"{kind}_config"] = dict(component.config)
            return component

        name = self._current
        space = build("space", lambda **cfg: create_space(name(attrs, "space"), **cfg))
        if space is not None and "strategy" not in errors:
            seed = name(attrs, "seed") or 0
            build("strategy", lambda **cfg: create_strategy(name(attrs, "strategy"), space, seed=seed, **cfg))
            if oneshot:
                self._validate_oneshot(attrs, oneshot, space, seed, errors)
        build("estimator", lambda **cfg: create_tabular_aware_estimator(name(attrs, "estimator"), cfg))
        return space

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
        """{"name", "config"} checked by building the job, like every component; stored resolved."""
        if not isinstance(oneshot, dict) or set(oneshot) - {"name", "config"} or "name" not in oneshot:
            errors["oneshot"] = ['expected {"name": "supernet" or "darts", "config": {...options}}']
            return
        config = oneshot.get("config") or {}
        if not isinstance(config, dict):
            errors["oneshot"] = ["config: expected an object of options, e.g. {}"]
            return
        method = str(oneshot["name"])
        job = _build("oneshot", method, lambda **cfg: create_oneshot(method, space, seed=seed, **cfg), config, errors)
        if job is not None:
            attrs["oneshot"] = {"name": job.name, "config": dict(job.config)}

    def create(self, validated_data):
        validated_data.setdefault("constraints", dict.fromkeys(CONSTRAINT_KEYS))
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


def _build(kind: str, name, factory, config: dict, errors: dict):
    """factory(**config) (the engine validates every option, maxima included), or None with the
    reason added to `errors` under the component's field."""
    component = COMPONENTS[kind]
    try:
        return factory(**config)
    except ConfigError as exc:
        errors.update(component.error(exc))
    except (TypeError, ValueError) as exc:  # a value no Option expected: still the person's to fix
        errors[component.config_field] = [str(exc)]
    return None
