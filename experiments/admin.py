"""The admin: for operators looking into a stuck search, not for running searches. Rows that
workers own (trials, metric points, artifacts) are read-only here; JSON is shown pretty-printed."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from .models import Artifact, Dataset, Experiment, Membership, Project, Trial, TrialMetric


def pretty_json(field: str, label: str | None = None):
    def show(self, obj):
        return format_html("<pre style='margin:0'>{}</pre>", json.dumps(getattr(obj, field), indent=2, sort_keys=True))

    show.short_description = label or field.replace("_", " ")
    show.__name__ = f"{field}_pretty"
    return show


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_by", "created_at"]
    search_fields = ["name", "description"]
    list_select_related = ["created_by"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["project__name", "user__username"]
    list_select_related = ["project", "user"]
    autocomplete_fields = ["project", "user"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "source", "builtin_name", "kind", "num_classes", "num_rows", "created_at"]
    list_filter = ["source", "kind"]
    search_fields = ["name", "builtin_name", "project__name"]
    list_select_related = ["project"]
    class_names_pretty = pretty_json("class_names")
    options_pretty = pretty_json("options")
    readonly_fields = [
        "checksum", "size_bytes", "kind", "input_shape", "num_classes", "class_names_pretty", "class_counts",
        "num_rows", "created_at", "options_pretty",
    ]  # fmt: skip
    exclude = ["class_names", "options"]


class TrialInline(admin.TabularInline):
    model = Trial
    fields = ["number", "state", "objective", "attempt", "worker", "duration_s"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def get_queryset(self, request):
        # An experiment can have 10,000 trials; the inline shows the latest, the trial list the rest.
        queryset = super().get_queryset(request)
        ids = list(queryset.order_by("-number").values_list("pk", flat=True)[:50])
        return queryset.filter(pk__in=ids)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "status", "space", "strategy", "estimator", "budget_trials", "created_by",
                    "created_at"]  # fmt: skip
    list_filter = ["status", "space", "strategy", "estimator", "device"]
    search_fields = ["name", "project__name"]
    list_select_related = ["project", "created_by"]
    date_hierarchy = "created_at"
    space_config_pretty = pretty_json("space_config")
    strategy_config_pretty = pretty_json("strategy_config")
    estimator_config_pretty = pretty_json("estimator_config")
    constraints_pretty = pretty_json("constraints")
    strategy_state_pretty = pretty_json("strategy_state")
    readonly_fields = [
        "status", "created_by", "started_at", "finished_at", "created_at", "updated_at", "space_config_pretty",
        "strategy_config_pretty", "estimator_config_pretty", "constraints_pretty", "strategy_state_pretty",
    ]  # fmt: skip
    # Status moves through the model's verbs (workers race on it); configs through the API's validation.
    exclude = ["space_config", "strategy_config", "estimator_config", "constraints", "strategy_state"]
    raw_id_fields = ["dataset", "cloned_from"]
    inlines = [TrialInline]

    def save_model(self, request, obj, form, change):
        if change:
            # Workers move the status while this form is open; write back only what was edited here.
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            super().save_model(request, obj, form, change)


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["__str__", "experiment", "number", "state", "objective", "attempt", "worker", "duration_s",
                    "heartbeat_at"]  # fmt: skip
    list_filter = ["state"]
    search_fields = ["experiment__name", "fingerprint", "worker"]
    list_select_related = ["experiment"]
    show_full_result_count = False  # COUNT(*) over every trial on each page is the slow part
    arch_pretty = pretty_json("arch", "architecture")
    metrics_pretty = pretty_json("metrics")
    constraint_values_pretty = pretty_json("constraint_values")
    budget_pretty = pretty_json("budget")
    meta_pretty = pretty_json("meta")
    fields = [
        "experiment", "number", "state", "objective", "arch_pretty", "fingerprint", "budget_pretty", "meta_pretty",
        "metrics_pretty", "constraint_values_pretty", "attempt", "lease_token", "heartbeat_at", "worker", "error",
        "created_at", "started_at", "finished_at", "duration_s",
    ]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TrialMetric)
class TrialMetricAdmin(admin.ModelAdmin):
    list_display = ["trial", "step", "created_at"]
    list_select_related = ["trial"]
    raw_id_fields = ["trial"]
    values_pretty = pretty_json("values")
    fields = ["trial", "step", "values_pretty", "created_at"]
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["experiment", "trial", "kind", "size_bytes", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["experiment", "trial"]
    metrics_pretty = pretty_json("metrics")
    fields = ["experiment", "trial", "kind", "file", "size_bytes", "checksum", "metrics_pretty", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
