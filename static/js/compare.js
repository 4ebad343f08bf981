// Compare page: one request to /api/experiments/compare/ (table rows + compact trial series), then
// one websocket per experiment appends finished trials. Nothing polls: a reconnect or a lost
// event (a gap in an experiment's sequence numbers) fetches the comparison again.
import {
  SequencedStream, escapeHtml, fmtCompact, fmtFixed, fmtInt, fmtScore, getJSON, liveLabel, openSocket, pageData,
  throttle, withId,
} from "./live.js";
import { COLORS, LEGEND, axis, baseLayout, bestSoFar, emptyNote, marker, react, splitFront, ticksFor } from "./charts.js";
import { TERMINAL_TRIAL_STATES, beats, countsAgainstBudget, isScored } from "./rules.js";
import { showArch } from "./arch.js";

const page = pageData();
const DASHES = ["solid", "dash", "dot", "dashdot"];
const TERMINAL_STATUSES = ["completed", "failed", "cancelled"];

const state = { experiments: [], loadedAt: 0 };

// ---------------------------------------------------------------------------------------------
// Data

function fromApi(row, index) {
  const s = row.series;
  const trials = new Map();
  for (let i = 0; i < s.id.length; i += 1) {
    trials.set(s.id[i], {
      id: s.id[i], number: s.number[i], state: s.state[i], objective: s.objective[i],
      finished_s: s.finished_s[i], params: s.params[i], latency_ms: s.latency_ms[i],
    });
  }
  return { ...row, series: undefined, trials, color: COLORS[index % COLORS.length], dash: DASHES[Math.floor(index / COLORS.length) % DASHES.length] };
}

async function loadComparison() {
  const query = new URLSearchParams({ ids: page.ids.join(","), project: page.project });
  try {
    const body = await getJSON(`${page.urls.compare}?${query}`);
    // One sequence per experiment; a row without `seq` leaves its start to the first event.
    return { experiments: body.experiments, seq: Object.fromEntries(body.experiments.map((e) => [e.id, e.seq])) };
  } catch (err) {
    document.getElementById("compare-rows").innerHTML =
      `<tr><td colspan="12" class="empty">Could not load the comparison (${escapeHtml(err.message)}).</td></tr>`;
    throw err;   // the stream tries again
  }
}

function reset(snapshot) {
  state.experiments = snapshot.experiments.map(fromApi);
  state.loadedAt = Date.now();
  renderSoon();
}

function experimentById(id) {
  return state.experiments.find((e) => e.id === id);
}

function apply(event) {
  const experiment = experimentById(event.experiment);
  if (!experiment) return;
  if (event.type === "trial.finished") finishTrial(experiment, event.trial);
  else if (event.type === "experiment.status") {
    const next = event.experiment_state;
    // A late event never takes a finished experiment back to running.
    if (!(TERMINAL_STATUSES.includes(experiment.status) && !TERMINAL_STATUSES.includes(next.status))) {
      experiment.status = next.status;
      experiment.started_at = next.started_at;
      experiment.finished_at = next.finished_at;
    }
  } else return;
  renderSoon();
}

// Events wait while the rows load (applied to the old rows they would be lost with them).
const stream = new SequencedStream({ load: loadComparison, apply, reset, keyOf: (e) => String(e.experiment) });

function finishTrial(experiment, t) {
  const metrics = t.metrics || {};
  const before = experiment.trials.get(t.id);
  const started = experiment.started_at ? Date.parse(experiment.started_at) : null;
  const finished = t.finished_at ? Date.parse(t.finished_at) : null;
  experiment.trials.set(t.id, {
    id: t.id, number: t.number, state: t.state, objective: t.objective,
    finished_s: started != null && finished != null ? (finished - started) / 1000 : null,
    params: metrics.params ?? null, latency_ms: metrics.latency_ms ?? null,
  });
  // A trial seen finished before was counted (or not) then.
  if (countsAgainstBudget(t) && !(before && TERMINAL_TRIAL_STATES.includes(before.state))) experiment.trials_spent += 1;
  const best = experiment.best_trial_id == null ? null
    : { objective: experiment.best_objective, number: experiment.best_trial, metrics: { params: experiment.best_params } };
  if (isScored(t) && beats(t, best)) {
    Object.assign(experiment, {
      best_trial: t.number, best_trial_id: t.id, best_objective: t.objective, best_val_acc: metrics.val_acc ?? null,
      best_test_acc: metrics.test_acc ?? null, best_params: metrics.params ?? null, best_flops: metrics.flops ?? null,
      best_latency_ms: metrics.latency_ms ?? null,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Derived series

function completed(experiment) {
  return Array.from(experiment.trials.values()).filter(isScored);
}

function wallSeconds(experiment) {
  if (!experiment.started_at) return null;
  if (experiment.finished_at) {
    return (Date.parse(experiment.finished_at) - Date.parse(experiment.started_at)) / 1000;
  }
  // Still going: the server's figure plus the time since it was read (no clock skew with the
  // server); an experiment started since then counts from its start.
  if (experiment.wall_time_s != null) return experiment.wall_time_s + (Date.now() - state.loadedAt) / 1000;
  return Math.max(0, (Date.now() - Date.parse(experiment.started_at)) / 1000);
}

function fmtDuration(seconds) {
  if (seconds == null) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function openTrial(id) {
  location.href = withId(page.urls.trial, id);
}

// ---------------------------------------------------------------------------------------------
// Rendering

const renderSoon = throttle(render, 250);

function render() {
  if (!state.loadedAt) return;
  renderTable();
  renderBestSoFar("chart-by-trial", "number", "trial", "d");
  renderBestSoFar("chart-by-time", "finished_s", "seconds since the experiment started", "");
  renderFronts("chart-params", "params", "Parameters", "log");
  renderFronts("chart-latency", "latency_ms", "Latency (ms, batch 1)", "linear");
  renderBestArchs();
}

// Each experiment's best architecture (the server's drawing), fetched again only when the best changes.
function renderBestArchs() {
  for (const e of state.experiments) {
    const figure = document.querySelector(`#best-arch-grid figure[data-experiment="${e.id}"]`);
    if (!figure || e.best_trial_id == null) continue;
    const slot = figure.querySelector(".arch-slot");
    if (slot.dataset.trial === String(e.best_trial_id)) continue;
    figure.querySelector("[data-best-label]").innerHTML =
      `<a href="${withId(page.urls.trial, e.best_trial_id)}">trial #${e.best_trial}</a> · ${fmtScore(e.best_objective)}`;
    showArch(slot, page.urls.arch, e.best_trial_id);
  }
}

function renderTable() {
  document.getElementById("compare-rows").innerHTML = state.experiments.map((e) => {
    const best = e.best_trial_id != null
      ? `<a href="${withId(page.urls.trial, e.best_trial_id)}" title="trial #${e.best_trial}">${fmtScore(e.best_objective)}</a>` : "—";
    return `<tr data-experiment="${e.id}">` +
      `<td><span aria-hidden="true" style="display:inline-block;width:.7rem;height:.7rem;border-radius:2px;margin-right:.4rem;background:${e.color}"></span>` +
      `<a href="${withId(page.urls.experiment, e.id)}">${escapeHtml(e.name)}</a> ` +
      `<span class="badge badge-${escapeHtml(e.status)}">${escapeHtml(e.status)}</span>` +
      `<div class="muted small">${escapeHtml(e.dataset)} · seed ${e.seed}</div></td>` +
      `<td>${escapeHtml(e.strategy)}</td><td>${escapeHtml(e.estimator)}</td><td>${escapeHtml(e.space)}</td>` +
      `<td class="num">${best}</td>` +
      `<td class="num">${fmtScore(e.best_test_acc)}</td>` +
      `<td class="num">${fmtInt(e.best_params)}</td>` +
      `<td class="num">${fmtCompact(e.best_flops)}</td>` +
      `<td class="num">${fmtFixed(e.best_latency_ms)}</td>` +
      `<td class="num">${e.trials_spent} / ${e.budget_trials}</td>` +
      `<td class="num">${fmtDuration(wallSeconds(e))}</td>` +
      `<td class="small"><a href="${withId(page.urls.csv, e.id)}" download>CSV</a> · <a href="${withId(page.urls.json, e.id)}" download>JSON</a></td></tr>`;
  }).join("");
}

// The legend holds one entry per experiment: a little more room above the plot.
function layout(extra) {
  return baseLayout({ legend: { ...LEGEND, y: 1.14 }, ...extra });
}

function renderBestSoFar(elementId, key, label, tickformat) {
  let any = false;
  const data = state.experiments.map((e) => {
    const { x, y, ids } = bestSoFar(completed(e), key);
    any = any || x.length > 0;
    const where = key === "number" ? "trial #%{x}" : "%{x:.1f} s";
    return {
      type: "scatter", mode: "lines+markers", name: e.name, x, y, customdata: ids,
      line: { color: e.color, dash: e.dash, width: 2, shape: "hv" }, marker: { color: e.color, size: 5 },
      hovertemplate: `${escapeHtml(e.name)}<br>${where}: best %{y:.4f}<extra></extra>`,
    };
  });
  react(elementId, data, layout({
    xaxis: axis(label, tickformat ? { tickformat } : { rangemode: "tozero" }),
    yaxis: axis("best so far (val acc)"),
    annotations: any ? [] : emptyNote("No completed trial yet"),
  }), openTrial);
}

function renderFronts(elementId, key, label, axisType) {
  const data = [];
  let any = false;
  for (const e of state.experiments) {
    const points = completed(e).filter((t) => t[key] != null && (axisType !== "log" || t[key] > 0));
    const { front, others } = splitFront(points, (t) => t[key]);
    any = any || points.length > 0;
    const hover = (t) => `${escapeHtml(e.name)} #${t.number}<br>score ${fmtScore(t.objective)}<br>${label} ${key === "params" ? fmtInt(t[key]) : fmtFixed(t[key])}`;
    data.push({
      type: "scatter", mode: "markers", name: `${e.name} (trials)`, legendgroup: String(e.id), showlegend: false,
      x: others.map((t) => t[key]), y: others.map((t) => t.objective), customdata: others.map((t) => t.id),
      text: others.map(hover), hoverinfo: "text", opacity: 0.3, marker: { color: e.color, size: 6 },
    });
    data.push({
      type: "scatter", mode: "lines+markers", name: e.name, legendgroup: String(e.id),
      x: front.map((p) => p.x), y: front.map((p) => p.y), customdata: front.map((p) => p.t.id),
      text: front.map((p) => hover(p.t)), hoverinfo: "text",
      line: { color: e.color, dash: e.dash, width: 2, shape: "hv" }, marker: marker(e.color, "circle", 9),
    });
  }
  const xs = data.flatMap((trace) => trace.x);
  react(elementId, data, layout({
    xaxis: axis(label, { type: axisType, ...ticksFor(axisType, xs) }),
    yaxis: axis("score (val acc)"),
    annotations: any ? [] : emptyNote("No measured completed trial yet"),
  }), openTrial);
}

// ---------------------------------------------------------------------------------------------
// Live updates: one socket per experiment; the comparison loads once every socket is open (so no
// finished trial falls between the rows and the events), or after a short wait without sockets.

const socketStates = new Map();
const opened = new Set();
const indicator = document.getElementById("live-indicator");

function showLive() {
  const states = Array.from(socketStates.values());
  const worst = ["denied", "reconnecting", "connecting"].find((s) => states.includes(s)) || "live";
  liveLabel(indicator, worst, 0);
}

const sockets = Object.keys(page.wsPaths).length;
for (const [id, path] of Object.entries(page.wsPaths)) {
  const experimentId = Number(id);
  openSocket(path, {
    onOpen: () => {
      if (opened.has(experimentId) || opened.size + 1 === sockets) stream.resync();
      opened.add(experimentId);
    },
    onEvent: (event) => stream.push(event),
    onState: (s) => { socketStates.set(experimentId, s); showLive(); },
  });
}
setTimeout(() => { if (!stream.loaded && !stream.syncing) stream.resync(); }, 1500);
window.nasCompare = state;   // for debugging in the console and for browser tests
