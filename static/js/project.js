// Project page: live status of the project's experiments over ws/projects/<id>/.
// Each status event refreshes that experiment's row from the API (best score, progress);
// every (re)connect refreshes all rows once. Nothing polls.
import { escapeHtml, fmtScore, getJSON, liveLabel, openSocket, pageData } from "./live.js";

const page = pageData();
const STATUS_LABEL = { draft: "Draft", queued: "Queued", running: "Running", paused: "Paused", completed: "Completed", failed: "Failed", cancelled: "Cancelled" };
const BUDGET_STATES = ["completed", "pruned", "failed", "cancelled"];

function row(id) {
  return document.querySelector(`#experiment-table tr[data-experiment="${id}"]`);
}

function setStatus(tr, status) {
  const badge = tr.querySelector('[data-field="status"]');
  badge.className = `badge badge-${status}`;
  badge.textContent = STATUS_LABEL[status] || status;
}

function budgetUsed(experiment) {
  if (typeof experiment.budget_used === "number") return experiment.budget_used;
  const counts = experiment.trial_counts || {};
  return BUDGET_STATES.reduce((n, s) => n + (counts[s] || 0), 0);
}

function update(experiment) {
  let tr = row(experiment.id);
  if (!tr) {
    const body = document.querySelector("#experiment-table tbody");
    if (!body) return;   // first experiment of an empty project: the list appears on reload
    tr = document.createElement("tr");
    tr.dataset.experiment = experiment.id;
    tr.innerHTML = `<td><a href="${page.experimentUrl.replace(/0\/$/, `${experiment.id}/`)}">${escapeHtml(experiment.name)}</a></td>` +
      '<td><span class="badge" data-field="status"></span></td><td></td>' +
      `<td class="muted small">${escapeHtml(experiment.space)} · ${escapeHtml(experiment.strategy)} · ${escapeHtml(experiment.estimator)}</td>` +
      '<td class="num" data-field="progress"></td><td class="num" data-field="best"></td><td class="muted small">just now</td>';
    body.prepend(tr);
  }
  setStatus(tr, experiment.status);
  if (experiment.budget_trials != null) {
    tr.querySelector('[data-field="progress"]').textContent = `${budgetUsed(experiment)} / ${experiment.budget_trials}`;
  }
  if ("best" in experiment) {
    tr.querySelector('[data-field="best"]').textContent = experiment.best ? fmtScore(experiment.best.objective) : "—";
  }
}

async function refreshOne(id) {
  try { update(await getJSON(`${page.experimentApi}${id}/`)); } catch (err) { console.warn(err); }
}

async function refreshAll() {
  try {
    const list = await getJSON(`${page.experimentApi}?project=${page.project}&limit=500`);
    (list.results || list).forEach(update);
  } catch (err) { console.warn(err); }
}

openSocket(page.wsPath, {
  // Changes between the render (or a lost connection) and this open arrived nowhere: catch up.
  onOpen: () => refreshAll(),
  onEvent: (event) => {
    if (event.type !== "experiment.status") return;
    const tr = row(event.experiment);
    if (tr) setStatus(tr, event.experiment_state.status);
    refreshOne(event.experiment);
  },
  onState: (s, wait) => liveLabel(document.getElementById("live-indicator"), s, wait),
});
