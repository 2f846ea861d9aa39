"""Benchmark of the live path: ``python -m streamer.bench [--quick] [--json FILE]``.

Measured in one run on this machine:

1. per-window cost for one stream (VAD, features, inference), median and p95;
2. the earlier project's way as the baseline: librosa features recomputed on
   the whole window plus Keras ``model.predict`` per window;
3. batched throughput (features + model) on one core and on all cores;
4. capacity: the most concurrent simulated real-time streams (hop 0.5 s) the
   full pipeline (ring buffers -> VAD -> features -> model -> rolling scores ->
   websocket broadcast to a connected client) sustains with no window
   dropped and p95 latency, from a window's end to its message at the
   client, within 250 ms (and the most run with nothing lost at any latency);
5. time from process start to the first score; RSS at 1, 100 and the
   maximum number of streams.

The capacity server runs in a subprocess (``--serve-streams``) so its RSS is
its own and TensorFlow, imported here for the baseline, is not in it.

``python -m streamer.bench calls …`` is the telephony capacity run instead
(``streamer.bench_calls``): real calls over real sockets through
``run_stream.py --serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from streamer.pipeline import Source

ROOT = Path(__file__).resolve().parents[1]
HOP_S = 0.5
P95_TARGET_MS = 250.0  # a count is sustained only within this latency (the target at capacity)
TICK_S = 0.05  # the simulated sound cards deliver 50 ms blocks


def _start_offset_s(stream_index: int, ramp_s: float) -> float:
    """When simulated call ``stream_index`` starts, after the clock.

    Real calls start at random times, so their windows end at different
    moments and their first windows (computed whole, not one hop at a time)
    do not all come at once. Calls start one tick apart, cycling through
    ``ramp_s``: window ends spread evenly over the hop once ``ramp_s >= HOP_S``.
    ``ramp_s = 0`` starts every call at once: the worst case, where every
    stream's windows end in the same 50 ms block.
    """
    ticks = int(round(ramp_s / TICK_S))
    return (stream_index % ticks) * TICK_S if ticks else 0.0


class BenchError(RuntimeError):
    """A measurement that could not be made: the benchmark fails instead of reporting a number."""


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    """A test signal: a clip from $EMOTION_DATA_DIR if present, else voiced synthetic bursts."""
    rng = np.random.default_rng(seed)
    data = os.environ.get("EMOTION_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    clips = sorted(Path(data).glob("ravdess/Actor_0*/*.flac"))[:40]
    rate = 16000
    if clips:
        from streamer.audio import load_audio

        pieces, total = [], 0
        while total < seconds * rate:
            clip = load_audio(clips[rng.integers(len(clips))], rate)
            gap = np.zeros(int(rng.uniform(0.2, 1.5) * rate), np.float32)
            pieces += [clip, gap]
            total += clip.size + gap.size
        return np.concatenate(pieces)[: int(seconds * rate)]
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 0.4 * t) > -0.2).astype(np.float32)
    return (0.1 * voiced * envelope).astype(np.float32)


def _stats(values: list[float]) -> dict:
    a = np.asarray(values)
    return {"median": round(float(np.median(a)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


# -- 1 and 2: per-window cost -------------------------------------------------------


def per_window(model, windows: int) -> dict:
    from streamer.pipeline import StreamAnalyzer
    from streamer.vad import SileroVAD
    from streamer.worker import AnalysisWorker

    config = model.config
    audio = _speech_like(2.0 + windows * HOP_S + 1, seed=1)
    analyzer = StreamAnalyzer("bench", ["mono"], config.sample_rate, config, hop_s=HOP_S)
    worker = AnalysisWorker(model, lambda m: None)
    vad = SileroVAD()
    hop = int(HOP_S * config.sample_rate)
    times = {"vad_ms": [], "features_ms": [], "adaptation_ms": [], "inference_ms": [], "total_ms": []}
    position = 0
    while len(times["total_ms"]) < windows:
        block = audio[position : position + hop, None]
        t0 = time.perf_counter()
        jobs = analyzer.push(position, block)
        vad.score(analyzer.trackers)
        t1 = time.perf_counter()
        position += hop
        if not jobs:
            continue
        for job in jobs:
            analyzer.resolve_speech(job)
            job.speech = True  # every window is scored here, to time the model's work
        worker.step.features(jobs)
        t2 = time.perf_counter()
        frames = np.stack([j.frames for j in jobs])
        stats = worker.step.adapt(jobs, frames)  # None when the model does not adapt
        t3 = time.perf_counter()
        model.predict(frames, stats)
        t4 = time.perf_counter()
        times["vad_ms"].append((t1 - t0) * 1000)
        times["features_ms"].append((t2 - t1) * 1000)
        times["adaptation_ms"].append((t3 - t2) * 1000)
        times["inference_ms"].append((t4 - t3) * 1000)
        times["total_ms"].append((t4 - t0) * 1000)
    return {k: _stats(v) for k, v in times.items()}


def baseline(model_dir: Path, windows: int) -> dict:
    """The earlier project's way: whole-window librosa features + Keras predict per window."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import librosa

    from streamer.features import normalize_windows
    from streamer.runtime import KERAS_NAME, EmotionModel

    meta = EmotionModel(model_dir)  # config and normalisation only
    net = keras.models.load_model(model_dir / KERAS_NAME, compile=False)
    config = meta.config
    audio = _speech_like(2.0 + windows * HOP_S + 1, seed=2)
    hop = int(HOP_S * config.sample_rate)
    features, inference = [], []
    net.predict(np.zeros((1, config.window_frames, config.n_mels), np.float32), verbose=0)
    for i in range(windows):
        window = audio[i * hop : i * hop + config.window_samples]
        t0 = time.perf_counter()
        mel = librosa.feature.melspectrogram(
            y=window,
            sr=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            fmin=config.fmin,
            fmax=config.fmax,
            center=False,
        )
        x = normalize_windows(librosa.power_to_db(mel, amin=1e-10, top_db=None).T, config, meta.stats)
        t1 = time.perf_counter()
        net.predict(x[None], verbose=0)
        t2 = time.perf_counter()
        features.append((t1 - t0) * 1000)
        inference.append((t2 - t1) * 1000)
    return {
        "features_ms": _stats(features),
        "inference_ms": _stats(inference),
        "total_ms": _stats([a + b for a, b in zip(features, inference)]),
    }


# -- 3: batched throughput ------------------------------------------------------------


def _throughput_worker(seconds: float) -> float:
    from streamer.features import frame_features
    from streamer.runtime import EmotionModel

    model = EmotionModel()
    config = model.config
    audio = _speech_like(40, seed=3)
    windows = np.stack([audio[i * 8000 : i * 8000 + config.window_samples] for i in range(64)])
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict(frame_features(windows, config))
        done += len(windows)
    return done / (time.perf_counter() - start)


def throughput(seconds: float) -> dict:
    """Whole windows (not incremental): features + model, batches of 64."""
    one = _run_isolated(f"from streamer.bench import _throughput_worker as w; print(w({seconds}))", 1)
    cores = os.cpu_count() or 1
    all_cores = sum(_run_isolated(f"from streamer.bench import _throughput_worker as w; print(w({seconds}))", cores))
    return {"windows_per_s_1_core": round(one[0]), f"windows_per_s_{cores}_cores": round(all_cores), "cores": cores}


def _run_isolated(code: str, copies: int) -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


# -- 4: capacity ----------------------------------------------------------------------


class SyntheticSource(Source):
    """A simulated sound card: the clock thread writes 50 ms blocks into its ring."""

    def __init__(self, stream_id: str, audio: np.ndarray, offset: int, config, start_s: float = 0.0) -> None:
        from streamer.pipeline import StreamAnalyzer
        from streamer.ringbuffer import RING_SECONDS, AudioRing

        self.stream_id = stream_id
        self.audio = audio  # shared by all sources; each starts at its own offset
        self.ring = AudioRing(int(RING_SECONDS * config.sample_rate))
        self.analyzer = StreamAnalyzer(stream_id, ["mono"], config.sample_rate, config, hop_s=HOP_S)
        self.position = offset
        self.start_s = start_s  # the call starts this long after the clock

    def tick(self, samples: int) -> None:
        start = self.position % (self.audio.size - samples)
        self.ring.write(self.audio[start : start + samples])
        self.position += samples

    def status(self) -> dict:
        from streamer.messages import status_message

        return status_message(self.stream_id, "synthetic", "running", self.ring.overruns, self.analyzer.windows_done)


async def _serve_streams(n_streams: int, seconds: float, port: int, ramp_s: float, report_s: float = 0.0) -> None:
    """The capacity server (a subprocess): N real-time streams through the real pipeline,
    each running ``seconds`` from its start (see ``_start_offset_s``). With ``report_s``,
    a ``{"report": {...}}`` line of its counters every ``report_s`` (the soak reads them)."""
    import threading

    import uvicorn

    from streamer.hub import Hub, LoopBridge
    from streamer.runtime import EmotionModel
    from streamer.server import create_app
    from streamer.worker import AnalysisWorker

    model = EmotionModel()
    model.warm_up()
    config = model.config
    base = _speech_like(60, seed=4)
    rate = config.sample_rate
    sources = [
        SyntheticSource(f"s{i:04d}", base, i * 7919, config, _start_offset_s(i, ramp_s)) for i in range(n_streams)
    ]
    loop = asyncio.get_running_loop()
    hub = Hub(hop_s=HOP_S, client_queue=100_000)
    models = [model] + [EmotionModel() for _ in range(min(os.cpu_count() or 1, n_streams) - 1)]
    bridge = LoopBridge(loop, hub.publish)
    workers = [AnalysisWorker(m, bridge.put, status_every_s=5.0) for m in models]
    for i, source in enumerate(sources):
        workers[i % len(workers)].add(source)
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="error"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]  # port 0: the one the OS gave
    print(json.dumps({"ready": True, "port": port}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the client is connected: go

    stop = threading.Event()
    block = int(TICK_S * rate)
    start_wall = time.time()

    def clock() -> None:
        start = time.monotonic()
        ticks = 0
        while not stop.is_set():
            ticks += 1
            delay = start + ticks * TICK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for source in sources:
                if source.start_s < ticks * TICK_S <= source.start_s + seconds + 1e-9:
                    source.tick(block)

    for worker in workers:
        worker.start()
    ticker = threading.Thread(target=clock, daemon=True)
    ticker.start()
    print(json.dumps({"start_wall": start_wall}), flush=True)

    def counters() -> dict:
        return {
            "overruns": sum(s.ring.overruns for s in sources),
            "windows": sum(s.analyzer.windows_done for s in sources),
            "hub_dropped": hub.stats()["dropped"] + bridge.dropped,
            "errors": sum(w.step.errors for w in workers),
            "rss_mb": _rss_mb(os.getpid()),
        }

    async def report() -> None:
        while report_s > 0:
            await asyncio.sleep(report_s)
            print(json.dumps({"report": {"t": round(time.time() - start_wall, 1), **counters()}}), flush=True)

    reporter = asyncio.create_task(report())
    await asyncio.sleep(seconds + max(s.start_s for s in sources))
    reporter.cancel()
    stop.set()
    await asyncio.sleep(1.0)  # windows in flight
    for worker in workers:
        worker.stop()
    await asyncio.sleep(0.2)
    print(json.dumps(counters()), flush=True)
    server.should_exit = True
    await serving


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def start_stream_server(n_streams: int, seconds: float, ramp_s: float, report_s: float = 0.0):
    """Spawn the capacity server; returns (process, its port) once it listens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.bench",
        "--serve-streams",
        str(n_streams),
        "--seconds",
        str(seconds),
        "--port",
        "0",
        "--ramp",
        str(ramp_s),
        "--report-every",
        str(report_s),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        limit=2**20,
    )
    ready = json.loads(await proc.stdout.readline())
    return proc, ready["port"]


def expected_windows(seconds: float) -> int:
    """Windows whose end falls inside a stream's run of ``seconds``, give or take the last."""
    return int((seconds - 2.0) / HOP_S)


async def receive_scores(ws, done: asyncio.Future, start_wall: float, ramp_s: float, record) -> None:
    """Until ``done`` completes, ``record(message, latency_ms, now)`` for each scores message:
    latency from the end of the window's audio at the simulated card to its arrival here."""
    from websockets.exceptions import ConnectionClosed

    while not done.done():
        try:
            text = await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            continue
        except ConnectionClosed:
            return
        now = time.time()
        for message in json.loads(text):
            if message["type"] == "scores":
                start = start_wall + _start_offset_s(int(message["stream"][1:]), ramp_s)
                record(message, (now - (start + message["t"])) * 1000, now)


async def _measure(n_streams: int, seconds: float, ramp_s: float) -> dict:
    from websockets.asyncio.client import connect

    proc, port = await start_stream_server(n_streams, seconds, ramp_s)

    async def line() -> dict:
        return json.loads(await proc.stdout.readline())

    latencies: list[float] = []
    counts: dict[str, int] = {}

    def record(message: dict, latency_ms: float, now: float) -> None:
        latencies.append(latency_ms)
        counts[message["stream"]] = counts.get(message["stream"], 0) + 1

    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, max_queue=None) as ws:
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        start_wall = (await line())["start_wall"]
        result_task = asyncio.create_task(line())
        await receive_scores(ws, result_task, start_wall, ramp_s, record)
    result = await result_task
    await proc.wait()
    expected = expected_windows(seconds)
    missing = sum(max(0, expected - counts.get(f"s{i:04d}", 0)) for i in range(n_streams))
    if not latencies:
        raise BenchError(f"no window reached the client in the {n_streams}-stream run")
    p95 = float(np.percentile(latencies, 95))
    lossless = result["overruns"] == 0 and result["hub_dropped"] == 0 and missing == 0
    ok = lossless and p95 <= P95_TARGET_MS
    return {
        "streams": n_streams,
        "seconds": seconds,
        "call_starts_over_s": ramp_s,
        "sustained": bool(ok),
        "lossless": bool(lossless),
        "windows_received": len(latencies),
        "missing_windows": missing,
        "overruns": result["overruns"],
        "hub_dropped": result["hub_dropped"],
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_latency_ms": round(p95, 1),
        "rss_mb": result["rss_mb"],
    }


def capacity(seconds: float, max_streams: int, probes: int, log) -> dict:
    """1 and 100 streams, then bisection for the largest sustained count up to ``max_streams``.

    Calls start over the first ``min(5 s, seconds / 4)``, as on a real floor;
    the largest sustained count is then re-run with every call starting at
    once, the worst case, and reported beside it.
    """
    ramp_s = min(5.0, seconds / 4)
    runs: dict[int, dict] = {}

    def run(n: int, ramp: float = ramp_s) -> dict:
        r = asyncio.run(_measure(n, seconds, ramp))
        verdict = "sustained" if r["sustained"] else "NOT sustained"
        starts = f"calls starting over {ramp:g} s" if ramp else "all calls starting at once"
        p95, rss = r["p95_latency_ms"], r["rss_mb"]
        log(f"  {n:4d} streams x {seconds:.0f} s, {starts}: {verdict}, p95 {p95} ms, RSS {rss} MB")
        return r

    def probe_run(n: int) -> dict:
        runs[n] = run(n)
        return runs[n]

    probe_run(1)
    low, high = (100, max_streams + 1) if probe_run(100)["sustained"] else (1, 100)
    probe = min(max_streams, 500) if low == 100 else 50
    for _ in range(probes if probe not in runs else 0):
        if probe_run(probe)["sustained"]:
            low = probe
        else:
            high = probe
        if high - low <= max(25, low // 10):
            break
        probe = (low + high) // 2 if high <= max_streams else min(max_streams, low * 3 // 2)
    best = max((n for n, r in runs.items() if r["sustained"]), default=0)
    lossless = max((n for n, r in runs.items() if r["lossless"]), default=0)
    at_once = run(best, 0.0) if best else None
    return {
        "max_streams": best,
        "max_streams_lossless": lossless,
        "runs": [runs[n] for n in sorted(runs)],
        "max_streams_all_at_once": at_once,
    }


# -- 5: start-up --------------------------------------------------------------------------


def start_to_first_score() -> float:
    """From spawning ``run_stream.py --input FILE --fast`` to the first scores message at a client."""
    from websockets.sync.client import connect

    clip = ROOT / ".cache" / "bench-clip.wav"
    clip.parent.mkdir(exist_ok=True)
    import soundfile as sf

    sf.write(clip, _speech_like(4.0, seed=5), 16000)
    import tempfile

    from streamer.app import DASHBOARD_LINE

    output = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in finally
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "run_stream.py", "--input", str(clip), "--fast", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=output,
    )
    try:
        port = None
        while time.monotonic() - started < 60 and proc.poll() is None:
            if port is None:  # it prints the port it got once it listens
                output.seek(0)
                found = DASHBOARD_LINE.search(output.read())
                port = int(found.group(2)) if found else None
                time.sleep(0.01)
                continue
            try:
                with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=1) as ws:
                    while True:
                        if any(m["type"] == "scores" for m in json.loads(ws.recv(timeout=30))):
                            return round(time.monotonic() - started, 2)
            except (OSError, TimeoutError):
                time.sleep(0.02)
        output.seek(0)
        raise BenchError(f"run_stream.py gave no score within 60 s: {output.read()[-500:]}")
    finally:
        proc.terminate()
        proc.wait(10)
        output.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calls"]:  # the telephony capacity run, through run_stream.py --serve
        from streamer.bench_calls import main as calls_main

        return calls_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m streamer.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 2 minutes)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--max-streams", type=int, default=1000, help="upper end of the capacity search")
    parser.add_argument("--capacity-seconds", type=float, help="length of each capacity run (default 60, quick 8)")
    parser.add_argument("--serve-streams", type=int, help=argparse.SUPPRESS)  # the capacity subprocess
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ramp", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--report-every", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_streams:
        asyncio.run(_serve_streams(args.serve_streams, args.seconds, args.port, args.ramp, args.report_every))
        return 0

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    from streamer.runtime import DEFAULT_MODEL_DIR, EmotionModel

    quick = args.quick
    model = EmotionModel()
    model.warm_up()
    log("per-window cost, one stream …")
    ours = per_window(model, 30 if quick else 200)
    log("baseline: whole-window features + Keras predict per window …")
    base = baseline(DEFAULT_MODEL_DIR, 10 if quick else 60)
    ours_work = ours["features_ms"]["median"] + ours["adaptation_ms"]["median"] + ours["inference_ms"]["median"]
    log("batched throughput …")
    tput = throughput(3.0 if quick else 10.0)
    log("capacity (real-time streams through the whole pipeline to a websocket client) …")
    cap = capacity(
        8.0 if quick else 60.0, min(args.max_streams, 200) if quick else args.max_streams, 1 if quick else 3, log
    )
    log("start to first score …")
    first = start_to_first_score()
    by_n = {r["streams"]: r for r in cap["runs"]}
    best = by_n.get(cap["max_streams"], {})
    results = {
        "mode": "quick" if quick else "full",
        "per_window_ms": ours,
        "baseline_per_window_ms": base,
        "speedup_vs_baseline": round(base["total_ms"]["median"] / ours_work, 1),
        "speedup_vs_baseline_incl_vad": round(base["total_ms"]["median"] / ours["total_ms"]["median"], 1),
        # Per window when windows are batched (one core), as they are under load.
        "speedup_vs_baseline_batched": round(base["total_ms"]["median"] * tput["windows_per_s_1_core"] / 1000, 1),
        "throughput": tput,
        "max_streams": cap["max_streams"],
        "max_streams_lossless_any_latency": cap["max_streams_lossless"],
        "p95_latency_ms_1_stream": by_n[1]["p95_latency_ms"],
        "p95_latency_ms_max_streams": best.get("p95_latency_ms"),
        "p95_latency_ms_max_streams_all_calls_at_once": (cap["max_streams_all_at_once"] or {}).get("p95_latency_ms"),
        "start_to_first_score_s": first,
        "rss_mb_1_stream": by_n[1]["rss_mb"],
        "rss_mb_100_streams": by_n[100]["rss_mb"],
        "rss_mb_max_streams": best.get("rss_mb"),
        "capacity_runs": cap["runs"],
        "capacity_run_all_calls_at_once": cap["max_streams_all_at_once"],
        "cpu_cores": os.cpu_count(),
    }
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def format_table(r: dict) -> str:
    w, b = r["per_window_ms"], r["baseline_per_window_ms"]
    t = r["throughput"]
    rows = [
        ("per window, one stream: VAD (median / p95)", f"{w['vad_ms']['median']} / {w['vad_ms']['p95']} ms"),
        ("per window: features", f"{w['features_ms']['median']} / {w['features_ms']['p95']} ms"),
        ("per window: speaker adaptation", f"{w['adaptation_ms']['median']} / {w['adaptation_ms']['p95']} ms"),
        ("per window: inference (LiteRT)", f"{w['inference_ms']['median']} / {w['inference_ms']['p95']} ms"),
        ("per window: total incl. VAD", f"{w['total_ms']['median']} / {w['total_ms']['p95']} ms"),
        ("baseline: features + Keras predict", f"{b['total_ms']['median']} / {b['total_ms']['p95']} ms"),
        (
            "speedup vs baseline (same work / incl. VAD)",
            f"{r['speedup_vs_baseline']}x / {r['speedup_vs_baseline_incl_vad']}x",
        ),
        ("batched throughput, 1 core", f"{t['windows_per_s_1_core']} windows/s"),
        ("speedup vs baseline, batched windows (1 core)", f"{r['speedup_vs_baseline_batched']}x"),
        (f"batched throughput, {t['cores']} cores", f"{t['windows_per_s_' + str(t['cores']) + '_cores']} windows/s"),
        (f"max real-time streams, nothing lost, p95 <= {P95_TARGET_MS:g} ms", str(r["max_streams"])),
        ("most streams run with nothing lost (any latency)", str(r["max_streams_lossless_any_latency"])),
        (
            "p95 latency, 1 stream / max streams",
            f"{r['p95_latency_ms_1_stream']} / {r['p95_latency_ms_max_streams']} ms",
        ),
        ("p95 latency, max streams all starting at once", f"{r['p95_latency_ms_max_streams_all_calls_at_once']} ms"),
        ("start to first score", f"{r['start_to_first_score_s']} s"),
        (
            "RSS at 1 / 100 / max streams",
            f"{r['rss_mb_1_stream']} / {r['rss_mb_100_streams']} / {r['rss_mb_max_streams']} MB",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
