"""Telephony capacity through the real path: ``python -m tools.bench calls [--calls N ...] [--both-tracks]``.

Starts ``run_stream.py --serve`` (the analyzer as deployed), a dashboard
websocket client (here), and ``python -m tools.loadgen`` (a separate
process) replaying speech as N concurrent real-time calls over real sockets.
A run is sustained when nothing is lost (every call's windows arrive; no
media gap, ring overrun, dropped message or refused connection) and the p95
latency, from the moment the generator sent the last audio of a window to
its score at the dashboard client, is within ``harness.P95_TARGET_MS``,
held for the whole run.
Also reported: memory (RSS and PSS) and CPU of the analyzer with its worker
processes, the time from a call's first audio to its first score, and the
parse cost of one media message in the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.app.application import DASHBOARD_LINE
from tools.harness import (
    HOP_S,
    P95_TARGET_MS,
    ROOT,
    SPEECH_RATE,
    BenchError,
    cpu_seconds,
    expected_windows,
    receive_scores,
    run_tool,
    speech_like,
    tree_cpu_seconds,
    tree_memory_mb,
)

TICK_S = 0.02
ANALYSIS_LINE = re.compile(r"analysis: (\w+) \((\d+) workers?\)")  # what the analyzer prints once it runs


def analyzer_hop(analyzer_args) -> float:
    """The ``--hop`` among the options passed to the analyzer (its default otherwise)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--hop", type=float, default=HOP_S)
    return parser.parse_known_args(list(analyzer_args))[0].hop


def message_cost_us(messages: int = 20000) -> dict:
    """Microseconds to parse one Twilio media message and copy its audio into the ring (no sockets)."""
    from streamer.calls.desk import CallDesk
    from streamer.calls.sessions.twilio import TwilioSession
    from tools.loadgen import Call, TwilioCall, twilio_payloads

    audio = (0.3 * np.sin(np.arange(8000 * 10) / 9)).astype(np.float32)
    frames = TwilioCall(Call("CA1", audio), twilio_payloads(audio), None, 0)
    desk = CallDesk(lambda source: None)
    session = TwilioSession(desk, lambda token: True)
    for text in frames.opening:
        session.receive(text)
    texts = [frames.media(k)[0] for k in range(messages)]
    start = time.perf_counter()
    for i, text in enumerate(texts):
        session.receive(text)
        if i % 400 == 0:
            session.source.ring.read_pos = session.source.ring.written  # a reader keeps up
    return {"twilio_media_message_us": round((time.perf_counter() - start) / messages * 1e6, 2)}


async def _run(calls: int, seconds: float, both: bool, ramp_s: float, speech: Path, analyzer_args=()) -> dict:
    from websockets.asyncio.client import connect

    analyzer = await asyncio.create_subprocess_exec(
        sys.executable,
        "run_stream.py",
        "--serve",
        "--port",
        "0",
        "--max-calls",
        str(calls + 10),
        "--client-queue",
        "100000",
        *analyzer_args,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    port = None
    while port is None:
        line = (await asyncio.wait_for(analyzer.stderr.readline(), 120)).decode()
        if not line:
            raise BenchError("the analyzer exited before it listened")
        found = DASHBOARD_LINE.search(line)
        port = int(found.group(2)) if found else None
    stderr_task = asyncio.create_task(analyzer.stderr.read())  # keep its pipe drained
    arrivals: list[tuple[str, float, float]] = []  # (call, t, arrival)
    processing: list[float] = []  # the analyzer's own: window cut -> message
    statuses: dict[str, dict] = {}
    report = Path(tempfile.mkdtemp()) / "loadgen.json"
    cpu_before = tree_cpu_seconds(analyzer.pid)

    def record(message: dict, arrival: float) -> None:
        arrivals.append((message["stream"], message["t"], arrival))
        processing.append(message["latency_ms"])

    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, max_queue=None) as ws:
            generator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tools.loadgen",
                "twilio",
                str(speech),
                "--target",
                f"ws://127.0.0.1:{port}/twilio",
                "--calls",
                str(calls),
                "--seconds",
                str(seconds),
                "--ramp",
                str(ramp_s),
                "--report",
                str(report),
                *(["--both-tracks"] if both else []),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            generating = asyncio.create_task(generator.communicate())

            async def calls_ended() -> tuple[float, float]:
                """The analyzer's peak memory (with its workers) while the calls ran, once the last windows
                and final statuses have reached the client. Sampled: each call hangs up when its audio ends."""
                rss = pss = 0.0
                while not generating.done():
                    now_rss, now_pss = await asyncio.to_thread(tree_memory_mb, analyzer.pid)
                    rss, pss = max(rss, now_rss), max(pss, now_pss)
                    await asyncio.wait([generating], timeout=1.0)
                await asyncio.sleep(3.0)
                return rss, pss

            ended = asyncio.create_task(calls_ended())
            await receive_scores(ws, ended, record, statuses)
            rss, pss = await ended
            cpu = tree_cpu_seconds(analyzer.pid) - cpu_before
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as response:
                hub = json.loads(response.read())["hub"]
            out, err = generating.result()
    finally:
        analyzer.terminate()
        await analyzer.wait()
    analysis = ANALYSIS_LINE.search((await stderr_task).decode(errors="replace"))
    if generator.returncode not in (0, 1) or not report.exists():
        raise BenchError(f"the load generator failed: {err.decode()[-300:]}")
    gen = json.loads(report.read_text())
    ticks = np.asarray(gen["ticks"])
    latencies, first_scores, counts = [], {}, {}
    for call, t, arrival in arrivals:
        start = gen["starts"].get(call)
        if start is None:
            continue
        k_end = math.ceil(round(t / TICK_S, 6)) - 1  # the chunk holding the window's last sample
        latencies.append((arrival - ticks[min(start + k_end * gen["phases"], len(ticks) - 1)]) * 1000)
        counts[call] = counts.get(call, 0) + 1
        first_scores.setdefault(call, arrival - ticks[start])
    if not latencies:
        raise BenchError(f"no score reached the dashboard in the {calls}-call run")
    # Each call sends whole 20 ms media messages (tools.loadgen), then hangs up: its last
    # partial window is scored too.
    call_s = int(seconds / TICK_S) * TICK_S
    due = expected_windows(call_s, hop_s=analyzer_hop(analyzer_args), ends=True)
    per_call = [counts.get(call, 0) for call in gen["starts"]]
    missing = sum(max(0, due - n) for n in per_call)
    gaps = sum(s.get("gaps", 0) for s in statuses.values())
    overruns = sum(s.get("overruns", 0) for s in statuses.values())
    dropped = hub["dropped"] + hub.get("bridge_dropped", 0)
    lossless = (
        gen["failed"] == 0 and missing == 0 and gaps == 0 and overruns == 0 and dropped == 0 and not hub["call_errors"]
    )
    p95 = float(np.percentile(latencies, 95))
    first = np.asarray(list(first_scores.values()))
    return {
        "calls": calls,
        "tracks": "both" if both else "inbound",
        "seconds": seconds,
        "analysis": analysis.group(1) if analysis else None,
        "workers": int(analysis.group(2)) if analysis else None,
        "sustained": bool(lossless and p95 <= P95_TARGET_MS),
        "lossless": bool(lossless),
        "scores_received": len(latencies),
        "windows_expected_per_call": due,
        "windows_per_call_min_max": [min(per_call), max(per_call)],
        "missing_windows": missing,
        "media_gaps": gaps,
        "overruns": overruns,
        "dropped_messages": dropped,
        "refused_or_failed_calls": gen["failed"] + hub["call_errors"],
        "generator_tick_late_ms_p95": gen["tick_late_ms_p95"],
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_latency_ms": round(p95, 1),
        "window_cut_to_message_ms_p50_p95": [round(float(np.percentile(processing, q)), 1) for q in (50, 95)],
        "first_score_s_p50_max": [round(float(np.median(first)), 2), round(float(first.max()), 2)],
        "rss_mb": rss,  # peak while the calls ran, summed over the analyzer and its worker processes
        "pss_mb": pss,
        "analyzer_cpu_s": round(cpu, 2),
        "analyzer_cpu_cores": round(cpu / (seconds + ramp_s + 3.0), 2),
    }


async def _serve_network_only() -> None:
    """The ingestion alone (front door, sessions, rings; no analysis), for ``loop_cost``: listens on
    a port the OS picks and prints it once connections are accepted."""
    import socket

    import uvicorn

    from streamer.calls.desk import CallDesk
    from streamer.calls.net.front_door import front_door
    from streamer.core.access import AccessConfig
    from streamer.outputs.http import create_app
    from streamer.outputs.hub import Hub

    desk = CallDesk(lambda source: None, max_calls=10_000)
    doors = front_door(desk, AccessConfig())
    config = uvicorn.Config(create_app(Hub()), http=doors, log_level="warning", lifespan="off")
    sock = socket.create_server(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)

    async def drain() -> None:  # stands in for the workers
        while True:
            for source in list(desk.calls.values()):
                source.ring.read_pos = source.ring.written
            await asyncio.sleep(0.2)

    draining = asyncio.create_task(drain())  # noqa: F841 - runs until the process ends
    await uvicorn.Server(config).serve(sockets=[sock])


def loop_cost(calls: int, seconds: float, speech: Path) -> dict:
    """CPU of the event loop per media message: the ingestion alone, loaded by the generator."""
    import subprocess

    code = "import uvloop; from tools.bench_calls import _serve_network_only as s; uvloop.run(s())"
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # listening
        generator = subprocess.Popen(
            [sys.executable, "-m", "tools.loadgen", "twilio", str(speech), "--target",
             f"ws://127.0.0.1:{port}/twilio", "--calls", str(calls), "--seconds", str(seconds), "--ramp", "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(seconds / 3)
        server_cpu, generator_cpu = cpu_seconds(server.pid), cpu_seconds(generator.pid)
        time.sleep(seconds / 3)
        server_cpu, generator_cpu = cpu_seconds(server.pid) - server_cpu, cpu_seconds(generator.pid) - generator_cpu
        if generator.wait(seconds + 60) != 0:
            raise BenchError("the load generator failed in the event-loop measurement")
    finally:
        server.terminate()
        server.wait()
    messages = calls / TICK_S * (seconds / 3)
    return {
        "calls": calls,
        "loop_us_per_media_message": round(server_cpu / messages * 1e6, 1),
        "generator_us_per_media_message": round(generator_cpu / messages * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench calls", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, nargs="+", default=[150, 200, 300, 400], help="call counts to run, in increasing order"
    )
    parser.add_argument("--both-tracks", action="store_true", help="calls send the agent's track too")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the calls start")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--analyzer-arg", action="append", default=[], help="pass this to run_stream.py")
    parser.add_argument("--loop-seconds", type=float, default=30.0, help="length of the event-loop cost run")
    args = parser.parse_args(argv)
    results = {"per_message": message_cost_us(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        sf.write(speech, speech_like(max(args.seconds, 30.0), seed=5), SPEECH_RATE)
        results["per_message"] |= loop_cost(max(args.calls), args.loop_seconds, speech)
        print(json.dumps(results["per_message"]), flush=True)
        for n in args.calls:
            run = asyncio.run(_run(n, args.seconds, args.both_tracks, args.ramp, speech, args.analyzer_arg))
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    sustained = [run["calls"] for run in results["runs"] if run["sustained"]]
    results["max_calls_sustained"] = max(sustained, default=0)
    tracks = "both tracks" if args.both_tracks else "the inbound track"
    print(f"most calls sustained ({tracks}; of {' '.join(map(str, args.calls))}): {results['max_calls_sustained']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_tool(main)
