"""Query-string filters (django-filter) and an ordering that keeps unscored rows last.

Every filter on a related row takes a plain id (IdFilter) and filters the user's own rows by it,
so another team's id and an id that exists nowhere give the same empty list: a filter never says
whether a row the user may not see exists. (A model-choice filter would check the id against
every row of the table: 200 for another team's id, 400 for a missing one.)"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import F
from rest_framework.filters import OrderingFilter

from ..choices import ExperimentStatus, TrialState
from ..models import Artifact, Dataset, Experiment, Trial

# Primary keys are 64-bit: a longer number is no id (and would overflow the database's integer).
MAX_ID = 2**63 - 1
ID_REGEX = r"\d{1,18}"


class IdField(forms.IntegerField):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=0, max_value=MAX_ID, **kwargs)


class IdFilter(django_filters.NumberFilter):
    """?<name>=<id> of a related row; `field_name` is the column (project_id)."""

    field_class = IdField


class DatasetFilter(django_filters.FilterSet):
    project = IdFilter(field_name="project_id")

    class Meta:
        model = Dataset
        fields = ["project", "source", "kind"]


class ExperimentFilter(django_filters.FilterSet):
    project = IdFilter(field_name="project_id")
    dataset = IdFilter(field_name="dataset_id")
    # ?status=running&status=queued
    status = django_filters.MultipleChoiceFilter(choices=ExperimentStatus.choices)

    class Meta:
        model = Experiment
        fields = ["project", "dataset", "status", "space", "strategy", "estimator"]


class TrialFilter(django_filters.FilterSet):
    experiment = IdFilter(field_name="experiment_id")
    # ?state=completed&state=pruned
    state = django_filters.MultipleChoiceFilter(choices=TrialState.choices)
    min_objective = django_filters.NumberFilter(field_name="objective", lookup_expr="gte")

    class Meta:
        model = Trial
        fields = ["experiment", "state", "fingerprint"]


class ArtifactFilter(django_filters.FilterSet):
    experiment = IdFilter(field_name="experiment_id")
    trial = IdFilter(field_name="trial_id")

    class Meta:
        model = Artifact
        fields = ["experiment", "kind", "trial", "status"]


class NullsLastOrderingFilter(OrderingFilter):
    """`?ordering=-objective` puts trials without an objective last on every database (PostgreSQL
    sorts NULL first when descending, SQLite last), and ties are broken by `view.ordering_tiebreak`
    so that limit/offset pages never overlap."""

    def filter_queryset(self, request, queryset, view):
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        terms = []
        for term in ordering:
            field = term.lstrip("-")
            expression = F(field)
            terms.append(expression.desc(nulls_last=True) if term.startswith("-") else expression.asc(nulls_last=True))
        named = {term.lstrip("-") for term in ordering}
        terms.extend(F(f).asc() for f in getattr(view, "ordering_tiebreak", ("pk",)) if f not in named)
        return queryset.order_by(*terms)
