"""Two people, two browsers: the owner of a project starts a search; a second user, invited as
viewer, watches it live in their own browser context, cannot start it (no button; the API says 403
when forced), and downloads the best model once it completes. Then the owner retrains the best on
train+val (both pages follow its epochs live), and the viewer prepares and downloads the package
of another trial.

Runs `manage.py up` with its own data directory (SQLite, embedded Redis), set up through
`manage.py shell -c` against that directory, as tests/e2e/test_browser.py does.
"""

from __future__ import annotations

import json
import zipfile

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, manage, running_up, server_env

pytestmark = pytest.mark.e2e

sync_api = pytest.importorskip("playwright.sync_api")

OWNER, VIEWER, PASSWORD = "olivia", "vera", "e2e-password-123"
RUN_TIMEOUT_S = 300
SCREENSHOTS = "/tmp/nas_viewer"

# The owner's project with the viewer invited, and a tiny draft search (digits, mlp, random,
# 3 trials of one epoch). Prints the experiment's id.
SETUP = f"""
from types import SimpleNamespace
from django.contrib.auth import get_user_model
from experiments.api.serializers import DatasetSerializer
from experiments.models import Experiment, Project
users = get_user_model().objects
owner = users.create_user({OWNER!r}, email="olivia@example.com", password={PASSWORD!r})
viewer = users.create_user({VIEWER!r}, email="vera@example.com", password={PASSWORD!r})
project = Project.create_for(owner, "Shared digits")
project.add_member(viewer, "viewer", by=owner)
data = DatasetSerializer(data={{"project": project.pk, "name": "digits", "source": "builtin",
                               "builtin_name": "digits"}}, context={{"request": SimpleNamespace(user=owner)}})
data.is_valid(raise_exception=True)
experiment = Experiment.objects.create(
    project=project, dataset=data.save(), name="Digits MLP (shared)", space="mlp", space_config={{"max_depth": 2}},
    strategy="random", estimator="train", estimator_config={{"epochs": 1}}, budget_trials=3, parallelism=1,
    seed=0, created_by=owner)
print("EXPERIMENT", experiment.pk)
"""


@pytest.fixture
def server(tmp_path):
    """`manage.py up` on a free port with a temporary data directory holding SETUP's rows;
    yields (base URL, experiment id)."""
    env = server_env(tmp_path / "data")
    manage(env, "migrate", "--verbosity", "0")
    experiment_id = int(manage(env, "shell", "-c", SETUP).split("EXPERIMENT")[-1].split()[0])
    with running_up(env, tmp_path / "server.log") as base:
        yield base, experiment_id


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser, base: str, username: str):
    """A page in a browser context of its own (its own cookies), signed in as `username`."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.set_default_timeout(30_000)
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


FORCED_START = """async (url) => {
  const token = (document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1] || "";
  const res = await fetch(url, { method: "POST", credentials: "same-origin",
                                 headers: { "X-CSRFToken": decodeURIComponent(token), Accept: "application/json" } });
  return { status: res.status, body: await res.text() };
}"""

# Records every state the retrain's row shows on the page (status and progress text).
WATCH_RETRAIN = """() => {
  window.__retrainStates = new Set();
  const record = () => document.querySelectorAll("#artifact-list li[data-kind=retrained_zip]").forEach((li) => {
    const text = li.querySelector(".artifact-state");
    window.__retrainStates.add(`${li.dataset.status}:${text ? text.textContent : ""}`);
  });
  new MutationObserver(record).observe(document.getElementById("artifact-list"), { childList: true, subtree: true });
}"""

CHART_POINTS = (
    "() => { const el = document.getElementById('chart-score');"
    " return el && el.data ? el.data.filter(t => t.mode === 'markers').reduce((n, t) => n + t.x.length, 0) : 0; }"
)


def downloaded_zip(page, locator, tmp_path, name: str) -> set[str]:
    with page.expect_download() as info:
        page.click(locator)
    path = tmp_path / name
    info.value.save_as(path)
    with zipfile.ZipFile(path) as zf:
        return set(zf.namelist())


def test_a_viewer_watches_live_cannot_start_and_downloads_the_best_model(server, browser, tmp_path):
    base, experiment_id = server
    url = f"{base}/experiments/{experiment_id}/"
    viewer = signed_in(browser, base, VIEWER)
    owner = signed_in(browser, base, OWNER)

    # The viewer opens the draft: it is live, and there is nothing to start it with.
    viewer.goto(url)
    viewer.wait_for_selector("#live-state.on")
    assert viewer.inner_text("#status-badge").strip().lower() == "draft"
    assert viewer.locator("#controls").count() == 0
    assert viewer.locator("button[data-action=start]").count() == 0
    forced = viewer.evaluate(FORCED_START, f"/api/experiments/{experiment_id}/start/")
    assert forced["status"] == 403, forced
    assert "role" in json.loads(forced["body"])["detail"]
    viewer.evaluate("window.__noReload = 'still here'")

    # The owner starts it from their own browser.
    owner.goto(url)
    owner.wait_for_selector("#live-state.on")
    owner.click("#controls button[data-action=start]")

    # The viewer's page fills in over the websocket, without a reload.
    viewer.wait_for_function(f"() => ({CHART_POINTS})() >= 1", timeout=RUN_TIMEOUT_S * 1000)
    assert viewer.locator("#trial-rows tr[data-trial]").count() >= 1
    assert viewer.evaluate("window.__noReload") == "still here"
    viewer.wait_for_function(
        "() => document.getElementById('status-badge').textContent.trim() === 'completed'",
        timeout=RUN_TIMEOUT_S * 1000,
    )  # fmt: skip
    viewer.wait_for_timeout(300)  # one more coalesced render
    assert viewer.evaluate(CHART_POINTS) == 3
    assert viewer.evaluate("window.__noReload") == "still here"

    # The best model: the Downloads card appears; the viewer downloads a ZIP that holds the ONNX model.
    viewer.locator("#artifact-list a[data-download]").first.wait_for(state="visible", timeout=60_000)
    assert viewer.locator("#retrain-form").count() == 0  # retraining costs compute: editors only
    files = downloaded_zip(viewer, "#artifact-list a[data-download] >> nth=0", tmp_path, "best.zip")
    assert {"model.onnx", "model.pt", "weights.safetensors", "architecture.json", "MODEL_CARD.md"} <= files
    viewer.screenshot(path=f"{SCREENSHOTS}_experiment.png", full_page=True)

    # The owner retrains the best on train+val; both pages follow its epochs live.
    viewer.evaluate(WATCH_RETRAIN)
    owner.fill("#retrain-epochs", "2")
    owner.click("#retrain-button")
    for page in (owner, viewer):
        page.locator("#artifact-list li[data-kind=retrained_zip][data-status=ready] a[data-download]").wait_for(
            state="visible", timeout=RUN_TIMEOUT_S * 1000)  # fmt: skip
    seen = viewer.evaluate("[...window.__retrainStates]")
    assert any(s.startswith("running:") and "epoch 1 / 2" in s for s in seen), seen
    assert viewer.evaluate("window.__noReload") == "still here"
    owner.screenshot(path=f"{SCREENSHOTS}_owner.png", full_page=True)

    # Another completed trial: the viewer prepares its package on the trial page and downloads it
    # when the job's events say it is ready.
    best = viewer.evaluate(
        "() => [...window.nasExperiment.trials.values()].filter(t => t.state === 'completed')"
        ".sort((a, b) => b.objective - a.objective || a.number - b.number).map(t => t.id)"
    )  # fmt: skip
    assert len(best) >= 2
    viewer.goto(f"{base}/trials/{best[1]}/")
    viewer.click("#package-button")
    viewer.locator("#package-list a[data-download]").wait_for(state="visible", timeout=RUN_TIMEOUT_S * 1000)
    assert viewer.is_hidden("#package-button")
    files = downloaded_zip(viewer, "#package-list a[data-download]", tmp_path, "trial.zip")
    assert "model.onnx" in files
    viewer.screenshot(path=f"{SCREENSHOTS}_trial.png", full_page=True)

    assert viewer.errors == [] and owner.errors == []
