// Upload page. Step 1: pick the kind from the file name and refuse a file over the limit before
// sending it. Step 2 (preview): draw the class balance; changing the target column, an ignored
// column or the image size refreshes the preview (the same form, no re-upload).
import { drawClassBalance } from "./dataset_chart.js";
import { pageData } from "./live.js";

const page = pageData();

function humanBytes(n) {
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n} bytes` : `${n.toFixed(1)} ${units[i]}`;
}

function busy(button, label) {
  if (!button) return;
  // After the submit has been dispatched, so the button's name/value still goes with the form.
  setTimeout(() => { button.disabled = true; button.textContent = label; }, 0);
}

const uploadForm = document.getElementById("upload-form");
if (uploadForm) {
  const input = document.getElementById("id_file");
  const source = document.getElementById("id_source");
  const error = document.getElementById("file-error");
  const button = document.getElementById("upload-button");
  input.addEventListener("change", () => {
    const file = input.files[0];
    error.hidden = true;
    button.disabled = false;
    if (!file) return;
    const suffix = (file.name.match(/\.[^.]+$/) || [""])[0].toLowerCase();
    if (page.suffixes[suffix]) source.value = page.suffixes[suffix];
    if (file.size > page.limitBytes) {
      error.textContent = `${file.name}: file: is ${humanBytes(file.size)}, over the upload limit of ${humanBytes(page.limitBytes)}`;
      error.hidden = false;
      button.disabled = true;
    }
  });
  uploadForm.addEventListener("submit", () => busy(button, "Uploading…"));
}

const previewForm = document.getElementById("preview-form");
if (previewForm) {
  drawClassBalance(document.getElementById("chart-classes"), page.classes);
  const update = document.getElementById("update-button");
  const refresh = () => { if (update) previewForm.requestSubmit(update); };
  previewForm.querySelectorAll("#id_target, input[name=exclude], #id_grayscale").forEach((el) => el.addEventListener("change", refresh));
  const size = document.getElementById("id_image_size");
  if (size) size.addEventListener("change", () => { if (size.checkValidity()) refresh(); });
  previewForm.addEventListener("submit", (event) => {
    const saving = event.submitter && event.submitter.value === "save";
    busy(event.submitter, saving ? "Saving…" : "Updating…");
  });
}
