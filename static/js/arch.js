// Architecture pictures on the pages: the drawings are SVG made by the server (the engine's
// search_engine/spaces/drawing.py, every label escaped there), fetched once per trial and cached.
// Also the copy button of the NAS-Bench-201 string.
import { escapeHtml, withId } from "./live.js";

const cache = new Map();   // url -> Promise<svg text>

/** The SVG text of one trial's drawing; `urlPattern` is the page data's arch URL with id 0. */
export function fetchArch(urlPattern, trialId) {
  const url = withId(urlPattern, trialId);
  if (!cache.has(url)) {
    cache.set(url, fetch(url, { credentials: "same-origin" }).then((res) => {
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return res.text();
    }));
    cache.get(url).catch(() => cache.delete(url));   // a failed fetch is tried again next time
  }
  return cache.get(url);
}

/** Fill `element` with the drawing of `trialId` (a short note instead when it fails). */
export async function showArch(element, urlPattern, trialId) {
  element.dataset.trial = String(trialId);
  try {
    const svg = await fetchArch(urlPattern, trialId);
    if (element.dataset.trial === String(trialId)) element.innerHTML = svg;
  } catch (err) {
    element.innerHTML = `<p class="muted small">No drawing (${escapeHtml(err.message)}).</p>`;
  }
}

/** Hovering (or focusing) a trial link in `table` shows that trial's drawing in a tooltip.
 *  Links are found by `selector`; their row carries data-trial. Nothing loads until a hover. */
export function bindArchTooltip(table, urlPattern, selector = "tr[data-trial] td:first-child a") {
  if (!table || !urlPattern) return;
  const tip = document.createElement("div");
  tip.className = "arch-tooltip";
  tip.setAttribute("role", "tooltip");
  tip.id = "arch-tooltip";
  tip.hidden = true;
  document.body.appendChild(tip);
  let current = null;
  const open = (link) => {
    const row = link.closest("tr[data-trial]");
    if (!row) return;
    current = link;
    const box = link.getBoundingClientRect();
    tip.style.left = `${Math.max(8, Math.min(window.scrollX + box.right + 12, window.scrollX + window.innerWidth - 440))}px`;
    tip.style.top = `${window.scrollY + box.top - 20}px`;
    tip.innerHTML = '<p class="muted small">Loading the drawing…</p>';
    tip.hidden = false;
    link.setAttribute("aria-describedby", tip.id);
    showArch(tip, urlPattern, row.dataset.trial);
  };
  const close = (link) => {
    if (link && link !== current) return;
    tip.hidden = true;
    if (current) current.removeAttribute("aria-describedby");
    current = null;
  };
  table.addEventListener("mouseover", (e) => { const a = e.target.closest(selector); if (a && a !== current) open(a); });
  table.addEventListener("mouseout", (e) => {
    const a = e.target.closest(selector);
    if (a && !a.contains(e.relatedTarget)) close(a);
  });
  table.addEventListener("focusin", (e) => { const a = e.target.closest(selector); if (a) open(a); });
  table.addEventListener("focusout", (e) => { const a = e.target.closest(selector); if (a) close(a); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
}

/** A button with data-copy="<input id>" copies that input's value and says so. */
export function bindCopyButtons(root = document) {
  root.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      const note = document.getElementById("copy-state");
      let done = false;
      try {
        await navigator.clipboard.writeText(input.value);
        done = true;
      } catch {
        input.select();   // no clipboard permission (or not a secure context): select it for Ctrl+C
        done = document.execCommand && document.execCommand("copy");
      }
      if (note) note.textContent = done ? "Copied." : "Selected: press Ctrl+C to copy.";
    });
  });
}
