"""Everything under /api/. Names live in the "api" namespace (reverse("api:experiment-detail")),
so they never clash with the pages' names."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from . import views

app_name = "api"

router = DefaultRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("experiments", views.ExperimentViewSet, basename="experiment")
router.register("trials", views.TrialViewSet, basename="trial")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")

urlpatterns = [
    path("registry/", views.RegistryView.as_view(), name="registry"),
    path("auth/token/", obtain_auth_token, name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("", include(router.urls)),
]
