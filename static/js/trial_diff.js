// Trial diff: both trials' learning curves on one chart (validation accuracy solid, training
// accuracy dotted, one colour per trial); the drawings and the table are rendered by the server.
import { COLORS, axis, baseLayout, react, stepAxis } from "./charts.js";
import { pageData } from "./live.js";

const page = pageData();
const KEYS = [["val_acc", "solid"], ["train_acc", "dot"]];

const data = [];
let last = 1;
page.trials.forEach((trial, index) => {
  const points = [...trial.points].sort((a, b) => a.step - b.step);
  for (const [key, dash] of KEYS) {
    const shown = points.filter((p) => (p.values || {})[key] != null);
    if (!shown.length) continue;
    last = Math.max(last, shown[shown.length - 1].step);
    data.push({
      type: "scatter", mode: "lines+markers", name: `#${trial.number} ${key}`,
      x: shown.map((p) => p.step), y: shown.map((p) => p.values[key]),
      line: { color: COLORS[index], width: 2, dash }, marker: { size: 6 },
      hovertemplate: `#${trial.number} ${key} epoch %{x}: %{y:.4f}<extra></extra>`,
    });
  }
});
document.getElementById("diff-curves-empty").hidden = data.length > 0;
react("chart-diff-curves", data, baseLayout({
  xaxis: stepAxis("epoch", 1, last),
  yaxis: axis("accuracy"),
}));
