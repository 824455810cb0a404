// The console's one script, served from its origin (no inline script under
// the CSP). Everything works without it; it only adds conveniences.
"use strict";
document.addEventListener("change", (event) => {
  // "Select all" ticks every row of the table it heads, for a bulk remove.
  const all = event.target.closest("input[data-select-all]");
  if (!all) return;
  const table = all.closest("table");
  for (const box of table.querySelectorAll("input[name=target]")) {
    box.checked = all.checked;
  }
});
