// codette-cache live dashboard: the last 15 minutes from /dashboard/history, then a
// frame a second from /dashboard/events (EventSource reconnects by itself and resumes
// after the last frame it saw), and the four JSON routes every 5 s for the advice and
// headline figures. Everything is written with textContent: nothing the daemon sends
// is ever parsed as HTML.
"use strict";
(() => {
  const KEEP = 900;
  const $ = (id) => document.getElementById(id);
  const say = (id, value) => { const e = $(id); if (e && e.textContent !== value) e.textContent = value; };
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const ms = (n) => (n === null || n === undefined ? "–" : n < 10 ? n.toFixed(2) : n.toFixed(1));
  const pct = (r) => (r === null || r === undefined ? "–" : (100 * r).toFixed(1) + " %");
  const bytes = (b) => (b < 1048576 ? (b / 1024).toFixed(1) + " KiB" : (b / 1048576).toFixed(1) + " MiB");

  const cols = { t: [], hit: [], p50: [], p90: [], p99: [], memory: [], redis: [], origin: [], stale: [], error: [] };
  let lastId = 0;
  const charts = {};

  function add(frame) {
    if (frame.id <= lastId) return false;
    lastId = frame.id;
    const r = frame.requests, l = frame.latency_ms;
    const row = {
      t: frame.id / 1000, hit: frame.hit_ratio, p50: l ? l.p50 : null, p90: l ? l.p90 : null,
      p99: l ? l.p99 : null, memory: r.memory, redis: r.redis, origin: r.origin, stale: r.stale, error: r.error,
    };
    for (const k in cols) {
      cols[k].push(row[k]);
      if (cols[k].length > KEEP) cols[k].shift();
    }
    show(frame);
    return true;
  }

  function show(f) {
    const r = f.requests, l = f.latency_ms, t = f.totals;
    const total = r.memory + r.redis + r.origin + r.stale + r.error;
    say("rate", num(total));
    say("hit-ratio", pct(f.hit_ratio));
    say("latency", l ? `${ms(l.p50)} / ${ms(l.p99)} ms` : "–");
    say("total-requests", num(t.requests));
    say("total-hits", num(t.hits));
    say("total-misses", num(t.misses));
    say("hit-rate", t.requests ? (100 * t.hits / t.requests).toFixed(2) + " %" : "–");
    say("origin", `${f.origin.breaker.replace("_", "-")}: ${num(f.origin.calls)} calls, ${num(f.origin.errors)} errors /s`);
    say("memory", f.memory ? `${num(f.memory.entries)} entries, ${bytes(f.memory.bytes)}` : "off");
    say("waits", `${num(f.coalesced)} / ${num(f.invalidations)}`);
    say("now-hit", pct(f.hit_ratio));
    say("now-p50", l ? ms(l.p50) : "–");
    say("now-p90", l ? ms(l.p90) : "–");
    say("now-p99", l ? ms(l.p99) : "–");
    for (const k of ["memory", "redis", "origin", "stale", "error"]) say("now-" + k, num(r[k]));
    tiers(f.tiers);
    document.body.dataset.lastFrame = String(f.id);
  }

  function tiers(list) {
    const ul = $("tiers");
    for (const t of list) {
      let li = $("tier-" + t.tier);
      if (!li) {
        li = document.createElement("li");
        li.id = "tier-" + t.tier;
        ul.appendChild(li);
      }
      const state = t.up ? "up" : "down";
      li.dataset.state = state;
      li.textContent = `${t.up ? "▲" : "▼"} ${t.tier}: ${state} (${t.status})`;
    }
  }

  function chart(id, series, scale) {
    const el = $(id);
    const opts = {
      width: Math.max(280, el.clientWidth), height: 200,
      scales: { x: { time: true }, y: scale || {} },
      series: [{}].concat(series.map(([label, stroke, dash]) => ({ label, stroke, dash, width: 2, spanGaps: false }))),
      axes: [{}, { size: 56 }],
      legend: { live: false },
    };
    return new uPlot(opts, [[]].concat(series.map(() => [])), el);
  }

  function draw() {
    if (!charts.hit) return;
    charts.hit.setData([cols.t, cols.hit]);
    charts.latency.setData([cols.t, cols.p50, cols.p90, cols.p99]);
    charts.sources.setData([cols.t, cols.memory, cols.redis, cols.origin, cols.stale, cols.error]);
  }

  function setUp() {
    charts.hit = chart("chart-hit", [["hit ratio", "#0550ae", []]], { range: [0, 1] });
    charts.latency = chart("chart-latency", [
      ["p50 ms", "#116329", []], ["p90 ms", "#9a6700", [8, 4]], ["p99 ms", "#a40e26", [2, 3]],
    ]);
    charts.sources = chart("chart-sources", [
      ["memory", "#116329", []], ["redis", "#0550ae", [8, 4]], ["origin", "#9a6700", [2, 3]],
      ["stale", "#6639ba", [10, 3, 2, 3]], ["errors", "#a40e26", [14, 6]],
    ]);
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => {
        for (const [name, c] of Object.entries(charts)) {
          c.setSize({ width: Math.max(280, $("chart-" + name).clientWidth), height: 200 });
        }
      }, 100);
    });
  }

  function connection(state, text) {
    const p = $("connection");
    p.dataset.state = state;
    say("connection", text);
  }

  function listen() {
    const events = new EventSource("/dashboard/events" + (lastId ? "?after=" + lastId : ""));
    events.onopen = () => connection("live", "Live: a frame a second");
    events.onmessage = (e) => {
      if (add(JSON.parse(e.data))) draw();
    };
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) {
        connection("reconnecting", "Disconnected; retrying…");
        setTimeout(listen, 2000);
      } else {
        connection("reconnecting", "Reconnecting…");
      }
    };
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { accept: "application/json" } });
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response.json();
  }

  async function headlines() {
    try {
      const [stats, metrics, dashboard, status] = await Promise.all([
        getJson("/codette/cache/stats"), getJson("/codette/cache/metrics"),
        getJson("/codette/analytics/dashboard"), getJson("/codette/cache/status"),
      ]);
      const a = dashboard.analytics;
      say("seed-stats", stats.metrics.hit_rate_percent.toFixed(2) + " %");
      say("seed-metrics", metrics.performance_dashboard.average_latency_comparison.speedup_multiplier);
      say("seed-dashboard", a.cache_performance.total_time_saved.seconds.toFixed(2) + " s");
      say("time-saved", a.cache_performance.total_time_saved.seconds.toFixed(2) + " s");
      const b = status.cache_backends;
      say("seed-status", `memory ${b.memory_cache}, redis ${b.redis_cache}`);
      const ul = $("advice");
      const items = a.advice.length ? a.advice : [{ severity: "ok", message: "No advice: nothing to change." }];
      ul.replaceChildren(...items.map((item) => {
        const li = document.createElement("li");
        const tag = document.createElement("span");
        tag.className = "severity";
        tag.textContent = item.severity;
        li.append(tag, document.createTextNode(item.message));
        return li;
      }));
    } catch (e) {
      say("seed-status", "unavailable (" + e.message + ")");
    }
  }

  async function start() {
    setUp();
    try {
      for (const frame of await getJson("/dashboard/history")) add(frame);
      draw();
    } catch (e) {
      connection("reconnecting", "History unavailable; waiting for live frames");
    }
    listen();
    headlines();
    setInterval(headlines, 5000);
  }

  start();
})();
