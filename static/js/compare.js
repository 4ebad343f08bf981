// Compare page: one request to /api/experiments/compare/ (table rows + compact trial series), then
// one websocket per experiment appends finished trials. Nothing polls: a reconnect or a lost
// event (a gap in sequence numbers) fetches the comparison again.
import {
  escapeHtml, fmtCompact, fmtFixed, fmtInt, fmtScore, getJSON, liveLabel, openSocket, pageData, paretoFront,
  throttle,
} from "./live.js";

const page = pageData();
const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563", "#65a30d", "#c026d3"];
const DASHES = ["solid", "dash", "dot", "dashdot"];
const TERMINAL_STATUSES = ["completed", "failed", "cancelled"];
const TERMINAL_TRIALS = ["completed", "pruned", "infeasible", "failed", "cancelled"];
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

const state = { experiments: [], loadedAt: 0 };
const lastSeq = new Map();   // experiment id -> last event sequence number seen
let pending = [];            // events that arrived before the first load

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

let loading = null;
let loadAgain = false;

async function load() {
  // A load asked for while one is in flight runs once more after it: the first may predate
  // the socket (re)joining its group.
  if (loading) { loadAgain = true; return loading; }
  loading = (async () => {
    do {
      loadAgain = false;
      try {
        const body = await getJSON(page.dataUrl);
        state.experiments = body.experiments.map(fromApi);
        state.loadedAt = Date.now();
      } catch (err) {
        console.warn(err);
        document.getElementById("compare-rows").innerHTML =
          `<tr><td colspan="12" class="empty">Could not load the comparison (${escapeHtml(err.message)}).</td></tr>`;
      }
    } while (loadAgain);
    loading = null;
    const buffered = pending;
    pending = [];
    buffered.forEach(apply);
    renderSoon();
  })();
  return loading;
}

function experimentById(id) {
  return state.experiments.find((e) => e.id === id);
}

function apply(event) {
  // While rows load, events wait: applied to the old rows they would be lost with them.
  if (!state.loadedAt || loading) { pending.push(event); return; }
  const experiment = experimentById(event.experiment);
  if (!experiment) return;
  if (typeof event.seq === "number") {
    const last = lastSeq.get(experiment.id);
    lastSeq.set(experiment.id, Math.max(last || 0, event.seq));
    if (last != null && event.seq > last + 1) load();   // an event was lost: fetch again
  }
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
  const countsBudget = TERMINAL_TRIALS.includes(t.state) && !(t.state === "infeasible" && !t.started_at);
  if (countsBudget && !(before && TERMINAL_TRIALS.includes(before.state))) experiment.trials_spent += 1;
  const better = t.state === "completed" && t.objective != null &&
    (experiment.best_objective == null || t.objective > experiment.best_objective);
  if (better) {
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
  return Array.from(experiment.trials.values()).filter((t) => t.state === "completed" && t.objective != null);
}

function bestSoFar(trials, key) {
  const sorted = trials.filter((t) => t[key] != null).sort((a, b) => a[key] - b[key] || a.number - b.number);
  const x = [];
  const y = [];
  const ids = [];
  let best = -Infinity;
  for (const t of sorted) {
    if (t.objective > best) best = t.objective;
    x.push(t[key]);
    y.push(best);
    ids.push(t.id);
  }
  return { x, y, ids };
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

function url(template, id) {
  return template.replace(/0\/$/, `${id}/`);
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
}

function renderTable() {
  document.getElementById("compare-rows").innerHTML = state.experiments.map((e) => {
    const best = e.best_trial_id != null
      ? `<a href="${url(page.trialUrl, e.best_trial_id)}" title="trial #${e.best_trial}">${fmtScore(e.best_objective)}</a>` : "—";
    const exportUrl = (template) => template.replace("/0/", `/${e.id}/`);
    return `<tr data-experiment="${e.id}">` +
      `<td><span aria-hidden="true" style="display:inline-block;width:.7rem;height:.7rem;border-radius:2px;margin-right:.4rem;background:${e.color}"></span>` +
      `<a href="${url(page.experimentUrl, e.id)}">${escapeHtml(e.name)}</a> ` +
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
      `<td class="small"><a href="${exportUrl(page.csvUrl)}" download>CSV</a> · <a href="${exportUrl(page.jsonUrl)}" download>JSON</a></td></tr>`;
  }).join("");
}

function baseLayout(extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 10, b: 44 },
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1d2530" },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#fff",
    hovermode: "closest",
    legend: { orientation: "h", y: 1.14, x: 0, font: { size: 11 } },
    ...extra,
  };
}

function axis(title, extra = {}) {
  return { title: { text: title }, gridcolor: "#eef1f4", zeroline: false, ...extra };
}

function emptyNote(text) {
  return [{ text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: "#8a94a3", size: 13 } }];
}

function react(id, data, layout) {
  const element = document.getElementById(id);
  Plotly.react(element, data, layout, PLOT_CONFIG);
  if (!element.dataset.clickBound) {
    element.dataset.clickBound = "1";
    element.on("plotly_click", (ev) => {
      const trialId = ev.points && ev.points[0] && ev.points[0].customdata;
      if (typeof trialId === "number") location.href = url(page.trialUrl, trialId);
    });
  }
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
  react(elementId, data, baseLayout({
    xaxis: axis(label, tickformat ? { tickformat } : { rangemode: "tozero" }),
    yaxis: axis("best so far (val acc)"),
    annotations: any ? [] : emptyNote("No completed trial yet"),
  }));
}

function renderFronts(elementId, key, label, axisType) {
  const data = [];
  let any = false;
  for (const e of state.experiments) {
    const points = completed(e).filter((t) => t[key] != null && (axisType !== "log" || t[key] > 0));
    const front = paretoFront(points.map((t) => ({ x: t[key], y: t.objective, t })));
    const onFront = new Set(front.map((p) => p.t.id));
    const others = points.filter((t) => !onFront.has(t.id));
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
      line: { color: e.color, dash: e.dash, width: 2, shape: "hv" }, marker: { color: e.color, size: 9, line: { width: 1, color: "#fff" } },
    });
  }
  const xs = data.flatMap((trace) => trace.x);
  const ticks = axisType === "log" ? logTicks(xs) : null;
  react(elementId, data, baseLayout({
    xaxis: axis(label, { type: axisType, ...(ticks ? { tickvals: ticks, ticktext: ticks.map(fmtCompact) } : {}) }),
    yaxis: axis("score (val acc)"),
    annotations: any ? [] : emptyNote("No measured completed trial yet"),
  }));
}

/** 1-2-5 tick values covering `values` on a log axis (Plotly's own minor labels crowd). */
function logTicks(values) {
  const positive = values.filter((v) => v > 0);
  if (!positive.length) return null;
  const lo = Math.floor(Math.log10(Math.min(...positive)));
  const hi = Math.ceil(Math.log10(Math.max(...positive)));
  const ticks = [];
  for (let e = lo; e <= hi; e += 1) for (const m of [1, 2, 5]) ticks.push(m * 10 ** e);
  return ticks;
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

for (const [id, path] of Object.entries(page.wsPaths)) {
  const experimentId = Number(id);
  openSocket(path, {
    onOpen: () => {
      if (opened.has(experimentId) || opened.size + 1 === Object.keys(page.wsPaths).length) load();
      opened.add(experimentId);
    },
    onEvent: apply,
    onState: (s) => { socketStates.set(experimentId, s); showLive(); },
  });
}
setTimeout(() => { if (!state.loadedAt && !loading) load(); }, 1500);
window.nasCompare = state;   // for debugging in the console and for browser tests
