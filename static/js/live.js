// Shared helpers of the page modules: page data, a websocket that reconnects with exponential
// backoff, a sequence-checked event stream over a REST snapshot, a render throttle, formatting.
// Charts are in charts.js, the domain rules in rules.js.

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
 *  a gap (a lost event) triggers a fresh snapshot.
 *
 *  Several sequences can share one stream (the compare page: one per experiment): `keyOf(event)`
 *  names an event's sequence and the snapshot's `seq` maps each key to its number. A snapshot
 *  without a number for a key (an API that reads none) leaves that sequence's start unknown: the
 *  first event after the snapshot sets it, and gaps count from there. */
export class SequencedStream {
  constructor({ load, apply, reset, keyOf = () => "" }) {
    this.load = load;     // async () => snapshot with .seq (a number, or {key: number})
    this.apply = apply;   // (event) => void
    this.reset = reset;   // (snapshot) => void
    this.keyOf = keyOf;
    this.seqs = new Map();   // key -> last sequence number applied (or in the snapshot)
    this.synced = false;
    this.syncing = null;
    this.buffer = [];
  }

  get loaded() { return this.synced; }

  /** The last sequence number of the (single) sequence; -1 before the first snapshot. */
  get seq() { return this.seqs.get("") ?? -1; }

  resync() {
    // A resync asked for while one is loading (say, a reconnect during a gap's resync) must
    // load again: the snapshot in flight may predate the new socket joining its group.
    if (this.syncing) { this.again = true; return this.syncing; }
    this.syncing = (async () => {
      do {
        this.again = false;
        const snapshot = await this.loadWithRetry();
        this.reset(snapshot);
        this.seqs = snapshotSeqs(snapshot.seq);
      } while (this.again);
      this.synced = true;
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
    // Before the first snapshot every event waits for it (and asks for it).
    if (this.syncing || !this.synced) {
      this.buffer.push(event);
      if (!this.syncing) this.resync();
      return;
    }
    const key = this.keyOf(event);
    const last = this.seqs.get(key);
    if (last != null && event.seq <= last) return;
    if (last != null && event.seq > last + 1) {
      this.buffer.push(event);
      this.resync();
      return;
    }
    this.seqs.set(key, event.seq);
    this.apply(event);
  }
}

function snapshotSeqs(seq) {
  if (typeof seq === "number") return new Map([["", seq]]);
  return new Map(Object.entries(seq || {}).filter(([, n]) => typeof n === "number"));
}

/** Follow one websocket through a SequencedStream: every (re)connect re-syncs (the consumer joins
 *  the group before accepting, so every event after the snapshot's seq reaches the page). */
export function streamOver(path, stream, onState = () => {}) {
  return openSocket(path, {
    onOpen: () => stream.resync(),
    onEvent: (event) => stream.push(event),
    onState: (s, wait) => {
      onState(s, wait);
      // No socket yet: still show the data (a later open re-syncs).
      if ((s === "reconnecting" || s === "denied") && !stream.loaded && !stream.syncing) stream.resync();
    },
  });
}

/** A page URL made with id 0 in the template ({% url 'trial-detail' 0 %}) for another id. */
export function withId(template, id) {
  return template.replace("/0/", `/${id}/`);
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
