/* netcalc report: the table and the charts, drawn from the page's JSON (no library,
   nothing fetched). Text from the spec is only ever set as textContent. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("netcalc-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#3b6fb6", "#d9822b", "#3d8b3d", "#a53d3d", "#7a4fa8", "#2b9b9b"];

  function h(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function s(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function most(xs) { return xs.reduce(function (a, b) { return b > a ? b : a; }, -Infinity); }
  function least(xs) { return xs.reduce(function (a, b) { return b < a ? b : a; }, Infinity); }
  var PREFIX = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  function human(x, unit) {
    unit = unit || "";
    if (x == null || !isFinite(x)) return "-";
    for (var i = 0; i < PREFIX.length; i++) {
      if (Math.abs(x) >= PREFIX[i][0]) {
        var v = x / PREFIX[i][0];
        return (v < 1000 ? v.toPrecision(3) : v.toFixed(0)) + " " + PREFIX[i][1] + unit;
      }
    }
    return (Number.isInteger(x) ? String(x) : x.toPrecision(3)) + (unit ? " " + unit : "");
  }

  /* ------------------------------------------------------------------ table */
  function table() {
    var box = document.getElementById("layers");
    var input = box.querySelector("input");
    var count = box.querySelector(".count");
    var thead = box.querySelector("thead"), tbody = box.querySelector("tbody");
    var hr = h("tr");
    var trs = D.rows.map(function (cells, i) {
      var tr = h("tr");
      cells.forEach(function (c, j) {
        tr.appendChild(h("td", D.columns[j].num ? {"class": "num"} : {}, c));
      });
      tr._i = i;
      tr._text = (cells[0] + " " + cells[1]).toLowerCase();
      return tr;
    });
    var sorted = {col: -1, dir: 1};
    D.columns.forEach(function (col, j) {
      var th = h("th", col.num ? {"class": "num"} : {}, col.title);
      th.addEventListener("click", function () {
        sorted.dir = sorted.col === j ? -sorted.dir : (col.num ? -1 : 1);
        sorted.col = j;
        Array.prototype.forEach.call(hr.children, function (x) { x.classList.remove("asc", "desc"); });
        th.classList.add(sorted.dir > 0 ? "asc" : "desc");
        trs.sort(function (a, b) {
          var x = D.keys[a._i][j], y = D.keys[b._i][j];
          if (x === y) return a._i - b._i;
          if (x == null) return 1;
          if (y == null) return -1;
          return (x < y ? -1 : 1) * sorted.dir;
        });
        trs.forEach(function (tr) { tbody.appendChild(tr); });
      });
      hr.appendChild(th);
    });
    thead.appendChild(hr);
    trs.forEach(function (tr) { tbody.appendChild(tr); });
    function filter() {
      var q = input.value.trim().toLowerCase(), shown = 0;
      trs.forEach(function (tr) {
        var ok = !q || tr._text.indexOf(q) >= 0;
        tr.style.display = ok ? "" : "none";
        shown += ok;
      });
      count.textContent = shown + " of " + trs.length + " rows";
    }
    input.addEventListener("input", filter);
    filter();
  }

  /* ------------------------------------------------------------------ charts */
  var W = 640, H = 230, L = 64, R = 14, T = 12, B = 30;

  function frame(box, title) {
    box.appendChild(h("h3", {}, title));
    var svg = s("svg", {viewBox: "0 0 " + W + " " + H, role: "img"});
    s("title", {}, svg, title);
    box.appendChild(svg);
    var hover = h("div", {"class": "hover"});
    box.appendChild(hover);
    return {svg: svg, hover: hover};
  }
  function logTicks(lo, hi) {
    var out = [];
    for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(Math.pow(10, e));
    return out;
  }
  function axes(svg, yTicks, ys, yUnit, xLabel) {
    yTicks.forEach(function (v) {
      var y = ys(v);
      if (y < T - 1 || y > H - B + 1) return;
      s("line", {x1: L, x2: W - R, y1: y, y2: y, "class": "grid"}, svg);
      s("text", {x: L - 4, y: y + 4, "text-anchor": "end", "font-size": 10}, svg, human(v, yUnit));
    });
    s("line", {x1: L, x2: L, y1: T, y2: H - B, "class": "axis"}, svg);
    s("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis"}, svg);
    s("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 11}, svg, xLabel);
  }
  function hoverIndex(svg, n, show) {
    svg.addEventListener("mousemove", function (ev) {
      var r = svg.getBoundingClientRect();
      var x = (ev.clientX - r.left) * W / r.width;
      var i = Math.round((x - L) / (W - L - R) * Math.max(n - 1, 1));
      if (i >= 0 && i < n) show(i);
    });
  }

  function bars(box, chart) {
    var f = frame(box, chart.title), v = chart.values, n = v.length;
    var max = most(v.concat([1]));
    var ys = function (x) { return H - B - (H - B - T) * x / max; };
    axes(f.svg, [0, max / 2, max], ys, chart.unit, "layers in order (" + n + ")");
    var bw = (W - L - R) / Math.max(n, 1);
    var g = s("g", {fill: chart.color || COLORS[0]}, f.svg);
    v.forEach(function (x, i) {
      if (!x) return;
      var y = ys(x);
      s("rect", {x: (L + i * bw).toFixed(2), y: y.toFixed(2), width: Math.max(bw - (bw > 3 ? 1 : 0), 0.6).toFixed(2),
                 height: Math.max(H - B - y, 0.5).toFixed(2)}, g);
    });
    var show = function (i) { f.hover.textContent = D.names[i] + ": " + human(v[i], chart.unit); };
    f.svg.addEventListener("mousemove", function (ev) {
      var r = f.svg.getBoundingClientRect();
      var i = Math.floor(((ev.clientX - r.left) * W / r.width - L) / bw);
      if (i >= 0 && i < n) show(i);
    });
  }

  function lines(box, title, series, unit, xLabel) {
    var f = frame(box, title);
    var all = [];
    series.forEach(function (sr) { sr.y.forEach(function (y) { if (y != null) all.push(y); }); });
    var hi = most(all.concat([1]));
    var ys = function (y) { return H - B - (H - B - T) * y / hi; };
    axes(f.svg, [0, hi / 4, hi / 2, 3 * hi / 4, hi], ys, unit, xLabel);
    var longest = most(series.map(function (sr) { return sr.y.length; }));
    var xs = function (i) { return L + (W - L - R) * i / Math.max(longest - 1, 1); };
    series.forEach(function (sr, k) {
      var pts = [];
      sr.y.forEach(function (y, i) { if (y != null) pts.push(xs(i).toFixed(1) + "," + ys(y).toFixed(1)); });
      s("polyline", {points: pts.join(" "), fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 1.6}, f.svg);
      if (series.length > 1) {
        s("text", {x: L + 8, y: T + 12 + 13 * k, "font-size": 11, fill: COLORS[k % COLORS.length]}, f.svg, sr.label);
      }
      (sr.marks || []).forEach(function (m) {
        s("text", {x: Math.min(xs(m.i), W - R - 4), y: T + 12, "font-size": 10, "text-anchor": "end", fill: "#a53d3d"}, f.svg, m.text);
      });
    });
    hoverIndex(f.svg, longest, function (i) {
      f.hover.textContent = series.map(function (sr) {
        return i < sr.y.length ? sr.where[i] + ": " + (sr.y[i] == null ? "global" : human(sr.y[i], unit)) : "";
      }).filter(Boolean).join("  |  ");
    });
  }

  function roofline(box, rl) {
    var f = frame(box, rl.title);
    var pts = rl.points;
    var xsv = pts.map(function (p) { return p[1]; }).concat([rl.ridge]);
    var ysv = pts.map(function (p) { return p[2]; }).concat([rl.peak_flops]);
    var x0 = least(xsv) / 3, x1 = most(xsv) * 3;
    var y0 = least(ysv) / 3, y1 = rl.peak_flops * 3;
    var xs = function (x) { return L + (W - L - R) * (Math.log(x) - Math.log(x0)) / (Math.log(x1) - Math.log(x0)); };
    var ys = function (y) { return H - B - (H - B - T) * (Math.log(y) - Math.log(y0)) / (Math.log(y1) - Math.log(y0)); };
    axes(f.svg, logTicks(y0, y1), ys, "", "arithmetic intensity (FLOP/B, log); achieved FLOP/s (log)");
    logTicks(x0, x1).forEach(function (x) {
      var px = xs(x);
      if (px < L || px > W - R) return;
      s("text", {x: px, y: H - B + 12, "text-anchor": "middle", "font-size": 10}, f.svg, human(x));
    });
    var roof = [x0, rl.ridge, x1].map(function (x) {
      return xs(x).toFixed(1) + "," + ys(Math.min(rl.peak_flops, x * rl.peak_bandwidth)).toFixed(1);
    });
    s("polyline", {points: roof.join(" "), fill: "none", stroke: "#a53d3d", "stroke-width": 2}, f.svg);
    s("text", {x: W - R - 4, y: ys(rl.peak_flops) - 4, "text-anchor": "end", "font-size": 10, fill: "#a53d3d"},
      f.svg, "peak " + human(rl.peak_flops, "FLOP/s") + ", " + human(rl.peak_bandwidth, "B/s"));
    var g = s("g", {fill: COLORS[0], "fill-opacity": 0.7}, f.svg);
    pts.forEach(function (p) {
      var c = s("circle", {cx: xs(p[1]).toFixed(1), cy: ys(p[2]).toFixed(1), r: 3.5}, g);
      c.addEventListener("mouseenter", function () {
        f.hover.textContent = p[0] + ": " + human(p[2], "FLOP/s") + " at " + human(p[1]) + " FLOP/B";
      });
    });
  }

  function charts() {
    var costs = document.getElementById("cost-charts");
    D.bars.forEach(function (chart, k) {
      var box = h("div", {"class": "chart"});
      costs.appendChild(box);
      chart.color = COLORS[k % COLORS.length];
      bars(box, chart);
    });
    var rf = document.getElementById("rf-charts");
    if (rf) D.rf.forEach(function (path) {
      var box = h("div", {"class": "chart"});
      rf.appendChild(box);
      var marks = path.global_at == null ? [] : [{i: path.global_at, text: "global from " + path.where[path.global_at]}];
      lines(box, "Receptive field to output " + path.output + " (input pixels, largest dim)",
            [{label: path.output, y: path.size, where: path.where, marks: marks}], "",
            "layers along the widest path (" + path.size.length + ")");
    });
    var mem = document.getElementById("memory-charts");
    D.memory.forEach(function (t) {
      var box = h("div", {"class": "chart"});
      mem.appendChild(box);
      lines(box, t.title, [{label: t.title, y: t.bytes, where: t.where}], "B", t.x);
    });
    var rl = document.getElementById("roofline-chart");
    if (rl && D.roofline) roofline(rl, D.roofline);
  }

  table();
  charts();
  document.documentElement.setAttribute("data-drawn", "1");
})();
