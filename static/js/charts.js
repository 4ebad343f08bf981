// Chart helpers shared by the pages that draw with Plotly (experiment, compare, trial, one-shot,
// dataset): one look for every chart, the axes, the Pareto front and the best-so-far line.
// Plotly itself is the global of static/plotly/plotly.min.js, which the page loads first; nothing
// here touches it before a chart is drawn.
import { fmtCompact } from "./live.js";

export const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563", "#65a30d", "#c026d3"];
export const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
export const LEGEND = { orientation: "h", y: 1.12, x: 0, font: { size: 11 } };
const GRID = "#eef1f4";

export function axis(title, extra = {}) {
  return { title: { text: title }, gridcolor: GRID, zeroline: false, ...extra };
}

/** An axis of whole steps (trial numbers, epochs) from `first` to `last`: a tick per step while
 *  there are few, and half a step of room at each end so the end markers are not cut. */
export function stepAxis(title, first, last, extra = {}) {
  return axis(title, { dtick: last > 20 ? undefined : 1, range: [first - 0.5, Math.max(last, 1) + 0.5], ...extra });
}

export function baseLayout(extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 10, b: 44 },
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1d2530" },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#fff",
    hovermode: "closest",
    legend: LEGEND,
    xaxis: axis(""),
    yaxis: axis(""),
    ...extra,
  };
}

export function emptyNote(text) {
  return [{ text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: "#8a94a3", size: 13 } }];
}

export function marker(color, symbol = "circle", size = 8) {
  return { color, size, symbol, line: { width: 1, color: "#fff" } };
}

/** Draw (or redraw) a chart; a click on a point whose customdata is a trial id calls onPick(id). */
export function react(elementOrId, data, layout, onPick) {
  const element = typeof elementOrId === "string" ? document.getElementById(elementOrId) : elementOrId;
  if (!element) return;
  Plotly.react(element, data, layout, PLOT_CONFIG);
  if (onPick && !element.dataset.clickBound) {
    element.dataset.clickBound = "1";
    element.on("plotly_click", (ev) => {
      const id = ev.points && ev.points[0] && ev.points[0].customdata;
      if (typeof id === "number") onPick(id);
    });
  }
}

/** 1-2-5 tick values covering `values` on a log axis (Plotly's own minor labels crowd). */
export function logTicks(values) {
  const positive = values.filter((v) => v > 0);
  if (!positive.length) return null;
  const lo = Math.floor(Math.log10(Math.min(...positive)));
  const hi = Math.ceil(Math.log10(Math.max(...positive)));
  const ticks = [];
  for (let e = lo; e <= hi; e += 1) for (const m of [1, 2, 5]) ticks.push(m * 10 ** e);
  return ticks;
}

/** The tick settings of an x axis of `axisType` over `values` (compact labels on a log axis). */
export function ticksFor(axisType, values) {
  const ticks = axisType === "log" ? logTicks(values) : null;
  return ticks ? { tickvals: ticks, ticktext: ticks.map(fmtCompact) } : {};
}

/** Non-dominated points when maximising y and minimising x, in increasing x (ties on x keep
 *  only the best y; equal points are dominated by neither and the first one stays). */
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  const front = [];
  let bestY = -Infinity;
  for (const p of sorted) {
    if (p.y > bestY) { front.push(p); bestY = p.y; }
  }
  return front;
}

/** Trials against their objective, split into the Pareto front ({x, y, t}, by increasing x) and
 *  the others; `x` reads the cost (params, latency) off a trial. */
export function splitFront(trials, x) {
  const front = paretoFront(trials.map((t) => ({ x: x(t), y: t.objective, t })));
  const onFront = new Set(front.map((p) => p.t.id));
  return { front, others: trials.filter((t) => !onFront.has(t.id)) };
}

/** The best objective so far along `key` (trial number, seconds): a step line over trials. */
export function bestSoFar(trials, key) {
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
