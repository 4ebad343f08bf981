// Trial page: the learning curve; while the trial runs, new epochs arrive over the
// experiment's websocket and the page reloads once when the trial finishes. A reconnect or a
// lost event (a gap in the experiment's sequence numbers) re-reads the trial from the API.
import { axis, baseLayout, react, stepAxis } from "./charts.js";
import { SequencedStream, getJSON, pageData, streamOver, throttle } from "./live.js";
import { bindCopyButtons } from "./arch.js";

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
  const trace = (key, yaxis) => ({
    type: "scatter", mode: "lines+markers", name: key, yaxis,
    x: points.map((p) => p.step), y: points.map((p) => (p.values || {})[key]),
    line: { color: COLORS[key], width: 2, dash: key.startsWith("train") ? "dot" : "solid" }, marker: { size: 7 },
  });
  // Accuracy above, loss below, sharing the epoch axis: two scales on one plot read badly.
  const data = [...accKeys.map((k) => trace(k, "y")), ...lossKeys.map((k) => trace(k, "y2"))];
  const last = points[points.length - 1].step;
  react(element, data, baseLayout({
    margin: { l: 52, r: 16, t: 10, b: 40 },
    xaxis: stepAxis("epoch", 1, last, { anchor: "y2" }),
    yaxis: axis("accuracy", { domain: [0.53, 1], anchor: "x" }),
    yaxis2: axis("loss", { domain: [0, 0.45], anchor: "x" }),
  }));
}

function upsert(step, values) {
  const at = points.findIndex((p) => p.step === step);
  const point = { step, values };
  if (at >= 0) points[at] = point; else points.push(point);
}

render();
bindCopyButtons();
if (page.state === "queued" || page.state === "running") {
  const schedule = throttle(render, 100);
  let socket = null;
  const finished = () => {
    if (socket) socket.close();
    location.reload();   // the finished trial's metrics and constraints render server-side
  };
  // The trial API reads no sequence number: the first event after each read starts the count.
  const stream = new SequencedStream({
    load: () => getJSON(page.urls.trial),
    reset: (trial) => {
      if (!["queued", "running"].includes(trial.state)) { finished(); return; }
      for (const p of trial.points || []) upsert(p.step, p.values);
      schedule();
    },
    apply: (e) => {
      if (e.type === "trial.epoch" && e.trial_id === page.trial) {
        upsert(e.step, e.values);
        schedule();
      } else if (e.type === "trial.finished" && e.trial.id === page.trial) {
        finished();
      }
    },
  });
  socket = streamOver(page.wsPath, stream);
}
