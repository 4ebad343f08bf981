// Trial page, completed trial: "Prepare download" asks for the trial's model package (every
// member may: it is a read), then follows the job's progress over the experiment's websocket
// until the Download link appears. Nothing polls; on a (re)connect the list re-syncs from REST.
import { ArtifactList, errorText, requestJob } from "./downloads.js";
import { getJSON, openSocket, pageData } from "./live.js";

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

function follow() {
  if (socket) return;
  socket = openSocket(page.wsPath, {
    onOpen: load,   // catch up on what happened while (re)connecting
    onEvent: (e) => {
      if (e.type && e.type.startsWith("artifact.")) packages.upsert(e.artifact);
    },
    onState: () => {},
  });
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
