// Live dashboard: one card per stream, one chart of rolling scores per channel.
// Messages come from /ws (see streamer/messages.py); the server sends recent
// history first, so a page opened late is not empty.
"use strict";

const EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"];
const COLORS = {
  neutral: "#8c8c8c", calm: "#4fa3d1", happy: "#f2b705", sad: "#3b5ba9",
  angry: "#d7263d", fearful: "#8e44ad", disgust: "#2e8b57", surprised: "#f28c28",
};
const MAX_POINTS = 600; // 5 minutes at a 0.5 s hop
const streams = new Map(); // stream id -> {el, channels: Map(name -> channel)}
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
  stream = { el: node, channels: new Map() };
  streams.set(id, stream);
  return stream;
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
  el(".channels", stream.el).appendChild(node);
  const data = [[], ...EMOTIONS.map(() => [])];
  const chartEl = el(".chart", node);
  const plot = new uPlot({
    width: Math.max(300, chartEl.clientWidth || 480),
    height: 200,
    scales: { x: { time: false }, y: { range: [0, 1] } },
    axes: [{ label: "seconds", size: 36 }, { size: 40 }],
    series: [{ label: "t" }, ...EMOTIONS.map((e) => ({ label: e, stroke: COLORS[e], width: 1.5, spanGaps: false }))],
    legend: { live: false },
  }, data, chartEl);
  new ResizeObserver(() => plot.setSize({ width: Math.max(300, chartEl.clientWidth), height: 200 })).observe(chartEl);
  channel = { el: node, data, plot };
  stream.channels.set(name, channel);
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
  state.className = "pill state " + ({ running: "", reconnecting: "warn", stopped: "off", finished: "off" }[msg.state] ?? "bad");
  el(".source", stream.el).textContent = msg.source;
  const latency = msg.latency_ms == null ? "—" : `${msg.latency_ms.toFixed(1)} ms`;
  el(".stats", stream.el).textContent =
    `windows ${msg.windows} · latency ${latency} · overruns ${msg.overruns}` + (msg.lost_s ? ` (${msg.lost_s} s lost)` : "");
  const error = el(".error", stream.el);
  error.hidden = !msg.error;
  error.textContent = msg.error || "";
  stream.el.dataset.state = msg.state;
}

function onAlert(msg) {
  el("#alerts").hidden = false;
  const item = document.createElement("li");
  const when = `t=${Number(msg.at).toFixed(1)} s`;
  item.textContent = `${msg.state === "cleared" ? "cleared" : "⚠"} ${msg.severity || ""} ${msg.rule}: ` +
    `${msg.stream}/${msg.channel} ${msg.emotion} ${Number(msg.score).toFixed(2)} (${when})`;
  item.className = msg.state;
  el("#alert-list").prepend(item);
}

function render() {
  for (const channel of dirty) {
    channel.plot.setData(channel.data);
    channel.el.dataset.points = String(channel.data[0].length);
    const msg = channel.last;
    const speech = el(".speech", channel.el);
    speech.textContent = msg.speech ? "speech" : "silence";
    speech.className = "speech pill" + (msg.speech ? "" : " off");
    const top = el(".top", channel.el);
    top.textContent = msg.top ? `${msg.top} ${(msg.rolling[msg.top] * 100).toFixed(0)}%` : "—";
    top.style.color = msg.top ? COLORS[msg.top] : "";
    channel.el.dataset.top = msg.top || "";
  }
  dirty = new Set();
  requestAnimationFrame(render);
}

function reset() {
  streams.clear();
  el("#streams").replaceChildren();
  el("#alert-list").replaceChildren();
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
    const msg = JSON.parse(event.data);
    if (msg.type === "scores") onScores(msg);
    else if (msg.type === "status") onStatus(msg);
    else if (msg.type === "alert") onAlert(msg);
  };
  ws.onclose = () => {
    conn.textContent = "disconnected, retrying…";
    conn.className = "pill bad";
    setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
  };
}

requestAnimationFrame(render);
connect();
