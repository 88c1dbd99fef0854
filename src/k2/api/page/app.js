// The K2 page: reads the API's /api/v1 routes and draws them. No build step, no framework; the
// chart is BokehJS, served by the API from the bokeh package.
"use strict";

const TOKEN_KEY = "k2-token";
const REFRESH_MS = 3000;
const CANDLES = 300;
const state = { candles: [], socket: null, market: null, timeframe: "1m", poll: null };
window.k2 = state; // for people's scripts and the page's tests: what the chart shows

// -- the API ----------------------------------------------------------------------------------
async function api(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) url.searchParams.set(k, v);
  const token = sessionStorage.getItem(TOKEN_KEY);
  const resp = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (resp.status === 401) {
    const given = window.prompt("This K2 API wants its token (api.token_file):");
    if (given) { sessionStorage.setItem(TOKEN_KEY, given); return api(path, params); }
    throw new Error("the API wants a token");
  }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.detail || resp.statusText);
  return body;
}

// -- tables -----------------------------------------------------------------------------------
function renderTable(id, rows, columns, statusColumn = null) {
  const table = document.getElementById(id);
  const head = document.createElement("tr");
  for (const c of columns) {
    const th = document.createElement("th");
    th.textContent = c;
    head.appendChild(th);
  }
  const body = rows.map((row) => {
    const tr = document.createElement("tr");
    for (const c of columns) {
      const td = document.createElement("td");
      const value = row[c];
      td.textContent = value === null || value === undefined ? "" : String(value);
      if (typeof value === "number") td.className = "num";
      if (c === statusColumn) td.className = String(value);
      tr.appendChild(td);
    }
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = columns.length;
    td.className = "muted";
    td.textContent = "none";
    tr.appendChild(td);
    body.push(tr);
  }
  table.replaceChildren(head, ...body);
}

async function refreshTables() {
  const [feeds, gaps, rejects, archive, health] = await Promise.all([
    api("/api/v1/feeds"),
    api("/api/v1/gaps", { limit: 20 }),
    api("/api/v1/rejects", { limit: 20 }),
    api("/api/v1/archive"),
    api("/api/v1/health"),
  ]);
  renderTable("feeds", feeds.rows, ["exchange", "symbol", "canonical_symbol", "state",
    "trades_last_minute", "last_trade_age_s", "gaps", "gaps_repaired"]);
  renderTable("gaps", gaps.rows.slice().reverse(), ["exchange", "symbol", "kind", "first_id",
    "last_id", "missing", "recovered", "outcome", "detected_at"]);
  renderTable("rejects", rejects.rows.slice().reverse(), ["exchange", "ts_recv", "reason", "raw"]);
  renderTable("archive", archive.tables, ["table", "watermark", "newest_event", "last_offload",
    "consecutive_failures", "last_error"]);
  const differing = archive.reconcile_differing.length;
  document.getElementById("archive-summary").textContent =
    `last maintenance: ${archive.maintenance_at || "never"}` +
    (archive.maintenance_at ? (archive.maintenance_ok ? " (ok)" : " (failed)") : "") +
    ` · last reconcile: ${archive.reconcile_at || "never"}` +
    (archive.reconcile_at ? `, ${archive.reconcile_days_checked} days checked, ${differing} differing` : "");
  renderTable("checks", health.checks, ["name", "status", "detail"], "status");
  const badge = document.getElementById("health");
  badge.textContent = health.status;
  badge.className = `badge ${health.status}`;
  document.getElementById("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
}

// -- the chart (BokehJS: green candles closed at or above their open, red below) -------------
const STEP_MS = { "1m": 60e3, "5m": 300e3, "15m": 900e3, "30m": 1800e3, "1h": 3600e3, "1d": 86400e3 };
const chart = { source: null, key: null };
window.k2chart = chart; // the chart's data source, for the page's tests

function columns(rows) {
  const open = rows.map((r) => Number(r.open));
  const close = rows.map((r) => Number(r.close));
  return {
    t: rows.map((r) => Date.parse(r.window_start)),
    open,
    high: rows.map((r) => Number(r.high)),
    low: rows.map((r) => Number(r.low)),
    close,
    color: close.map((c, i) => (c >= open[i] ? "#1f8a4c" : "#c53030")),
  };
}

function drawChart() {
  const key = state.market + state.timeframe;
  if (chart.source && chart.key === key) {
    chart.source.data = columns(state.candles); // redraws in place
    return;
  }
  const [, symbol] = state.market ? state.market.split("|") : ["", ""];
  const source = new Bokeh.ColumnDataSource({ data: columns(state.candles) });
  const plot = Bokeh.Plotting.figure({
    x_axis_type: "datetime",
    height: 420,
    sizing_mode: "stretch_width",
    tools: "pan,xwheel_zoom,box_zoom,reset,save",
    y_axis_label: symbol,
  });
  plot.segment({ x0: { field: "t" }, y0: { field: "high" }, x1: { field: "t" }, y1: { field: "low" },
    line_color: { field: "color" }, source });
  plot.vbar({ x: { field: "t" }, width: STEP_MS[state.timeframe] * 0.7, top: { field: "open" },
    bottom: { field: "close" }, fill_color: { field: "color" }, line_color: { field: "color" }, source });
  document.getElementById("chart").replaceChildren();
  Bokeh.Plotting.show(plot, "#chart");
  Object.assign(chart, { source, key });
}

function mergeCandles(rows) {
  const byStart = new Map(state.candles.map((r) => [r.window_start, r]));
  for (const r of rows) byStart.set(r.window_start, r);
  state.candles = [...byStart.values()]
    .sort((a, b) => (a.window_start < b.window_start ? -1 : 1))
    .slice(-CANDLES);
  drawChart();
}

async function loadChart() {
  if (!state.market) return;
  const [venue, symbol] = state.market.split("|");
  const body = await api("/api/v1/candles", { venue, symbol, timeframe: state.timeframe, limit: CANDLES });
  state.candles = body.rows;
  drawChart();
  follow(venue, symbol);
}

function follow(venue, symbol) {
  // Live updates over the API's stream; where it cannot be had (a token, a proxy), poll instead.
  if (state.socket) state.socket.close();
  clearInterval(state.poll);
  const live = document.getElementById("live");
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const params = new URLSearchParams({ venue, symbol, timeframe: state.timeframe });
  const socket = new WebSocket(`${scheme}://${window.location.host}/api/v1/stream/live?${params}`);
  state.socket = socket;
  socket.onopen = () => { live.textContent = "live"; };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "candles") mergeCandles(message.rows);
  };
  socket.onclose = () => {
    if (state.socket !== socket) return;
    live.textContent = "polling";
    state.poll = setInterval(() => loadChart().catch(report), 5000);
  };
}

async function loadMarkets() {
  // The feeds view lists every configured market (and is cheap): busiest first.
  const body = await api("/api/v1/feeds");
  const select = document.getElementById("market");
  const rows = body.rows.slice().sort((a, b) => b.trades_last_minute - a.trades_last_minute);
  select.replaceChildren(...rows.map((r) => {
    const option = document.createElement("option");
    option.value = `${r.exchange}|${r.canonical_symbol}`;
    option.textContent = `${r.exchange} ${r.canonical_symbol}`;
    return option;
  }));
  state.market = select.value || null;
}

function report(err) {
  document.getElementById("updated").textContent = `error: ${err.message}`;
}

async function start() {
  document.getElementById("market").addEventListener("change", (e) => {
    state.market = e.target.value;
    loadChart().catch(report);
  });
  document.getElementById("timeframe").addEventListener("change", (e) => {
    state.timeframe = e.target.value;
    loadChart().catch(report);
  });
  await loadMarkets();
  await Promise.all([loadChart(), refreshTables()]);
  document.body.dataset.ready = "true"; // for people's scripts and the page's tests
  setInterval(() => refreshTables().catch(report), REFRESH_MS);
}

start().catch(report);
