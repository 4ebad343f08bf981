// Dataset page: the class-balance chart, sample images (or a CSV's first rows) loaded from the
// API after the page shows (loading an image ZIP can take a moment), and a confirm on delete.
import { drawClassBalance } from "./dataset_chart.js";
import { escapeHtml, getJSON, pageData } from "./live.js";

const page = pageData();
drawClassBalance(document.getElementById("chart-classes"), page.classes);

function renderSamples(body) {
  const box = document.getElementById("samples");
  if (body.problem) {
    box.innerHTML = `<p class="empty">Samples unavailable: ${escapeHtml(body.problem)}</p>`;
  } else if (body.samples && body.samples.length) {
    box.innerHTML = `<div class="samples">${body.samples.map((group) => `
      <figure class="sample-class">
        <div class="sample-images">${group.images.map((uri, i) =>
          `<img class="thumb" src="${uri}" alt="${escapeHtml(group.class)} sample ${i + 1}">`).join("")}</div>
        <figcaption>${escapeHtml(group.class)}</figcaption>
      </figure>`).join("")}</div>`;
  } else if (body.csv) {
    const head = body.csv.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
    const rows = body.csv.rows.map((row) => `<tr>${row.map((v) => `<td>${escapeHtml(v)}</td>`).join("")}</tr>`).join("");
    box.innerHTML = `<div class="table-wrap"><table class="table compact mono small"><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table></div>` +
      `<p class="muted small">${body.csv.n_rows} rows in the file.</p>`;
  } else {
    box.innerHTML = '<p class="empty">Nothing to show for tabular data.</p>';
  }
}

getJSON(page.samplesUrl).then(renderSamples).catch((err) => {
  document.getElementById("samples").innerHTML = `<p class="empty">Samples unavailable (${escapeHtml(err.message)}).</p>`;
});

const deleteForm = document.getElementById("delete-form");
if (deleteForm) {
  deleteForm.addEventListener("submit", (event) => {
    if (!window.confirm(deleteForm.dataset.confirm)) event.preventDefault();
  });
}
