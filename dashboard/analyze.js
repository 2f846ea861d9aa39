// "Analyze a recording": upload a file to /api/analyze, chart the result.
// Uses EMOTIONS, COLORS and el() from app.js.
"use strict";

let lastResult = null;
const charts = [];

function showError(text) {
  const error = el("#upload-error");
  error.textContent = text;
  error.hidden = !text;
}

async function upload(file) {
  showError("");
  el("#result").hidden = true;
  el("#upload-status").textContent = `Analysing ${file.name}…`;
  const body = new FormData();
  body.append("file", file);
  let response, payload;
  try {
    response = await fetch("/api/analyze", { method: "POST", body });
    payload = await response.json();
  } catch (err) {
    el("#upload-status").textContent = "";
    showError(response ? `The server answered ${response.status} without a readable result.` :
      "Could not reach the analyzer. Is it still running?");
    return;
  }
  el("#upload-status").textContent = "";
  if (!response.ok) {
    showError(`${file.name}: ${payload.error || `error ${response.status}`}`);
    return;
  }
  lastResult = payload;
  showResult(payload);
}

function percent(p) { return `${(p * 100).toFixed(1)} %`; }

function showResult(result) {
  const speech = result.windows.filter((w) => w.speech).length;
  el("#result-file").textContent = result.file;
  el("#result-top").textContent = result.top ?? "no speech";
  el("#result-top").style.color = result.top ? COLORS[result.top] : "";
  el("#result-arousal").textContent = result.arousal === null ? "—" : percent(result.arousal);
  el("#result-duration").textContent = `${result.duration_s.toFixed(1)} s`;
  el("#result-speech").textContent = `${speech} of ${result.windows.length} windows with speech`;
  const rows = EMOTIONS.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.emotion = e;
    tr.dataset.value = result.overall ? String(result.overall[e]) : "";
    tr.innerHTML = `<td><span style="color:${COLORS[e]}">■</span> ${e}</td><td>${result.overall ? percent(result.overall[e]) : "—"}</td>`;
    return tr;
  });
  el("#overall-table tbody").replaceChildren(...rows);
  el("#result").hidden = false;
  while (charts.length) charts.pop().destroy();
  charts.push(overallChart(result), timelineChart(result));
}

function overallChart(result) {
  const target = el("#overall-chart");
  const xs = EMOTIONS.map((_, i) => i);
  const series = EMOTIONS.map((e, i) => xs.map((x) => (x === i && result.overall ? result.overall[e] : null)));
  const bars = uPlot.paths.bars({ size: [0.7, 60] });
  return new uPlot({
    width: Math.max(320, target.clientWidth), height: 240,
    scales: { x: { time: false, range: [-0.5, EMOTIONS.length - 0.5] }, y: { range: [0, 1] } },
    axes: [{ values: (u, splits) => splits.map((i) => EMOTIONS[i] ?? ""), splits: () => xs, gap: 4 }, { size: 40 }],
    series: [{}, ...EMOTIONS.map((e) => ({ label: e, fill: COLORS[e], stroke: COLORS[e], paths: bars, points: { show: false } }))],
    legend: { show: false },
  }, [xs, ...series], target);
}

function timelineChart(result) {
  const target = el("#timeline-chart");
  const windows = result.windows;
  const xs = windows.map((w) => (w.start + w.end) / 2);
  const ys = EMOTIONS.map((e) => windows.map((w) => (w.speech ? w.probs[e] : null)));
  const shadeSilence = (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = "rgba(120,120,120,0.12)";
    for (const w of windows) {
      if (w.speech) continue;
      const x0 = u.valToPos(w.start, "x", true);
      const x1 = u.valToPos(w.end, "x", true);
      ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    }
    ctx.restore();
  };
  return new uPlot({
    width: Math.max(320, target.clientWidth), height: 260,
    scales: { x: { time: false, range: [0, Math.max(result.duration_s, 0.1)] }, y: { range: [0, 1] } },
    axes: [{ label: "seconds", size: 36 }, { size: 40 }],
    series: [{ label: "t" }, ...EMOTIONS.map((e) => ({ label: e, stroke: COLORS[e], width: 1.5 }))],
    hooks: { drawClear: [shadeSilence] },
  }, [xs, ...ys], target);
}

function download(name, type, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function timelineCsv(result) {
  const head = ["start", "end", "speech", ...EMOTIONS].join(",");
  const lines = result.windows.map((w) =>
    [w.start, w.end, w.speech, ...EMOTIONS.map((e) => (w.speech ? w.probs[e] : ""))].join(","));
  return [head, ...lines].join("\n") + "\n";
}

function baseName(result) { return (result.file || "recording").replace(/\.[^.]*$/, ""); }

el("#download-json").addEventListener("click", () =>
  lastResult && download(`${baseName(lastResult)}.emotions.json`, "application/json", JSON.stringify(lastResult, null, 1)));
el("#download-csv").addEventListener("click", () =>
  lastResult && download(`${baseName(lastResult)}.timeline.csv`, "text/csv", timelineCsv(lastResult)));
el("#file-input").addEventListener("change", (event) => {
  if (event.target.files.length) upload(event.target.files[0]);
});
const zone = el("#drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
});
