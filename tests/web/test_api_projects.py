"""/api/projects/: creation, roles, members; plus token authentication."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from experiments.choices import Role
from experiments.models import Membership, Project

pytestmark = pytest.mark.django_db


def test_it_makes_the_creator_owner(outsider_client, outsider):
    response = outsider_client.post("/api/projects/", {"name": "Speech", "description": "keyword spotting"})
    assert response.status_code == 201
    body = response.json()
    assert (body["my_role"], body["created_by"], body["experiment_count"]) == ("owner", "oscar", 0)
    assert body["members"] == [{"username": "oscar", "role": "owner", "created_at": body["members"][0]["created_at"]}]
    assert Project.objects.get(pk=body["id"]).role_of(outsider) == Role.OWNER


def test_it_lists_only_the_users_projects(viewer_client, project, outsider_project):
    body = viewer_client.get("/api/projects/").json()
    assert [p["name"] for p in body["results"]] == ["Vision"]
    assert body["results"][0]["my_role"] == "viewer"
    assert {m["username"]: m["role"] for m in body["results"][0]["members"]} == {
        "olivia": "owner", "eddie": "editor", "vera": "viewer",
    }  # fmt: skip


def test_it_lists_projects_with_a_constant_number_of_queries(owner_client, owner, experiment_factory,
                                                             django_assert_max_num_queries):  # fmt: skip
    experiment_factory()
    for i in range(15):
        Project.create_for(owner, f"Project {i}")
    with django_assert_max_num_queries(5):
        body = owner_client.get("/api/projects/").json()
    assert body["count"] == 16
    assert next(p for p in body["results"] if p["name"] == "Vision")["experiment_count"] == 1


@pytest.mark.parametrize(("role", "expected"), [("owner", 200), ("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_it_lets_only_owners_change_a_project(role, expected, project, client_for, request):
    client = client_for(request.getfixturevalue(role))
    response = client.patch(f"/api/projects/{project.pk}/", {"name": "Renamed"}, format="json")
    assert response.status_code == expected
    assert client.delete(f"/api/projects/{project.pk}/").status_code == (204 if role == "owner" else expected)


def test_it_refuses_to_delete_a_project_with_a_running_experiment(owner_client, project, experiment):
    experiment.start()
    assert owner_client.delete(f"/api/projects/{project.pk}/").status_code == 409
    experiment.cancel()
    assert owner_client.delete(f"/api/projects/{project.pk}/").status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()


def test_it_adds_and_changes_members(owner_client, project, outsider, viewer):
    url = f"/api/projects/{project.pk}/members/"
    response = owner_client.post(url, {"username": "oscar", "role": "editor"}, format="json")
    assert response.status_code == 200
    assert {"username": "oscar", "role": "editor"}.items() <= next(
        m for m in response.json() if m["username"] == "oscar"
    ).items()
    assert owner_client.post(url, {"username": "vera", "role": "editor"}, format="json").status_code == 200
    assert project.role_of(viewer) == Role.EDITOR
    response = owner_client.post(url, {"username": "nobody"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"username": ["no user called 'nobody'"]}


def test_it_removes_members_but_keeps_an_owner(owner_client, project, owner, viewer):
    assert owner_client.delete(f"/api/projects/{project.pk}/members/vera/").status_code == 204
    assert project.role_of(viewer) is None
    assert owner_client.delete(f"/api/projects/{project.pk}/members/vera/").status_code == 404
    response = owner_client.delete(f"/api/projects/{project.pk}/members/olivia/")
    assert response.status_code == 409
    response = owner_client.post(f"/api/projects/{project.pk}/members/", {"username": "olivia", "role": "viewer"},
                                 format="json")  # fmt: skip
    assert response.status_code == 409
    assert project.role_of(owner) == Role.OWNER


def test_it_lets_members_list_members_but_only_owners_change_them(editor_client, viewer_client, project):
    assert len(viewer_client.get(f"/api/projects/{project.pk}/members/").json()) == 3
    response = editor_client.post(f"/api/projects/{project.pk}/members/", {"username": "eddie", "role": "owner"},
                                  format="json")  # fmt: skip
    assert response.status_code == 403
    assert editor_client.delete(f"/api/projects/{project.pk}/members/vera/").status_code == 403
    assert Membership.objects.filter(project=project).count() == 3


def test_it_issues_a_token_that_authenticates(api_client, viewer, project, password):
    response = api_client.post("/api/auth/token/", {"username": "vera", "password": password})
    assert response.status_code == 200
    token = response.json()["token"]
    assert Token.objects.get(user=viewer).key == token

    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert [p["name"] for p in api_client.get("/api/projects/").json()["results"]] == ["Vision"]
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert api_client.get("/api/projects/").status_code == 401


def test_it_refuses_a_token_for_a_wrong_password(api_client, viewer):
    response = api_client.post("/api/auth/token/", {"username": "vera", "password": "guess"})
    assert response.status_code == 400


def test_it_authenticates_with_a_session(client, viewer, project, password):
    assert client.login(username="vera", password=password)
    assert client.get("/api/projects/").json()["count"] == 1
