"""Query-string filters (django-filter) and an ordering that keeps unscored rows last."""

from __future__ import annotations

import django_filters
from django.db.models import F
from rest_framework.filters import OrderingFilter

from ..choices import ExperimentStatus, TrialState
from ..models import Dataset, Experiment, Trial


class DatasetFilter(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")

    class Meta:
        model = Dataset
        fields = ["project", "source", "kind"]


class ExperimentFilter(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")
    dataset = django_filters.NumberFilter(field_name="dataset_id")
    # ?status=running&status=queued
    status = django_filters.MultipleChoiceFilter(choices=ExperimentStatus.choices)

    class Meta:
        model = Experiment
        fields = ["project", "dataset", "status", "space", "strategy", "estimator"]


class TrialFilter(django_filters.FilterSet):
    experiment = django_filters.NumberFilter(field_name="experiment_id")
    # ?state=completed&state=pruned
    state = django_filters.MultipleChoiceFilter(choices=TrialState.choices)
    min_objective = django_filters.NumberFilter(field_name="objective", lookup_expr="gte")

    class Meta:
        model = Trial
        fields = ["experiment", "state", "fingerprint"]


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
