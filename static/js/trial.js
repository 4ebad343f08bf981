// Trial page: the learning curve; while the trial runs, new epochs arrive over the
// experiment's websocket and the page reloads once when the trial finishes.
import { getJSON, openSocket, pageData, throttle } from "./live.js";

const page = pageData();
const points = [...page.points];
const element = document.getElementById("chart-curve");
const COLORS = { train_acc: "#93c5fd", val_acc: "#2563eb", train_loss: "#fca5a5", val_loss: "#dc2626" };

function render() {
  if (!points.length) return;
  document.getElementById("curve-empty").hidden = true;
  points.sort((a, b) => a.step - b.step);
  const keys = [...new Set(points.flatMap((p) => Object.keys(p.values || {})))];
  const accKeys = keys.filter((k) => k.includes("acc"));
  const lossKeys = keys.filter((k) => k.includes("loss"));
  const trace = (key, axis) => ({
    type: "scatter", mode: "lines+markers", name: key, yaxis: axis,
    x: points.map((p) => p.step), y: points.map((p) => (p.values || {})[key]),
    line: { color: COLORS[key], width: 2, dash: key.startsWith("train") ? "dot" : "solid" }, marker: { size: 7 },
  });
  // Accuracy above, loss below, sharing the epoch axis: two scales on one plot read badly.
  const data = [...accKeys.map((k) => trace(k, "y")), ...lossKeys.map((k) => trace(k, "y2"))];
  const last = points[points.length - 1].step;
  Plotly.react(element, data, {
    margin: { l: 52, r: 16, t: 10, b: 40 },
    font: { family: "system-ui, sans-serif", size: 12 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff",
    legend: { orientation: "h", y: 1.12 },
    xaxis: { title: { text: "epoch" }, anchor: "y2", dtick: last > 20 ? undefined : 1, range: [0.5, Math.max(last, 1) + 0.5], gridcolor: "#eef1f4" },
    yaxis: { title: { text: "accuracy" }, domain: [0.53, 1], anchor: "x", gridcolor: "#eef1f4" },
    yaxis2: { title: { text: "loss" }, domain: [0, 0.45], anchor: "x", gridcolor: "#eef1f4" },
  }, { displaylogo: false, responsive: true });
}

render();
if (page.state === "queued" || page.state === "running") {
  const schedule = throttle(render, 100);
  const socket = openSocket(page.wsPath, {
    // On every (re)connect catch up on what happened since the page rendered.
    onOpen: async () => {
      try {
        const trial = await getJSON(`/api/trials/${page.trial}/`);
        if (!["queued", "running"].includes(trial.state)) { socket.close(); location.reload(); return; }
        for (const p of trial.points || []) {
          if (!points.some((q) => q.step === p.step)) points.push({ step: p.step, values: p.values });
        }
        schedule();
      } catch (err) { console.warn(err); }
    },
    onEvent: (e) => {
      if (e.type === "trial.epoch" && e.trial_id === page.trial) {
        const at = points.findIndex((p) => p.step === e.step);
        const point = { step: e.step, values: e.values };
        if (at >= 0) points[at] = point; else points.push(point);
        schedule();
      } else if (e.type === "trial.finished" && e.trial.id === page.trial) {
        socket.close();
        location.reload();   // the finished trial's metrics and constraints render server-side
      }
    },
    onState: () => {},
  });
}
