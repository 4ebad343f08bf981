"""Page forms. The new-experiment form builds its inputs from the engine registries and leaves
every rule to the engine (Option.coerce) and to the API's ExperimentSerializer, so a config the
page accepts is exactly a config the API accepts; "clone and edit" prefills it from the same
clone_config the API's clone uses. Then the team pages' forms: sign-up, invite, role, comment."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages as flash
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.forms.utils import pretty_name

from search_engine.data import BUILTIN_DATASETS
from search_engine.registry import ConfigError
from search_engine.rules import CONSTRAINT_KEYS
from search_engine.runtime import DEVICES

from .api.serializers import (
    COLUMN_KINDS,
    COMPONENTS,
    MAX_DESCRIPTION_LENGTH,
    DatasetSerializer,
    ExperimentSerializer,
    clone_config,
)
from .choices import DatasetSource, Role
from .engine.tables import list_tables
from .models import Comment, Experiment, NoSuchUser, Project, find_user

# The "Method" select: a search strategy proposes candidates one by one, or a one-shot method
# trains one supernet and hands its top architectures to the trials.
METHOD_SEARCH = "search"
ONESHOT_PREFIX = "oneshot:"
ONESHOT_LABELS = {"supernet": "One-shot: supernet (weight sharing)", "darts": "One-shot: DARTS"}
TABULAR_PATH_FIELD = "estimator__tabular__path"
BUILTIN_PREFIX = "builtin:"
# Options the page does not offer because the experiment decides them: its one device field (the
# worker applies it, and its own torch threads, to every estimator: engine/build.py).
EXPERIMENT_DECIDES = {"estimator": ("device", "threads")}
# Each column kind's initial choice, where the registry has it.
INITIAL_COMPONENTS = {"space": "mlp", "strategy": "random", "estimator": "train"}
# Serializer fields that map one to one onto a form field of the same name.
DIRECT_FIELDS = (
    "name",
    "description",
    "space",
    "strategy",
    "estimator",
    "budget_trials",
    "budget_wall_time_s",
    "parallelism",
    "seed",
    "device",
)


class ProjectForm(forms.ModelForm):
    # The API's limit: the model's TextField has none.
    description = forms.CharField(required=False, max_length=MAX_DESCRIPTION_LENGTH,
                                  widget=forms.Textarea(attrs={"rows": 3}))  # fmt: skip

    class Meta:
        model = Project
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


def option_field_name(kind: str, component: str, option: str) -> str:
    return f"{kind}__{component}__{option}"


def _option_form_field(described: dict) -> forms.Field:
    """A typed input for one registry option; ranges become browser hints only, the engine
    decides (Option.coerce) so the rules live in one place."""
    kind, default, choices = described["type"], described["default"], described["choices"]
    hint = described["help"]
    bounds = [
        f"min {described['min']:g}" if described["min"] is not None else "",
        f"max {described['max']:g}" if described["max"] is not None else "",
    ]
    help_text = "; ".join(p for p in [hint, *bounds, f"default {_show(default)}"] if p)
    attrs = {k: described[k] for k in ("min", "max") if described[k] is not None}
    if kind == "bool":
        return forms.BooleanField(required=False, initial=default, help_text=help_text)
    if choices is not None and kind == "list":
        return forms.MultipleChoiceField(
            required=False,
            initial=default,
            help_text=help_text,
            choices=[(c, c) for c in choices],
            widget=forms.CheckboxSelectMultiple,
        )
    if choices is not None:
        return forms.TypedChoiceField(
            required=False,
            initial=default,
            help_text=help_text,
            choices=[(c, c) for c in choices],
            coerce=type(choices[0]) if choices else str,
        )
    if kind == "int":
        return forms.IntegerField(
            required=False,
            initial=default,
            help_text=help_text,
            widget=forms.NumberInput(attrs={**attrs, "step": 1}),
        )
    if kind == "float":
        return forms.FloatField(
            required=False,
            initial=default,
            help_text=help_text,
            widget=forms.NumberInput(attrs={**attrs, "step": "any"}),
        )
    if kind == "list":
        initial = ", ".join(map(str, default or []))
        help_text += "; comma-separated, or a JSON array"
        return forms.CharField(required=False, initial=initial, help_text=help_text)
    return forms.CharField(required=False, initial=default, help_text=help_text)


def _show(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "empty"
    return str(value)


def name_number_errors(form: forms.Form) -> None:
    """A number input's error says which input and what it needs, so "abc" typed as the epochs
    reads "epochs must be a whole number." next to the input, never a silent default."""
    for name, field in form.fields.items():
        if isinstance(field, (forms.IntegerField, forms.FloatField)):
            label = field.label or pretty_name(name)
            kind = "a whole number" if isinstance(field, forms.IntegerField) else "a number"
            field.error_messages["invalid"] = f"{label} must be {kind}."


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, max_length=MAX_DESCRIPTION_LENGTH,
                                  widget=forms.Textarea(attrs={"rows": 2}))  # fmt: skip
    dataset = forms.ChoiceField(
        help_text="A dataset of this project, or a built-in one (added to the project)."
    )
    space = forms.ChoiceField(label="Search space")
    method = forms.ChoiceField(
        label="Method", initial=METHOD_SEARCH,
        help_text="A search strategy trains candidates one by one; a one-shot method trains one supernet "
                  "(nb201), then its top architectures train as the trials.",
    )  # fmt: skip
    strategy = forms.ChoiceField(label="Search strategy", required=False)
    estimator = forms.ChoiceField(label="Performance estimation")
    max_params = forms.IntegerField(
        required=False,
        label="Max parameters",
        widget=forms.NumberInput(attrs={"min": 1, "placeholder": "no limit"}),
    )
    max_flops = forms.IntegerField(
        required=False,
        label="Max FLOPs",
        widget=forms.NumberInput(attrs={"min": 1, "placeholder": "no limit"}),
    )
    max_size_mb = forms.FloatField(
        required=False,
        label="Max size (MB)",
        widget=forms.NumberInput(attrs={"min": 0, "step": "any", "placeholder": "no limit"}),
    )
    max_latency_ms = forms.FloatField(
        required=False,
        label="Max latency (ms)",
        help_text="median batch-1 forward pass, measured after training",
        widget=forms.NumberInput(attrs={"min": 0, "step": "any", "placeholder": "no limit"}),
    )
    budget_trials = forms.IntegerField(initial=20, label="Trials", widget=forms.NumberInput(attrs={"min": 1}))
    budget_wall_time_s = forms.IntegerField(
        required=False,
        label="Wall time (s)",
        widget=forms.NumberInput(attrs={"min": 1, "placeholder": "no limit"}),
    )
    parallelism = forms.IntegerField(
        initial=1, help_text="trials running at the same time", widget=forms.NumberInput(attrs={"min": 1})
    )
    seed = forms.IntegerField(initial=0, widget=forms.NumberInput(attrs={"min": 0}))
    device = forms.ChoiceField(choices=[(d, d) for d in DEVICES], initial="cpu")
    start_now = forms.BooleanField(required=False, initial=True, label="Start right away")

    def __init__(self, project: Project, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.datasets = list(project.datasets.all())
        have = {d.builtin_name for d in self.datasets if d.source == DatasetSource.BUILTIN}
        self.fields["dataset"].choices = [
            (
                "Project datasets",
                [(str(d.pk), f"{d.name} ({d.kind}, {d.num_rows} rows)") for d in self.datasets],
            ),
            (
                "Built-in",
                [
                    (BUILTIN_PREFIX + name, f"{name}: {text}")
                    for name, text in BUILTIN_DATASETS.items()
                    if name not in have
                ],
            ),
        ]
        self._add_component_fields()

    def _add_component_fields(self) -> None:
        """A select per column kind, the "Method" select, and an input per option of every
        component: one loop over the registries, one-shot methods included."""
        self.descriptions = {kind: component.describe() for kind, component in COMPONENTS.items()}
        for kind, described in self.descriptions.items():
            for component, info in described.items():
                decided = EXPERIMENT_DECIDES.get(kind, ())
                info["options"] = {k: o for k, o in info["options"].items() if k not in decided}
                for option, option_info in info["options"].items():
                    field = _option_form_field(option_info)
                    field.label = option
                    self.fields[option_field_name(kind, component, option)] = field
        for kind in COLUMN_KINDS:
            self.fields[kind].choices = [(name, name) for name in self.descriptions[kind]]
            initial = INITIAL_COMPONENTS[kind]
            self.fields[kind].initial = initial if initial in self.descriptions[kind] else None
        self.fields["method"].choices = [(METHOD_SEARCH, "Search strategy")] + [
            (ONESHOT_PREFIX + name, ONESHOT_LABELS.get(name, f"One-shot: {name}")) for name in self.descriptions["oneshot"]
        ]
        if TABULAR_PATH_FIELD in self.fields:
            tables = list_tables()
            self.fields[TABULAR_PATH_FIELD] = forms.ChoiceField(
                label="path", required=False, choices=[("", "— pick a table —")] + [(t, t) for t in tables],
                help_text="a CSV table from the server's benchmark folder (TABULAR_BENCHMARK_DIR)" if tables
                else "no tables yet: an administrator puts CSV files in the server's TABULAR_BENCHMARK_DIR",
            )  # fmt: skip
        name_number_errors(self)

    # -- rendering ---------------------------------------------------------------------------
    def _components(self, kind: str) -> list[dict]:
        """Per component of a registry: its name, help and option inputs."""
        return [
            {"name": name, "help": info["help"],
             "fields": [self[option_field_name(kind, name, opt)] for opt in info["options"]]}
            for name, info in self.descriptions[kind].items()
        ]  # fmt: skip

    def component_groups(self) -> list[dict]:
        """Per column kind: the select and, per component, its help and option inputs (the page
        shows only the selected component's options)."""
        return [{"kind": kind, "field": self[kind], "components": self._components(kind)} for kind in COLUMN_KINDS]

    def oneshot_components(self) -> list[dict]:
        """Per one-shot method: the "Method" value that shows it, its help and its option inputs."""
        return [{**entry, "method": ONESHOT_PREFIX + entry["name"]} for entry in self._components("oneshot")]

    @property
    def oneshot_name(self) -> str | None:
        method = self.cleaned_data.get("method") or ""
        return method.removeprefix(ONESHOT_PREFIX) if method.startswith(ONESHOT_PREFIX) else None

    # -- validation ----------------------------------------------------------------------------
    def clean(self):
        data = super().clean()
        oneshot = self.oneshot_name
        for kind in COLUMN_KINDS:
            name = data.get(kind)
            if kind == "strategy" and oneshot:
                continue  # the one-shot job's top architectures are the trials (the `fixed` strategy)
            if not name:
                if kind == "strategy":
                    self.add_error(kind, "This field is required.")
                continue
            data[f"{kind}_config"] = self._options(kind, name, data)
        if oneshot:
            data["oneshot"] = {"name": oneshot, "config": self._options("oneshot", oneshot, data)}
        data["constraints"] = {k: data[k] for k in CONSTRAINT_KEYS if data.get(k) is not None}
        return data

    def _options(self, kind: str, name: str, data: dict) -> dict:
        """The typed values of one component's option inputs (empty ones: the engine's default)."""
        config = {}
        for option_name, option in COMPONENTS[kind].options(name).items():
            field_name = option_field_name(kind, name, option_name)
            raw = data.get(field_name)
            if raw is None or raw == "" or (option.type is list and raw == []):
                continue  # left empty: the engine's default applies
            if option.type is list and isinstance(raw, str) and raw.lstrip().startswith("["):
                # A JSON array, for lists whose items are not plain words (e.g. architectures).
                try:
                    raw = json.loads(raw)
                except ValueError as exc:
                    self.add_error(field_name, f"not a valid JSON array: {exc}")
                    continue
            try:
                config[option_name] = option.coerce(option_name, raw)
            except ConfigError as exc:
                self.add_error(field_name, exc.reason)
        return config

    def payload(self, dataset_id: int | None) -> dict:
        data = self.cleaned_data
        payload = {k: data.get(k) for k in DIRECT_FIELDS}
        payload.update(
            {
                "project": self.project.pk,
                "dataset": dataset_id,
                **{
                    key: data.get(key)
                    for key in ("space_config", "strategy_config", "estimator_config", "constraints", "oneshot")
                },
            }
        )
        if data.get("oneshot"):
            payload.pop("strategy", None)  # the serializer sets `fixed`
            payload.pop("strategy_config", None)
        return {k: v for k, v in payload.items() if v is not None}

    def save(self, request, **save_kwargs):
        """Validate (the form's types and the engine's option rules, then the API's serializer,
        so every error shows at once) and create the draft through the serializer. None, with
        the errors added to the fields, when anything is refused. A built-in dataset picked here
        is added to the project in the same transaction, so a refused form leaves nothing behind.
        `save_kwargs` set read-only fields of the new row (e.g. cloned_from)."""
        self.is_valid()
        with transaction.atomic():
            dataset_id = self._dataset_id(request) if "dataset" in self.cleaned_data else None
            serializer = ExperimentSerializer(data=self.payload(dataset_id), context={"request": request})
            if not serializer.is_valid():
                self._add_api_errors(serializer.errors)
            if self.errors:
                transaction.set_rollback(True)
                return None
            return serializer.save(**save_kwargs)  # the serializer records request.user as created_by

    def _dataset_id(self, request) -> int | None:
        choice = self.cleaned_data["dataset"]
        if not choice.startswith(BUILTIN_PREFIX):
            return int(choice)
        name = choice.removeprefix(BUILTIN_PREFIX)
        serializer = DatasetSerializer(
            data={
                "project": self.project.pk,
                "name": name,
                "source": DatasetSource.BUILTIN,
                "builtin_name": name,
            },
            context={"request": request},
        )
        if not serializer.is_valid():
            self._add_api_errors({"dataset": _flatten(serializer.errors)})
            return None
        return serializer.save().pk

    def _add_api_errors(self, errors: dict) -> None:
        """Put each API error next to the input it is about: `strategy_config: ["population_size:
        must be >= 2"]` goes to that option's input, `constraints` to the limit's input."""
        for key, messages in errors.items():
            if isinstance(messages, dict):  # nested: {"constraints": {"max_params": [...]}}
                for sub, sub_messages in messages.items():
                    self._add_api_errors({f"{key}.{sub}": sub_messages})
                continue
            for message in map(str, _flatten(messages)):
                field = self._field_for(key, message)
                if field is not None and field in self.errors:
                    continue  # the form already says what is wrong with this input
                prefix, sep, rest = message.partition(": ")
                if sep and field is not None and field.endswith(prefix):
                    message = rest  # the input already names the option
                self.add_error(field, message)

    def _field_for(self, key: str, message: str) -> str | None:
        prefix, _, rest = message.partition(":")
        if key == "oneshot":
            candidate = option_field_name("oneshot", self.oneshot_name or "", prefix.strip())
            return candidate if candidate in self.fields else "method"
        if key.endswith("_config") and key[: -len("_config")] in COLUMN_KINDS:
            kind = key[: -len("_config")]
            candidate = option_field_name(
                kind, self.cleaned_data.get(kind, ""), key.partition(".")[2] or prefix.strip()
            )
            return candidate if candidate in self.fields else kind
        if key.startswith("constraints"):
            sub = key.partition(".")[2] or prefix.strip()
            return sub if sub in CONSTRAINT_KEYS else None
        if key in self.fields:
            return key
        return None


def _flatten(messages) -> list:
    if isinstance(messages, dict):
        return [f"{k}: {m}" for k, v in messages.items() for m in _flatten(v)]
    if isinstance(messages, (list, tuple)):
        return [m for item in messages for m in _flatten(item)]
    return [messages]


# Clone and edit --------------------------------------------------------------------------------------
def _as_input(field: forms.Field, value):
    """A stored option value as its input shows it: lists of words comma-separated (as typed), any
    other list as JSON (the form parses both), so the saved clone gets the same values back."""
    if isinstance(value, list) and not isinstance(field, forms.MultipleChoiceField):
        if all(isinstance(v, str) and "," not in v for v in value) and value:
            return ", ".join(value)
        return json.dumps(value) if value else ""
    return value


def clone_initial(source: Experiment, form: ExperimentForm) -> dict:
    """The new-experiment form's values for a copy of `source` (serializers.clone_config, as the
    API's clone): name, dataset, components with every stored option, constraints, budget, seed
    and device. "Start right away" starts ticked, as on the new-experiment form."""
    config = clone_config(source)
    initial = {name: config[name] for name in DIRECT_FIELDS}
    initial["dataset"] = str(config["dataset"].pk)
    initial.update({k: v for k, v in (config["constraints"] or {}).items() if k in CONSTRAINT_KEYS and v is not None})
    components = [(kind, config[kind], config[f"{kind}_config"]) for kind in COLUMN_KINDS]
    if config["oneshot"]:
        initial["method"] = ONESHOT_PREFIX + config["oneshot"].get("name", "")
        components.append(("oneshot", config["oneshot"].get("name", ""), config["oneshot"].get("config")))
    for kind, component, options in components:
        for option, value in (options or {}).items():
            field_name = option_field_name(kind, component, option)
            if field_name in form.fields:  # an option the registry no longer has keeps its default
                initial[field_name] = _as_input(form.fields[field_name], value)
    return initial


class CloneForm(ExperimentForm):
    """The new-experiment form for a copy of `source`. The same inputs and the same validation (the
    form's types, the engine's options, the API's serializer); the one difference is that the new
    row names its source, which the serializer keeps read-only (an API client can not claim a
    lineage), so that the activity log says "cloned" and the page can link back."""

    def __init__(self, source: Experiment, *args, **kwargs):
        super().__init__(source.project, *args, **kwargs)
        self.source = source
        if not self.is_bound:
            self.initial = clone_initial(source, self)

    def save(self, request):
        return super().save(request, cloned_from=self.source)


# Accounts and teams ---------------------------------------------------------------------------------
class SignUpForm(UserCreationForm):
    email = forms.EmailField(help_text="Teammates can invite you to their projects by this address.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        # Invitations look users up by email, so one address must not name two accounts.
        email = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("an account with this email already exists; log in instead")
        return email


class InviteForm(forms.Form):
    user = forms.CharField(label="Username or email", max_length=254,
                           widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "vera or vera@example.com"}))  # fmt: skip
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def clean_user(self):
        try:
            return find_user(self.cleaned_data["user"])
        except NoSuchUser as exc:
            raise forms.ValidationError(str(exc)) from None


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class RenameForm(forms.Form):
    """A new name for an experiment or a dataset (both names are 100 characters at most)."""

    name = forms.CharField(max_length=100, label="Name")

    @classmethod
    def submit(cls, request, rename) -> None:
        """Validate the POSTed name, call rename(name), and tell the person what happened."""
        form = cls(request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
            flash.error(request, f"Not renamed: {errors}")
            return
        rename(form.cleaned_data["name"])
        flash.success(request, f"Renamed to “{form.cleaned_data['name']}”.")


class CommentForm(forms.Form):
    body = forms.CharField(label="Comment", max_length=Comment.MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))
