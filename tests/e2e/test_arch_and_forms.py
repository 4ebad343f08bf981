"""Browser tests of issue 12's architecture pictures and forms, against `manage.py up` with seeded
rows (nothing trains): the trial page draws the cell (6 edges minus the `none` ones) and copies
its NAS-Bench-201 string, the table tooltip, the trial diff highlights exactly the changed edges,
rename and delete, the number-field error, the end-of-experiment banner, and no page asks any
host but the app's own for anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, manage, running_up, server_env

pytestmark = pytest.mark.e2e

USERNAME, PASSWORD = "e2e-arch", "e2e-password-123"
CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
SHOTS = Path("/tmp")
OTHER = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

SEED = f"""
import json
from django.contrib.auth import get_user_model
from experiments.models import Dataset, Experiment, Project, Trial, TrialMetric
from search_engine.registry import create_space

user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})
project = Project.create_for(user, "Cells")
digits = Dataset.objects.create(project=project, name="digits", source="builtin", builtin_name="digits",
    created_by=user, kind="image", input_shape=[1, 8, 8], num_classes=10, num_rows=1797,
    class_names=[str(i) for i in range(10)], class_counts=[180] * 10)
space = create_space("nb201", C=8, N=1)
def make(name, status, **fields):
    return Experiment.objects.create(project=project, dataset=digits, name=name, status=status,
        space=fields.pop("space", "nb201"), space_config=fields.pop("space_config", {{"C": 8, "N": 1}}),
        strategy="random", estimator="train", estimator_config={{"epochs": 2}}, budget_trials=2,
        created_by=user, **fields)
cells = make("NB201 cells", "completed")
trials = []
for number, (text, score) in enumerate([({CELL!r}, 0.9), ({OTHER!r}, 0.8)]):
    trial = Trial.objects.create(experiment=cells, number=number, arch=space.from_string(text),
        fingerprint=str(number), state="completed", objective=score, metrics={{"params": 1000 + number}})
    for step in (1, 2):
        TrialMetric.objects.create(trial=trial, step=step, values={{"val_acc": score - 0.1 / step,
                                                                    "train_acc": score - 0.2 / step}})
    trials.append(trial.pk)
mlp = make("MLP", "completed", space="mlp", space_config={{"max_depth": 2}})
Trial.objects.create(experiment=mlp, number=0, fingerprint="m", state="completed", objective=0.7,
    arch={{"depth": 2, "width_1": 64, "width_2": 32, "activation": "relu", "dropout": 0.0,
           "batch_norm": False, "residual": False}}, metrics={{"params": 500}})
draft = make("Throwaway draft", "draft")
# Paused, not running: the workers' periodic sweep advances running experiments, so a seeded
# "running" one would train and finish on its own before the banner test ends it.
running = make("Watched search", "paused")
print(json.dumps({{"project": project.pk, "dataset": digits.pk, "cells": cells.pk, "mlp": mlp.pk,
                   "draft": draft.pk, "running": running.pk, "trials": trials}}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`manage.py up` with the seeded rows; yields (base URL, server env, ids)."""
    tmp = tmp_path_factory.mktemp("arch")
    env = server_env(tmp / "data")
    manage(env, "migrate", "--verbosity", "0")
    ids = json.loads(manage(env, "shell", "-c", SEED).strip().splitlines()[-1])
    with running_up(env, tmp / "server.log") as base:
        yield base, env, ids


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(site, browser):
    """A logged-in page; `page.requests` lists every URL it asked for, `page.errors` its JS errors."""
    base, _, _ = site
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.errors, page.requests = [], []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    context.on("request", lambda request: page.requests.append(request.url))
    page.on("websocket", lambda ws: page.requests.append(ws.url))
    page.goto("/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    try:
        yield page
    finally:
        context.close()


def drawn_edges(page, scope: str) -> dict:
    return page.eval_on_selector_all(
        f"{scope} svg.arch-drawing g.edge",
        "gs => Object.fromEntries(gs.map(g => [g.dataset.edge, [g.dataset.op, g.classList.contains('changed')]]))",
    )


def test_the_trial_page_draws_the_cell_and_copies_its_string(site, page):
    _, _, ids = site
    page.goto(f"/trials/{ids['trials'][0]}/")
    edges = drawn_edges(page, "#arch-drawing")
    assert edges == {"1<-0": ["nor_conv_3x3", False], "2<-1": ["skip_connect", False],
                     "3<-0": ["avg_pool_3x3", False], "3<-2": ["nor_conv_1x1", False]}  # fmt: skip
    assert page.locator("#arch-drawing g.edge text").all_text_contents() == [op for op, _ in edges.values()]
    assert page.is_visible("#arch-drawing svg")
    page.click("#copy-arch")
    page.wait_for_function("() => document.getElementById('copy-state').textContent !== ''")
    assert page.evaluate("navigator.clipboard.readText()") == CELL
    page.screenshot(path=str(SHOTS / "nas_arch_trial.png"), full_page=True)
    assert page.errors == []


def test_hovering_a_trial_number_shows_its_drawing(site, page):
    _, _, ids = site
    page.goto(f"/experiments/{ids['cells']}/")
    link = page.locator("#trial-rows tr[data-trial] td:first-child a").first
    link.hover()
    page.wait_for_selector("#arch-tooltip svg.arch-drawing")
    assert page.is_visible("#arch-tooltip") and len(drawn_edges(page, "#arch-tooltip")) == 4
    page.screenshot(path=str(SHOTS / "nas_arch_tooltip.png"), full_page=True)
    page.mouse.move(5, 5)
    page.wait_for_selector("#arch-tooltip", state="hidden")
    assert page.errors == []


def test_the_diff_highlights_exactly_the_changed_edges(site, page):
    _, _, ids = site
    page.goto(f"/experiments/{ids['cells']}/")
    page.fill("#diff-a", "0")
    page.fill("#diff-b", "1")
    page.click("#diff-form button[type=submit]")
    page.wait_for_url("**/diff/?a=0&b=1")
    for side, ops in ((0, ("skip_connect", "nor_conv_1x1")), (1, ("nor_conv_1x1", "skip_connect"))):
        edges = drawn_edges(page, f'[data-side="{side}"]')
        assert {e for e, (_, changed) in edges.items() if changed} == {"2<-1", "3<-2"}
        assert (edges["2<-1"][0], edges["3<-2"][0]) == ops
        assert len(edges) == 4
    page.wait_for_selector("#chart-diff-curves .main-svg")
    names = page.evaluate("document.getElementById('chart-diff-curves').data.map(t => t.name)")
    assert names == ["#0 val_acc", "#0 train_acc", "#1 val_acc", "#1 train_acc"]
    page.screenshot(path=str(SHOTS / "nas_arch_diff.png"), full_page=True)
    assert page.errors == []


def test_the_compare_page_draws_each_best_architecture(site, page):
    _, _, ids = site
    page.goto(f"/projects/{ids['project']}/compare/?ids={ids['cells']},{ids['mlp']}")
    page.wait_for_selector(f'#best-arch-grid figure[data-experiment="{ids["mlp"]}"] svg[data-space="mlp"]')
    assert len(drawn_edges(page, f'#best-arch-grid figure[data-experiment="{ids["cells"]}"]')) == 4
    page.screenshot(path=str(SHOTS / "nas_arch_compare.png"), full_page=True)
    assert page.errors == []


def test_rename_and_delete_an_experiment_and_rename_a_dataset(site, page):
    _, _, ids = site
    page.goto(f"/experiments/{ids['draft']}/")
    page.click("#manage-menu summary")
    page.fill("#rename-name", "Kept draft")
    page.click("#rename-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Kept draft')")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#manage-menu summary")
    page.click("#delete-form button[type=submit]")
    page.wait_for_url(f"**/projects/{ids['project']}/")
    assert dialogs and "Kept draft" in dialogs[0]
    page.wait_for_selector("#experiment-table tr[data-experiment]")
    assert page.locator(f'#experiment-table tr[data-experiment="{ids["draft"]}"]').count() == 0
    page.goto(f"/projects/{ids['project']}/activity/")
    log = page.inner_text("main")
    assert "Kept draft" in log and "renamed" in log and "deleted" in log

    page.goto(f"/datasets/{ids['dataset']}/")
    page.click("#manage-menu summary")
    page.fill("#rename-name", "Handwritten digits")
    page.click("#rename-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Handwritten digits')")
    page.click("#new-experiment")
    page.wait_for_url("**/experiments/new/?dataset=*")
    assert page.eval_on_selector("select[name=dataset]", "s => s.value") == str(ids["dataset"])
    assert page.errors == []


def test_a_non_number_is_an_inline_error_naming_the_field(site, page):
    _, _, ids = site
    page.goto(f"/projects/{ids['project']}/experiments/new/")
    epochs = page.locator("input[name=estimator__train__epochs]")
    epochs.fill("")
    epochs.press_sequentially("1e")  # Chromium takes only number-like keys; "1e" is still no number
    assert page.evaluate("document.querySelector('input[name=estimator__train__epochs]').validity.badInput")
    error = page.locator("input[name=estimator__train__epochs] >> xpath=.. >> .client-error")
    assert error.inner_text() == "epochs must be a whole number."
    url = page.url
    page.click("text=Create experiment")
    page.wait_for_timeout(300)
    assert page.url == url and page.evaluate("document.activeElement.name") == "estimator__train__epochs"
    epochs.fill("3")
    assert error.count() == 0
    assert page.locator("input[name=device]").count() + page.locator("select[name=device]").count() == 1
    assert page.locator("[name^='estimator__'][name$='__device'], [name^='estimator__'][name$='__threads']").count() == 0
    assert page.errors == []


def test_a_banner_says_when_a_watched_experiment_ends(site, page):
    _, env, ids = site
    page.goto(f"/experiments/{ids['running']}/")
    page.wait_for_selector("#live-state.on")
    manage(env, "shell", "-c", "from django.db import transaction; from experiments.models import Experiment; "
           f"transaction.atomic()(lambda: Experiment.objects.get(pk={ids['running']}).finish('completed'))()")  # fmt: skip
    page.wait_for_selector("#ended-banner:not([hidden])", timeout=30_000)
    assert "Watched search" in page.inner_text("#ended-banner") and "completed" in page.inner_text("#ended-banner")
    page.screenshot(path=str(SHOTS / "nas_arch_banner.png"))
    assert page.errors == []


def test_no_page_asks_another_host_for_anything(site, page):
    base, _, ids = site
    pages = [
        "/", f"/projects/{ids['project']}/", f"/experiments/{ids['cells']}/", f"/trials/{ids['trials'][0]}/",
        f"/experiments/{ids['cells']}/diff/?a=0&b=1", f"/projects/{ids['project']}/compare/?ids={ids['cells']},{ids['mlp']}",
        f"/datasets/{ids['dataset']}/", f"/projects/{ids['project']}/experiments/new/", f"/experiments/{ids['cells']}/clone/",
        f"/projects/{ids['project']}/datasets/new/", f"/projects/{ids['project']}/members/",
        f"/projects/{ids['project']}/activity/", "/account/password/", "/api/", "/api/docs/", "/api/redoc/", "/admin/",
    ]  # fmt: skip
    origin = urlsplit(base)
    for path in pages:
        page.requests.clear()
        page.goto(path, wait_until="load")
        page.wait_for_timeout(700)  # scripts' own fetches (snapshots, samples, drawings, Redoc's schema)
        foreign = [u for u in page.requests if not u.startswith(("data:", "blob:"))
                   and (urlsplit(u).hostname, urlsplit(u).port) != (origin.hostname, origin.port)]  # fmt: skip
        assert foreign == [], path
        assert page.requests, path
    assert page.errors == []
