(function () {
  "use strict";
  function cellValue(td) {
    var v = td.getAttribute("data-v");
    if (v === null) { v = td.textContent.trim(); }
    var n = parseFloat(v);
    return (v !== "" && !isNaN(n) && isFinite(v)) ? n : v.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        heads.forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var pick = document.getElementById("trace-pick");
  function show() {
    document.querySelectorAll(".trace-panel").forEach(function (p) {
      p.hidden = (p.getAttribute("data-scenario") !== pick.value);
    });
  }
  if (pick) { pick.addEventListener("change", show); show(); }
  document.body.setAttribute("data-ready", "1");
})();
