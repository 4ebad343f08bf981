// Experiment page: REST snapshot + websocket deltas -> Plotly charts, trial table, status.
// Nothing polls: after the snapshot every change arrives as an event; a gap or a reconnect
// re-syncs from the snapshot API.
import {
  SequencedStream, escapeHtml, fmtCompact, fmtFixed, fmtInt, fmtScore, getJSON, liveLabel,
  pageData, postJSON, streamOver, throttle, withId,
} from "./live.js";
import {
  COLORS, axis, baseLayout, bestSoFar, emptyNote, marker, react, splitFront, stepAxis, ticksFor,
} from "./charts.js";
import { bestTrial, countsAgainstBudget, isScored } from "./rules.js";
import { applyProgress, bindProxySelects, progressMap, renderOneshot, renderProxy } from "./oneshot.js";
import { ArtifactList, errorText, requestJob } from "./downloads.js";

const page = pageData();
const TERMINAL_STATUSES = ["completed", "failed", "cancelled"];
const MAX_ROWS = 300;          // table rows rendered at once; the filter narrows the rest
const FINISHED_CURVES = 8;     // finished trials' curves kept (faded) beside the running ones

const state = {
  experiment: null,
  trials: new Map(),   // id -> trial summary
  curves: new Map(),   // trial id -> [{step, ...values}]
  progress: new Map(), // one-shot job: "phase:step" -> {phase, step, epoch, supernet_loss, alphas, ...}
  sort: { key: "number", dir: 1 },
  filter: { state: "", text: "" },
};

// ---------------------------------------------------------------------------------------------
// Events

function reset(snapshot) {
  state.experiment = snapshot.experiment;
  state.trials = new Map(snapshot.trials.map((t) => [t.id, t]));
  state.curves = new Map(Object.entries(snapshot.curves || {}).map(([id, points]) => [Number(id), points]));
  state.progress = progressMap(snapshot.progress);
  loadArtifacts();   // the Downloads card re-syncs with the rest
  scheduleRender(...ALL_PARTS);
}

// Each handler updates the state and returns the parts of the page it changed: an epoch only
// redraws the learning curves, not the five charts and the table.
const handlers = {
  "trial.created": (e) => { state.trials.set(e.trial.id, e.trial); return ["status", "table"]; },
  "trial.started": (e) => { state.trials.set(e.trial.id, e.trial); return ["status", "table", "curves"]; },
  "trial.finished": (e) => { state.trials.set(e.trial.id, e.trial); return ALL_PARTS; },
  "trial.epoch": (e) => {
    const points = state.curves.get(e.trial_id) || [];
    const point = { step: e.step, ...e.values };
    const at = points.findIndex((p) => p.step === e.step);
    if (at >= 0) points[at] = point; else points.push(point);
    state.curves.set(e.trial_id, points);
    const trial = state.trials.get(e.trial_id);
    if (trial && trial.state === "queued") {
      trial.state = "running";
      return ["curves", "status", "table"];
    }
    return ["curves"];
  },
  "experiment.progress": (e) => applyProgress(state, e.values),
  // Model packages (downloads.js): they change no chart, so no part re-renders.
  "artifact.progress": (e) => { downloads.upsert(e.artifact); return []; },
  "artifact.ready": (e) => { downloads.upsert(e.artifact); return []; },
  "artifact.failed": (e) => { downloads.upsert(e.artifact); return []; },
  "experiment.status": (e) => {
    const wasTerminal = TERMINAL_STATUSES.includes(state.experiment.status);
    state.experiment = { ...state.experiment, ...e.experiment_state };
    // The best model is exported when the experiment finishes: fetch the download list then.
    if (!wasTerminal && TERMINAL_STATUSES.includes(state.experiment.status)) loadArtifacts();
    return ["status"];
  },
};

function apply(event) {
  const handler = handlers[event.type];
  if (!handler || !state.experiment) return;
  scheduleRender(...handler(event));
}

const stream = new SequencedStream({ load: () => getJSON(page.urls.snapshot), apply, reset });

// ---------------------------------------------------------------------------------------------
// Derived data

function trialList() {
  return Array.from(state.trials.values()).sort((a, b) => a.number - b.number);
}

function metric(trial, key) {
  if (key === "objective") return trial.objective;
  if (key === "number" || key === "state" || key === "duration_s") return trial[key];
  return trial.metrics ? trial.metrics[key] : undefined;
}

function scored(trials) {
  return trials.filter(isScored);
}

function trialUrl(id) {
  return withId(page.urls.trial, id);
}

function openTrial(id) {
  location.href = trialUrl(id);
}

// ---------------------------------------------------------------------------------------------
// Rendering (coalesced: at most one pass every 100 ms however many events arrive)

const ALL_PARTS = ["status", "results", "curves", "table", "oneshot"];
const dirty = new Set();
const renderSoon = throttle(render, 100);

function scheduleRender(...parts) {
  for (const part of parts) dirty.add(part);
  renderSoon();
}

function render() {
  if (!state.experiment) return;
  const trials = trialList();
  if (dirty.has("status")) renderStatus(trials);
  if (dirty.has("results")) {
    renderScore(trials);
    renderTradeoff(trials, "params", "chart-params", "Parameters", "log");
    renderTradeoff(trials, "latency_ms", "chart-latency", "Latency (ms, batch 1)", "linear");
    renderParcoords(trials);
    renderProxy(trials, state, openTrial);
  }
  if (dirty.has("oneshot")) renderOneshot(state);
  if (dirty.has("curves")) renderCurves(trials);
  if (dirty.has("table")) renderTable(trials);
  dirty.clear();
}

function renderStatus(trials) {
  const exp = state.experiment;
  const badge = document.getElementById("status-badge");
  badge.textContent = exp.status;
  badge.className = `badge badge-${exp.status}`;
  const message = document.getElementById("status-message");
  message.textContent = exp.status_message || "";
  message.hidden = !exp.status_message;
  message.classList.toggle("status-failed", exp.status === "failed");

  const budget = exp.budget_trials || page.budgetTrials;
  const done = trials.filter(countsAgainstBudget).length;
  document.getElementById("progress-bar").style.width = `${Math.min(100, (100 * done) / budget)}%`;
  document.getElementById("progress").setAttribute("aria-valuenow", String(done));
  document.getElementById("progress-label").textContent = `${done} / ${budget} trials`;
  document.getElementById("count-running").textContent = trials.filter((t) => t.state === "running").length;
  document.getElementById("count-bad").textContent =
    `${trials.filter((t) => t.state === "failed").length} / ${trials.filter((t) => t.state === "infeasible").length}`;
  const best = bestTrial(trials);
  document.getElementById("best-score").textContent = best ? fmtScore(best.objective) : "—";
  document.getElementById("best-trial").innerHTML = best
    ? `<a href="${trialUrl(best.id)}">#${best.number}</a>` : "—";

  document.querySelectorAll("#controls button[data-action]").forEach((button) => {
    const allowed = (page.actionStatuses[button.dataset.action] || []).includes(exp.status);
    button.hidden = !allowed;
  });
}

function hoverText(t) {
  return `#${t.number} · ${t.state}<br>score ${fmtScore(t.objective)}` +
    (t.metrics && t.metrics.params != null ? `<br>params ${fmtInt(t.metrics.params)}` : "") +
    (t.metrics && t.metrics.latency_ms != null ? `<br>latency ${fmtFixed(t.metrics.latency_ms)} ms` : "");
}

function renderScore(trials) {
  const withScore = trials.filter((t) => t.objective != null && ["completed", "pruned", "infeasible"].includes(t.state));
  const byState = (s) => withScore.filter((t) => t.state === s);
  const trace = (list, name, color, symbol = "circle") => ({
    type: "scatter", mode: "markers", name,
    x: list.map((t) => t.number), y: list.map((t) => t.objective),
    customdata: list.map((t) => t.id), text: list.map(hoverText), hoverinfo: "text",
    marker: marker(color, symbol),
  });
  const best = bestSoFar(scored(trials), "number");
  const data = [
    trace(byState("completed"), "completed", "#2563eb"),
    trace(byState("pruned"), "pruned", "#f59e0b", "diamond"),
    trace(byState("infeasible"), "infeasible", "#9ca3af", "x"),
    { type: "scatter", mode: "lines", name: "best so far", x: best.x, y: best.y, line: { color: "#16a34a", width: 2, shape: "hv" }, hoverinfo: "skip" },
  ];
  const last = trials.length ? trials[trials.length - 1].number : 0;
  react("chart-score", data, baseLayout({
    xaxis: stepAxis("trial", 0, last, { tickformat: "d" }),
    yaxis: axis("score (val acc)"),
    annotations: withScore.length ? [] : emptyNote("Waiting for the first finished trial"),
  }), openTrial);
}

function renderTradeoff(trials, key, elementId, label, axisType) {
  const points = trials.filter((t) => t.objective != null && t.metrics && t.metrics[key] != null
    && ["completed", "infeasible"].includes(t.state));
  const feasible = points.filter((t) => t.state === "completed");
  const infeasible = points.filter((t) => t.state !== "completed");
  const { front, others } = splitFront(feasible, (t) => t.metrics[key]);
  const data = [
    { type: "scatter", mode: "markers", name: "trials", x: others.map((t) => t.metrics[key]), y: others.map((t) => t.objective),
      customdata: others.map((t) => t.id), text: others.map(hoverText), hoverinfo: "text", marker: marker("#93c5fd") },
    { type: "scatter", mode: "markers", name: "over a limit", x: infeasible.map((t) => t.metrics[key]), y: infeasible.map((t) => t.objective),
      customdata: infeasible.map((t) => t.id), text: infeasible.map(hoverText), hoverinfo: "text", marker: marker("#9ca3af", "x") },
    { type: "scatter", mode: "lines+markers", name: "Pareto front", x: front.map((p) => p.x), y: front.map((p) => p.y),
      customdata: front.map((p) => p.t.id), text: front.map((p) => hoverText(p.t)), hoverinfo: "text",
      line: { color: "#dc2626", width: 2, shape: "hv" }, marker: marker("#dc2626", "circle", 10) },
  ];
  const limit = (page.constraints || {})[page.rules.constraint_limits[key]];
  const shapes = [];
  const annotations = points.length ? [] : emptyNote("Waiting for measured trials");
  if (limit != null) {
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: limit, x1: limit, y0: 0, y1: 1, line: { color: "#dc2626", dash: "dash", width: 1.5 } });
    annotations.push({ xref: "x", yref: "paper", x: axisType === "log" ? Math.log10(limit) : limit, y: 1, text: `limit ${fmtCompact(limit)}`,
      showarrow: false, xanchor: "right", yanchor: "top", font: { color: "#dc2626", size: 11 } });
  }
  const xs = points.map((t) => t.metrics[key]).concat(limit != null ? [limit] : []);
  react(elementId, data, baseLayout({
    xaxis: axis(label, { type: axisType, ...ticksFor(axisType, xs) }),
    yaxis: axis("score (val acc)"),
    shapes, annotations,
  }), openTrial);
}

function curveKey(points) {
  for (const key of ["val_acc", "val_accuracy", "accuracy"]) if (points.some((p) => p[key] != null)) return key;
  const first = points.find((p) => Object.keys(p).some((k) => k !== "step"));
  return first ? Object.keys(first).find((k) => k !== "step") : "val_acc";
}

function renderCurves(trials) {
  const byId = new Map(trials.map((t) => [t.id, t]));
  const running = [];
  const finished = [];
  for (const [id, points] of state.curves) {
    const trial = byId.get(id);
    if (!trial || !points.length) continue;
    (trial.state === "running" ? running : finished).push([trial, points]);
  }
  finished.sort((a, b) => b[0].number - a[0].number);
  const key = curveKey([...running, ...finished].flatMap(([, p]) => p));
  const trace = ([trial, points], live) => {
    const sorted = [...points].sort((a, b) => a.step - b.step);
    return {
      type: "scatter", mode: "lines+markers", name: `#${trial.number}${live ? " (running)" : ""}`,
      x: sorted.map((p) => p.step), y: sorted.map((p) => p[key]),
      customdata: sorted.map(() => trial.id), hovertemplate: `#${trial.number} epoch %{x}: %{y:.4f}<extra></extra>`,
      line: { color: COLORS[trial.number % COLORS.length], width: live ? 2.5 : 1.5 },
      marker: { size: live ? 7 : 6 },
      opacity: live ? 1 : 0.55,
    };
  };
  const maxStep = Math.max(0, ...[...running, ...finished].flatMap(([, p]) => p.map((q) => q.step)));
  const data = [
    ...finished.slice(0, FINISHED_CURVES).reverse().map((c) => trace(c, false)),
    ...running.map((c) => trace(c, true)),
  ];
  react("chart-curves", data, baseLayout({
    showlegend: data.length > 0 && data.length <= 10,
    xaxis: stepAxis("epoch", 1, maxStep),
    yaxis: axis(key),
    annotations: data.length ? [] : emptyNote("Curves appear while trials train"),
  }), openTrial);
}

function renderParcoords(trials) {
  const done = scored(trials);
  const choices = { ...(page.choices || {}) };
  // Labels the space did not announce (should not happen) get axes from the observed values.
  for (const t of done) for (const label of Object.keys(t.arch || {})) {
    if (!choices[label]) choices[label] = [];
    if (!choices[label].some((v) => JSON.stringify(v) === JSON.stringify(t.arch[label]))) {
      if (!(page.choices || {})[label]) choices[label].push(t.arch[label]);
    }
  }
  const labels = Object.keys(choices).filter((label) => choices[label].length > 1);
  const dimensions = labels.map((label) => {
    const values = choices[label];
    const keys = values.map((v) => JSON.stringify(v));
    return {
      label,
      range: [0, values.length - 1],
      tickvals: values.map((_, i) => i),
      ticktext: values.map((v) => String(v)),
      values: done.map((t) => keys.indexOf(JSON.stringify((t.arch || {})[label]))),
    };
  });
  const scores = done.map((t) => t.objective);
  dimensions.push({ label: "score", values: scores, tickformat: ".3f" });
  const element = document.getElementById("chart-parcoords");
  if (!done.length) {
    react(element, [], baseLayout({ xaxis: { visible: false }, yaxis: { visible: false },
      annotations: emptyNote("Each finished trial becomes one line across its architecture choices") }));
    return;
  }
  const narrow = element.clientWidth < 640;
  react(element, [{
    type: "parcoords",
    labelangle: narrow ? -35 : 0,
    labelside: narrow ? "bottom" : "top",
    line: { color: scores, colorscale: "Viridis", showscale: false },
    dimensions,
  }], { margin: { l: 50, r: 50, t: narrow ? 20 : 40, b: narrow ? 60 : 20 }, paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 11, color: "#1d2530" } });
}

// ---------------------------------------------------------------------------------------------
// Trial table: sort and filter client-side over the snapshot

function archText(trial) {
  return Object.entries(trial.arch || {}).map(([k, v]) => `${k}=${v}`).join(" ");
}

function renderTable(trials) {
  const { key, dir } = state.sort;
  const text = state.filter.text.trim().toLowerCase();
  let rows = trials;
  if (state.filter.state) rows = rows.filter((t) => t.state === state.filter.state);
  if (text) {
    rows = rows.filter((t) => `#${t.number} ${t.number} ${t.state} ${archText(t)} ${t.error || ""}`.toLowerCase().includes(text));
  }
  rows = [...rows].sort((a, b) => {
    const va = metric(a, key);
    const vb = metric(b, key);
    if (va == null && vb == null) return a.number - b.number;
    if (va == null) return 1;   // missing values last in both directions
    if (vb == null) return -1;
    if (va < vb) return -dir;
    if (va > vb) return dir;
    return a.number - b.number;
  });
  const best = bestTrial(trials);
  const shown = rows.slice(0, MAX_ROWS);
  const body = document.getElementById("trial-rows");
  if (!shown.length) {
    body.innerHTML = `<tr><td colspan="9" class="empty">${trials.length ? "No trial matches the filter." : "No trials yet."}</td></tr>`;
  } else {
    body.innerHTML = shown.map((t) => {
      const m = t.metrics || {};
      return `<tr data-trial="${t.id}" class="${best && best.id === t.id ? "best" : ""}">` +
        `<td class="num"><a href="${trialUrl(t.id)}">${t.number}</a></td>` +
        `<td><span class="badge badge-${escapeHtml(t.state)}">${escapeHtml(t.state)}</span></td>` +
        `<td class="num">${fmtScore(t.objective)}</td>` +
        `<td class="num">${fmtScore(m.test_acc)}</td>` +
        `<td class="num">${fmtInt(m.params)}</td>` +
        `<td class="num">${fmtCompact(m.flops)}</td>` +
        `<td class="num">${fmtFixed(m.latency_ms)}</td>` +
        `<td class="num">${fmtFixed(t.duration_s, 1)}</td>` +
        `<td class="arch" title="${escapeHtml(archText(t))}">${escapeHtml(archText(t))}</td></tr>`;
    }).join("");
  }
  const more = rows.length > shown.length ? ` (showing ${shown.length}; filter to narrow)` : "";
  document.getElementById("trial-count").textContent = `${rows.length} of ${trials.length}${more}`;
}

function bindTable() {
  document.querySelectorAll("#trial-table th[data-sort]").forEach((th) => {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === "number" || key === "state" ? 1 : -1) };
      document.querySelectorAll("#trial-table th[data-sort]").forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(state.sort.dir > 0 ? "sorted-asc" : "sorted-desc");
      scheduleRender("table");
    });
  });
  document.querySelector('#trial-table th[data-sort="number"]').classList.add("sorted-asc");
  document.getElementById("state-filter").addEventListener("change", (e) => { state.filter.state = e.target.value; scheduleRender("table"); });
  document.getElementById("text-filter").addEventListener("input", (e) => { state.filter.text = e.target.value; scheduleRender("table"); });
  document.getElementById("trial-rows").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-trial]");
    if (row && !e.target.closest("a")) openTrial(row.dataset.trial);
  });
}

// ---------------------------------------------------------------------------------------------
// Downloads card (downloads.js): REST rows on every (re)sync, then artifact.* events; editors may
// retrain the best architecture on train+val once the search is over.

const downloads = new ArtifactList(document.getElementById("artifact-list"), { onChange: showDownloads });

function showDownloads(items) {
  const terminal = Boolean(state.experiment && TERMINAL_STATUSES.includes(state.experiment.status));
  const form = document.getElementById("retrain-form");
  if (form) form.hidden = !terminal;
  document.getElementById("artifacts").hidden = !items.length && !(form && terminal);
  const note = document.getElementById("artifact-message");
  const busy = items.some((a) => a.status === "pending" || a.status === "running");
  if (note.dataset.kind === "progress" && !busy) note.hidden = true;   // done: the row says it
}

async function loadArtifacts() {
  // finalize_experiment exports the model before it marks the experiment finished, so by the
  // time the terminal status arrives the artifact is there.
  let list;
  try { list = await getJSON(`${page.urls.artifacts}?experiment=${page.id}`); } catch (err) { console.warn(err); return; }
  downloads.set(list.results || list);
}

function bindRetrain() {
  const form = document.getElementById("retrain-form");
  if (!form) return;
  const note = document.getElementById("artifact-message");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    const epochs = form.querySelector("input[name=epochs]").value;
    button.disabled = true;
    try {
      const res = await requestJob(page.urls.retrain, epochs ? { epochs: Number(epochs) } : {});
      note.dataset.kind = res.ok ? "progress" : "error";
      note.textContent = res.ok
        ? (res.status === 202 ? "Retraining; progress shows above." : "This retrain is ready above.")
        : errorText(res, "retrain");
      note.hidden = false;
      if (res.ok) downloads.upsert(res.body);
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Controls: POST to the API (the forms still work without JavaScript)

function bindControls() {
  document.querySelectorAll("#controls form[data-action]").forEach((form) => {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const action = form.dataset.action;
      if (action === "cancel" && !confirm("Cancel this experiment? Running trials stop within seconds.")) return;
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const res = await postJSON(form.dataset.api);
        if (res.ok && res.body) {
          state.experiment = { ...state.experiment, ...res.body };
          scheduleRender("status");
        } else {
          alert((res.body && res.body.detail) || `Could not ${action} (HTTP ${res.status}).`);
        }
      } finally {
        button.disabled = false;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------

bindTable();
bindControls();
bindRetrain();
bindProxySelects(state, () => scheduleRender("results"));
const liveState = document.getElementById("live-state");
streamOver(page.wsPath, stream, (s, wait) => liveLabel(liveState, s, wait));
window.nasExperiment = state;   // for debugging in the console and for the browser test
