"""Websocket URLs (nasweb/asgi.py wraps them in the origin check and session authentication)."""

from django.urls import path

from .consumers import ExperimentConsumer, ProjectConsumer

websocket_urlpatterns = [
    path("ws/experiments/<int:pk>/", ExperimentConsumer.as_asgi()),
    path("ws/projects/<int:pk>/", ProjectConsumer.as_asgi()),
]
