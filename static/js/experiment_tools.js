// Experiment page, beside experiment.js: the architecture tooltip of the trial table, the delete
// confirmation, and a banner (plus a browser notification, if the person allowed them) when the
// experiment ends while the page is open. It reads the status from the badge experiment.js keeps
// live, so it needs no socket of its own.
import { escapeHtml, pageData } from "./live.js";
import { bindArchTooltip } from "./arch.js";

const page = pageData();
const TERMINAL = ["completed", "failed", "cancelled"];

bindArchTooltip(document.getElementById("trial-table"), page.urls.arch);

const deleteForm = document.getElementById("delete-form");
if (deleteForm) {
  deleteForm.addEventListener("submit", (event) => {
    if (!window.confirm(deleteForm.dataset.confirm)) event.preventDefault();
  });
}

function statusOf(badge) {
  return badge.textContent.trim().toLowerCase();
}

function announceEnd(status) {
  const banner = document.getElementById("ended-banner");
  const name = banner.dataset.name;
  const message = document.getElementById("status-message").textContent.trim();
  const best = document.getElementById("best-score").textContent.trim();
  const text = `“${name}” ${status}` + (best && best !== "—" ? ` · best score ${best}` : "") + (message ? ` · ${message}` : "");
  banner.className = `banner banner-${status}`;
  banner.innerHTML = `<strong>The experiment has ended.</strong> ${escapeHtml(text)}` +
    ' <button type="button" class="btn btn-ghost btn-small" data-dismiss>Dismiss</button>';
  banner.hidden = false;
  banner.querySelector("[data-dismiss]").addEventListener("click", () => { banner.hidden = true; });
  document.getElementById("notify-row").hidden = true;
  if ("Notification" in window && Notification.permission === "granted") {
    try { new Notification(`NAS Studio: ${name} ${status}`, { body: text, tag: `experiment-${page.id}` }); } catch { /* some browsers allow only service-worker notifications */ }
  }
}

function watchStatus() {
  const badge = document.getElementById("status-badge");
  let last = statusOf(badge);
  const notifyRow = document.getElementById("notify-row");
  if ("Notification" in window && Notification.permission === "default" && !TERMINAL.includes(last)) {
    notifyRow.hidden = false;
    document.getElementById("notify-button").addEventListener("click", async () => {
      const answer = await Notification.requestPermission();
      notifyRow.textContent = answer === "granted" ? "You will be notified when it ends." : "Notifications are off; a banner shows when it ends.";
    });
  }
  new MutationObserver(() => {
    const now = statusOf(badge);
    if (now !== last && TERMINAL.includes(now) && !TERMINAL.includes(last)) announceEnd(now);
    last = now;
  }).observe(badge, { childList: true, characterData: true, subtree: true });
}

watchStatus();
