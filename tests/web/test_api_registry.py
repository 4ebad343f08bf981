"""/api/registry/, the OpenAPI schema and the docs page."""

from __future__ import annotations

import json

import pytest

from search_engine.registry import ESTIMATORS, SPACES, STRATEGIES

pytestmark = pytest.mark.django_db


def test_it_lists_every_registered_component(viewer_client):
    body = viewer_client.get("/api/registry/").json()
    assert set(body) == {"spaces", "strategies", "estimators", "oneshot", "benchmark_tables", "datasets", "devices"}
    assert set(body["spaces"]) == set(SPACES.names())
    assert set(body["strategies"]) == set(STRATEGIES.names())
    assert set(body["estimators"]) == set(ESTIMATORS.names())
    assert body["strategies"]["evolution"]["options"]["population_size"]["min"] == 2
    assert {"digits", "iris"} <= set(body["datasets"])
    assert body["devices"] == ["cpu", "cuda", "auto"]


def test_it_needs_a_login_for_the_registry(api_client):
    assert api_client.get("/api/registry/").status_code in (401, 403)


def test_it_serves_the_openapi_schema_as_json_and_yaml(viewer_client):
    response = viewer_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in ("/api/experiments/", "/api/experiments/{id}/start/", "/api/experiments/{id}/snapshot/",
                 "/api/trials/", "/api/trials/{id}/", "/api/registry/", "/api/auth/token/", "/api/datasets/"):  # fmt: skip
        assert path in paths, path
    assert "409" in paths["/api/experiments/{id}/start/"]["post"]["responses"]

    response = viewer_client.get("/api/schema/")
    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_it_serves_the_docs_page_without_a_cdn(viewer_client):
    response = viewer_client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs", "googleapis"):
        assert cdn not in html


def test_it_serves_the_sidecar_files_themselves(viewer_client, client):
    response = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert response.status_code == 200
