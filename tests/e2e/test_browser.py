"""A real browser against `manage.py up`: log in, create an experiment on digits, start it and
watch trial points arrive on the chart without a reload, until the experiment completes.

Needs Debian's Chromium (`apt-get install chromium`) and Playwright for Python; the server runs
with its own data directory, SQLite database and embedded Redis, so it shares nothing with the
other tests (DATABASE_URL / REDIS_URL are removed from its environment on purpose).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, manage, running_up, server_env

pytestmark = pytest.mark.e2e

USERNAME, PASSWORD = "e2e-user", "e2e-password-123"
SCREENSHOT = Path("/tmp/nas_experiment.png")
RUN_TIMEOUT_S = 300

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    # A developer without Chromium may skip; CI must not pass silently without the browser tests.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def server(tmp_path):
    """`manage.py up` on a free port with a temporary data directory; yields its base URL."""
    env = server_env(tmp_path / "data")
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "shell", "-c",
           "from django.contrib.auth import get_user_model; "
           f"get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})")  # fmt: skip
    with running_up(env, tmp_path / "server.log") as base:
        yield base


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        try:
            yield page
        finally:
            browser.close()


def _chart_points(page) -> int:
    return page.evaluate(
        "() => { const el = document.getElementById('chart-score');"
        " return el && el.data ? el.data.filter(t => t.mode === 'markers').reduce((n, t) => n + t.x.length, 0) : 0; }"
    )


def test_it_runs_a_search_live_in_the_browser(server, page):
    page.set_default_timeout(30_000)
    page.goto(f"{server}/")
    page.wait_for_url("**/login/**")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")

    page.fill("input[name=name]", "Digits team")
    page.click("text=Create project")
    page.wait_for_url("**/projects/*/")
    page.click("text=New experiment")
    page.wait_for_url("**/experiments/new/")

    page.fill("input[name=name]", "Digits MLP, random")
    page.select_option("select[name=dataset]", "builtin:digits")
    page.select_option("select[name=space]", "mlp")
    page.select_option("select[name=strategy]", "random")
    page.select_option("select[name=estimator]", "train")
    assert page.is_visible("input[name=estimator__train__epochs]")
    assert not page.is_visible("input[name=strategy__evolution__population_size]")
    page.fill("input[name=space__mlp__max_depth]", "2")
    page.fill("input[name=estimator__train__epochs]", "1")
    page.fill("input[name=budget_trials]", "3")
    page.uncheck("input[name=start_now]")
    page.screenshot(path=str(SCREENSHOT.with_name("nas_form.png")), full_page=True)
    page.click("text=Create experiment")
    page.wait_for_url("**/experiments/*/")
    assert page.inner_text("#status-badge").strip().lower() == "draft"

    page.wait_for_selector("#live-state.on")  # the websocket is open
    page.evaluate("window.__noReload = 'still here'")
    page.click("#controls button[data-action=start]")

    # Points arrive over the websocket: the chart grows and the table fills, with no reload.
    page.wait_for_function(
        "() => { const el = document.getElementById('chart-score');"
        " return el && el.data && el.data[0].x.length >= 1; }",
        timeout=RUN_TIMEOUT_S * 1000,
    )  # fmt: skip
    assert _chart_points(page) >= 1
    assert page.locator("#trial-rows tr[data-trial]").count() >= 1
    assert page.evaluate("window.__noReload") == "still here"

    page.wait_for_function(
        "() => document.getElementById('status-badge').textContent.trim() === 'completed'",
        timeout=RUN_TIMEOUT_S * 1000,
    )  # fmt: skip
    page.wait_for_timeout(300)  # one more render pass (renders are coalesced every 100 ms)
    assert page.evaluate("window.__noReload") == "still here"
    assert page.locator("#trial-rows tr[data-trial]").count() == 3
    assert _chart_points(page) == 3
    assert page.inner_text("#progress-label").startswith("3 / 3")
    assert page.inner_text("#best-score") != "—"
    assert page.is_hidden("#controls button[data-action=start]")
    page.locator("#artifacts").wait_for(state="visible", timeout=30_000)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing cut off
    page.wait_for_timeout(500)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(SCREENSHOT.with_name("nas_experiment_mobile.png")), full_page=True)
    page.set_viewport_size({"width": 1360, "height": 900})

    # The trial page opens from the table.
    page.click("#trial-rows tr[data-trial] >> nth=0")
    page.wait_for_url("**/trials/*/")
    assert "Architecture" in page.content()
    page.wait_for_selector("#chart-curve .main-svg")
    page.screenshot(path=str(SCREENSHOT.with_name("nas_trial.png")), full_page=True)

    # The project page shows the finished experiment with its best score.
    page.click(".crumbs a >> nth=1")
    page.wait_for_url("**/projects/*/")
    row = page.locator("#experiment-table tr[data-experiment]")
    assert "completed" in row.inner_text().lower() and "3 / 3" in row.inner_text()
    page.screenshot(path=str(SCREENSHOT.with_name("nas_project.png")), full_page=True)
    assert page.errors == []
