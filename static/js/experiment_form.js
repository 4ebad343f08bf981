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

// A number input holding something that is not a number submits as empty, which the server would
// read as "use the default": say so next to the input while typing, and refuse to submit.
function labelOf(input) {
  const label = input.id && document.querySelector(`label[for="${input.id}"]`);
  return label ? label.textContent.replace("*", "").trim() : input.name;
}

function checkNumber(input) {
  const field = input.closest(".field");
  if (!field) return true;
  let note = field.querySelector(".client-error");
  const bad = input.validity.badInput;
  if (bad && !note) {
    note = document.createElement("div");
    note.className = "field-error client-error";
    note.setAttribute("role", "alert");
    field.appendChild(note);
  }
  if (note) {
    if (bad) note.textContent = `${labelOf(input)} must be ${input.step === "1" ? "a whole number" : "a number"}.`;
    else note.remove();
  }
  field.classList.toggle("has-error", bad || Boolean(field.querySelector(".field-error")));
  input.setAttribute("aria-invalid", bad ? "true" : "false");
  return !bad;
}

const form = document.getElementById("experiment-form");
if (form) {
  form.addEventListener("input", (e) => { if (e.target.matches('input[type="number"]')) checkNumber(e.target); });
  form.addEventListener("submit", (e) => {
    const inputs = [...form.querySelectorAll('input[type="number"]')].filter((i) => !i.disabled && !i.closest("fieldset[disabled]"));
    const bad = inputs.filter((i) => !checkNumber(i));
    if (bad.length) {
      e.preventDefault();
      bad[0].focus();
    }
  });
}
