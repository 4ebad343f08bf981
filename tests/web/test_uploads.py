"""Dataset uploads: POST /api/datasets/preview/ then POST /api/datasets/ (or one multipart POST),
the upload page and the dataset page.

Every bad file is refused with a message naming the file, the field and the reason, and leaves
nothing behind: no Dataset row, no file under MEDIA_ROOT (a fresh temporary one per test). Good
CSV, NPZ and image ZIP uploads become datasets a search runs on.
"""

from __future__ import annotations

import asyncio
import io
import json
import stat
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experiments import uploads
from experiments.choices import ExperimentStatus, TrialState
from experiments.engine import build
from experiments.jobs import actors
from experiments.models import Dataset, Experiment
from experiments.uploads import limits
from nasweb.middleware import RequestBodyLimit

pytestmark = pytest.mark.django_db


# Files ------------------------------------------------------------------------------------------------
def csv_bytes(rows: int = 30) -> bytes:
    lines = ["sepal,petal,colour,species"]
    species = ("setosa", "versicolor", "virginica")
    for i in range(rows):
        k = i % 3
        lines.append(f"{1 + k + (i % 5) * 0.1:.2f},{0.5 * k + (i % 7) * 0.05:.2f},{'red' if i % 2 else 'blue'},{species[k]}")
    return ("\n".join(lines) + "\n").encode()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def image_npz() -> bytes:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 8, 8), dtype=np.uint8)
    return npz_bytes(X=X, y=np.arange(30) % 3)


def png(colour=(200, 30, 30), size=(12, 10)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes], *, symlinks=()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def image_zip() -> bytes:
    entries = {}
    for label, colour in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
        for i in range(5):
            entries[f"pets/{label}/{label}{i}.png"] = png(tuple(min(255, c + 7 * i) for c in colour))
    return zip_bytes(entries)


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


# Fixtures and checks --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """A MEDIA_ROOT of this test's own, so "nothing stored" can be checked by listing it."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    build.clear_task_cache()
    return tmp_path / "media"


def stored_files(media) -> list[str]:
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()) if media.exists() else []


def assert_nothing_stored(media):
    assert not Dataset.objects.exists()
    assert stored_files(media) == []


def preview(client, project, name, data, **fields):
    body = {"project": project.pk, "file": upload(name, data), **fields}
    if "options" in body:
        body["options"] = json.dumps(body["options"])
    return client.post("/api/datasets/preview/", body, format="multipart")


def one_step(client, project, name, data, **fields):
    body = {"project": project.pk, "file": upload(name, data), **fields}
    if "options" in body:
        body["options"] = json.dumps(body["options"])
    return client.post("/api/datasets/", body, format="multipart")


def save(client, project, token, **fields):
    return client.post("/api/datasets/", {"project": project.pk, "upload_token": token, **fields}, format="json")


# Previews ------------------------------------------------------------------------------------------------
def test_it_previews_a_csv_with_columns_and_a_suggested_target(editor_client, project, media):
    response = preview(editor_client, project, "flowers.csv", csv_bytes())
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["source"] == "csv" and body["file"] == "flowers.csv"
    assert body["csv"]["columns"] == ["sepal", "petal", "colour", "species"]
    assert body["csv"]["kinds"] == {"sepal": "numeric", "petal": "numeric", "colour": "string", "species": "string"}
    assert body["csv"]["suggested_target"] == "species" and body["options"]["target"] == "species"
    assert len(body["csv"]["rows"]) == uploads.PREVIEW_ROWS
    assert body["dataset"]["kind"] == "tabular" and body["dataset"]["num_classes"] == 3
    assert [c["count"] for c in body["dataset"]["classes"]] == [10, 10, 10]
    assert body["problem"] is None and body["samples"] == []
    # Staged until saved, and nowhere else.
    assert not Dataset.objects.exists()
    assert [p.split("/")[0:2] for p in stored_files(media)] == [["uploads", "staging"]]


def test_it_previews_another_target_from_the_token_without_a_new_upload(editor_client, project):
    token = preview(editor_client, project, "flowers.csv", csv_bytes()).json()["upload_token"]
    response = editor_client.post("/api/datasets/preview/", {"project": project.pk, "upload_token": token,
                                                             "options": {"target": "colour"}}, format="json")  # fmt: skip
    assert response.status_code == 200
    assert [c["name"] for c in response.json()["dataset"]["classes"]] == ["blue", "red"]
    # A target that does not work is a problem to fix in the preview, not a refusal.
    response = editor_client.post("/api/datasets/preview/", {"project": project.pk, "upload_token": token,
                                                             "options": {"target": "sepal"}}, format="json")  # fmt: skip
    assert response.status_code == 200
    problem = response.json()["problem"]
    assert (problem["file"], problem["field"]) == ("flowers.csv", "target")
    assert "non-integer numbers" in problem["reason"]


def test_it_previews_image_zips_with_png_thumbnails(editor_client, project):
    response = preview(editor_client, project, "pets.zip", image_zip(), options={"image_size": 16})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dataset"]["input_shape"] == [3, 16, 16]
    assert [c["name"] for c in body["dataset"]["classes"]] == ["cat", "dog"]
    assert [s["class"] for s in body["samples"]] == ["cat", "dog"]
    image = body["samples"][0]["images"][0]
    assert image.startswith("data:image/png;base64,")
    from base64 import b64decode

    from PIL import Image

    with Image.open(io.BytesIO(b64decode(image.split(",", 1)[1]))) as thumb:
        assert thumb.format == "PNG" and thumb.size == (16, 16)


# Bad files: refused with file, field and reason; nothing stored ------------------------------------------------
BAD_FILES = [
    pytest.param("ragged.csv", b"a,b,label\n1,2,x\n3,4,5,y\n", {}, "file", "line 3",
                 "has 4 values but the header has 3 columns", id="ragged-csv"),
    pytest.param("flowers.csv", csv_bytes(), {"target": "kind"}, "options", "target",
                 "column 'kind' not found", id="csv-missing-target"),
    pytest.param("flowers.csv", csv_bytes(), {}, "options", "target", "required: name the label column",
                 id="csv-no-target"),
    pytest.param("pickled.npz", npz_bytes(X=np.array([{"a": 1}] * 6, dtype=object), y=np.arange(6) % 2), {},
                 "file", "X", "object array", id="npz-pickle"),
    pytest.param("traversal.zip", zip_bytes({"cat/a.png": png(), "../evil.png": png()}), {}, "file",
                 "../evil.png", "would point outside the archive", id="zip-traversal"),
    pytest.param("symlink.zip", zip_bytes({"cat/a.png": png()}, symlinks=[("dog/link.png", "/etc/passwd")]), {},
                 "file", "dog/link.png", "is a symbolic link", id="zip-symlink"),
    pytest.param("bomb.zip", zip_bytes({"cat/a.png": png(), "dog/huge.png": b"\0" * (8 << 20)}), {}, "file",
                 "dog/huge.png", "possible zip bomb", id="zip-bomb"),
    pytest.param("mixed.zip", zip_bytes({"cat/a.png": png(), "cat/notes.txt": b"hello"}), {}, "file",
                 "cat/notes.txt", "is not a PNG or JPEG image", id="zip-non-image"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "options", "key", "field", "reason"), BAD_FILES)
def test_it_refuses_a_bad_file_in_one_step_and_keeps_nothing(editor_client, project, media, name, data, options,
                                                             key, field, reason):  # fmt: skip
    response = one_step(editor_client, project, name, data, options=options)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == {"file": name, "field": field, "reason": body["error"]["reason"]}
    assert reason in body["error"]["reason"]
    assert body[key] == [f"{name}: {field}: {body['error']['reason']}"]
    assert_nothing_stored(media)


@pytest.mark.parametrize(("name", "data", "options", "key", "field", "reason"),
                         [p for p in BAD_FILES if p.id != "csv-no-target"])  # fmt: skip
def test_it_refuses_a_bad_file_at_preview_or_save_and_keeps_nothing(editor_client, project, media, name, data,
                                                                    options, key, field, reason):  # fmt: skip
    response = preview(editor_client, project, name, data, options=options)
    if name.endswith(".csv") and response.status_code == 200:
        # A CSV whose target does not work previews with the problem shown; saving it is refused.
        assert response.json()["problem"]["field"] == field
        response = save(editor_client, project, response.json()["upload_token"], options=options)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["file"] == name and reason in response.json()["error"]["reason"]
    assert_nothing_stored(media)


def test_it_refuses_an_upload_over_the_limit_before_reading_it(editor_client, project, media, settings):
    settings.UPLOAD_MAX_BYTES = 1024
    big = csv_bytes(3000)  # well past the limit plus the multipart allowance: the declared length tells
    assert len(big) > 1024 + uploads.MULTIPART_OVERHEAD_BYTES
    response = one_step(editor_client, project, "big.csv", big)
    assert response.status_code == 413
    assert ", over the upload limit of 1.0 KiB (UPLOAD_MAX_BYTES)" in response.json()["file"][0]
    response = preview(editor_client, project, "big.csv", big)
    assert response.status_code == 413
    assert_nothing_stored(media)


def test_it_stops_an_upload_while_streaming_once_it_passes_the_limit(editor_client, project, media, settings,
                                                                    monkeypatch):  # fmt: skip
    # Let the declared Content-Length through, so the byte count during parsing has to catch it.
    monkeypatch.setattr(limits, "MULTIPART_OVERHEAD_BYTES", 10**9)
    settings.UPLOAD_MAX_BYTES = 1024
    response = one_step(editor_client, project, "big.csv", csv_bytes(400))
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["file"] == "big.csv" and body["error"]["field"] == "file"
    assert body["file"][0].startswith("big.csv: file: is larger than the upload limit")
    assert_nothing_stored(media)


def test_the_limit_holds_when_the_csrf_check_reads_the_form_first(editor, project, media, settings):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    client.get(f"/projects/{project.pk}/datasets/new/")  # sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    settings.UPLOAD_MAX_BYTES = 1024
    big = {"project": project.pk, "file": upload("big.csv", csv_bytes(400))}
    # Session auth checks CSRF by reading the form, which parses the body: the limit is already in place.
    assert client.post("/api/datasets/preview/", big, headers={"X-CSRFToken": csrf}).status_code == 413
    page = client.post(f"/projects/{project.pk}/datasets/new/", {"file": upload("big.csv", csv_bytes(400)),
                                                               "csrfmiddlewaretoken": csrf})  # fmt: skip
    assert page.status_code == 413
    assert client.post(f"/projects/{project.pk}/datasets/new/", {"file": upload("a.csv", csv_bytes())}).status_code == 403
    assert_nothing_stored(media)
    settings.UPLOAD_MAX_BYTES = 10**6
    page = client.post(f"/projects/{project.pk}/datasets/new/", {"file": upload("a.csv", csv_bytes()),
                                                               "csrfmiddlewaretoken": csrf})  # fmt: skip
    assert page.status_code == 200 and page.context["preview"]["file"] == "a.csv"


def test_the_limit_handler_counts_every_chunk(settings):
    handler = uploads.UploadLimitHandler(max_bytes=100)
    handler.new_file("file", "data.csv", "text/csv", None)
    assert handler.receive_data_chunk(b"x" * 60, 0) == b"x" * 60
    with pytest.raises(uploads.UploadTooLarge) as caught:
        handler.receive_data_chunk(b"x" * 60, 60)
    assert caught.value.error["file"] == "data.csv"
    with pytest.raises(uploads.UploadTooLarge):
        handler.handle_raw_input(None, {}, 100 + uploads.MULTIPART_OVERHEAD_BYTES + 1, b"--", "utf-8")


async def _reading_app(scope, receive, send):
    """Like Django's ASGI handler: read the whole body (stop on a disconnect), then answer."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def asgi_post(path: str, chunks: list[bytes], headers=()) -> tuple[int, bytes, int]:
    """(status, body, chunks left unread) of a POST through RequestBodyLimit(_reading_app)."""
    import asyncio

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": list(headers)}
    asyncio.run(RequestBodyLimit(_reading_app)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), len(messages)


def test_the_asgi_limit_stops_a_body_while_it_arrives(settings):
    settings.UPLOAD_MAX_BYTES = 1000
    chunk = b"x" * 16384
    status_code, body, unread = asgi_post("/api/datasets/", [chunk] * 20)
    assert status_code == 413 and unread > 10  # stopped long before the end
    assert "is larger than the upload limit of 1000 bytes" in json.loads(body)["file"][0]
    # A declared length over the limit is refused before a byte is read.
    status_code, body, unread = asgi_post("/projects/3/datasets/new/", [chunk], [(b"content-length", b"99999999")])
    assert (status_code, unread) == (413, 1) and b"upload: file: is 95.4 MiB, over the upload limit" in body
    # Small uploads and other URLs pass through untouched.
    assert asgi_post("/api/datasets/preview/", [b"x" * 500]) == (200, b"500", 0)
    assert asgi_post("/api/experiments/", [chunk] * 20) == (200, str(16384 * 20).encode(), 0)


def test_it_refuses_a_kind_it_can_not_tell(editor_client, project, media):
    response = preview(editor_client, project, "data.bin", b"\x00\x01")
    assert response.status_code == 400
    assert "can not tell the kind of file" in response.json()["source"][0]
    assert_nothing_stored(media)


def test_it_refuses_unknown_and_server_side_options(editor_client, project, media):
    response = one_step(editor_client, project, "pets.zip", image_zip(), options={"max_entries": 10**9})
    assert response.status_code == 400
    assert response.json()["options"] == ["max_entries: not an option of zip uploads (options: image_size, "
                                          "grayscale, val_fraction, test_fraction)"]  # fmt: skip
    assert_nothing_stored(media)


# Tokens --------------------------------------------------------------------------------------------------
def test_a_token_is_bound_to_its_user_and_project(editor_client, owner_client, project, outsider_project, owner,
                                                  client_for, outsider):  # fmt: skip
    token = preview(editor_client, project, "flowers.csv", csv_bytes()).json()["upload_token"]
    response = save(owner_client, project, token, options={"target": "species"})
    assert response.status_code == 400
    assert "belongs to another upload" in response.json()["upload_token"][0]
    response = save(client_for(outsider), outsider_project, token, options={"target": "species"})
    assert response.status_code == 400
    assert save(editor_client, project, "forged", options={"target": "species"}).json()["upload_token"] == [
        "is not a valid upload token; upload the file again"
    ]


def test_a_token_expires_and_old_staging_is_purged(editor_client, project, media, settings):
    token = preview(editor_client, project, "flowers.csv", csv_bytes()).json()["upload_token"]
    settings.UPLOAD_STAGING_SECONDS = -1  # every staged file and token is now older than its lifetime
    response = save(editor_client, project, token, options={"target": "species"})
    assert response.status_code == 400 and "has expired" in response.json()["upload_token"][0]
    assert uploads.purge_expired_staging() == 1
    assert stored_files(media) == []


# Saving -------------------------------------------------------------------------------------------------------
def test_it_saves_a_previewed_csv_through_storage_with_its_checksum(editor_client, editor, project, media):
    import hashlib

    data = csv_bytes()
    token = preview(editor_client, project, "flowers.csv", data).json()["upload_token"]
    response = save(editor_client, project, token, name="Flowers", options={"target": "species", "exclude": ["colour"]})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["source"], body["kind"], body["input_shape"]) == ("Flowers", "csv", "tabular", [2])
    assert body["class_names"] == ["setosa", "versicolor", "virginica"] and body["class_counts"] == [10, 10, 10]
    assert body["checksum"] == hashlib.sha256(data).hexdigest() and body["size_bytes"] == len(data)
    assert body["file_name"] == "flowers.csv" and body["created_by"] == "eddie"
    dataset = Dataset.objects.get(pk=body["id"])
    assert dataset.options == {"target": "species", "exclude": ["colour"]}
    assert dataset.file.name.startswith(f"datasets/{project.pk}/")
    # The staged copy is gone; only the final file is left, with the same bytes.
    assert stored_files(media) == [dataset.file.name]
    with dataset.file.open("rb") as fh:
        assert fh.read() == data
    # The token was used up.
    assert save(editor_client, project, token, options={"target": "species"}).status_code == 400


def test_it_loads_a_saved_upload_the_way_workers_do(editor_client, project):
    response = one_step(editor_client, project, "digits.npz", image_npz())
    assert response.status_code == 201, response.json()
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert (dataset.kind, dataset.input_shape, dataset.num_classes, dataset.name) == ("image", [1, 8, 8], 3, "digits")
    task = build.load_task(dataset, seed=5)  # from storage, by path, with the experiment's seed
    assert task.input_shape == (1, 8, 8) and task.num_classes == 3
    assert sum(len(y) for y in (task.y_train, task.y_val, task.y_test)) == 30


def test_the_dataset_samples_come_as_thumbnails(viewer_client, editor_client, project):
    dataset_id = one_step(editor_client, project, "pets.zip", image_zip()).json()["id"]
    body = viewer_client.get(f"/api/datasets/{dataset_id}/samples/").json()
    assert [s["class"] for s in body["samples"]] == ["cat", "dog"]
    assert body["samples"][0]["images"][0].startswith("data:image/png;base64,")
    dataset_id = one_step(editor_client, project, "flowers.csv", csv_bytes(), options={"target": "species"}).json()["id"]
    body = viewer_client.get(f"/api/datasets/{dataset_id}/samples/").json()
    assert body["csv"]["columns"][-1] == "species" and body["samples"] == []


# Roles ----------------------------------------------------------------------------------------------------------
def test_a_viewer_can_not_upload(viewer_client, project, media):
    assert preview(viewer_client, project, "flowers.csv", csv_bytes()).status_code == 403
    assert one_step(viewer_client, project, "flowers.csv", csv_bytes(), options={"target": "species"}).status_code == 403
    assert_nothing_stored(media)


def test_an_outsider_can_not_upload_or_see_datasets(outsider_client, editor_client, project, media):
    response = preview(outsider_client, project, "flowers.csv", csv_bytes())
    assert response.status_code == 400 and "project" in response.json()
    assert_nothing_stored(media)
    dataset_id = one_step(editor_client, project, "flowers.csv", csv_bytes(), options={"target": "species"}).json()["id"]
    assert outsider_client.get(f"/api/datasets/{dataset_id}/").status_code == 404
    assert outsider_client.get(f"/api/datasets/{dataset_id}/samples/").status_code == 404
    assert outsider_client.delete(f"/api/datasets/{dataset_id}/").status_code == 404


def test_a_dataset_in_use_can_not_be_deleted_and_its_file_goes_with_it(editor_client, viewer_client, project, media,
                                                                      experiment_factory, django_capture_on_commit_callbacks):  # fmt: skip
    dataset_id = one_step(editor_client, project, "flowers.csv", csv_bytes(), options={"target": "species"}).json()["id"]
    dataset = Dataset.objects.get(pk=dataset_id)
    experiment = experiment_factory(dataset=dataset)
    assert viewer_client.delete(f"/api/datasets/{dataset_id}/").status_code == 403
    response = editor_client.delete(f"/api/datasets/{dataset_id}/")
    assert response.status_code == 409
    assert stored_files(media) == [dataset.file.name]
    experiment.delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert editor_client.delete(f"/api/datasets/{dataset_id}/").status_code == 204
    assert not Dataset.objects.filter(pk=dataset_id).exists()
    assert stored_files(media) == []


# Pages ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def editor_browser(client, editor, project):
    client.force_login(editor)
    return client


def test_the_upload_page_previews_columns_then_saves(editor_browser, project, media):
    url = f"/projects/{project.pk}/datasets/new/"
    page = editor_browser.get(url)
    assert page.status_code == 200 and b'enctype="multipart/form-data"' in page.content

    page = editor_browser.post(url, {"file": upload("flowers.csv", csv_bytes()), "name": ""})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="column-table"' in html and ">colour<" in html
    assert '<option value="species" selected>species (suggested)</option>' in html
    token = page.context["preview"]["upload_token"]

    # Another target from the same staged file, then save under a name.
    page = editor_browser.post(url, {"upload_token": token, "source": "csv", "target": "colour", "action": "preview"})
    assert [c["name"] for c in page.context["dataset"]["classes"]] == ["blue", "red"]
    response = editor_browser.post(url, {"upload_token": token, "source": "csv", "target": "species",
                                         "exclude": ["colour"], "name": "Flowers", "action": "save"})  # fmt: skip
    dataset = Dataset.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/datasets/{dataset.pk}/"
    assert (dataset.name, dataset.options) == ("Flowers", {"target": "species", "exclude": ["colour"]})
    assert stored_files(media) == [dataset.file.name]


def test_the_upload_page_shows_sample_thumbnails(editor_browser, project):
    page = editor_browser.post(f"/projects/{project.pk}/datasets/new/", {"file": upload("pets.zip", image_zip())})
    html = page.content.decode()
    assert html.count('class="thumb" src="data:image/png;base64,') >= 2
    assert "<figcaption>cat</figcaption>" in html and 'name="image_size"' in html


def test_the_upload_page_names_the_file_field_and_reason(editor_browser, project, media, settings):
    url = f"/projects/{project.pk}/datasets/new/"
    page = editor_browser.post(url, {"file": upload("traversal.zip", zip_bytes({"../x.png": png()}))})
    assert "traversal.zip: ../x.png: contains &#x27;..&#x27; and would point outside the archive" in page.content.decode()
    settings.UPLOAD_MAX_BYTES = 1024
    page = editor_browser.post(url, {"file": upload("big.csv", csv_bytes(3000))})
    assert page.status_code == 413 and "over the upload limit of 1.0 KiB" in page.content.decode()
    assert_nothing_stored(media)


def test_the_upload_page_is_for_editors(client, viewer, outsider, project):
    client.force_login(viewer)
    assert client.get(f"/projects/{project.pk}/datasets/new/").status_code == 403
    assert client.post(f"/projects/{project.pk}/datasets/new/", {"file": upload("a.csv", csv_bytes())}).status_code == 403
    client.force_login(outsider)
    assert client.get(f"/projects/{project.pk}/datasets/new/").status_code == 404


def test_the_dataset_page_shows_shape_classes_and_users(client, viewer, outsider, digits_dataset, experiment_factory):
    experiment = experiment_factory(name="Digits MLP")
    client.force_login(viewer)
    page = client.get(f"/datasets/{digits_dataset.pk}/")
    html = page.content.decode()
    assert page.status_code == 200 and "1×8×8" in html and "Digits MLP" in html
    assert page.context["page"]["classes"][0] == {"name": "0", "count": 178}
    assert 'id="delete-form"' not in html  # viewers do not get the button
    client.force_login(outsider)
    assert client.get(f"/datasets/{digits_dataset.pk}/").status_code == 404
    assert experiment.dataset_id == digits_dataset.pk


def test_the_dataset_page_refuses_to_delete_while_in_use(client, editor, viewer, digits_dataset, experiment_factory):
    experiment = experiment_factory(name="Digits MLP")
    url = f"/datasets/{digits_dataset.pk}/delete/"
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    client.force_login(editor)
    response = client.post(url, follow=True)
    assert "can not be deleted: 1 experiment uses it (“Digits MLP”)" in response.content.decode()
    assert Dataset.objects.filter(pk=digits_dataset.pk).exists()
    experiment.delete()
    response = client.post(url)
    assert response.status_code == 302 and not Dataset.objects.filter(pk=digits_dataset.pk).exists()


def test_the_project_page_links_datasets_and_the_upload(client, editor, viewer, project, digits_dataset):
    client.force_login(editor)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert f'href="/datasets/{digits_dataset.pk}/"' in html and f'href="/projects/{project.pk}/datasets/new/"' in html
    client.force_login(viewer)
    assert f'href="/projects/{project.pk}/datasets/new/"' not in client.get(f"/projects/{project.pk}/").content.decode()


# A small search on each kind of upload -----------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("name", "make", "options"), [
    ("flowers.csv", csv_bytes, {"target": "species"}),
    ("digits.npz", image_npz, {}),
    ("pets.zip", image_zip, {"image_size": 8}),
])  # fmt: skip
def test_each_kind_of_upload_runs_a_search(editor_client, project, outbox, name, make, options):
    response = one_step(editor_client, project, name, make(), options=options)
    assert response.status_code == 201, response.json()
    config = {
        "project": project.pk, "dataset": response.json()["id"], "name": f"Search on {name}",
        "space": "mlp", "space_config": {"max_depth": 1}, "strategy": "random",
        "estimator": "train", "estimator_config": {"epochs": 1, "batch_size": 16}, "budget_trials": 1,
    }  # fmt: skip
    response = editor_client.post("/api/experiments/", config, format="json")
    assert response.status_code == 201, response.json()
    experiment = Experiment.objects.get(pk=response.json()["id"])
    assert editor_client.post(f"/api/experiments/{experiment.pk}/start/").status_code == 200

    actors.advance_experiment.fn(experiment.pk)
    for trial in experiment.trials.filter(state=TrialState.QUEUED):
        actors.run_trial.fn(trial.pk)

    experiment.refresh_from_db()
    trial = experiment.trials.get()
    assert trial.state == TrialState.COMPLETED, trial.error
    assert trial.objective is not None and 0 <= trial.objective <= 1
    assert experiment.status == ExperimentStatus.RUNNING  # the export (finalize) is the next message
    assert "finalize_experiment" in [m.actor_name for m in outbox]


def test_the_served_application_refuses_an_oversize_upload_on_its_declared_length(settings):
    from channels.testing import HttpCommunicator

    from nasweb.asgi import application

    settings.UPLOAD_MAX_BYTES = 1000
    declared = settings.UPLOAD_MAX_BYTES + uploads.MULTIPART_OVERHEAD_BYTES + 1
    communicator = HttpCommunicator(application, "POST", "/api/datasets/", body=b"x" * 10,
                                    headers=[(b"content-length", str(declared).encode()), (b"host", b"localhost")])
    response = asyncio.run(communicator.get_response())
    assert response["status"] == 413
