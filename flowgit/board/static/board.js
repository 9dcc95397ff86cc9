// flowgit board: live updates, countdowns, local times, the card filter, graph zoom and pan.
// The server renders every page with its values escaped; this script never builds markup from
// data: a new version of the page is parsed by DOMParser (which runs no script) and its <main>
// put in place of the old one; everything else sets textContent or attributes.
(function () {
  "use strict";

  var views = {};          // graph view boxes by page, kept across live updates
  var latest = null;       // the newest version tag the server announced
  var busy = false, again = false;

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function liveState(cls, text) {
    var el = document.getElementById("live");
    if (!el) return;
    el.classList.remove("on", "off", "flash");
    el.classList.add(cls);
    el.textContent = text;
  }

  // ----- live --------------------------------------------------------------------------------
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var focused = document.activeElement && document.activeElement.id;
    var caret = focused === "card-filter" ? document.activeElement.selectionStart : null;
    saveView();
    fetch(window.location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (res) { return res.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        var old = document.getElementById("main");
        if (fresh && old) {
          var filter = $("#card-filter");
          var query = filter ? filter.value : "";
          var scrolls = $all(".cards").map(function (c) { return c.scrollTop; });
          old.replaceWith(document.importNode(fresh, true));
          document.body.dataset.version = doc.body.dataset.version || "";
          document.title = doc.title;
          var nf = $("#card-filter");
          if (nf) { nf.value = query; }
          $all(".cards").forEach(function (c, i) { if (scrolls[i]) c.scrollTop = scrolls[i]; });
          init();
          if (focused) {
            var el = document.getElementById(focused);
            if (el) { el.focus(); if (caret !== null && el.setSelectionRange) el.setSelectionRange(caret, caret); }
          }
        }
        liveState("flash", "updated " + new Date().toLocaleTimeString());
        window.setTimeout(function () { liveState("on", "live"); }, 1200);
      })
      .catch(function () { liveState("off", "reconnecting…"); })
      .then(function () {
        busy = false;
        if (again || (latest && latest !== document.body.dataset.version)) { again = false; refresh(); }
      });
  }

  function connect() {
    if (!window.EventSource) { poll(); return; }
    var source = new EventSource("/live");
    source.addEventListener("open", function () { liveState("on", "live"); });
    source.addEventListener("version", function (ev) {
      latest = ev.data;
      if (ev.data !== document.body.dataset.version) refresh();
    });
    source.addEventListener("error", function () { liveState("off", "reconnecting…"); });
  }

  function poll() {  // browsers without EventSource: the cheap version tag, twice a second
    window.setInterval(function () {
      fetch("/version", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (d) {
        latest = d.version;
        if (d.version !== document.body.dataset.version) refresh();
      }).catch(function () { liveState("off", "reconnecting…"); });
    }, 500);
    liveState("on", "live");
  }

  // ----- time --------------------------------------------------------------------------------
  function fmtSpan(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + ("0" + (s % 60)).slice(-2) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + ("0" + Math.floor((s % 3600) / 60)).slice(-2) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function tick() {
    var now = Date.now() / 1000;
    $all("time.countdown").forEach(function (el) {
      var left = parseFloat(el.dataset.until) - now;
      el.textContent = left > 0 ? fmtSpan(left) + " " + (el.dataset.suffix || "") : "due now";
    });
  }

  function localTimes() {
    $all("time[data-ts]").forEach(function (el) {
      var d = new Date(parseFloat(el.dataset.ts) * 1000);
      el.textContent = d.toLocaleString();
      el.title = el.getAttribute("datetime");
    });
  }

  // ----- the card filter ---------------------------------------------------------------------
  function applyFilter() {
    var input = $("#card-filter");
    if (!input) return;
    var q = input.value.trim().toLowerCase();
    $all(".card").forEach(function (card) {
      card.hidden = q !== "" && card.textContent.toLowerCase().indexOf(q) === -1;
    });
  }

  // ----- graph zoom and pan ------------------------------------------------------------------
  function saveView() {
    var svg = $("svg.graph");
    if (svg && svg.dataset.view) views[window.location.pathname + window.location.search] = svg.dataset.view;
  }

  function initGraph() {
    var wrap = $(".graphwrap");
    var svg = wrap && $("svg.graph", wrap);
    if (!svg) return;
    var W = parseFloat(svg.dataset.width), H = parseFloat(svg.dataset.height);
    var box = wrap.getBoundingClientRect();
    var vb;

    function set(v) {
      vb = v;
      var s = v.x.toFixed(1) + " " + v.y.toFixed(1) + " " + v.w.toFixed(1) + " " + v.h.toFixed(1);
      svg.setAttribute("viewBox", s);
      svg.dataset.view = s;
    }
    function fit() {
      var r = wrap.getBoundingClientRect();
      var scale = Math.min(r.width / W, r.height / H);
      var w = r.width / scale, h = r.height / scale;
      set({ x: (W - w) / 2, y: (H - h) / 2, w: w, h: h });
    }
    function actual(x, y) {
      var r = wrap.getBoundingClientRect();
      set({ x: x || 0, y: y || 0, w: r.width, h: r.height });
    }
    function zoom(f, cx, cy) {
      var r = wrap.getBoundingClientRect();
      if (cx === undefined) { cx = r.width / 2; cy = r.height / 2; }
      var px = vb.x + (cx / r.width) * vb.w, py = vb.y + (cy / r.height) * vb.h;
      var w = Math.min(Math.max(vb.w * f, 80), Math.max(W, H) * 4), h = w * (vb.h / vb.w);
      set({ x: px - (cx / r.width) * w, y: py - (cy / r.height) * h, w: w, h: h });
    }
    function pan(dx, dy) {
      var r = wrap.getBoundingClientRect();
      set({ x: vb.x - dx * vb.w / r.width, y: vb.y - dy * vb.h / r.height, w: vb.w, h: vb.h });
    }

    var saved = views[window.location.pathname + window.location.search];
    if (saved) {
      var p = saved.split(" ").map(parseFloat);
      set({ x: p[0], y: p[1], w: p[2], h: p[3] });
    } else if (Math.min(box.width / W, box.height / H) >= 0.45) {
      fit();
    } else {  // a big plan: start readable, at its beginning
      actual(0, Math.max(0, H / 2 - box.height / 2));
    }

    $all("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var k = b.dataset.zoom;
        if (k === "in") zoom(1 / 1.3);
        else if (k === "out") zoom(1.3);
        else if (k === "fit") fit();
        else actual(vb.x, vb.y);
      });
    });
    wrap.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = wrap.getBoundingClientRect();
      zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    var drag = null, moved = false;
    wrap.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY }; moved = false;
    });
    wrap.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!moved) { moved = true; wrap.classList.add("dragging"); wrap.setPointerCapture(ev.pointerId); }
      pan(dx, dy);
      drag = { x: ev.clientX, y: ev.clientY };
    });
    function end() { drag = null; wrap.classList.remove("dragging"); }
    wrap.addEventListener("pointerup", end);
    wrap.addEventListener("pointercancel", end);
    wrap.addEventListener("click", function (ev) { if (moved) { ev.preventDefault(); moved = false; } }, true);
    wrap.addEventListener("keydown", function (ev) {
      var step = 60;
      var keys = { "+": function () { zoom(1 / 1.3); }, "=": function () { zoom(1 / 1.3); },
        "-": function () { zoom(1.3); }, "0": fit, "1": function () { actual(vb.x, vb.y); },
        ArrowLeft: function () { pan(step, 0); }, ArrowRight: function () { pan(-step, 0); },
        ArrowUp: function () { pan(0, step); }, ArrowDown: function () { pan(0, -step); } };
      if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
    });
  }

  function init() {
    localTimes();
    tick();
    var input = $("#card-filter");
    if (input) { input.addEventListener("input", applyFilter); applyFilter(); }
    initGraph();
  }

  document.addEventListener("DOMContentLoaded", function () {
    init();
    connect();
    window.setInterval(tick, 1000);
  });
})();
