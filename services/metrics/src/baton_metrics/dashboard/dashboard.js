// Baton's ops dashboard: reads metrics' JSON APIs once, then follows GET /v1/stream (server-sent events).
// The token lives in sessionStorage only; EventSource cannot send headers, so the stream takes it as ?access_token=.
"use strict";

const TOKEN_KEY = "baton.metrics.token";
const SVG = "http://www.w3.org/2000/svg";
const RETRY_MAX_MS = 30000;

let chartGoals = { sla: null, speed: null };
const state = { token: null, source: null, retryMs: 1000, retryTimer: null, board: null, skewMs: 0, refreshTimer: null };

const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Formatting

const number = new Intl.NumberFormat(undefined);
const percent = (share) => (share === null || share === undefined ? "–" : `${Math.round(share * 1000) / 10}%`);
const minutes = (value) => (value === null || value === undefined ? "–" : value < 10 ? `${value.toFixed(1)} min` : `${Math.round(value)} min`);

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 90) return `${value.toFixed(1)} s`;
  return `${(value / 60).toFixed(1)} min`;
}

function timeLeft(totalSeconds) {
  const overdue = totalSeconds < 0;
  let rest = Math.abs(Math.round(totalSeconds));
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  const text = h ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}:${String(s).padStart(2, "0")}`;
  return overdue ? `−${text}` : text;
}

function money(amount) {
  const value = Number(amount);
  return Number.isFinite(value) ? number.format(value) : String(amount);
}

// The range the KPIs cover (UTC days)

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function selectedRange() {
  const today = new Date();
  const days = (n) => new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - n));
  switch ($("#range").value) {
    case "7d":
      return { from: isoDay(days(6)), to: isoDay(today) };
    case "30d":
      return { from: isoDay(days(29)), to: isoDay(today) };
    case "month":
      return { from: isoDay(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1))), to: isoDay(today) };
    default:
      return { from: isoDay(today), to: isoDay(today) };
  }
}

// Talking to metrics

class Unauthorized extends Error {}

async function api(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${path}?${query}` : path, {
    headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) throw new Unauthorized(await problemDetail(response));
  if (!response.ok) throw new Error(await problemDetail(response));
  return response.json();
}

async function problemDetail(response) {
  try {
    return (await response.json()).detail || response.statusText;
  } catch {
    return response.statusText;
  }
}

async function loadEverything() {
  const range = selectedRange();
  const [kpis, board] = await Promise.all([api("/v1/kpis", range), api("/v1/sla/live")]);
  renderKpis(kpis);
  renderBoard(board);
  await loadDerived();
}

// Funnel, trends and the pipeline clock change with the totals: read again after a `kpis` event.
async function loadDerived() {
  const range = selectedRange();
  const [funnel, trends, pipeline] = await Promise.all([
    api("/v1/funnel", range),
    api("/v1/trends", range.from === range.to ? {} : range),
    api("/v1/pipeline", range),
  ]);
  renderFunnel(funnel);
  renderTrends(trends);
  renderPipeline(pipeline);
}

function refreshDerivedSoon(delayMs = 300) {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(
    () =>
      loadDerived().catch((error) => {
        reportFailure(error);
        if (!(error instanceof Unauthorized)) refreshDerivedSoon(5000);
      }),
    delayMs,
  );
}

function reportFailure(error) {
  if (error instanceof Unauthorized) signOut(error.message);
  else console.warn("dashboard:", error.message);
}

// The stream

function setConnection(stateName, text) {
  const badge = $("#connection");
  badge.dataset.state = stateName;
  badge.textContent = text;
}

function openStream() {
  closeStream();
  const params = new URLSearchParams({ access_token: state.token });
  if ($("#range").value !== "today") {
    const range = selectedRange();
    params.set("from", range.from);
    params.set("to", range.to);
  }
  const source = new EventSource(`/v1/stream?${params}`);
  state.source = source;
  source.addEventListener("open", () => {
    state.retryMs = 1000;
    setConnection("live", "live");
  });
  source.addEventListener("kpis", (event) => {
    setConnection("live", "live");
    renderKpis(JSON.parse(event.data));
    refreshDerivedSoon();
  });
  source.addEventListener("sla", (event) => {
    setConnection("live", "live");
    renderBoard(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    setConnection("reconnecting", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (an error answer, not a dropped connection): EventSource gives up, so try again later.
      closeStream();
      state.retryTimer = setTimeout(reconnect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    }
  });
}

async function reconnect() {
  setConnection("reconnecting", "reconnecting…");
  try {
    await loadEverything();
    openStream();
  } catch (error) {
    reportFailure(error);
    if (!(error instanceof Unauthorized)) {
      state.retryTimer = setTimeout(reconnect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    }
  }
}

function closeStream() {
  clearTimeout(state.retryTimer);
  if (state.source) state.source.close();
  state.source = null;
}

// Rendering

function setTile(id, value, note, status) {
  const tile = $(`#tile-${id}`);
  tile.querySelector(".value").textContent = value;
  tile.querySelector(".note").textContent = note;
  if (status) tile.dataset.status = status;
  else delete tile.dataset.status;
}

function renderKpis(report) {
  const totals = report.totals;
  const targets = report.targets;
  const slaGoalChanged = chartGoals.sla !== targets.sla_compliance_target;
  chartGoals = { sla: targets.sla_compliance_target, speed: targets.speed_to_lead_minutes_target };
  if (slaGoalChanged && state.board) renderBoard(state.board);
  const attainment = targets.mqls_attainment;
  setTile(
    "mql",
    number.format(totals.mql),
    targets.mqls_target === null ? "no target set" : `target ${number.format(Math.round(targets.mqls_target * 10) / 10)} · ${percent(attainment)}`,
    attainment === null ? null : attainment >= 1 ? "good" : attainment >= 0.8 ? "warn" : "bad",
  );
  const compliance = report.sla_compliance.overall;
  const complianceTarget = targets.sla_compliance_target;
  setTile(
    "sla",
    percent(compliance),
    complianceTarget === null ? "no target set" : `target ${percent(complianceTarget)}`,
    complianceStatus(compliance),
  );
  const speed = report.speed_to_lead.p50_minutes;
  const speedTarget = targets.speed_to_lead_minutes_target;
  setTile(
    "speed",
    minutes(speed),
    `${speedTarget === null ? "no target set" : `target ${minutes(speedTarget)}`} · ${number.format(report.speed_to_lead.count)} touched`,
    speed === null || speedTarget === null ? null : speed <= speedTarget ? "good" : speed <= speedTarget * 1.5 ? "warn" : "bad",
  );
  setTile("received", number.format(totals.received), `${number.format(totals.recycled)} recycled`, null);
  setTile("assigned", number.format(totals.assigned), `${number.format(totals.reassigned)} reassigned · ${number.format(totals.escalated)} escalated`, null);
  setTile("accepted", number.format(totals.accepted), `${percent(report.rates.mql_to_sal)} of MQLs · ${number.format(totals.rejected)} rejected`, null);
  setTile("won", number.format(totals.won), `worth ${money(totals.won_amount)} · ${number.format(totals.lost)} lost`, null);
  $("#updated").textContent = `Figures for ${report.from === report.to ? report.from : `${report.from} to ${report.to}`} (UTC days). Updated ${new Date().toLocaleTimeString()}.`;
}

function renderBoard(board) {
  state.board = board;
  state.skewMs = Date.parse(board.now) - Date.now();
  const rows = [...board.breached, ...board.at_risk];
  setTile(
    "open",
    number.format(board.open_assignments),
    `${board.at_risk.length} at risk · ${board.breached.length} breached`,
    board.breached.length ? "bad" : board.at_risk.length ? "warn" : "good",
  );
  const open = board.open_assignments;
  $("#sla-summary").textContent = `${number.format(open)} open ${open === 1 ? "assignment" : "assignments"}: ${board.at_risk.length} at risk, ${board.breached.length} breached.`;
  const body = $("#sla-rows tbody");
  body.replaceChildren(
    ...rows.map((row) =>
      el(
        "tr",
        { "data-assignment": row.assignment_id },
        el("td", {}, row.rep_id),
        el("td", { class: "wide lead-id", title: row.lead_id }, row.lead_id.slice(0, 8)),
        el("td", {}, row.sla),
        el("td", { class: "num time-left", "data-due": row.due_at }, ""),
        el("td", {}, el("span", { class: `badge ${row.state}` }, row.state === "at_risk" ? "at risk" : "breached")),
      ),
    ),
  );
  $("#sla-rows").hidden = rows.length === 0;
  $("#sla-empty").hidden = rows.length !== 0;
  tick();
  $("#reps-range").textContent = `${board.from} to ${board.to}`;
  $("#reps tbody").replaceChildren(
    ...board.reps.map((rep) =>
      el(
        "tr",
        {},
        el("td", {}, rep.rep_id),
        el("td", { class: "num" }, number.format(rep.met)),
        el("td", { class: "num" }, number.format(rep.breached)),
        el("td", {}, meter(rep.compliance)),
      ),
    ),
  );
  $("#reps").hidden = board.reps.length === 0;
  $("#reps-empty").hidden = board.reps.length !== 0;
}

// Against the SLA compliance target: met, within 5 points of it, or below.
function complianceStatus(share) {
  const goal = chartGoals.sla;
  if (share === null || goal === null) return null;
  return share >= goal ? "good" : share >= goal - 0.05 ? "warn" : "bad";
}

function meter(share) {
  const fill = el("div", { class: `fill ${complianceStatus(share) || ""}` });
  fill.style.width = `${share === null ? 0 : Math.round(share * 100)}%`;
  return el("div", { class: "meter" }, el("div", { class: "track" }, fill), el("span", { class: "pct" }, percent(share)));
}

// The time left counts down between events.
function tick() {
  const now = Date.now() + state.skewMs;
  for (const cell of document.querySelectorAll(".time-left")) {
    const left = (Date.parse(cell.dataset.due) - now) / 1000;
    cell.textContent = timeLeft(left);
    cell.classList.toggle("overdue", left < 0);
  }
}

function renderFunnel(funnel) {
  const top = Math.max(1, ...funnel.stages.map((stage) => stage.count));
  $("#funnel").replaceChildren(
    ...funnel.stages.map((stage) => {
      const fill = el("div", { class: "fill" });
      fill.style.width = `${(stage.count / top) * 100}%`;
      const share = stage.from_previous === null ? "" : percent(stage.from_previous);
      return el(
        "li",
        { "data-stage": stage.stage },
        el("span", {}, stage.stage),
        el("div", { class: "track" }, fill),
        el("span", { class: "count" }, number.format(stage.count), el("small", {}, share)),
      );
    }),
  );
  const reasons = Object.entries(funnel.rejected_by_reason)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([reason, count]) => `${reason} ${count}`)
    .join(", ");
  $("#funnel-leaks").textContent = `Rejected ${number.format(funnel.rejected)}${reasons ? ` (${reasons})` : ""} · recycled ${number.format(funnel.recycled)} · lost ${number.format(funnel.lost)}`;
}

function renderPipeline(pipeline) {
  const names = { received_to_scored: "received → scored", scored_to_qualified: "scored → qualified", qualified_to_assigned: "qualified → assigned" };
  $("#pipeline").replaceChildren(
    ...pipeline.steps.map((step) =>
      el(
        "li",
        {},
        el("span", {}, names[step.step] || step.step),
        el("span", { class: "times" }, step.count ? `${seconds(step.p50_seconds)} · ${seconds(step.p99_seconds)}` : "–"),
      ),
    ),
  );
}

// Charts: plain SVG, one point or bar per UTC day.

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function chart(target, days, value, { kind, format, ceiling, goal }) {
  const width = 320;
  const height = 140;
  const left = 34;
  const bottom = 18;
  const top = 8;
  const plotWidth = width - left - 6;
  const plotHeight = height - bottom - top;
  const values = days.map(value);
  const known = values.filter((v) => v !== null && v !== undefined);
  const max = ceiling ?? Math.max(1, goal ?? 0, ...known) * 1.1;
  const x = (i) => left + (days.length === 1 ? plotWidth / 2 : (i * plotWidth) / (days.length - 1));
  const y = (v) => top + plotHeight - (v / max) * plotHeight;
  const nodes = [
    svg("line", { class: "axis", x1: left, y1: top + plotHeight, x2: width - 6, y2: top + plotHeight }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotHeight }),
  ];
  const label = (text, attributes) => {
    const node = svg("text", { class: "label", ...attributes });
    node.textContent = text;
    return node;
  };
  if (known.length) {
    nodes.push(label(format(max), { x: left - 4, y: top + 8, "text-anchor": "end" }));
    nodes.push(label(format(0), { x: left - 4, y: top + plotHeight, "text-anchor": "end" }));
  }
  if (days.length) {
    nodes.push(label(days[0].day.slice(5), { x: left, y: height - 4, "text-anchor": "start" }));
    nodes.push(label(days[days.length - 1].day.slice(5), { x: width - 6, y: height - 4, "text-anchor": "end" }));
  }
  if (kind === "bars") {
    const slot = plotWidth / Math.max(days.length, 1);
    values.forEach((v, i) => {
      const h = ((v || 0) / max) * plotHeight;
      const bar = svg("rect", { class: "bar", x: left + i * slot + slot * 0.15, y: top + plotHeight - h, width: slot * 0.7, height: h });
      const tip = svg("title", {});
      tip.textContent = `${days[i].day}: ${format(v || 0)}`;
      bar.append(tip);
      nodes.push(bar);
    });
  } else {
    let path = "";
    values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      path += `${path ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      const dot = svg("circle", { class: "dot", cx: x(i), cy: y(v), r: 2.5 });
      const tip = svg("title", {});
      tip.textContent = `${days[i].day}: ${format(v)}`;
      dot.append(tip);
      nodes.push(dot);
    });
    if (path) nodes.splice(2, 0, svg("path", { class: "line", d: path }));
  }
  if (goal !== null && goal !== undefined) {
    nodes.push(svg("line", { class: "target", x1: left, y1: y(goal), x2: width - 6, y2: y(goal) }));
  }
  if (!known.length) nodes.push(label("no data yet", { x: left + plotWidth / 2, y: top + plotHeight / 2, "text-anchor": "middle" }));
  target.replaceChildren(...nodes);
}

function renderTrends(trends) {
  $("#trends-range").textContent = `${trends.from} to ${trends.to}`;
  chart($("#chart-mql"), trends.days, (d) => d.mql, { kind: "bars", format: (v) => number.format(Math.round(v)) });
  chart($("#chart-sla"), trends.days, (d) => d.sla_compliance, { kind: "line", format: percent, ceiling: 1, goal: chartGoals.sla });
  chart($("#chart-speed"), trends.days, (d) => d.speed_to_lead_p50_minutes, { kind: "line", format: (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v))), goal: chartGoals.speed });
}

// Signing in and out

function signOut(message = "") {
  closeStream();
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  $("#board").hidden = true;
  $("#controls").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-in-error").textContent = message;
  $("#token").value = "";
  $("#token").focus();
}

async function start(token) {
  state.token = token;
  try {
    await loadEverything();
  } catch (error) {
    if (error instanceof Unauthorized) {
      signOut(`That token was refused: ${error.message}`);
      return;
    }
    reportFailure(error);
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#sign-in").hidden = true;
  $("#board").hidden = false;
  $("#controls").hidden = false;
  openStream();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (token) start(token);
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#range").addEventListener("change", () => {
    loadEverything().catch(reportFailure);
    openStream();
  });
  setInterval(tick, 1000);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) start(saved);
  else signOut();
});
