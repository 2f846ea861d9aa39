// Live dashboard: a grid of streams (calls), each with its channels' current
// emotion; click a stream for its chart of rolling scores. With few streams
// (a local analyzer) the charts are open from the start.
// Messages come from /ws (see streamer/messages.py); the server sends recent
// history first, so a page opened late is not empty.
"use strict";

const EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"];
const COLORS = {
  neutral: "#8c8c8c", calm: "#4fa3d1", happy: "#f2b705", sad: "#3b5ba9",
  angry: "#d7263d", fearful: "#8e44ad", disgust: "#2e8b57", surprised: "#f28c28",
};
const MAX_POINTS = 600; // 5 minutes at a 0.5 s hop
const AUTO_EXPAND = 4; // streams shown with charts without a click
// stream id -> {el, channels: Map(name -> channel), expanded, toggled, alerts: Set, adaptation}
const streams = new Map();
let dirty = new Set();

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
  stream = { el: node, channels: new Map(), expanded: false, toggled: false, alerts: new Set(), adaptation: 0 };
  el("header", node).addEventListener("click", () => {
    stream.toggled = true;
    setExpanded(stream, !stream.expanded);
  });
  streams.set(id, stream);
  if (streams.size <= AUTO_EXPAND) setExpanded(stream, true);
  else for (const other of streams.values()) if (!other.toggled) setExpanded(other, false);
  return stream;
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
    top.textContent = msg.top ? `${msg.top} ${(msg.rolling[msg.top] * 100).toFixed(0)}%` : "—";
    top.style.color = msg.top ? COLORS[msg.top] : "";
    channel.el.dataset.top = msg.top || "";
    el(".bar", channel.el).querySelectorAll("span").forEach((span, i) => {
      span.style.width = msg.rolling ? `${msg.rolling[EMOTIONS[i]] * 100}%` : "0";
    });
    // Speaker adaptation still learning this voice: below half of what the model adapts at most.
    const max = channel.stream.adaptation;
    const adapted = typeof msg.adapted === "number" ? msg.adapted : null;
    el(".calibrating", channel.el).hidden = !(max > 0 && adapted !== null && adapted < max / 2);
    channel.el.dataset.adapted = adapted === null ? "" : String(adapted);
  }
  dirty = new Set();
  requestAnimationFrame(render);
}

function reset() {
  streams.clear();
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
