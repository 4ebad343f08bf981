// Trial page, completed trial: "Prepare download" asks for the trial's model package (every
// member may: it is a read), then follows the job's progress over the experiment's websocket
// until the Download link appears. Nothing polls; on a (re)connect or a lost event the list
// re-syncs from REST.
import { ArtifactList, errorText, requestJob } from "./downloads.js";
import { SequencedStream, getJSON, pageData, streamOver } from "./live.js";

const page = pageData();
const card = document.getElementById("trial-package");
const button = document.getElementById("package-button");
const note = document.getElementById("package-message");
const ABOUT = note.textContent;   // what a package holds
let socket = null;

const packages = new ArtifactList(document.getElementById("package-list"), {
  filter: (a) => a.trial === page.trial,
  onChange: (items) => {
    // One package per trial: offer the button only while there is none (or only a failed one).
    const live = items.some((a) => a.kind === "model_zip" && a.status !== "failed");
    button.hidden = live;
    const busy = items.some((a) => a.status === "pending" || a.status === "running");
    if (busy) follow();
    else if (live) note.textContent = ABOUT;
  },
});

async function load() {
  try {
    const list = await getJSON(card.dataset.listUrl);
    packages.set(list.results || list);
  } catch (err) {
    console.warn(err);
    button.hidden = false;
  }
}

// The artifact list reads no sequence number: the first event after each read starts the count.
const stream = new SequencedStream({
  load: () => getJSON(card.dataset.listUrl),
  reset: (list) => packages.set(list.results || list),
  apply: (e) => {
    if (e.type && e.type.startsWith("artifact.")) packages.upsert(e.artifact);
  },
});

function follow() {
  if (!socket) socket = streamOver(page.wsPath, stream);
}

button.addEventListener("click", async () => {
  button.disabled = true;
  try {
    const res = await requestJob(card.dataset.packageUrl);
    if (res.ok) {
      packages.upsert(res.body);
      note.textContent = res.status === 202
        ? "Preparing the package; this page shows its progress (you may leave and come back)."
        : "The package is ready.";
    } else {
      note.textContent = errorText(res, "prepare the download");
    }
  } finally {
    button.disabled = false;
  }
});

load();
