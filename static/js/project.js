// Project page: live status of the project's experiments over ws/projects/<id>/.
// Each status event refreshes that experiment's row from the API (best score, progress);
// every (re)connect refreshes all rows once. Nothing polls. The project group carries only
// status events, whose sequence numbers are per experiment and skip the events of the
// experiment pages: there are no gaps to find here, every event is a full refresh instead.
import { escapeHtml, fmtScore, getJSON, liveLabel, openSocket, pageData, withId } from "./live.js";
import { TERMINAL_TRIAL_STATES, countsAgainstBudget } from "./rules.js";

const page = pageData();
const STATUS_LABEL = { draft: "Draft", queued: "Queued", running: "Running", paused: "Paused", completed: "Completed", failed: "Failed", cancelled: "Cancelled" };

function row(id) {
  return document.querySelector(`#experiment-table tr[data-experiment="${id}"]`);
}

function setStatus(tr, status) {
  const badge = tr.querySelector('[data-field="status"]');
  badge.className = `badge badge-${status}`;
  badge.textContent = STATUS_LABEL[status] || status;
}

/** Trials spent, from the experiment's `trial_counts` ({state: n}): each finished state counts
 *  but "infeasible", which counts only for the candidates that were trained (measured over a
 *  limit); only those trials' rows are read, and only when there are any. */
async function trialsSpent(experiment) {
  const counts = experiment.trial_counts || {};
  let spent = TERMINAL_TRIAL_STATES.filter((s) => s !== "infeasible").reduce((n, s) => n + (counts[s] || 0), 0);
  if (counts.infeasible) {
    const query = new URLSearchParams({ experiment: experiment.id, state: "infeasible", limit: counts.infeasible });
    const list = await getJSON(`${page.urls.trials}?${query}`);
    spent += (list.results || list).filter(countsAgainstBudget).length;
  }
  return spent;
}

async function update(experiment) {
  let tr = row(experiment.id);
  if (!tr) {
    const body = document.querySelector("#experiment-table tbody");
    if (!body) return;   // first experiment of an empty project: the list appears on reload
    tr = document.createElement("tr");
    tr.dataset.experiment = experiment.id;
    tr.innerHTML = `<td><a href="${withId(page.urls.experiment, experiment.id)}">${escapeHtml(experiment.name)}</a></td>` +
      '<td><span class="badge" data-field="status"></span></td><td></td>' +
      `<td class="muted small">${escapeHtml(experiment.space)} · ${escapeHtml(experiment.strategy)} · ${escapeHtml(experiment.estimator)}</td>` +
      '<td class="num" data-field="progress"></td><td class="num" data-field="best"></td><td class="muted small">just now</td>';
    body.prepend(tr);
  }
  setStatus(tr, experiment.status);
  tr.querySelector('[data-field="best"]').textContent = experiment.best ? fmtScore(experiment.best.objective) : "—";
  const spent = await trialsSpent(experiment);
  tr.querySelector('[data-field="progress"]').textContent = `${spent} / ${experiment.budget_trials}`;
}

async function refreshOne(id) {
  try { await update(await getJSON(withId(page.urls.experimentApi, id))); } catch (err) { console.warn(err); }
}

async function refreshAll() {
  try {
    const query = new URLSearchParams({ project: page.project, limit: 500 });
    const list = await getJSON(`${page.urls.experiments}?${query}`);
    await Promise.all((list.results || list).map(update));
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
