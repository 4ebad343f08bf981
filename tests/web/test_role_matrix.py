"""The role matrix: for every API endpoint and every page, what owner / editor / viewer / non-member get.

Viewers read (and download, and comment); editors also create and control experiments and datasets;
owners also manage the project and its members. A non-member gets 404 for anything of the project
(a create naming the project in its body gets 400 on that field: the project "does not exist"), a
member whose role is too low gets 403. Same in the API, the pages, the websockets and downloads.

The tables are checked against the URL configuration: a new endpoint or page without a row fails
`test_every_api_endpoint_has_a_row` / `test_every_page_has_a_row`, naming what to add.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from experiments.choices import Role
from experiments.models import Artifact, Comment, Membership, Project
from tests.web.conftest import IRIS, make_builtin_dataset

ROLES = ("owner", "editor", "viewer", "outsider")

# Expected status for (owner, editor, viewer, outsider).
READ = (200, 200, 200, 404)
LIST = (200, 200, 200, 200)  # a collection exists for everyone; an outsider sees none of the rows
EVERYONE = (200, 200, 200, 200)
EDITOR_VERB = (200, 200, 403, 404)
EDITOR_CREATE = (201, 201, 403, 400)  # the project in the body does not exist for an outsider
EDITOR_DELETE = (204, 204, 403, 404)
OWNER_VERB = (200, 403, 403, 404)
OWNER_DELETE = (204, 403, 403, 404)
MEMBER_CREATE = (201, 201, 201, 400)  # comments: every member may write one
AUTHOR_OR_OWNER_DELETE = (204, 403, 204, 404)  # a comment by the viewer

PAGE_READ = (200, 200, 200, 404)
PAGE_EDITOR = (200, 200, 403, 404)
PAGE_EDITOR_POST = (302, 302, 403, 404)
PAGE_OWNER_POST = (302, 403, 403, 404)
PAGE_MEMBER_POST = (302, 302, 302, 404)
PAGE_AUTHOR_OR_OWNER_POST = (302, 403, 302, 404)
PAGE_EVERYONE = (200, 200, 200, 200)


@dataclass(frozen=True)
class Case:
    """One request: `url` and `data` are called once per role with the World, so a case that
    changes or deletes something gets a fresh object for each role."""

    method: str
    url: Callable[[World], str]
    expect: tuple[int, int, int, int]
    data: Callable[[World], Any] | None = None
    format: str = "json"
    empty_for_outsider: bool = False


class World:
    """The objects the cases point at, made on first use."""

    def __init__(self, users: dict, project: Project, experiment_factory, trial_factory, digits_dataset):
        self.users, self.project = users, project
        self.make_experiment, self.make_trial, self.dataset = experiment_factory, trial_factory, digits_dataset

    @cached_property
    def experiment(self):
        return self.make_experiment(name="Shared")

    @cached_property
    def trial(self):
        return self.make_trial(self.experiment, state="completed", objective=0.9, metrics={"params": 1000})

    @cached_property
    def artifact(self):
        artifact = Artifact(experiment=self.experiment, trial=self.trial, kind="model_zip", size_bytes=5)
        artifact.file.save("best_model.zip", ContentFile(b"PK..."), save=True)
        return artifact

    @cached_property
    def comment(self):
        return Comment.post(self.users["viewer"], self.experiment, "shared")

    @cached_property
    def newcomer(self):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_user("newbie", "newbie@example.com", "x")

    def draft(self):
        return self.make_experiment()

    def completed_trial(self):
        """A trial of its own per role, so each request asks for a new package (202)."""
        return self.make_trial(self.experiment, state="completed", objective=0.8)

    def finished_search(self):
        experiment = self.make_experiment(status="completed")
        self.make_trial(experiment, state="completed", objective=0.9)
        return experiment

    def with_status(self, status: str):
        return self.make_experiment(status=status)

    def fresh_dataset(self):
        return make_builtin_dataset(self.project, "iris", IRIS, self.users["owner"])

    def fresh_project(self) -> Project:
        """A project with the same members, for cases that change membership or delete it."""
        project = Project.create_for(self.users["owner"], f"Scratch {uuid.uuid4().hex[:6]}")
        Membership.objects.create(project=project, user=self.users["editor"], role=Role.EDITOR)
        Membership.objects.create(project=project, user=self.users["viewer"], role=Role.VIEWER)
        return project

    def viewer_comment(self):
        return Comment.post(self.users["viewer"], self.experiment, "mine")

    def experiment_payload(self) -> dict:
        return {
            "project": self.project.pk, "dataset": self.dataset.pk, "name": "Wide MLPs", "space": "mlp",
            "space_config": {"max_depth": 2}, "strategy": "random", "estimator": "train",
            "estimator_config": {"epochs": 1}, "budget_trials": 5,
        }  # fmt: skip

    def csv_upload(self) -> dict:
        body = b"x1,x2,label\n" + b"".join(b"%d,%d,%s\n" % (i, i * 2, b"ab"[i % 2 : i % 2 + 1]) for i in range(40))
        return {"project": self.project.pk, "file": SimpleUploadedFile("small.csv", body, "text/csv")}


def api(name: str, *args) -> str:
    return reverse(f"api:{name}", args=args)


# The API ------------------------------------------------------------------------------------------
API_CASES: dict[tuple[str, str], Case] = {
    # Projects: anyone creates their own; owners change, delete and manage members.
    ("project-list", "GET"): Case("GET", lambda w: api("project-list"), LIST, empty_for_outsider=True),
    ("project-list", "POST"): Case("POST", lambda w: api("project-list"), (201, 201, 201, 201),
                                   data=lambda w: {"name": "Mine"}),
    ("project-detail", "GET"): Case("GET", lambda w: api("project-detail", w.project.pk), READ),
    ("project-detail", "PUT"): Case("PUT", lambda w: api("project-detail", w.project.pk), OWNER_VERB,
                                    data=lambda w: {"name": "Renamed", "description": ""}),
    ("project-detail", "PATCH"): Case("PATCH", lambda w: api("project-detail", w.project.pk), OWNER_VERB,
                                      data=lambda w: {"description": "changed"}),
    ("project-detail", "DELETE"): Case("DELETE", lambda w: api("project-detail", w.fresh_project().pk), OWNER_DELETE),
    ("project-members", "GET"): Case("GET", lambda w: api("project-members", w.project.pk), READ),
    ("project-members", "POST"): Case("POST", lambda w: api("project-members", w.fresh_project().pk), OWNER_VERB,
                                      data=lambda w: {"username": w.newcomer.username, "role": "viewer"}),
    ("project-remove-member", "DELETE"): Case("DELETE", lambda w: api("project-remove-member", w.fresh_project().pk,
                                                                      "vera"), OWNER_DELETE),
    ("project-activity", "GET"): Case("GET", lambda w: api("project-activity", w.project.pk), READ),
    # Datasets: editors add, rename, delete.
    ("dataset-list", "GET"): Case("GET", lambda w: api("dataset-list"), LIST, empty_for_outsider=True),
    ("dataset-list", "POST"): Case("POST", lambda w: api("dataset-list"), EDITOR_CREATE,
                                   data=lambda w: {"project": w.project.pk, "name": "iris", "source": "builtin",
                                                   "builtin_name": "iris"}),
    ("dataset-preview", "POST"): Case("POST", lambda w: api("dataset-preview"), (200, 200, 403, 400),
                                      data=lambda w: w.csv_upload(), format="multipart"),
    ("dataset-detail", "GET"): Case("GET", lambda w: api("dataset-detail", w.dataset.pk), READ),
    ("dataset-detail", "PUT"): Case("PUT", lambda w: api("dataset-detail", w.dataset.pk), EDITOR_VERB,
                                    data=lambda w: {"name": "digits (renamed)"}),
    ("dataset-detail", "PATCH"): Case("PATCH", lambda w: api("dataset-detail", w.dataset.pk), EDITOR_VERB,
                                      data=lambda w: {"name": "digits (renamed)"}),
    ("dataset-detail", "DELETE"): Case("DELETE", lambda w: api("dataset-detail", w.fresh_dataset().pk), EDITOR_DELETE),
    ("dataset-samples", "GET"): Case("GET", lambda w: api("dataset-samples", w.dataset.pk), READ),
    # Experiments: editors create, edit drafts, control, clone, delete; everyone reads.
    ("experiment-list", "GET"): Case("GET", lambda w: api("experiment-list"), LIST, empty_for_outsider=True),
    ("experiment-list", "POST"): Case("POST", lambda w: api("experiment-list"), EDITOR_CREATE,
                                      data=lambda w: w.experiment_payload()),
    ("experiment-detail", "GET"): Case("GET", lambda w: api("experiment-detail", w.experiment.pk), READ),
    ("experiment-detail", "PUT"): Case("PUT", lambda w: api("experiment-detail", w.draft().pk), EDITOR_VERB,
                                       data=lambda w: w.experiment_payload()),
    ("experiment-detail", "PATCH"): Case("PATCH", lambda w: api("experiment-detail", w.draft().pk), EDITOR_VERB,
                                         data=lambda w: {"name": "Renamed"}),
    ("experiment-detail", "DELETE"): Case("DELETE", lambda w: api("experiment-detail", w.draft().pk), EDITOR_DELETE),
    ("experiment-start", "POST"): Case("POST", lambda w: api("experiment-start", w.draft().pk), EDITOR_VERB),
    ("experiment-pause", "POST"): Case("POST", lambda w: api("experiment-pause", w.with_status("running").pk),
                                       EDITOR_VERB),
    ("experiment-resume", "POST"): Case("POST", lambda w: api("experiment-resume", w.with_status("paused").pk),
                                        EDITOR_VERB),
    ("experiment-cancel", "POST"): Case("POST", lambda w: api("experiment-cancel", w.draft().pk), EDITOR_VERB),
    ("experiment-clone", "POST"): Case("POST", lambda w: api("experiment-clone", w.experiment.pk), (201, 201, 403, 404)),
    ("experiment-snapshot", "GET"): Case("GET", lambda w: api("experiment-snapshot", w.experiment.pk), READ),
    ("experiment-compare", "GET"): Case("GET", lambda w: api("experiment-compare") + f"?ids={w.experiment.pk},"
                                                                                      f"{w.draft().pk}", READ),
    ("experiment-trials-csv", "GET"): Case("GET", lambda w: api("experiment-trials-csv", w.trial.experiment_id), READ),
    ("experiment-trials-json", "GET"): Case("GET", lambda w: api("experiment-trials-json", w.trial.experiment_id),
                                            READ),
    # Trials and artifacts: read and download, for every member.
    ("trial-list", "GET"): Case("GET", lambda w: api("trial-list") + f"?experiment={w.trial.experiment_id}", LIST,
                                empty_for_outsider=True),
    ("trial-detail", "GET"): Case("GET", lambda w: api("trial-detail", w.trial.pk), READ),
    ("artifact-list", "GET"): Case("GET", lambda w: api("artifact-list") + f"?experiment={w.artifact.experiment_id}",
                                   LIST, empty_for_outsider=True),
    ("artifact-detail", "GET"): Case("GET", lambda w: api("artifact-detail", w.artifact.pk), READ),
    ("artifact-download", "GET"): Case("GET", lambda w: api("artifact-download", w.artifact.pk), READ),
    # Packages on request: any member may package a trial (a read); retraining costs compute: editors.
    ("trial-package", "POST"): Case("POST", lambda w: api("trial-package", w.completed_trial().pk),
                                    (202, 202, 202, 404)),
    ("experiment-retrain", "POST"): Case("POST", lambda w: api("experiment-retrain", w.finished_search().pk),
                                         (202, 202, 403, 404)),
    # Comments: every member reads and writes; the author or an owner deletes.
    ("comment-list", "GET"): Case("GET", lambda w: api("comment-list") + f"?experiment={w.comment.experiment_id}", LIST,
                                  empty_for_outsider=True),
    ("comment-list", "POST"): Case("POST", lambda w: api("comment-list"), MEMBER_CREATE,
                                   data=lambda w: {"experiment": w.experiment.pk, "body": "hello"}),
    ("comment-detail", "GET"): Case("GET", lambda w: api("comment-detail", w.comment.pk), READ),
    ("comment-detail", "DELETE"): Case("DELETE", lambda w: api("comment-detail", w.viewer_comment().pk),
                                       AUTHOR_OR_OWNER_DELETE),
    # Not about any project: the same for every signed-in user.
    ("api-root", "GET"): Case("GET", lambda w: api("api-root"), EVERYONE),
    ("registry", "GET"): Case("GET", lambda w: api("registry"), EVERYONE),
}  # fmt: skip

# Endpoints that hold no project data (documentation, logging in): no row, on purpose.
API_WITHOUT_PROJECT_DATA = {("token", "POST"), ("schema", "GET"), ("docs", "GET"), ("redoc", "GET")}


# The pages ----------------------------------------------------------------------------------------
def page(name: str, *args) -> str:
    return reverse(name, args=args)


def _experiment_form(w: World) -> dict:
    from tests.web.test_pages import form_data

    return form_data(w.project, dataset=str(w.dataset.pk))


PAGE_CASES: dict[str, list[Case]] = {
    "project-list": [Case("GET", lambda w: page("project-list"), PAGE_EVERYONE)],
    "project-create": [
        Case("GET", lambda w: page("project-create"), PAGE_EVERYONE),
        Case("POST", lambda w: page("project-create"), (302, 302, 302, 302), data=lambda w: {"name": "Mine"}),
    ],
    "project-detail": [Case("GET", lambda w: page("project-detail", w.project.pk), PAGE_READ)],
    "experiment-new": [
        Case("GET", lambda w: page("experiment-new", w.project.pk), PAGE_EDITOR),
        Case("POST", lambda w: page("experiment-new", w.project.pk), PAGE_EDITOR_POST, data=_experiment_form),
    ],
    "experiment-detail": [Case("GET", lambda w: page("experiment-detail", w.experiment.pk), PAGE_READ)],
    "experiment-action": [
        Case("POST", lambda w: page("experiment-action", w.draft().pk, "start"), PAGE_EDITOR_POST),
        Case("POST", lambda w: page("experiment-action", w.with_status("running").pk, "pause"), PAGE_EDITOR_POST),
        Case("POST", lambda w: page("experiment-action", w.with_status("paused").pk, "resume"), PAGE_EDITOR_POST),
        Case("POST", lambda w: page("experiment-action", w.draft().pk, "cancel"), PAGE_EDITOR_POST),
    ],
    "experiment-compare": [
        Case("GET", lambda w: page("experiment-compare", w.project.pk) + f"?ids={w.experiment.pk},{w.draft().pk}",
             PAGE_READ),
    ],
    "experiment-clone": [Case("GET", lambda w: page("experiment-clone", w.experiment.pk), PAGE_EDITOR)],
    "trial-detail": [Case("GET", lambda w: page("trial-detail", w.trial.pk), PAGE_READ)],
    "trial-arch": [Case("GET", lambda w: page("trial-arch", w.trial.pk), PAGE_READ)],
    "trial-diff": [
        Case("GET", lambda w: page("trial-diff", w.experiment.pk) + f"?a={w.trial.number}&b={w.trial.number}",
             PAGE_READ),
    ],
    "experiment-rename": [
        Case("POST", lambda w: page("experiment-rename", w.draft().pk), PAGE_EDITOR_POST,
             data=lambda w: {"name": "Renamed"}),
    ],
    "experiment-delete": [Case("POST", lambda w: page("experiment-delete", w.draft().pk), PAGE_EDITOR_POST)],
    "dataset-rename": [
        Case("POST", lambda w: page("dataset-rename", w.fresh_dataset().pk), PAGE_EDITOR_POST,
             data=lambda w: {"name": "Renamed"}),
    ],
    "experiment-comment": [
        Case("POST", lambda w: page("experiment-comment", w.experiment.pk), PAGE_MEMBER_POST,
             data=lambda w: {"body": "hello"}),
    ],
    "trial-comment": [
        Case("POST", lambda w: page("trial-comment", w.trial.pk), PAGE_MEMBER_POST, data=lambda w: {"body": "hello"}),
    ],
    "comment-delete": [Case("POST", lambda w: page("comment-delete", w.viewer_comment().pk), PAGE_AUTHOR_OR_OWNER_POST)],
    "project-members": [
        Case("GET", lambda w: page("project-members", w.project.pk), PAGE_READ),
        Case("POST", lambda w: page("project-members", w.fresh_project().pk), PAGE_OWNER_POST,
             data=lambda w: {"user": w.newcomer.username, "role": "viewer"}),
    ],
    "project-member-role": [
        Case("POST", lambda w: page("project-member-role", w.fresh_project().pk, "vera"), PAGE_OWNER_POST,
             data=lambda w: {"role": "editor"}),
    ],
    "project-member-remove": [
        Case("POST", lambda w: page("project-member-remove", w.fresh_project().pk, "vera"), PAGE_OWNER_POST),
    ],
    "project-activity": [Case("GET", lambda w: page("project-activity", w.project.pk), PAGE_READ)],
    "dataset-new": [Case("GET", lambda w: page("dataset-new", w.project.pk), PAGE_EDITOR)],
    "dataset-detail": [Case("GET", lambda w: page("dataset-detail", w.dataset.pk), PAGE_READ)],
    "dataset-delete": [Case("POST", lambda w: page("dataset-delete", w.fresh_dataset().pk), PAGE_EDITOR_POST)],
}  # fmt: skip

# Pages about the signed-in user, not a project (tests/web/test_teams.py covers them).
PAGES_WITHOUT_PROJECT_DATA = {"login", "logout", "signup", "password-change", "password-change-done"}


# Reading the URL configuration ------------------------------------------------------------------
def _patterns(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace != "admin":
                yield from _patterns(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace, pattern


def api_endpoints() -> set[tuple[str, str]]:
    """(route name, HTTP method) of every API endpoint: viewset routes from their action maps,
    plain API views from the handlers they define."""
    endpoints = set()
    for namespace, pattern in _patterns(get_resolver().url_patterns):
        if namespace != "api":
            continue
        callback = pattern.callback
        actions = getattr(callback, "actions", None)
        if actions is not None:
            methods = actions.keys()  # DRF adds "head" here once a GET has been served
        else:
            view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
            methods = [m for m in view.http_method_names if hasattr(view, m)]
        endpoints.update((pattern.name, method.upper()) for method in methods if method not in ("options", "head"))
    return endpoints


def page_names() -> set[str]:
    return {pattern.name for namespace, pattern in _patterns(get_resolver().url_patterns) if namespace is None}


# The tests ----------------------------------------------------------------------------------------
pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner, editor, viewer, outsider, project, experiment_factory, trial_factory, digits_dataset, settings,
          tmp_path, enqueue_calls):  # fmt: skip
    settings.MEDIA_ROOT = tmp_path
    users = {"owner": owner, "editor": editor, "viewer": viewer, "outsider": outsider}
    return World(users, project, experiment_factory, trial_factory, digits_dataset)


def run(case: Case, world: World, client_for_role) -> list[str]:
    """The roles that got something else than expected, with what they got."""
    wrong = []
    for role, expected in zip(ROLES, case.expect, strict=True):
        client = client_for_role(role)
        url = case.url(world)
        data = case.data(world) if case.data else None
        kwargs = {"format": case.format} if isinstance(client, APIClient) and data is not None else {}
        response = getattr(client, case.method.lower())(url, data, **kwargs) if data is not None else \
            getattr(client, case.method.lower())(url)  # fmt: skip
        if response.status_code != expected:
            detail = response.content[:200] if response.status_code >= 400 and not response.streaming else b""
            wrong.append(f"{role}: expected {expected}, got {response.status_code} {detail!r}")
        elif role == "outsider" and case.empty_for_outsider:
            body = response.json()
            rows = body["results"] if isinstance(body, dict) else body
            if rows:
                wrong.append(f"outsider: expected no rows, got {len(rows)}")
    return wrong


# One client of each kind for the whole module, signed in again for each role: a new client builds
# the middleware stack on its first request, and WhiteNoise's scan of the static files then costs
# more than all of a case's requests together.
_SHARED_CLIENTS: dict[str, Client] = {}


def shared_client(kind: str) -> Client:
    if kind not in _SHARED_CLIENTS:
        _SHARED_CLIENTS[kind] = APIClient() if kind == "api" else Client()
    return _SHARED_CLIENTS[kind]


@pytest.fixture
def api_clients(world):
    def client_for_role(role):
        client = shared_client("api")
        client.force_authenticate(world.users[role])
        return client

    yield client_for_role
    shared_client("api").force_authenticate(None)


@pytest.fixture
def page_clients(world):
    def client_for_role(role):
        client = shared_client("page")
        client.force_login(world.users[role])
        return client

    yield client_for_role
    shared_client("page").cookies.clear()


def test_every_api_endpoint_has_a_row():
    endpoints = api_endpoints() - API_WITHOUT_PROJECT_DATA
    missing = sorted(endpoints - API_CASES.keys())
    assert not missing, f"add a row to API_CASES in {__name__} for: {missing}"
    stale = sorted(API_CASES.keys() - endpoints)
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


def test_every_page_has_a_row():
    names = page_names() - PAGES_WITHOUT_PROJECT_DATA
    missing = sorted(names - PAGE_CASES.keys())
    assert not missing, f"add a row to PAGE_CASES in {__name__} for: {missing}"
    stale = sorted(PAGE_CASES.keys() - names)
    assert not stale, f"rows for pages that no longer exist: {stale}"


@pytest.mark.parametrize("key", sorted(API_CASES), ids=lambda key: f"{key[1]} {key[0]}")
def test_the_api_gives_each_role_its_status(key, world, api_clients):
    assert run(API_CASES[key], world, api_clients) == []


@pytest.mark.parametrize(
    ("name", "index"), [(name, i) for name in sorted(PAGE_CASES) for i in range(len(PAGE_CASES[name]))],
    ids=lambda value: str(value),
)
def test_the_pages_give_each_role_its_status(name, index, world, page_clients):
    assert run(PAGE_CASES[name][index], world, page_clients) == []


def test_anonymous_users_get_nothing(client, world):
    """Logged out: the API says 401/403 and the pages send to the login page, for reads too."""
    from rest_framework.test import APIClient as Anonymous

    anonymous = Anonymous()
    for (name, method), case in API_CASES.items():
        if case.expect == EVERYONE or (name, method) == ("project-list", "POST"):
            continue
        response = getattr(anonymous, method.lower())(case.url(world))
        assert response.status_code in (401, 403), (name, method, response.status_code)
    for name, cases in PAGE_CASES.items():
        for case in cases:
            response = getattr(client, case.method.lower())(case.url(world))
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), name


# Websockets -----------------------------------------------------------------------------------------
ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture
def _own_channel_prefix(settings):
    # Groups are named after database ids; a prefix of our own keeps other test sessions' events out.
    layer = django_settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "prefix": f"rm-{uuid.uuid4().hex[:8]}"}}}


@pytest_asyncio.fixture
async def _close_thread_connections():
    """Consumers query from asgiref's worker thread; close that connection so PostgreSQL can drop
    the test database."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_own_channel_prefix", "_close_thread_connections")
async def test_websockets_admit_members_and_refuse_non_members(owner, editor, viewer, outsider, project, experiment):
    from channels.testing import WebsocketCommunicator

    from experiments.live.consumers import FORBIDDEN
    from nasweb.asgi import application

    def cookie_for(user):
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        return (b"cookie", f"{name}={client.cookies[name].value}".encode())

    async def admitted(path: str, cookie) -> bool:
        communicator = WebsocketCommunicator(application, path, headers=[(b"host", b"testserver"), ORIGIN, cookie])
        connected, _ = await communicator.connect(timeout=5)
        if connected and not await communicator.receive_nothing(timeout=0.5):
            output = await communicator.receive_output(timeout=5)  # refused: accepted, then closed
            connected = not (output["type"] == "websocket.close" and output.get("code") == FORBIDDEN)
        await communicator.disconnect()
        return connected

    users = {"owner": owner, "editor": editor, "viewer": viewer, "outsider": outsider}
    cookies = {role: await sync_to_async(cookie_for)(user) for role, user in users.items()}
    checks = [(role, path) for role in users for path in (f"/ws/experiments/{experiment.pk}/", f"/ws/projects/{project.pk}/")]
    results = await asyncio.gather(*(admitted(path, cookies[role]) for role, path in checks))
    assert dict(zip(checks, results, strict=True)) == {(role, path): role != "outsider" for role, path in checks}
