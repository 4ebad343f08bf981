// New-experiment form: show only the options of the selected space, strategy and estimator, and
// for a one-shot method its options instead of the strategy's. Hidden option inputs are disabled
// so they are not submitted.
function sync(kind) {
  const select = document.querySelector(`select[name="${kind}"]`);
  if (!select) return;
  const component = document.querySelector(`.component[data-kind="${kind}"]`);
  const shown = !component || !component.hidden;
  document.querySelectorAll(`fieldset.options[data-kind="${kind}"]`).forEach((fieldset) => {
    const active = shown && fieldset.dataset.component === select.value;
    fieldset.hidden = !active;
    fieldset.disabled = !active;
  });
}

function syncMethod() {
  const select = document.querySelector('select[name="method"]');
  if (!select) return;
  const search = select.value === "search";
  const strategy = document.querySelector('.component[data-kind="strategy"]');
  if (strategy) strategy.hidden = !search;
  document.querySelectorAll('fieldset.options[data-kind="oneshot"]').forEach((fieldset) => {
    const active = fieldset.dataset.method === select.value;
    fieldset.hidden = !active;
    fieldset.disabled = !active;
  });
  sync("strategy");
}

for (const kind of ["space", "strategy", "estimator"]) {
  const select = document.querySelector(`select[name="${kind}"]`);
  if (select) select.addEventListener("change", () => sync(kind));
  sync(kind);
}
const method = document.querySelector('select[name="method"]');
if (method) method.addEventListener("change", syncMethod);
syncMethod();
