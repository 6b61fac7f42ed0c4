(function () {
  "use strict";
  var perQuery = JSON.parse(document.getElementById("per-query").textContent);
  var tabs = Array.prototype.slice.call(document.querySelectorAll("nav [role=tab]"));
  var filter = document.getElementById("filter"), count = document.getElementById("count");
  var panel = document.getElementById("detail");
  var all = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  function showTab(name) {
    if (!tabs.some(function (b) { return b.dataset.tab === name; }) && tabs.length) name = tabs[0].dataset.tab;
    tabs.forEach(function (b) {
      var on = b.dataset.tab === name;
      b.setAttribute("aria-selected", on ? "true" : "false");
      document.getElementById(b.getAttribute("aria-controls")).hidden = !on;
    });
    document.documentElement.dataset.tab = name || "";
  }

  function key(td) {
    if (!td) return null;
    if (td.hasAttribute("data-v")) return td.dataset.v === "" ? null : Number(td.dataset.v);
    var t = td.textContent.trim().toLowerCase();
    return t === "" || t === "\u2013" ? null : t;
  }

  function sortBy(th) {
    var table = th.closest("table"), tbody = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var now = th.getAttribute("aria-sort");
    var dir = now ? (now === "descending" ? "ascending" : "descending")
                  : (th.dataset.type === "num" ? "descending" : "ascending");
    all("thead th", table).forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null || y === null) return x === y ? a.dataset.i - b.dataset.i : (x === null ? 1 : -1);
      if (x < y) return -sign;
      if (x > y) return sign;
      return a.dataset.i - b.dataset.i;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function applyFilter() {
    var terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0, total = 0;
    all("main table.data tbody tr").forEach(function (tr) {
      var text = tr.textContent.toLowerCase();
      var ok = terms.every(function (t) { return text.indexOf(t) >= 0; });
      tr.hidden = !ok;
      total += 1;
      shown += ok ? 1 : 0;
    });
    count.textContent = terms.length ? shown + " of " + total + " rows match" : total + " rows";
  }

  function pct(v) { return v === undefined || v === null ? "\u2013" : (100 * v).toFixed(1); }

  function openDetail(tr) {
    var table = tr.closest("table"), file = tr.dataset.file, values = perQuery[file] || {};
    var base = table.dataset.baseline, baseValues = base && base !== file ? perQuery[base] || {} : null;
    all("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    tr.classList.add("selected");
    var ids = Object.keys(values).sort(function (a, b) { return a.localeCompare(b, "en", {numeric: true}); });
    var mean = ids.reduce(function (s, q) { return s + values[q]; }, 0) / (ids.length || 1);
    document.getElementById("d-title").textContent = tr.cells[0].textContent;
    document.getElementById("d-meta").textContent = table.dataset.task + " \u00b7 " + table.dataset.main +
      " per query (\u00d7100) \u00b7 " + ids.length + " queries, mean " + pct(mean) +
      (baseValues ? " \u00b7 \u0394 against the BM25 baseline" : "");
    var link = document.getElementById("d-link");
    link.href = tr.dataset.href;
    link.textContent = file;
    document.getElementById("d-base").hidden = !baseValues;
    var body = document.getElementById("d-rows");
    body.textContent = "";
    ids.forEach(function (q) {
      var v = values[q], b = baseValues ? baseValues[q] : undefined, row = body.insertRow();
      row.dataset.query = q;
      row.insertCell().textContent = q;
      var c = row.insertCell(); c.className = "num"; c.textContent = pct(v);
      var bar = document.createElement("div"); bar.className = "bar";
      bar.style.width = Math.max(0, Math.min(100, 100 * v)).toFixed(1) + "%";
      row.insertCell().appendChild(bar);
      if (baseValues) {
        c = row.insertCell(); c.className = "num"; c.textContent = pct(b);
        c = row.insertCell(); c.className = "num";
        if (b !== undefined) {
          var d = 100 * (v - b);
          c.textContent = (d > 0 ? "+" : "") + d.toFixed(1);
          c.className += d > 0 ? " pos" : (d < 0 ? " neg" : "");
        }
      } else {
        row.insertCell(); row.insertCell();
      }
    });
    panel.hidden = false;
    document.body.classList.add("with-detail");
  }

  function closeDetail() {
    panel.hidden = true;
    document.body.classList.remove("with-detail");
    all("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
  }

  function runHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    showTab(params.get("tab") || (tabs[0] && tabs[0].dataset.tab));
    if (params.has("filter")) {
      filter.value = params.get("filter");
      filter.dispatchEvent(new Event("input"));
    }
    params.getAll("sort").forEach(function (spec) {
      var i = spec.indexOf(":"), table = document.getElementById(spec.slice(0, i));
      var th = table && all("thead th", table).filter(function (h) { return h.dataset.key === spec.slice(i + 1); })[0];
      if (th) th.click();
    });
    if (params.has("open")) {
      var tr = all("tr[data-file]").filter(function (r) { return r.dataset.file === params.get("open"); })[0];
      if (tr) tr.click();
    }
    document.documentElement.dataset.actions = "done";
  }

  all("table.data tbody").forEach(function (tbody) {
    Array.prototype.forEach.call(tbody.rows, function (r, i) { r.dataset.i = i; });
  });
  tabs.forEach(function (b) { b.addEventListener("click", function () { showTab(b.dataset.tab); }); });
  all("table.data thead th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
  all("tr.drill").forEach(function (tr) {
    tr.addEventListener("click", function (ev) { if (!ev.target.closest("a")) openDetail(tr); });
    tr.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openDetail(tr); });
  });
  filter.addEventListener("input", applyFilter);
  panel.querySelector(".close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") closeDetail(); });
  window.addEventListener("hashchange", runHash);
  applyFilter();
  runHash();
})();
