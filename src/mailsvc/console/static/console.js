// The console's own script (the CSP allows scripts from this origin only, none inline).
// A page left open on an account's events would otherwise grow without end: keep the
// newest rows of each live list (data-keep-rows on its <tbody>).
document.addEventListener("htmx:afterSwap", (event) => {
  const list = event.target.closest ? event.target.closest("tbody[data-keep-rows]") : null;
  if (list === null) {
    return;
  }
  const keep = Number(list.dataset.keepRows);
  while (list.rows.length > keep) {
    list.deleteRow(list.rows.length - 1);
  }
});
