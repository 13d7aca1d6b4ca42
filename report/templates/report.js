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
  // what to run: the recommendation for a memory budget, from the steps embedded in the page
  var recData = document.getElementById("recommend-data");
  var recForm = document.getElementById("recommend-form");
  var MEMORY_UNITS = [["GB", 1], ["MB", Math.pow(2, -10)], ["KB", Math.pow(2, -20)]];
  function formatMemory(gib) {
    var abs = Math.abs(gib), unit = MEMORY_UNITS[MEMORY_UNITS.length - 1];
    for (var i = 0; i < MEMORY_UNITS.length; i++) {
      if (abs >= MEMORY_UNITS[i][1]) { unit = MEMORY_UNITS[i]; break; }
    }
    return String(Number((gib / unit[1]).toPrecision(3))) + " " + unit[0];
  }
  function signed(v) { return (v > 0 ? "+" : v < 0 ? "\u2212" : "") + Math.abs(v).toFixed(3); }
  function runText(s) {
    if (s.command) { return s.command + "; sampling " + JSON.stringify(s.sampling_params); }
    return "HF transformers " + s.model + ", generate " + JSON.stringify(s.generate) + ", KV cache " +
      JSON.stringify(s.kv_cache);
  }
  function recommendationRow(way, c, alt) {
    var tr = el("tr", way === "recommendation" ? "chosen" : "");
    tr.setAttribute("data-way", way);
    tr.appendChild(el("td", "", way));
    if (!c) {
      tr.setAttribute("data-scenario", "");
      tr.appendChild(el("td", "muted", "none fits"));
      for (var i = 0; i < 4; i++) { tr.appendChild(el("td", "")); }
      return tr;
    }
    tr.setAttribute("data-scenario", c.scenario_id);
    tr.setAttribute("data-accuracy", String(c.accuracy));
    tr.setAttribute("data-total-gib", String(c.memory.total_gib));
    tr.appendChild(el("td", "", c.model + " " + c.weights + " (" + c.weight_bits + "-bit), KV " + c.kv +
      ", T=" + Number(c.token_budget).toLocaleString("en-US") + ", G=" + c.G));
    tr.appendChild(el("td", "num", c.accuracy.toFixed(3) + " (" + c.ci_low.toFixed(3) + " to " +
      c.ci_high.toFixed(3) + ")"));
    var diff = el("td", "num", "");
    if (alt && alt.difference !== null) {
      tr.setAttribute("data-difference", String(alt.difference));
      tr.setAttribute("data-difference-low", String(alt.difference_ci[0]));
      tr.setAttribute("data-difference-high", String(alt.difference_ci[1]));
      diff.textContent = signed(alt.difference) + " (" + signed(alt.difference_ci[0]) + " to " +
        signed(alt.difference_ci[1]) + ")";
    }
    tr.appendChild(diff);
    tr.appendChild(el("td", "num", formatMemory(c.memory.total_gib) + " = " + formatMemory(c.memory.weights_gib) +
      " weights + " + formatMemory(c.memory.kv_gib) + " KV; ~" +
      String(Number(c.seconds_per_question.toPrecision(3))) + " s/question"));
    var run = el("td", "");
    run.appendChild(el("code", "", runText(c.engine_settings)));
    tr.appendChild(run);
    return tr;
  }
  if (recData && recForm) {
    var rec = JSON.parse(recData.textContent);
    var memoryInput = document.getElementById("gpu-memory");
    var datasetPick = document.getElementById("recommend-dataset");
    var recOut = document.getElementById("recommend-output");
    var query = new URLSearchParams(window.location.search);
    if (query.get("memory")) { memoryInput.value = query.get("memory"); }
    if (query.get("dataset") && rec.datasets[query.get("dataset")]) { datasetPick.value = query.get("dataset"); }
    var showRecommendation = function () {
      recOut.textContent = "";
      var gib = parseFloat(memoryInput.value);
      var ds = rec.datasets[datasetPick.value];
      var status = "ok", message = "";
      if (!(gib > 0)) {
        status = "empty"; message = "Enter your GPU's memory in GB, e.g. 24.";
      } else if (gib < ds.range_gib[0]) {
        status = "below"; message = formatMemory(gib) + " is below the smallest configuration studied on " +
          datasetPick.value + " (" + formatMemory(ds.range_gib[0]) + ").";
      } else if (gib > ds.range_gib[1]) {
        status = "above"; message = formatMemory(gib) + " is above the largest configuration studied on " +
          datasetPick.value + " (" + formatMemory(ds.range_gib[1]) + "): the study cannot say how to spend more.";
      }
      recOut.setAttribute("data-status", status);
      recOut.setAttribute("data-memory-gib", String(gib));
      if (status !== "ok") { recOut.appendChild(el("p", "muted", message)); return; }
      var step = ds.steps[0];
      for (var i = 0; i < ds.steps.length && ds.steps[i].from_gib <= gib; i++) { step = ds.steps[i]; }
      var table = el("table", "");
      var head = el("tr", "");
      ["", "configuration", "accuracy (" + Math.round(100 * rec.interval_level) + "% interval)",
        "difference to the recommendation", "memory, time", "run it"].forEach(function (h) {
        head.appendChild(el("th", "", h));
      });
      table.appendChild(el("thead", "")).appendChild(head);
      var body = el("tbody", "");
      body.appendChild(recommendationRow("recommendation", rec.configurations[step.recommendation], null));
      rec.ways.forEach(function (way, k) {
        var alt = step.alternatives[k];
        body.appendChild(recommendationRow(way.name, alt ? rec.configurations[alt.scenario_id] : null, alt));
      });
      table.appendChild(body);
      recOut.appendChild(table);
    };
    recForm.addEventListener("submit", function (e) { e.preventDefault(); showRecommendation(); });
    memoryInput.addEventListener("input", showRecommendation);
    datasetPick.addEventListener("change", showRecommendation);
    showRecommendation();
  }
  // tables that must fit their box (no column cut off at the right edge): how many do not
  var overflowing = Array.prototype.filter.call(document.querySelectorAll(".scroll.fit"), function (box) {
    return box.scrollWidth > box.clientWidth + 1;
  });
  document.body.setAttribute("data-overflowing", String(overflowing.length));
  document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.body.setAttribute("data-ready", "1");
})();
