"""The pages' live-update logic (static/js/live.js, charts.js, rules.js) in a real browser, without
a server: events apply in sequence over a snapshot, a gap or a reconnect re-syncs, the socket backs
off exponentially, renders are coalesced, the Pareto front is right, and the budget and "best"
rules match the engine's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, ROOT

pytestmark = pytest.mark.e2e

STATIC = ROOT / "static"
ORIGIN = "http://nas.test"

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    # A developer without Chromium may skip; CI must not pass silently without the browser tests.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def page():
    """A blank page on a fake origin whose /static/ is served from the repository's static/."""

    def serve(route):
        path = route.request.url.removeprefix(ORIGIN)
        if path.startswith("/static/"):
            route.fulfill(path=str(STATIC / path.removeprefix("/static/")), content_type="text/javascript")
        else:
            route.fulfill(body="<!doctype html><title>t</title>", content_type="text/html")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.route(f"{ORIGIN}/**", serve)
        page.goto(f"{ORIGIN}/")
        try:
            yield page
        finally:
            browser.close()


def test_it_applies_events_in_sequence_and_resyncs_on_a_gap(page):
    result = page.evaluate("""async () => {
        const { SequencedStream } = await import('/static/js/live.js');
        const log = [];
        let snapshotSeq = 5, loads = 0;
        const stream = new SequencedStream({
            load: async () => { loads += 1; return { seq: snapshotSeq }; },
            reset: (s) => log.push('snapshot@' + s.seq),
            apply: (e) => log.push(e.seq),
        });
        await stream.resync();
        for (const seq of [4, 5, 6, 7, 7]) stream.push({ seq });  // old, duplicate and new events
        snapshotSeq = 9;
        stream.push({ seq: 9 });          // 8 was lost: re-sync; 9 is in the new snapshot
        await stream.syncing;
        stream.push({ seq: 10 });
        return { log, loads };
    }""")
    assert result == {"log": ["snapshot@5", 6, 7, "snapshot@9", 10], "loads": 2}


def test_it_buffers_events_that_arrive_while_the_snapshot_loads(page):
    result = page.evaluate("""async () => {
        const { SequencedStream } = await import('/static/js/live.js');
        const log = [];
        let release;
        const stream = new SequencedStream({
            load: () => new Promise((resolve) => { release = () => resolve({ seq: 6 }); }),
            reset: (s) => log.push('snapshot@' + s.seq),
            apply: (e) => log.push(e.seq),
        });
        const done = stream.resync();
        for (const seq of [8, 6, 7]) stream.push({ seq });  // out of order, one already in the snapshot
        release();
        await done;
        return log;
    }""")
    assert result == ["snapshot@6", 7, 8]


def test_it_loads_again_when_a_resync_is_asked_for_during_one(page):
    result = page.evaluate("""async () => {
        const { SequencedStream } = await import('/static/js/live.js');
        let loads = 0;
        const stream = new SequencedStream({
            load: async () => { loads += 1; await new Promise((r) => setTimeout(r, 20)); return { seq: loads }; },
            reset: () => {}, apply: () => {},
        });
        const first = stream.resync();
        stream.resync();                  // a reconnect while the first snapshot loads
        await first;
        return { loads, seq: stream.seq };
    }""")
    assert result == {"loads": 2, "seq": 2}


def test_it_keeps_one_sequence_per_key_and_starts_an_unknown_one_at_its_first_event(page):
    result = page.evaluate("""async () => {
        const { SequencedStream } = await import('/static/js/live.js');
        const log = [];
        let loads = 0;
        const stream = new SequencedStream({
            // Experiment 1's number is known; experiment 2's is not (an API that reads none).
            load: async () => { loads += 1; return { seq: { 1: 3 } }; },
            reset: () => log.push('snapshot'),
            apply: (e) => log.push(`${e.experiment}:${e.seq}`),
            keyOf: (e) => String(e.experiment),
        });
        await stream.resync();
        for (const [experiment, seq] of [[1, 3], [1, 4], [2, 7], [2, 8], [1, 5], [2, 8]]) {
            stream.push({ experiment, seq });
        }
        stream.push({ experiment: 2, seq: 10 });   // 9 was lost: re-sync
        await stream.syncing;
        return { log, loads };
    }""")
    assert result == {"log": ["snapshot", "1:4", "2:7", "2:8", "1:5", "snapshot", "2:10"], "loads": 2}


def test_it_loads_the_first_snapshot_when_an_event_comes_first(page):
    result = page.evaluate("""async () => {
        const { SequencedStream } = await import('/static/js/live.js');
        const log = [];
        const stream = new SequencedStream({
            load: async () => ({ seq: 4 }),
            reset: (s) => log.push('snapshot@' + s.seq),
            apply: (e) => log.push(e.seq),
        });
        stream.push({ seq: 5 });
        await stream.syncing;
        return log;
    }""")
    assert result == ["snapshot@4", 5]


def test_it_counts_the_budget_and_breaks_ties_for_best_as_the_engine(page):
    result = page.evaluate("""async () => {
        const { bestTrial, countsAgainstBudget } = await import('/static/js/rules.js');
        const trials = [
            { id: 1, number: 0, state: 'completed', objective: 0.9, metrics: { params: 500 } },
            { id: 2, number: 1, state: 'completed', objective: 0.9, metrics: { params: 200 } },
            { id: 3, number: 2, state: 'completed', objective: 0.9, metrics: { params: 200 } },
            { id: 4, number: 3, state: 'pruned', objective: 0.95, metrics: {} },
        ];
        const budget = [
            { state: 'infeasible', started_at: null }, { state: 'infeasible', started_at: '2026-01-01T00:00:00Z' },
            { state: 'failed', started_at: null }, { state: 'running', started_at: '2026-01-01T00:00:00Z' },
            { state: 'completed', started_at: '2026-01-01T00:00:00Z' },
        ].map(countsAgainstBudget);
        return { best: bestTrial(trials).id, budget };
    }""")
    assert result == {"best": 2, "budget": [False, True, True, False, True]}


def test_it_reconnects_with_exponential_backoff_and_resyncs_on_open(page):
    result = page.evaluate("""async () => {
        const { openSocket } = await import('/static/js/live.js');
        const sockets = [];
        const RealWebSocket = window.WebSocket;
        window.WebSocket = class { constructor(url) { this.url = url; this.at = performance.now(); sockets.push(this); } close() {} };
        const opens = [], states = [], events = [];
        try {
            openSocket('/ws/experiments/7/', {
                onOpen: () => opens.push(sockets.length),
                onEvent: (e) => events.push(e),
                onState: (s) => states.push(s),
            });
            sockets[0].onopen();
            sockets[0].onmessage({ data: JSON.stringify({ type: 'trial.created', seq: 1 }) });
            sockets[0].onmessage({ data: 'not json' });
            sockets[0].onclose({ code: 1006 });
            await new Promise((r) => setTimeout(r, 800));     // first retry after 0.5-0.65 s
            const firstRetry = sockets.length;
            const closedAt = performance.now();
            sockets[1].onclose({ code: 1006 });               // then after 1-1.3 s
            await new Promise((r) => setTimeout(r, 700));
            const tooEarly = sockets.length;
            await new Promise((r) => setTimeout(r, 800));
            const secondRetry = sockets.length;
            sockets[2].onopen();
            sockets[2].onclose({ code: 4403 });               // refused: no more retries
            await new Promise((r) => setTimeout(r, 800));
            return { url: sockets[0].url, firstRetry, tooEarly, secondRetry, total: sockets.length,
                     gap: sockets[2].at - closedAt, opens, events, last: states[states.length - 1] };
        } finally {
            window.WebSocket = RealWebSocket;
        }
    }""")
    assert result["url"] == "ws://nas.test/ws/experiments/7/"
    assert result["firstRetry"] == 2
    assert result["tooEarly"] == 2 and result["secondRetry"] == 3
    assert 1000 <= result["gap"] <= 1450
    assert result["total"] == 3
    assert result["opens"] == [1, 3]  # every open (first and after a reconnect) re-syncs
    assert result["events"] == [{"type": "trial.created", "seq": 1}]
    assert result["last"] == "denied"


def test_it_coalesces_renders(page):
    result = page.evaluate("""async () => {
        const { throttle } = await import('/static/js/live.js');
        let calls = 0;
        const schedule = throttle(() => { calls += 1; }, 100);
        for (let i = 0; i < 200; i += 1) schedule();
        await new Promise((r) => setTimeout(r, 50));
        const soon = calls;
        await new Promise((r) => setTimeout(r, 100));
        for (let i = 0; i < 50; i += 1) schedule();
        await new Promise((r) => setTimeout(r, 250));
        return { soon, calls };
    }""")
    assert result == {"soon": 1, "calls": 2}


def test_it_finds_the_pareto_front(page):
    front = page.evaluate("""async () => {
        const { paretoFront } = await import('/static/js/charts.js');
        const points = [
            { x: 100, y: 0.90, id: 'a' }, { x: 50, y: 0.85, id: 'b' }, { x: 200, y: 0.95, id: 'c' },
            { x: 150, y: 0.88, id: 'd' }, { x: 50, y: 0.80, id: 'e' }, { x: 300, y: 0.95, id: 'f' },
            { x: 10, y: 0.5, id: 'g' },
        ];
        return paretoFront(points).map((p) => p.id);
    }""")
    assert front == ["g", "b", "a", "c"]
