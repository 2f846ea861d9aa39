// Live dashboard: a grid of streams (calls), each with its channels' current
// emotion; click a stream for its chart of rolling scores. With few streams
// (a local analyzer) the charts are open from the start; with more it is a
// floor view: compact cards (the caller's top emotion, negative-share and
// arousal bars, a mood colour, agent and queue, alert state), alerting calls
// first, filters and search. Messages come from /ws (see streamer/core/messages.py); the server sends recent
// history first, so a page opened late is not empty.
"use strict";

const EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"];
const COLORS = {
  neutral: "#8c8c8c", calm: "#4fa3d1", happy: "#f2b705", sad: "#3b5ba9",
  angry: "#d7263d", fearful: "#8e44ad", disgust: "#2e8b57", surprised: "#f28c28",
};
const MAX_POINTS = 600; // 5 minutes at a 0.5 s hop
const AUTO_EXPAND = 4; // streams shown with charts without a click; more make a floor view
const NEGATIVE = ["angry", "disgust", "fearful", "sad"]; // the alert rules' "negative" group
const ENDED = ["stopped", "finished", "offline"];
const FLOOR_KEEP_ENDED_MS = 120_000; // a floor drops a call's card this long after it ended
// stream id -> {el, channels: Map(name -> channel), expanded, toggled, alerts: Set, adaptation, agent, queue}
const streams = new Map();
let dirty = new Set();
const filterValues = { agent: new Set(), queue: new Set() };

function el(selector, root = document) { return root.querySelector(selector); }

function streamCard(id) {
  let stream = streams.get(id);
  if (stream) return stream;
  const node = el("#stream-template").content.firstElementChild.cloneNode(true);
  node.dataset.stream = id;
  el(".stream-name", node).textContent = id;
  el("#streams").appendChild(node);
  el("#empty").hidden = true;
  // adaptation: the model's limit of a channel's speaker adaptation (from status; 0 = none)
  stream = {
    el: node, channels: new Map(), expanded: false, toggled: false, alerts: new Set(), adaptation: 0,
    agent: "", queue: "", state: "",
  };
  el("header", node).addEventListener("click", () => {
    stream.toggled = true;
    setExpanded(stream, !stream.expanded);
  });
  streams.set(id, stream);
  if (streams.size <= AUTO_EXPAND) setExpanded(stream, true);
  else for (const other of streams.values()) if (!other.toggled) setExpanded(other, false);
  const floor = streams.size > AUTO_EXPAND;
  document.body.classList.toggle("floor", floor);
  el("#floor-tools").hidden = !floor;
  placeCard(stream);
  applyFilter(stream);
  countShown();
  return stream;
}

// Alerting calls first, then running ones, then ended ones (CSS order: no DOM moves).
function placeCard(stream) {
  const ended = ENDED.includes(stream.state);
  stream.el.style.order = stream.alerts.size ? "0" : ended ? "2" : "1";
}

function matches(id, stream) {
  const search = el("#search").value.trim().toLowerCase();
  const agent = el("#agent-filter").value;
  const queue = el("#queue-filter").value;
  return (!search || id.toLowerCase().includes(search)) && (!agent || stream.agent === agent) &&
    (!queue || stream.queue === queue);
}

function applyFilter(only) {
  const list = only ? [[only.el.dataset.stream, only]] : streams;
  for (const [id, stream] of list) stream.el.hidden = !matches(id, stream);
}

function countShown() {
  let shown = 0;
  for (const stream of streams.values()) shown += stream.el.hidden ? 0 : 1;
  const alerting = [...streams.values()].filter((s) => s.alerts.size).length;
  el("#floor-count").textContent = `${shown} of ${streams.size} calls · ${alerting} alerting`;
}

function addFilterValue(kind, value) {
  if (!value || filterValues[kind].has(value)) return;
  filterValues[kind].add(value);
  const select = el(`#${kind}-filter`);
  const option = document.createElement("option");
  option.value = option.textContent = value;
  const after = [...select.options].slice(1).find((o) => o.value.localeCompare(value) > 0);
  select.insertBefore(option, after || null);
}

for (const id of ["#search", "#agent-filter", "#queue-filter"]) {
  el(id).addEventListener("input", () => { applyFilter(); countShown(); });
}

function setExpanded(stream, expanded) {
  stream.expanded = expanded;
  stream.el.classList.toggle("expanded", expanded);
  for (const channel of stream.channels.values()) {
    el(".chart", channel.el).hidden = !expanded;
    if (expanded && !channel.plot) channel.plot = makePlot(channel);
    if (expanded) dirty.add(channel);
  }
}

function makePlot(channel) {
  const chartEl = el(".chart", channel.el);
  const plot = new uPlot({
    width: Math.max(300, chartEl.clientWidth || 480),
    height: 200,
    scales: { x: { time: false }, y: { range: [0, 1] } },
    axes: [{ label: "seconds", size: 36 }, { size: 40 }],
    series: [{ label: "t" }, ...EMOTIONS.map((e) => ({ label: e, stroke: COLORS[e], width: 1.5 }))],
    legend: { live: false },
  }, channel.data, chartEl);
  new ResizeObserver(() => plot.setSize({ width: Math.max(300, chartEl.clientWidth), height: 200 })).observe(chartEl);
  return plot;
}

function channelView(streamId, name) {
  const stream = streamCard(streamId);
  let channel = stream.channels.get(name);
  if (channel) return channel;
  const node = el("#channel-template").content.firstElementChild.cloneNode(true);
  node.dataset.stream = streamId;
  node.dataset.channel = name;
  node.dataset.points = "0";
  el(".channel-name", node).textContent = name;
  el(".bar", node).replaceChildren(...EMOTIONS.map((e) => {
    const span = document.createElement("span");
    span.style.background = COLORS[e];
    span.title = e;
    return span;
  }));
  el(".channels", stream.el).appendChild(node);
  channel = { el: node, stream, data: [[], ...EMOTIONS.map(() => [])], plot: null, last: null };
  stream.channels.set(name, channel);
  setExpanded(stream, stream.expanded);
  return channel;
}

function onScores(msg) {
  const channel = channelView(msg.stream, msg.channel);
  const { data } = channel;
  data[0].push(msg.t);
  EMOTIONS.forEach((e, i) => data[i + 1].push(msg.rolling ? msg.rolling[e] : null));
  if (data[0].length > MAX_POINTS) data.forEach((column) => column.splice(0, column.length - MAX_POINTS));
  channel.last = msg;
  dirty.add(channel);
}

function onStatus(msg) {
  const stream = streamCard(msg.stream);
  const state = el(".state", stream.el);
  state.textContent = msg.state;
  const look = { running: "", reconnecting: "warn", stopped: "off", finished: "off", offline: "bad" };
  state.className = "pill state " + (look[msg.state] ?? "bad");
  el(".source", stream.el).textContent = msg.source || "";
  const latency = msg.latency_ms == null ? "—" : `${msg.latency_ms.toFixed(1)} ms`;
  el(".stats", stream.el).textContent =
    `windows ${msg.windows ?? 0} · latency ${latency} · overruns ${msg.overruns ?? 0}` +
    (msg.lost_s ? ` (${msg.lost_s} s lost)` : "") +
    (msg.errors ? ` · ${msg.errors} failed batches` : "");
  // A device error, else the last analysis error (the stream goes on; the count says how often).
  const problem = msg.error || (msg.errors ? `last analysis error: ${msg.last_error || "unknown"}` : "");
  const error = el(".error", stream.el);
  error.hidden = !problem;
  error.textContent = problem;
  stream.el.dataset.state = msg.state;
  const who = [msg.agent, msg.queue].filter(Boolean).join(" · ");
  if (msg.state !== stream.state || (msg.agent || "") !== stream.agent || (msg.queue || "") !== stream.queue) {
    stream.endedAt = ENDED.includes(msg.state) ? performance.now() : null;
    stream.state = msg.state;
    stream.agent = msg.agent || "";
    stream.queue = msg.queue || "";
    el(".who", stream.el).textContent = who;
    addFilterValue("agent", stream.agent);
    addFilterValue("queue", stream.queue);
    placeCard(stream);
    applyFilter(stream);
    countShown();
  }
  const adaptation = Number(msg.adaptation) || 0;
  if (adaptation !== stream.adaptation) {
    stream.adaptation = adaptation;
    for (const channel of stream.channels.values()) dirty.add(channel);
  }
}

function onAlert(msg) {
  el("#alerts").hidden = false;
  const item = document.createElement("li");
  item.className = `${msg.state} ${msg.severity || ""}`;
  const mark = msg.state === "cleared" ? "✓ cleared" : `⚠ ${msg.severity || "alert"}`;
  item.textContent = `${mark} · ${msg.stream} / ${msg.channel} · ${msg.rule} · ` +
    `${msg.emotion} ${Number(msg.score).toFixed(2)} at ${Number(msg.at).toFixed(1)} s`;
  el("#alert-list").prepend(item);
  const stream = streamCard(msg.stream);
  const key = `${msg.rule}|${msg.channel}`;
  if (msg.state === "raised") stream.alerts.add(key);
  else stream.alerts.delete(key);
  stream.el.classList.toggle("alerting", stream.alerts.size > 0);
  placeCard(stream);
  countShown();
}

// The card's summary: the caller's channel if there is one, else its first.
function summaryChannel(stream) {
  return stream.channels.get("caller") || stream.channels.values().next().value;
}

function render() {
  for (const channel of dirty) {
    if (channel.plot && !el(".chart", channel.el).hidden) channel.plot.setData(channel.data);
    channel.el.dataset.points = String(channel.data[0].length);
    const msg = channel.last;
    if (!msg) continue;
    const speech = el(".speech", channel.el);
    speech.textContent = msg.speech ? "speech" : "silence";
    speech.className = "speech pill" + (msg.speech ? "" : " off");
    const top = el(".top", channel.el);
    // Below the model's measured confidence the top emotion is a guess: say so rather than name it.
    const uncertain = msg.top && msg.confident === false;
    top.textContent = !msg.top ? "—" : uncertain ? "uncertain"
      : `${msg.top} ${(msg.rolling[msg.top] * 100).toFixed(0)}%`;
    top.style.color = msg.top && !uncertain ? COLORS[msg.top] : "";
    channel.el.dataset.top = msg.top || "";
    channel.el.dataset.confident = uncertain ? "false" : "true";
    el(".bar", channel.el).querySelectorAll("span").forEach((span, i) => {
      span.style.width = msg.rolling ? `${msg.rolling[EMOTIONS[i]] * 100}%` : "0";
    });
    // Speaker adaptation still learning this voice: below half of what the model adapts at most.
    const max = channel.stream.adaptation;
    const adapted = typeof msg.adapted === "number" ? msg.adapted : null;
    el(".calibrating", channel.el).hidden = !(max > 0 && adapted !== null && adapted < max / 2);
    channel.el.dataset.adapted = adapted === null ? "" : String(adapted);
    if (summaryChannel(channel.stream) === channel) {
      const card = channel.stream.el;
      const summary = el(".summary-top", card);
      summary.textContent = top.textContent;
      summary.style.color = top.style.color;
      const negative = msg.rolling ? NEGATIVE.reduce((sum, e) => sum + msg.rolling[e], 0) : 0;
      const arousal = typeof msg.arousal === "number" ? msg.arousal : 0;
      el(".negative span", card).style.width = `${Math.min(1, negative) * 100}%`;
      el(".arousal span", card).style.width = `${Math.min(1, arousal) * 100}%`;
      card.dataset.negative = negative.toFixed(3);
      card.dataset.arousal = arousal.toFixed(3);
      card.dataset.mood = !msg.rolling ? "" : negative >= 0.5 ? (arousal >= 0.5 ? "tense" : "low")
        : arousal >= 0.5 ? "lively" : "";
    }
  }
  dirty = new Set();
  requestAnimationFrame(render);
}

function reset() {
  streams.clear();
  document.body.classList.remove("floor");
  el("#floor-tools").hidden = true;
  el("#streams").replaceChildren();
  el("#alert-list").replaceChildren();
  el("#alerts").hidden = true;
  el("#empty").hidden = false;
  dirty = new Set();
}

function connect(delay = 1000) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  const conn = el("#connection");
  ws.onopen = () => {
    reset(); // the server resends its history on every connection
    conn.textContent = "live";
    conn.className = "pill";
    delay = 1000;
  };
  ws.onmessage = (event) => {
    for (const msg of JSON.parse(event.data)) { // a frame is an array of messages
      if (msg.type === "scores") onScores(msg);
      else if (msg.type === "status") onStatus(msg);
      else if (msg.type === "alert") onAlert(msg);
    }
  };
  ws.onclose = () => {
    conn.textContent = "disconnected, retrying…";
    conn.className = "pill bad";
    setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
  };
}

// On a floor, calls come and go all day: an ended call's card leaves after a while (its
// history stays on the server until --stream-ttl; a reload shows it again until then).
setInterval(() => {
  if (!document.body.classList.contains("floor")) return;
  const now = performance.now();
  let removed = 0;
  for (const [id, stream] of streams) {
    if (stream.endedAt != null && now - stream.endedAt > FLOOR_KEEP_ENDED_MS && !stream.alerts.size) {
      stream.el.remove();
      streams.delete(id);
      removed += 1;
    }
  }
  if (removed) countShown();
}, 10_000);

requestAnimationFrame(render);
connect();

// Two views on one page: the live dashboard and "Analyze a recording".
function showView() {
  const analyze = location.hash === "#analyze";
  el("#live-view").hidden = analyze;
  el("#analyze-view").hidden = !analyze;
  el("#nav-live").classList.toggle("active", !analyze);
  el("#nav-analyze").classList.toggle("active", analyze);
}
window.addEventListener("hashchange", showView);
showView();
