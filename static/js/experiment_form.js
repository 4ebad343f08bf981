// New-experiment form: show only the options of the selected space, strategy and estimator.
// Hidden option inputs are disabled so they are not submitted.
function sync(kind) {
  const select = document.querySelector(`select[name="${kind}"]`);
  if (!select) return;
  document.querySelectorAll(`fieldset.options[data-kind="${kind}"]`).forEach((fieldset) => {
    const active = fieldset.dataset.component === select.value;
    fieldset.hidden = !active;
    fieldset.disabled = !active;
  });
}

for (const kind of ["space", "strategy", "estimator"]) {
  const select = document.querySelector(`select[name="${kind}"]`);
  if (select) select.addEventListener("change", () => sync(kind));
  sync(kind);
}
