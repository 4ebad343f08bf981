// Shared helpers of the page modules: a websocket that reconnects with exponential backoff,
// a sequence-checked event stream over a REST snapshot, a render throttle, the Pareto front,
// and formatting.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const DENIED = 4403; // the consumer's close code for "not logged in / not a member"

export function pageData() {
  return JSON.parse(document.getElementById("page-data").textContent);
}

export function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function getJSON(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

export async function postJSON(url) {
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
  });
  let body = null;
  try { body = await res.json(); } catch { /* empty or HTML body */ }
  return { ok: res.ok, status: res.status, body };
}

/** Open ws(s)://host/<path>; on every (re)connect call onOpen (the caller re-syncs there).
 *  Reconnects after 0.5 s, 1 s, 2 s ... up to 30 s (plus jitter), reset by a successful open. */
export function openSocket(path, { onOpen, onEvent, onState }) {
  let delay = MIN_DELAY_MS;
  let socket = null;
  let stopped = false;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";

  function connect() {
    onState("connecting");
    socket = new WebSocket(`${proto}//${location.host}${path}`);
    socket.onopen = () => {
      delay = MIN_DELAY_MS;
      onState("live");
      onOpen();
    };
    socket.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      onEvent(event);
    };
    socket.onclose = (close) => {
      if (stopped) return;
      if (close.code === DENIED) { onState("denied"); return; }
      const wait = delay + Math.random() * delay * 0.3;
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      onState("reconnecting", wait);
      setTimeout(connect, wait);
    };
  }
  connect();
  return { close() { stopped = true; if (socket) socket.close(); } };
}

/** Applies websocket events in sequence over a REST snapshot.
 *  Events are buffered while a snapshot loads; those with seq <= the snapshot's are already in it;
 *  a gap (a lost event) triggers a fresh snapshot. */
export class SequencedStream {
  constructor({ load, apply, reset }) {
    this.load = load;     // async () => snapshot with .seq
    this.apply = apply;   // (event) => void
    this.reset = reset;   // (snapshot) => void
    this.seq = -1;
    this.syncing = null;
    this.buffer = [];
  }

  get loaded() { return this.seq >= 0; }

  resync() {
    // A resync asked for while one is loading (say, a reconnect during a gap's resync) must
    // load again: the snapshot in flight may predate the new socket joining its group.
    if (this.syncing) { this.again = true; return this.syncing; }
    this.syncing = (async () => {
      do {
        this.again = false;
        const snapshot = await this.loadWithRetry();
        this.reset(snapshot);
        this.seq = snapshot.seq;
      } while (this.again);
      this.syncing = null;
      const buffered = this.buffer.sort((a, b) => a.seq - b.seq);
      this.buffer = [];
      for (const event of buffered) this.push(event);
    })();
    return this.syncing;
  }

  async loadWithRetry() {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.load();
      } catch (err) {
        console.warn("snapshot failed", err);
        await new Promise((r) => setTimeout(r, Math.min(MIN_DELAY_MS * 2 ** attempt, MAX_DELAY_MS)));
      }
    }
  }

  push(event) {
    if (typeof event.seq !== "number") { this.apply(event); return; }
    if (this.syncing) { this.buffer.push(event); return; }
    if (event.seq <= this.seq) return;
    if (event.seq > this.seq + 1) {
      this.buffer.push(event);
      this.resync();
      return;
    }
    this.seq = event.seq;
    this.apply(event);
  }
}

/** Calls fn at most once per `ms`, coalescing every request made meanwhile. */
export function throttle(fn, ms = 100) {
  let timer = null;
  let last = 0;
  return function schedule() {
    if (timer) return;
    const wait = Math.max(0, last + ms - performance.now());
    timer = setTimeout(() => {
      timer = null;
      last = performance.now();
      fn();
    }, wait);
  };
}

/** Non-dominated points when maximising y and minimising x, in increasing x (ties on x keep
 *  only the best y; equal points are dominated by neither and the first one stays). */
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  const front = [];
  let bestY = -Infinity;
  for (const p of sorted) {
    if (p.y > bestY) { front.push(p); bestY = p.y; }
  }
  return front;
}

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function fmtScore(v) { return v == null ? "—" : Number(v).toFixed(4); }
export function fmtInt(v) { return v == null ? "—" : Math.round(v).toLocaleString("en-US"); }
export function fmtCompact(v) {
  if (v == null) return "—";
  const abs = Math.abs(v);
  if (abs >= 1e9) return (v / 1e9).toFixed(2) + "G";
  if (abs >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (abs >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return String(v);
}
export function fmtFixed(v, digits = 2) { return v == null ? "—" : Number(v).toFixed(digits); }

export function liveLabel(element, state, wait) {
  if (!element) return;
  const text = {
    connecting: "connecting…",
    live: "live",
    reconnecting: `connection lost, reconnecting in ${Math.round((wait || 0) / 1000)} s…`,
    denied: "live updates refused (logged out?)",
  }[state] || state;
  element.textContent = text;
  element.classList.toggle("on", state === "live");
}
