// Experiment page, one-shot and zero-cost parts: the supernet card (loss/accuracy per epoch, for
// DARTS the live heatmap of softmaxed architecture weights and the discretised cell per epoch)
// and the "proxy score vs accuracy" chart. experiment.js owns the state and the event stream and
// calls these; the charts look like the page's others (charts.js).
import { axis, baseLayout, emptyNote, marker, react, stepAxis } from "./charts.js";
import { escapeHtml, fmtFixed, fmtScore } from "./live.js";

// ---------------------------------------------------------------------------------------------
// One-shot progress: points keyed by (phase, step), upserted (a resumed job replays its last epoch)

export function progressMap(points) {
  return new Map((points || []).map((p) => [`${p.phase}:${p.step}`, p]));
}

/** Apply one experiment.progress event's values; returns the page parts it changed. */
export function applyProgress(state, values) {
  if (values.phase === "result") {
    // The job ended: its top architectures became the trials (budget trimmed to their number).
    state.experiment = {
      ...state.experiment, budget_trials: values.budget_trials, strategy: "fixed",
      strategy_config: values.strategy_config, oneshot_result: values.oneshot_result,
    };
    return ["status", "oneshot"];
  }
  const { replayed, ...point } = values;
  state.progress.set(`${point.phase}:${point.step}`, point);
  return ["oneshot"];
}

function phasePoints(state, phase) {
  return Array.from(state.progress.values()).filter((p) => p.phase === phase).sort((a, b) => a.step - b.step);
}

export function renderOneshot(state) {
  const card = document.getElementById("oneshot-card");
  if (!card) return;
  const darts = card.dataset.method === "darts";
  const train = phasePoints(state, "train");
  const search = phasePoints(state, "search");
  const last = train[train.length - 1];
  const result = (state.experiment && state.experiment.oneshot_result) || {};

  const stateText = [];
  if (last) stateText.push(`epoch ${last.epoch ?? last.step} of ${last.epochs ?? "?"}`);
  if (last && last.early_stop) stateText.push(`stopped early: ${last.early_stop}`);
  if (search.length) {
    const s = search[search.length - 1];
    stateText.push(`search: ${s.evaluated ?? s.step} candidates scored, best inherited val acc ${fmtScore(s.best_val_acc)}`);
  }
  if (result.method) stateText.push(`done (${result.stopped_because}) in ${fmtFixed(result.cost_s, 1)} s`);
  document.getElementById("oneshot-state").textContent = stateText.join(" · ") || "waiting for the first epoch…";

  renderLossChart(train, darts);
  if (darts) {
    renderAlphas(last);
    renderGenotypes(train);
  }
  renderResult(result);
}

function renderLossChart(train, darts) {
  const xs = train.map((p) => p.epoch ?? p.step);
  const line = (key, name, color, axis, dash) => ({
    type: "scatter", mode: "lines+markers", name, x: xs, y: train.map((p) => p[key] ?? null), yaxis: axis,
    line: { color, width: 2, dash }, marker: { size: 6 },
    hovertemplate: `${name} epoch %{x}: %{y:.4f}<extra></extra>`,
  });
  const data = [
    line("supernet_loss", "supernet loss", "#dc2626", "y"),
    line("supernet_acc", "supernet train acc", "#2563eb", "y2"),
    line("val_acc", darts ? "val acc (mixed network)" : "inherited val acc", "#059669", "y2"),
  ];
  if (darts) data.push(line("skip_fraction", "skip fraction", "#9ca3af", "y2", "dot"));
  const maxEpoch = Math.max(1, ...xs);
  react("chart-supernet", train.length ? data : [], baseLayout({
    margin: { l: 56, r: 56, t: 10, b: 44 },
    xaxis: stepAxis("epoch", 1, maxEpoch),
    yaxis: axis("loss"),
    yaxis2: { title: { text: "accuracy / fraction" }, overlaying: "y", side: "right", range: [0, 1.02], showgrid: false },
    annotations: train.length ? [] : emptyNote("The supernet's first epoch appears here"),
  }));
}

function renderAlphas(last) {
  const element = document.getElementById("chart-alphas");
  const label = document.getElementById("alphas-epoch");
  const alphas = last && last.alphas;
  if (!alphas) {
    label.textContent = "—";
    react(element, [], baseLayout({ xaxis: { visible: false }, yaxis: { visible: false },
      annotations: emptyNote("Architecture weights appear after the first epoch") }));
    return;
  }
  label.textContent = `epoch ${last.epoch ?? last.step}`;
  const edges = Object.keys(alphas);
  const ops = Object.keys(alphas[edges[0]] || {});
  const z = edges.map((e) => ops.map((o) => alphas[e][o]));
  // Colours span this epoch's range (early on every weight is close to 1/5 and the differences
  // are what matters); the numbers are the weights themselves.
  react(element, [{
    type: "heatmap", x: ops, y: edges.map((e) => `edge ${e}`), z,
    colorscale: "Blues", reversescale: true, texttemplate: "%{z:.3f}",
    hovertemplate: "%{y}, %{x}: %{z:.4f}<extra></extra>",
    colorbar: { thickness: 12, title: { text: "weight", side: "right" }, tickformat: ".3f" },
  }], baseLayout({
    margin: { l: 80, r: 16, t: 10, b: 80 },
    xaxis: { tickangle: -25, automargin: true }, yaxis: { autorange: "reversed", automargin: true },
  }));
}

function renderGenotypes(train) {
  const body = document.getElementById("genotype-rows");
  const rows = [...train].reverse().filter((p) => p.genotype);
  body.innerHTML = rows.length ? rows.map((p) =>
    `<tr${p.early_stop ? ' class="early-stop" title="' + escapeHtml(p.early_stop) + '"' : ""}>` +
    `<td class="num">${escapeHtml(p.epoch ?? p.step)}</td>` +
    `<td class="genotype">${escapeHtml(p.genotype)}</td>` +
    `<td class="num">${fmtFixed(p.skip_fraction)}</td>` +
    `<td class="num">${fmtScore(p.val_acc)}</td></tr>`).join("")
    : '<tr><td colspan="4" class="empty">No epoch yet.</td></tr>';
}

function renderResult(result) {
  const box = document.getElementById("oneshot-result");
  const top = (result.final && result.final.top) || [];
  if (!result.method || !top.length) { box.hidden = true; return; }
  const scoreName = result.score_name || "score";
  const requested = result.budget_trials_requested;
  box.innerHTML = `<strong>Top ${top.length} architectures</strong> <span class="muted small">(by ${escapeHtml(scoreName)};` +
    ` they train as the trials${requested && requested !== result.budget_trials ? `, ${result.budget_trials} of the ${requested} budgeted` : ""})</span>` +
    "<ol>" + top.map((t) => `<li><code>${escapeHtml(t.genotype)}</code> <span class="muted small">${escapeHtml(scoreName)} ` +
      `${Number(t[scoreName]).toPrecision(4)}</span></li>`).join("") + "</ol>";
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Proxy score vs accuracy: zero-cost estimators put `<name>_score` in a trial's metrics,
// zc_prescreen puts `proxy_score` in its meta.

function proxyValue(trial, key) {
  if (key === "objective") return trial.objective;
  if (key === "proxy_score" && trial.meta && typeof trial.meta.proxy_score === "number") return trial.meta.proxy_score;
  const value = trial.metrics ? trial.metrics[key] : undefined;
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function numericKeys(trials) {
  const keys = new Set();
  for (const t of trials) {
    for (const [k, v] of Object.entries(t.metrics || {})) if (typeof v === "number" && Number.isFinite(v)) keys.add(k);
    if (t.meta && typeof t.meta.proxy_score === "number") keys.add("proxy_score");
  }
  return keys;
}

const isScore = (k) => k === "proxy_score" || k.endsWith("_score");

/** Average ranks (ties share the mean rank), for Spearman's rho. */
function ranks(values) {
  const order = values.map((v, i) => [v, i]).sort((a, b) => a[0] - b[0]);
  const out = new Array(values.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j += 1;
    for (let k = i; k <= j; k += 1) out[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

export function spearman(xs, ys) {
  if (xs.length < 3) return null;
  const rx = ranks(xs);
  const ry = ranks(ys);
  const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  const mx = mean(rx);
  const my = mean(ry);
  let num = 0; let dx = 0; let dy = 0;
  for (let i = 0; i < rx.length; i += 1) {
    num += (rx[i] - mx) * (ry[i] - my);
    dx += (rx[i] - mx) ** 2;
    dy += (ry[i] - my) ** 2;
  }
  return dx && dy ? num / Math.sqrt(dx * dy) : null;
}

function fillSelect(select, keys, wanted) {
  const current = Array.from(select.options).map((o) => o.value).join("|");
  if (current !== keys.join("|")) {
    select.innerHTML = keys.map((k) => `<option value="${escapeHtml(k)}">${escapeHtml(k)}</option>`).join("");
  }
  if (keys.includes(wanted)) select.value = wanted;
  return select.value;
}

export function renderProxy(trials, state, openTrial) {
  const card = document.getElementById("proxy-card");
  if (!card) return;
  const keys = numericKeys(trials);
  const scores = [...keys].filter(isScore).sort();
  if (!scores.length) { card.hidden = true; return; }
  card.hidden = false;
  const others = [...keys].filter((k) => !isScore(k)).sort();
  const xKeys = [...scores, ...others];
  const yKeys = ["objective", ...others.filter((k) => k !== "objective"), ...scores];
  const picked = state.proxyAxes || {};
  const x = fillSelect(document.getElementById("proxy-x"), xKeys, picked.x || scores[0]);
  const yDefault = ["val_acc", "test_acc"].find((k) => keys.has(k)) || "objective";
  const y = fillSelect(document.getElementById("proxy-y"), yKeys, picked.y || yDefault);

  const points = trials.filter((t) => proxyValue(t, x) !== undefined && proxyValue(t, y) != null);
  const rho = spearman(points.map((t) => proxyValue(t, x)), points.map((t) => proxyValue(t, y)));
  const positive = points.map((t) => proxyValue(t, x)).filter((v) => v > 0);
  const logX = positive.length === points.length && positive.length > 1 && Math.max(...positive) / Math.min(...positive) > 1e3;
  react("chart-proxy", [{
    type: "scatter", mode: "markers", name: "trials",
    x: points.map((t) => proxyValue(t, x)), y: points.map((t) => proxyValue(t, y)),
    customdata: points.map((t) => t.id),
    text: points.map((t) => `#${t.number} · ${t.state}`),
    hovertemplate: `%{text}<br>${x} %{x:.4g}<br>${y} %{y:.4f}<extra></extra>`,
    marker: { ...marker("#7c3aed"), opacity: 0.8 },
  }], baseLayout({
    margin: { l: 56, r: 16, t: 30, b: 44 },
    xaxis: axis(x, { type: logX ? "log" : "linear" }),
    yaxis: axis(y),
    annotations: points.length
      ? [{ xref: "paper", yref: "paper", x: 0, y: 1.01, xanchor: "left", yanchor: "bottom", showarrow: false,
        font: { size: 11, color: "#4b5563" },
        text: `Spearman ρ = ${rho == null ? "—" : rho.toFixed(3)} over ${points.length} trials` }]
      : emptyNote("Waiting for scored trials"),
  }), openTrial);
}

/** Re-render on a pick of the axes (the choice survives later renders). */
export function bindProxySelects(state, rerender) {
  for (const axis of ["x", "y"]) {
    const select = document.getElementById(`proxy-${axis}`);
    if (!select) continue;
    select.addEventListener("change", () => {
      state.proxyAxes = { ...(state.proxyAxes || {}), [axis]: select.value };
      rerender();
    });
  }
}
