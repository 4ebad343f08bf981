"""Fixtures shared by the web tests. Each one says what it gives; add only what several files use.
They live here, not in tests/conftest.py: the engine tests run without Django, and the browser
tests (tests/e2e) set up their own server.

    def test_it_lists_experiments(viewer_client, experiment_factory):
        experiment = experiment_factory(name="Small MLP")
        assert viewer_client.get("/api/experiments/").json()["count"] == 1

Users `owner`, `editor`, `viewer` are members of `project` with those roles; `outsider` is not.
Every user's password is PASSWORD. Datasets and experiments are rows only (nothing trains).
"""

from __future__ import annotations

import itertools
import os

import pytest

from tests.web.actors import capture_messages

PASSWORD = "nas-studio-test-pw"

# Shapes as search_engine.data.load_builtin(...).describe() gives them; static so no fixture loads data.
DIGITS = {
    "kind": "image", "input_shape": [1, 8, 8], "num_classes": 10, "class_names": [str(i) for i in range(10)],
    "class_counts": [178, 182, 177, 183, 181, 182, 181, 179, 174, 180], "num_rows": 1797,
}  # fmt: skip
IRIS = {
    "kind": "tabular", "input_shape": [4], "num_classes": 3, "class_names": ["setosa", "versicolor", "virginica"],
    "class_counts": [50, 50, 50], "num_rows": 150,
}  # fmt: skip


# Infrastructure ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """On PostgreSQL, a test database of this session's own (test_<name>_<pid>), so that several
    people (or CI jobs) running the tests against one server do not drop each other's database.
    SQLite test databases live in memory and need nothing."""
    from django.conf import settings
    from pytest_django.fixtures import _set_suffix_to_test_databases

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        _set_suffix_to_test_databases(suffix=str(os.getpid()))


@pytest.fixture(scope="session", autouse=True)
def embedded_redis():
    """Start the embedded redis-server when REDIS_URL is unset (broadcasts, sequence numbers and the
    Dramatiq broker need one); with REDIS_URL set, that server is used as it is. Yields the URL."""
    from django.conf import settings

    if settings.EMBEDDED_REDIS:
        from nasweb.embedded_redis import ensure_running

        ensure_running(settings.DATA_DIR)
    yield settings.REDIS_URL


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's million rounds cost half a second per user; tests do not need them."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def enqueue_calls(monkeypatch):
    """Replace experiments.jobs.enqueue.advance with a recorder: the list of experiment ids it was
    called with (Experiment.start/resume call it on commit; nothing reaches a worker)."""
    import experiments.jobs.enqueue

    calls: list[int] = []
    monkeypatch.setattr(experiments.jobs.enqueue, "advance", calls.append)
    return calls


@pytest.fixture
def outbox(monkeypatch):
    """Messages sent during the test, kept in order instead of reaching Redis; run them with
    tests.web.actors.drain()."""
    return capture_messages(monkeypatch)


# Users and a project ----------------------------------------------------------------------------
@pytest.fixture
def password():
    """The password of every user made here."""
    return PASSWORD


def _user(django_user_model, username):
    return django_user_model.objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.com")


@pytest.fixture
def owner(django_user_model):
    return _user(django_user_model, "olivia")


@pytest.fixture
def editor(django_user_model):
    return _user(django_user_model, "eddie")


@pytest.fixture
def viewer(django_user_model):
    return _user(django_user_model, "vera")


@pytest.fixture
def outsider(django_user_model):
    """A user with no membership in `project` (and a project of their own: `outsider_project`)."""
    return _user(django_user_model, "oscar")


@pytest.fixture
def project(owner, editor, viewer):
    """Project "Vision": owner (creator), editor and viewer are members."""
    from experiments.choices import Role
    from experiments.models import Membership, Project

    project = Project.create_for(owner, "Vision", "Small image models")
    Membership.objects.create(project=project, user=editor, role=Role.EDITOR)
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    return project


@pytest.fixture
def outsider_project(outsider):
    from experiments.models import Project

    return Project.create_for(outsider, "Elsewhere")


# Datasets and experiments -----------------------------------------------------------------------
def make_builtin_dataset(project, name: str, shape: dict, created_by=None):
    """A built-in dataset row with the shape the engine reports (no data is loaded)."""
    from experiments.models import Dataset

    return Dataset.objects.create(
        project=project, name=name, source="builtin", builtin_name=name, created_by=created_by, **shape
    )


@pytest.fixture
def digits_dataset(project, owner):
    """Built-in `digits` (images 1x8x8, 10 classes) in `project`."""
    return make_builtin_dataset(project, "digits", DIGITS, owner)


@pytest.fixture
def iris_dataset(project, owner):
    """Built-in `iris` (tabular, 4 features, 3 classes) in `project`."""
    return make_builtin_dataset(project, "iris", IRIS, owner)


@pytest.fixture
def experiment_factory(project, digits_dataset, owner):
    """experiment_factory(**overrides) -> a draft Experiment in `project` on `digits`: an MLP space
    (max_depth 2), random search, one epoch of training, 3 trials, one at a time, on the CPU."""
    from experiments.models import Experiment

    counter = itertools.count(1)

    def make(**overrides):
        n = next(counter)
        fields = {
            "project": project,
            "dataset": digits_dataset,
            "name": f"Search {n}",
            "space": "mlp",
            "space_config": {"max_depth": 2},
            "strategy": "random",
            "strategy_config": {},
            "estimator": "train",
            "estimator_config": {"epochs": 1, "batch_size": 64, "threads": 1, "device": "cpu"},
            "constraints": {},
            "budget_trials": 3,
            "parallelism": 1,
            "seed": 0,
            "device": "cpu",
            "created_by": owner,
            **overrides,
        }
        return Experiment.objects.create(**fields)

    return make


@pytest.fixture
def experiment(experiment_factory):
    """One draft experiment from experiment_factory()."""
    return experiment_factory()


@pytest.fixture
def trial_factory():
    """trial_factory(experiment, **overrides) -> a Trial numbered after the experiment's last one;
    queued by default, with a one-layer MLP architecture."""
    from experiments.models import Trial

    def make(experiment, **overrides):
        number = overrides.pop("number", None)
        if number is None:
            last = experiment.trials.order_by("-number").values_list("number", flat=True).first()
            number = 0 if last is None else last + 1
        arch = overrides.pop("arch", {"depth": 1, "width_1": 32, "width_2": 32, "activation": "relu",
                                      "dropout": 0.0, "batch_norm": False, "residual": False})  # fmt: skip
        return Trial.objects.create(
            experiment=experiment, number=number, arch=arch, fingerprint=overrides.pop("fingerprint", f"fp{number}"),
            **overrides,
        )  # fmt: skip

    return make


# API clients ------------------------------------------------------------------------------------
@pytest.fixture
def api_client():
    """An anonymous rest_framework.test.APIClient."""
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def client_for():
    """client_for(user) -> an APIClient authenticated as `user` (force_authenticate: no CSRF, no login)."""
    from rest_framework.test import APIClient

    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def owner_client(client_for, owner, project):
    return client_for(owner)


@pytest.fixture
def editor_client(client_for, editor, project):
    return client_for(editor)


@pytest.fixture
def viewer_client(client_for, viewer, project):
    return client_for(viewer)


@pytest.fixture
def outsider_client(client_for, outsider):
    return client_for(outsider)


@pytest.fixture
def login(client):
    """`login(user)` -> the test client, logged in as `user` (pages, not the API)."""

    def as_user(user):
        client.force_login(user)
        return client

    return as_user
