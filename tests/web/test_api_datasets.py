"""/api/datasets/: built-ins by name, roles, deletion guarded by use."""

from __future__ import annotations

import pytest

from experiments.models import Dataset

pytestmark = pytest.mark.django_db


def builtin(project, name="iris", **extra):
    return {"project": project.pk, "name": name, "source": "builtin", "builtin_name": name, **extra}


def test_it_adds_a_builtin_dataset_with_its_shape(editor_client, editor, project):
    response = editor_client.post("/api/datasets/", builtin(project, "iris"), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["input_shape"], body["num_classes"], body["num_rows"]) == ("tabular", [4], 3, 150)
    assert body["class_names"] == ["setosa", "versicolor", "virginica"]
    assert body["class_counts"] == [50, 50, 50]
    assert (body["created_by"], body["in_use"]) == ("eddie", False)


def test_it_passes_loader_options_through(owner_client, project):
    response = owner_client.post("/api/datasets/", builtin(project, "iris", options={"seed": 3}), format="json")
    assert response.status_code == 201
    assert Dataset.objects.get(pk=response.json()["id"]).options == {"seed": 3}
    response = owner_client.post("/api/datasets/", builtin(project, "iris", options={"val_fraction": 2}),
                                 format="json")  # fmt: skip
    assert response.status_code == 400
    assert response.json()["options"][0].startswith("val_fraction: ")
    response = owner_client.post("/api/datasets/", builtin(project, "iris", options={"colour": "red"}),
                                 format="json")  # fmt: skip
    assert response.json()["options"][0].startswith("colour: unknown option")


def test_it_rejects_an_unknown_builtin(owner_client, project):
    response = owner_client.post("/api/datasets/", builtin(project, "imagenet"), format="json")
    assert response.status_code == 400
    assert "unknown built-in dataset 'imagenet'" in response.json()["builtin_name"][0]
    assert "digits" in response.json()["builtin_name"][0]


def test_it_refuses_an_upload_source_without_a_file(owner_client, project):
    # Uploads themselves are tested in test_uploads.py.
    body = {"project": project.pk, "name": "mine", "source": "csv"}
    response = owner_client.post("/api/datasets/", body, format="json")
    assert response.status_code == 400
    assert "upload_token" in response.json()["file"][0]


@pytest.mark.parametrize(("role", "expected"), [("owner", 201), ("editor", 201), ("viewer", 403), ("outsider", 400)])
def test_it_lets_editors_add_datasets(role, expected, project, client_for, request):
    client = client_for(request.getfixturevalue(role))
    assert client.post("/api/datasets/", builtin(project), format="json").status_code == expected


def test_it_filters_by_project_and_hides_other_projects(viewer_client, project, digits_dataset, iris_dataset,
                                                        outsider_project):  # fmt: skip
    Dataset.objects.create(project=outsider_project, name="secret", source="builtin", builtin_name="wine")
    body = viewer_client.get(f"/api/datasets/?project={project.pk}").json()
    assert [d["name"] for d in body["results"]] == ["digits", "iris"]
    assert viewer_client.get("/api/datasets/").json()["count"] == 2
    assert viewer_client.get(f"/api/datasets/?project={outsider_project.pk}").json()["count"] == 0
    assert viewer_client.get("/api/datasets/?kind=image").json()["results"][0]["name"] == "digits"


def test_it_renames_but_never_reshapes_a_dataset(editor_client, digits_dataset):
    url = f"/api/datasets/{digits_dataset.pk}/"
    response = editor_client.patch(url, {"name": "Digits 8x8", "builtin_name": "iris", "kind": "tabular"},
                                   format="json")  # fmt: skip
    assert response.status_code == 200
    digits_dataset.refresh_from_db()
    assert (digits_dataset.name, digits_dataset.builtin_name, digits_dataset.kind) == ("Digits 8x8", "digits", "image")


def test_it_refuses_to_delete_a_dataset_in_use(editor_client, viewer_client, digits_dataset, experiment_factory):
    experiment = experiment_factory()
    url = f"/api/datasets/{digits_dataset.pk}/"
    assert viewer_client.delete(url).status_code == 403
    assert editor_client.get(url).json()["in_use"] is True
    response = editor_client.delete(url)
    assert response.status_code == 409
    experiment.delete()
    assert editor_client.delete(url).status_code == 204


def test_it_hides_a_dataset_from_outsiders(outsider_client, digits_dataset):
    assert outsider_client.get(f"/api/datasets/{digits_dataset.pk}/").status_code == 404
    assert outsider_client.delete(f"/api/datasets/{digits_dataset.pk}/").status_code == 404
