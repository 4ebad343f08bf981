// Downloads: model packages (experiments/jobs/packages.py) as a list with live progress, shared by the
// experiment page (its Downloads card, "Retrain best on train+val") and the trial page ("Prepare
// download"). Rows come from REST (/api/artifacts/) and then from artifact.* websocket events;
// nothing polls.
import { csrfToken, escapeHtml, fmtScore } from "./live.js";

const KIND_LABEL = { model_zip: "Model package (ZIP)", retrained_zip: "Retrained on train+val (ZIP)" };
const STATUS_RANK = { pending: 0, running: 1, ready: 2, failed: 2 };

/** POST a JSON body with the CSRF token; resolves to {ok, status, body}. */
export async function requestJob(url, body = {}) {
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch { /* empty or HTML body */ }
  return { ok: res.ok, status: res.status, body: data };
}

/** The error a person can act on, from a DRF error body. */
export function errorText(res, what) {
  const body = res.body || {};
  if (body.detail) return body.detail;
  const field = Object.keys(body)[0];
  if (field) return `${field}: ${[].concat(body[field]).join(" ")}`;
  return `Could not ${what} (HTTP ${res.status}).`;
}

/** Whether `a` is at least as far along as `b` (an event may arrive before or after a REST row). */
function furtherOrSame(a, b) {
  const ra = STATUS_RANK[a.status] ?? 0;
  const rb = STATUS_RANK[b.status] ?? 0;
  if (ra !== rb) return ra > rb;
  return ((a.progress || {}).epoch || 0) >= ((b.progress || {}).epoch || 0);
}

function progressText(a) {
  const p = a.progress || {};
  if (a.status === "pending") return "waiting for a worker…";
  if (p.phase === "training") {
    const what = a.kind === "retrained_zip" ? "training on train+val" : "retraining with the trial's seed";
    return `${what}: epoch ${p.epoch || 0} / ${p.epochs || "?"}`;
  }
  if (p.phase === "exporting") return "exporting TorchScript, ONNX and the model card…";
  return "preparing…";
}

function progressPercent(a) {
  const p = a.progress || {};
  if (p.phase === "training" && p.epochs) return Math.round((90 * (p.epoch || 0)) / p.epochs);
  if (p.phase === "exporting") return 95;
  return a.status === "pending" ? 0 : 2;
}

function label(a) {
  let text = KIND_LABEL[a.kind] || a.kind;
  if (a.trial_number != null) text += ` · trial #${a.trial_number}`;
  if (a.kind === "retrained_zip" && (a.progress || {}).epochs) text += ` · ${a.progress.epochs} epochs`;
  return escapeHtml(text);
}

export function artifactItem(a) {
  const head = `<li data-artifact="${a.id}" data-status="${escapeHtml(a.status)}" data-kind="${escapeHtml(a.kind)}">`;
  if (a.status === "ready") {
    const m = a.metrics || {};
    const acc = m.test_acc ?? m.exported_test_acc;
    return `${head}<a class="btn btn-secondary btn-small" data-download href="${escapeHtml(a.download_url)}">Download</a>` +
      `<span>${label(a)}</span>` +
      `<span class="muted small">${(a.size_bytes / 1e6).toFixed(1)} MB${acc != null ? ` · test acc ${fmtScore(acc)}` : ""}</span></li>`;
  }
  if (a.status === "failed") {
    return `${head}<span class="badge badge-failed">failed</span><span>${label(a)}</span>` +
      `<span class="small status-failed">${escapeHtml(a.error || "the job failed")}</span></li>`;
  }
  const pct = progressPercent(a);
  return `${head}<span class="badge badge-${escapeHtml(a.status)}">${escapeHtml(a.status)}</span><span>${label(a)}</span>` +
    `<div class="progress artifact-progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}">` +
    `<div class="progress-bar" style="width:${pct}%"></div></div>` +
    `<span class="muted small artifact-state" aria-live="polite">${escapeHtml(progressText(a))}</span></li>`;
}

/** The rows of one Downloads list, newest first, kept in step with REST rows and events. */
export class ArtifactList {
  constructor(listElement, { filter = () => true, onChange = () => {} } = {}) {
    this.element = listElement;
    this.filter = filter;
    this.onChange = onChange;
    this.items = new Map();
  }

  /** Rows from REST: replace the list, but keep a row an event already moved further along. */
  set(rows) {
    const next = new Map();
    for (const a of rows.filter(this.filter)) {
      const known = this.items.get(a.id);
      next.set(a.id, known && furtherOrSame(known, a) && !furtherOrSame(a, known) ? known : a);
    }
    this.items = next;
    this.render();
  }

  upsert(a) {
    if (!a || !this.filter(a)) return;
    const known = this.items.get(a.id);
    if (known && !furtherOrSame(a, known)) return;
    this.items.set(a.id, a);
    this.render();
  }

  list() {
    return Array.from(this.items.values()).sort((a, b) => b.id - a.id);
  }

  render() {
    if (this.element) this.element.innerHTML = this.list().map(artifactItem).join("");
    this.onChange(this.list());
  }
}
