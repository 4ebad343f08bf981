// The domain rules the pages apply to live data, each written once for every page. They follow
// search_engine/rules.py (the server's copy of each rule); the constraint keys are not repeated
// here: pages read them from page data (`page.rules.constraint_limits`).

export const TERMINAL_TRIAL_STATES = ["completed", "pruned", "infeasible", "failed", "cancelled"];

/** Whether a trial summary (`state`, `started_at`) spends one unit of the trial budget: every
 *  finished trial but a candidate the static checks rejected before any training. */
export function countsAgainstBudget(trial) {
  return TERMINAL_TRIAL_STATES.includes(trial.state) && !(trial.state === "infeasible" && !trial.started_at);
}

/** Only completed trials with an objective compete for "best". */
export function isScored(trial) {
  return trial.state === "completed" && trial.objective != null;
}

/** Whether scored trial `a` beats `b` (null: nothing yet): the higher objective; on a tie the
 *  smaller model (unknown params count as largest), then the earlier trial. `params` reads a
 *  trial's parameter count, wherever the page keeps it. */
export function beats(a, b, params = (t) => (t.metrics || {}).params) {
  if (!b) return true;
  if (a.objective !== b.objective) return a.objective > b.objective;
  const pa = params(a) ?? Infinity;
  const pb = params(b) ?? Infinity;
  if (pa !== pb) return pa < pb;
  return a.number < b.number;
}

/** The best scored trial of `trials`, or null. */
export function bestTrial(trials, params) {
  let best = null;
  for (const t of trials) if (isScored(t) && beats(t, best, params)) best = t;
  return best;
}
