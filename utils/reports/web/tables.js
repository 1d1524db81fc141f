// Both pages: a click on a column head of a sortable table sorts its rows by that column (again: the other way).
(function () {
  "use strict";
  document.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("th").forEach((th, column) => {
      th.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const key = (row) => {
          // the cell's first number (a value may be followed by its spread and its difference)
          const text = row.cells[column].textContent.trim();
          const number = parseFloat(text);
          return Number.isNaN(number) ? text : number;
        };
        const body = table.tBodies[0];
        const rows = Array.from(body.rows).sort((a, b) => {
          const x = key(a), y = key(b);
          const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
        rows.forEach((row) => body.appendChild(row));
      });
    });
  });
})();
