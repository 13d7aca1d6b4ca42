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
        var keyed = rows.map(function (r) { return [cellValue(r.cells[col]), r]; });
        keyed.sort(function (a, b) {
          var x = a[0], y = b[0];
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        var frag = document.createDocumentFragment();
        keyed.forEach(function (k) { frag.appendChild(k[1]); });
        body.appendChild(frag);
      });
    });
  });

  // scenario filters: a row shows when it matches every chosen value
  var form = document.getElementById("scenario-filters");
  var table = document.getElementById("scenario-table");
  function applyFilters() {
    var chosen = [];
    form.querySelectorAll("select[data-filter]").forEach(function (s) {
      if (s.value !== "") { chosen.push(["data-" + s.getAttribute("data-filter").toLowerCase(), s.value]); }
    });
    var rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var ok = chosen.every(function (c) { return rows[i].getAttribute(c[0]) === c[1]; });
      rows[i].hidden = !ok;
      if (ok) { shown++; }
    }
    var count = document.getElementById("scenario-count");
    if (count) { count.textContent = shown + " of " + rows.length + " scenarios"; }
  }
  if (form && table) { form.addEventListener("change", applyFilters); applyFilters(); }

  // trace viewer: samples live once in a JSON block, rendered as text for the picked scenario
  var pick = document.getElementById("trace-pick");
  var panel = document.getElementById("trace-panel");
  var dataEl = document.getElementById("trace-data");
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  if (pick && panel && dataEl) {
    var data = JSON.parse(dataEl.textContent);
    var show = function () {
      panel.textContent = "";
      (data[pick.value] || []).forEach(function (t) {
        var box = el("div", "trace");
        var meta = el("div", "meta");
        meta.appendChild(document.createTextNode("question " + t.question_id + " \u00b7 sample " + t.sample_idx +
          " \u00b7 budget " + t.token_budget + " \u00b7 "));
        meta.appendChild(el("span", t.correct ? "ok-t" : "bad-t", t.correct ? "correct" : "wrong"));
        meta.appendChild(document.createTextNode(" \u00b7 answer " + t.extracted_answer + " (reference " +
          t.reference_answer + ") \u00b7 " + t.thinking_tokens + " thinking + " + t.answer_tokens +
          " answer tokens" + (t.forced ? " \u00b7 answer forced at budget" : "")));
        box.appendChild(meta);
        box.appendChild(el("pre", "", t.text));
        panel.appendChild(box);
      });
    };
    pick.addEventListener("change", show);
    show();
  }
  document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.body.setAttribute("data-ready", "1");
})();
