"""Benchmark of the live path: ``python -m tools.bench [--quick] [--analysis KIND] [--json FILE]``.

Measured in one run on this machine:

1. per-window cost for one stream (VAD, features, speaker adaptation,
   inference), median and p95;
2. a baseline doing the same per window the straightforward way: librosa
   features of the whole window plus Keras ``model.predict``, to show what
   the incremental features and LiteRT save;
3. batched throughput (features + model) on one core and on all cores;
4. capacity: the most concurrent simulated real-time streams the analyzer
   sustains with no window lost and p95 latency, from a window's end to its
   message at a connected websocket client, within ``P95_TARGET_MS`` (and
   the most run with nothing lost at any latency);
5. time from process start to the first score; memory at 1, 100 and the
   maximum number of streams.

The capacity server is the product's own assembly: an
:class:`~streamer.app.application.Application` built from
:class:`~streamer.app.settings.Settings` as ``streamer.app.cli`` builds it
(model loaded and warmed, socket bound by ``cli.bind``, uvloop), with
simulated sound cards as its sources. Analysis runs as the product chooses
(threads for a few streams, processes for many) unless ``--analysis`` says
otherwise; each run reports which. It runs in a subprocess
(``--serve-streams``) so its memory, summed over its worker processes, is
its own, and TensorFlow, imported here for the baseline, is not in it.

``python -m tools.bench calls …`` is the telephony capacity run instead
(``tools.bench_calls``): real calls over real sockets through
``run_stream.py --serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from streamer.app.settings import Settings
from streamer.core.messages import status_message
from streamer.sources.base import MONO, AnalysisFigures, Source
from streamer.sources.ring import RING_SECONDS, AudioRing
from streamer.workers.pool import KINDS
from tools.harness import (
    HOP_S,
    P95_TARGET_MS,
    ROOT,
    SPEECH_RATE,
    TICK_S,
    BenchError,
    expected_windows,
    run_tool,
    speech_like,
    start_offset_s,
    start_stream_server,
    stream_name,
    stream_ticks,
    tree_memory_mb,
    watch_capacity_run,
)

FLUSH_S = 1.0  # after the last block: windows in flight reach the client before the analyzer stops


def _stats(values: list[float]) -> dict:
    a = np.asarray(values)
    return {"median": round(float(np.median(a)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


# -- 1 and 2: per-window cost -------------------------------------------------------


def per_window(model, windows: int) -> dict:
    from streamer.analysis.analyzer import StreamAnalyzer
    from streamer.analysis.vad import SileroVAD
    from streamer.workers.thread import AnalysisWorker

    config = model.config
    audio = speech_like(config.window_s + windows * HOP_S + 1, seed=1)
    analyzer = StreamAnalyzer("bench", [MONO], SPEECH_RATE, config, hop_s=HOP_S)
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
    """The straightforward way per window: librosa features of the whole window + Keras ``predict``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import librosa

    from streamer.analysis.model import KERAS_NAME, EmotionModel
    from streamer.core.features import normalize_windows, prosody_frames

    meta = EmotionModel(model_dir)  # config and normalisation only
    net = keras.models.load_model(model_dir / KERAS_NAME, compile=False)
    config = meta.config
    audio = speech_like(config.window_s + windows * HOP_S + 1, seed=2)
    hop = int(HOP_S * config.sample_rate)
    features, inference = [], []
    net.predict(np.zeros((1, config.window_frames, config.n_features), np.float32), verbose=0)
    basis = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    )
    used = np.flatnonzero(basis.any(axis=0))
    band = slice(int(used[0]), int(used[-1]) + 1)
    for i in range(windows):
        window = audio[i * hop : i * hop + config.window_samples]
        t0 = time.perf_counter()
        stft = librosa.stft(window, n_fft=config.n_fft, hop_length=config.hop_length, center=False, window="hann")
        power = np.abs(stft) ** 2
        frames = librosa.power_to_db(basis @ power, amin=1e-10, top_db=None).T
        if config.prosody:  # the same channels from the whole window's spectrum
            frames = np.concatenate([frames, prosody_frames(power.T[:, band], band, config)], axis=1)
        x = normalize_windows(frames, config, meta.stats)
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
    from streamer.analysis.model import EmotionModel
    from streamer.core.features import frame_features

    model = EmotionModel()
    config = model.config
    audio = speech_like(40, seed=3)
    hop = int(HOP_S * config.sample_rate)
    windows = np.stack([audio[i * hop : i * hop + config.window_samples] for i in range(64)])
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict(frame_features(windows, config))
        done += len(windows)
    return done / (time.perf_counter() - start)


def throughput(seconds: float) -> dict:
    """Whole windows (not incremental): features + model, batches of 64."""
    one = _run_isolated(f"from tools.bench import _throughput_worker as w; print(w({seconds}))", 1)
    cores = os.cpu_count() or 1
    all_cores = sum(_run_isolated(f"from tools.bench import _throughput_worker as w; print(w({seconds}))", cores))
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
    """A simulated sound card: the server's clock thread writes 50 ms blocks into its ring.

    Every source plays one shared signal from its own offset, so streams
    differ without an array each. It receives ``ticks`` blocks from clock
    tick ``start_tick + 1`` on, then nothing more, as a device that is
    stopped: it does not end, so no final partial window is scored.
    """

    def __init__(self, stream_id: str, audio: np.ndarray, offset: int, start_tick: int, ticks: int) -> None:
        self.stream_id = stream_id
        self.rate = SPEECH_RATE
        self.channels = [MONO]
        self.ring = AudioRing(int(RING_SECONDS * self.rate))
        self.figures = AnalysisFigures()
        self.state = "running"
        self.audio = audio
        self.position = offset
        self.start_tick, self.ticks = start_tick, ticks

    def due(self, tick: int) -> bool:
        """Whether clock tick ``tick`` (from 1) delivers a block to this card."""
        return self.start_tick < tick <= self.start_tick + self.ticks

    def tick(self, samples: int) -> None:
        start = self.position % (self.audio.size - samples)
        self.ring.write(self.audio[start : start + samples])
        self.position += samples

    def stop(self) -> None:
        self.state = "stopped"

    def status(self) -> dict:
        return status_message(
            self.stream_id,
            "synthetic",
            self.state,
            overruns=self.ring.overruns,
            windows=self.figures.windows,
            channels=self.channels,
            latency_ms=self.figures.latency_ms,
        )


class CardClock:
    """One thread that delivers every simulated card's due block each ``TICK_S``.

    One clock rather than a thread per card, like the product's file pacer:
    hundreds of threads waking 20 times a second would measure the
    scheduler, not the analyzer. A late tick catches up, so stream time
    stays true.
    """

    def __init__(self, sources: list[SyntheticSource]) -> None:
        self.sources = sources
        self.last_tick = max(s.start_tick + s.ticks for s in sources)
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="card-clock", daemon=True)
        self.start_wall = 0.0

    def start(self) -> float:
        """Start ticking; returns the wall-clock time of tick 0 (latencies are measured from it)."""
        self._start = time.monotonic()
        self.start_wall = time.time()
        self._thread.start()
        return self.start_wall

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        block = int(TICK_S * SPEECH_RATE)
        for tick in range(1, self.last_tick + 1):
            delay = self._start + tick * TICK_S - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            for source in self.sources:
                if source.due(tick):
                    source.tick(block)
        self.finished.set()


def server_counters(app, sources: list[SyntheticSource]) -> dict:
    """The analyzer's own counters: what ``/metrics`` reports, and the streams' figures."""
    snapshot = app.snapshot()
    return {
        "analysis": app.analysis,
        "workers": len(app.supervisor.workers),
        "overruns": snapshot.overruns,
        "windows": sum(s.figures.windows for s in sources),
        "windows_scored": snapshot.windows_scored,
        "dropped": sum(snapshot.dropped.values()),
        "dropped_by": {k: v for k, v in snapshot.dropped.items() if v},
        "errors": snapshot.errors,
        "restarts": snapshot.restarts,
    }


def memory_counters(pid: int) -> dict:
    """RSS and PSS summed over ``pid`` and its worker processes (``harness.tree_memory_mb``)."""
    rss, pss = tree_memory_mb(pid)
    return {"rss_mb": rss, "pss_mb": pss}


def serve_streams(
    n_streams: int, seconds: float, ramp_s: float, report_s: float, hop_s: float, analysis: str | None
) -> None:
    """The capacity server (a subprocess): ``n_streams`` simulated cards through the product's Application.

    Loads and warms the model and binds the socket as ``streamer.app.cli``
    does, then runs the Application on uvloop and speaks the protocol of
    ``tools.harness``. Each stream runs ``seconds`` from its start
    (``harness.start_offset_s``). With ``report_s``, a ``{"report": {...}}``
    line of the counters every ``report_s`` (the soak reads them).
    """
    import uvloop

    from streamer.analysis.model import DEFAULT_MODEL_DIR, EmotionModel
    from streamer.app.cli import bind

    settings = Settings(
        serve=False,
        stream_id="bench",
        host="127.0.0.1",
        port=0,
        hop=hop_s,
        analysis=analysis,
        client_queue=100_000,
        max_streams=max(Settings.max_streams, n_streams),
        log_level="error",
    )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = EmotionModel(settings.model_dir or DEFAULT_MODEL_DIR)
    model.warm_up()
    sock = bind(settings.host, settings.port, settings.send_buffer_kb)
    audio = speech_like(60, seed=4)
    ticks = stream_ticks(seconds)
    sources = [
        SyntheticSource(stream_name(i), audio, i * 7919, round(start_offset_s(i, ramp_s) / TICK_S), ticks)
        for i in range(n_streams)
    ]
    uvloop.run(_serve(settings, model, sources, sock, report_s))


async def _serve(settings: Settings, model, sources: list[SyntheticSource], sock, report_s: float) -> None:
    from streamer.app.application import Application

    app = Application(settings, model, sources, sock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # the client ends a failed run with SIGTERM
        loop.add_signal_handler(sig, app.stopping.set)
    running = asyncio.create_task(app.run())
    while app.serving is None or not app.server.started:
        if running.done():
            await running  # raises what stopped it
            return
        await asyncio.sleep(0.05)
    ready = {"ready": True, "port": sock.getsockname()[1], "window_s": model.config.window_s, "hop_s": settings.hop}
    print(json.dumps(ready | {"analysis": app.analysis, "workers": len(app.supervisor.workers)}), flush=True)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    go = asyncio.create_task(stdin.readline())  # the client is connected
    await asyncio.wait([go, asyncio.create_task(app.stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
    if not go.done() or not go.result():  # stopped, or the client is gone
        go.cancel()
        app.stopping.set()
        await running
        return
    clock = CardClock(sources)
    start_wall = clock.start()
    print(json.dumps({"start_wall": start_wall}), flush=True)
    pid = os.getpid()

    async def report() -> None:
        while True:
            await asyncio.sleep(report_s)
            counters = server_counters(app, sources) | await asyncio.to_thread(memory_counters, pid)
            print(json.dumps({"report": {"t": round(time.time() - start_wall, 1), **counters}}), flush=True)

    reporter = asyncio.create_task(report()) if report_s > 0 else None
    finished = asyncio.create_task(asyncio.to_thread(clock.finished.wait))
    await asyncio.wait([finished, asyncio.create_task(app.stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
    memory = await asyncio.to_thread(memory_counters, pid)  # every stream just ran: the analyzer's whole tree
    if not app.stopping.is_set():
        await asyncio.sleep(FLUSH_S)
    if reporter is not None:
        reporter.cancel()
    clock.stop()
    app.stopping.set()
    await running
    print(json.dumps(server_counters(app, sources) | memory), flush=True)


async def _measure(n_streams: int, seconds: float, ramp_s: float, analysis: str | None) -> dict:
    proc, ready = await start_stream_server(n_streams, seconds, ramp_s, analysis=analysis)

    async def final_line() -> dict:
        while line := await proc.stdout.readline():
            data = json.loads(line)
            if "report" not in data:
                return data
        raise BenchError(f"the {n_streams}-stream capacity server exited before its counters")

    latencies: list[float] = []
    counts: dict[str, int] = {}

    def record(message: dict, latency_ms: float, since_start_s: float) -> None:
        latencies.append(latency_ms)
        counts[message["stream"]] = counts.get(message["stream"], 0) + 1

    result = await watch_capacity_run(proc, ready, ramp_s, record, final_line)
    expected = expected_windows(stream_ticks(seconds) * TICK_S, ready["window_s"], ready["hop_s"])
    per_stream = [counts.get(stream_name(i), 0) for i in range(n_streams)]
    missing = sum(max(0, expected - n) for n in per_stream)
    if not latencies:
        raise BenchError(f"no window reached the client in the {n_streams}-stream run")
    p95 = float(np.percentile(latencies, 95))
    lossless = result["overruns"] == 0 and result["dropped"] == 0 and result["errors"] == 0 and missing == 0
    return {
        "streams": n_streams,
        "seconds": seconds,
        "call_starts_over_s": ramp_s,
        "analysis": result["analysis"],
        "workers": result["workers"],
        "sustained": bool(lossless and p95 <= P95_TARGET_MS),
        "lossless": bool(lossless),
        "windows_expected_per_stream": expected,
        "windows_per_stream_min_max": [min(per_stream), max(per_stream)],
        "windows_received": len(latencies),
        "windows_scored": result["windows"],
        "missing_windows": missing,
        "overruns": result["overruns"],
        "dropped": result["dropped"],
        "errors": result["errors"],
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_latency_ms": round(p95, 1),
        "rss_mb": result["rss_mb"],  # summed over the analyzer and its worker processes
        "pss_mb": result["pss_mb"],
    }


def capacity(seconds: float, max_streams: int, probes: int, log, analysis: str | None = None) -> dict:
    """1 and 100 streams, then bisection for the largest sustained count up to ``max_streams``.

    Calls start over the first ``min(5 s, seconds / 4)``, as on a real floor;
    the largest sustained count is then re-run with every call starting at
    once, the worst case, and reported beside it. ``analysis``: the
    product's ``--analysis`` (None: its own choice, which may differ with
    the count).
    """
    ramp_s = min(5.0, seconds / 4)
    runs: dict[int, dict] = {}

    def run(n: int, ramp: float = ramp_s) -> dict:
        r = asyncio.run(_measure(n, seconds, ramp, analysis))
        verdict = "sustained" if r["sustained"] else "NOT sustained"
        starts = f"calls starting over {ramp:g} s" if ramp else "all calls starting at once"
        kind, p95, rss = f"{r['analysis']} x{r['workers']}", r["p95_latency_ms"], r["rss_mb"]
        log(f"  {n:4d} streams x {seconds:g} s, {starts}, {kind}: {verdict}, p95 {p95} ms, RSS {rss} MB")
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

    sf.write(clip, speech_like(4.0, seed=5), SPEECH_RATE)
    import tempfile

    from streamer.app.application import DASHBOARD_LINE

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
        from tools.bench_calls import main as calls_main

        return calls_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 2 minutes)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--max-streams", type=int, default=1000, help="upper end of the capacity search")
    parser.add_argument("--capacity-seconds", type=float, help="length of each capacity run (default 60, quick 8)")
    parser.add_argument(
        "--analysis",
        choices=KINDS,
        help="the analyzer's --analysis in the capacity runs (default: the product's choice for each stream count)",
    )
    # The capacity server (a subprocess; see tools.harness.start_stream_server):
    parser.add_argument("--serve-streams", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--ramp", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--report-every", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--hop", type=float, default=HOP_S, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_streams:
        serve_streams(args.serve_streams, args.seconds, args.ramp, args.report_every, args.hop, args.analysis)
        return 0

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    from streamer.analysis.model import DEFAULT_MODEL_DIR, EmotionModel

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
    log("capacity (real-time streams through the analyzer's Application to a websocket client) …")
    cap = capacity(
        args.capacity_seconds or (8.0 if quick else 60.0),
        min(args.max_streams, 200) if quick else args.max_streams,
        1 if quick else 3,
        log,
        args.analysis,
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
        "analysis_requested": args.analysis,  # None: the product's choice, per run in capacity_runs
        "max_streams": cap["max_streams"],
        "max_streams_lossless_any_latency": cap["max_streams_lossless"],
        "p95_latency_ms_1_stream": by_n[1]["p95_latency_ms"],
        "p95_latency_ms_max_streams": best.get("p95_latency_ms"),
        "p95_latency_ms_max_streams_all_calls_at_once": (cap["max_streams_all_at_once"] or {}).get("p95_latency_ms"),
        "start_to_first_score_s": first,
        "rss_mb_1_stream": by_n[1]["rss_mb"],
        "rss_mb_100_streams": by_n[100]["rss_mb"],
        "rss_mb_max_streams": best.get("rss_mb"),
        "analysis_1_stream": by_n[1]["analysis"],
        "analysis_100_streams": by_n[100]["analysis"],
        "analysis_max_streams": best.get("analysis"),
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
    requested = r["analysis_requested"]
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
            "RSS at 1 / 100 / max streams (with worker processes)",
            f"{r['rss_mb_1_stream']} / {r['rss_mb_100_streams']} / {r['rss_mb_max_streams']} MB",
        ),
        (
            f"analysis at 1 / 100 / max streams ({'--analysis ' + requested if requested else 'the product chose'})",
            f"{r['analysis_1_stream']} / {r['analysis_100_streams']} / {r['analysis_max_streams']}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


if __name__ == "__main__":
    run_tool(main)
