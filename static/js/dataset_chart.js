// The class-balance bar chart of the dataset pages (upload preview and dataset page).
import { axis, baseLayout, react } from "./charts.js";

/** Rows per class as bars, with each class's share of the rows in the hover text. */
export function drawClassBalance(element, classes) {
  if (!element || !classes || !classes.length || typeof Plotly === "undefined") return;
  const total = classes.reduce((n, c) => n + c.count, 0) || 1;
  const mean = total / classes.length;
  react(element, [{
    type: "bar",
    x: classes.map((c) => String(c.name)),
    y: classes.map((c) => c.count),
    text: classes.map((c) => `${((100 * c.count) / total).toFixed(1)}%`),
    textposition: classes.length <= 20 ? "outside" : "none",
    hovertemplate: "%{x}: %{y} rows (%{text})<extra></extra>",
    marker: { color: classes.map((c) => (c.count < mean / 2 ? "#f59e0b" : "#2563eb")) },
  }], baseLayout({
    margin: { l: 52, r: 16, t: 16, b: 60 },
    xaxis: axis("class", { type: "category", automargin: true }),
    yaxis: axis("rows", { rangemode: "tozero" }),
    // A dashed line at the mean: bars far below it are the classes a search will struggle with.
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: mean, y1: mean, line: { color: "#94a3b8", dash: "dash", width: 1 } }],
  }));
}
