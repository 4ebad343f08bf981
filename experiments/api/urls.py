"""Everything under /api/. Names live in the "api" namespace (reverse("api:experiment-detail")),
so they never clash with the pages' names."""

from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import compare, datasets, downloads, team, views
from .auth import ObtainExpiringToken
from .filters import ID_REGEX


class IdConverter:
    """<id:pk>: like <int:pk>, but a number longer than any primary key is no route (404) rather
    than an integer the database can not hold (a 500)."""

    regex = ID_REGEX

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")

app_name = "api"

router = DefaultRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register("datasets", datasets.DatasetViewSet, basename="dataset")
router.register("experiments", views.ExperimentViewSet, basename="experiment")
router.register("trials", views.TrialViewSet, basename="trial")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")
router.register("comments", team.CommentViewSet, basename="comment")

urlpatterns = [
    path("registry/", views.RegistryView.as_view(), name="registry"),
    path("auth/token/", ObtainExpiringToken.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    # Compare and exports (experiments/api/compare.py), before the router so "compare" is no id.
    path("experiments/compare/", compare.CompareView.as_view(), name="experiment-compare"),
    path("experiments/<id:pk>/trials.csv", compare.TrialExportView.as_view(), {"fmt": "csv"},
         name="experiment-trials-csv"),  # fmt: skip
    path("experiments/<id:pk>/trials.json", compare.TrialExportView.as_view(), {"fmt": "json"},
         name="experiment-trials-json"),  # fmt: skip
    path("projects/<id:pk>/activity/", team.ProjectActivityView.as_view(), name="project-activity"),
    # Model packages on request (experiments/api/downloads.py).
    path("trials/<id:pk>/package/", downloads.TrialPackageView.as_view(), name="trial-package"),
    path("experiments/<id:pk>/retrain/", downloads.ExperimentRetrainView.as_view(), name="experiment-retrain"),
    path("", include(router.urls)),
]
