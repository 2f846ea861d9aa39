"""Telephony capacity through the real path: ``python -m tools.bench calls [--calls N ...] [--both-tracks]``.

Starts ``run_stream.py --serve`` (the analyzer as deployed), an
independent dashboard websocket client (its own process:
``tools.harness.record_dashboard``), and ``python -m tools.loadgen`` (a
separate process) replaying speech as N concurrent real-time calls over real
sockets. The headline is the lag the client sees: per stream, arrival minus
audio time (``t``), zeroed at that stream's first score, each stream's first
5 s of audio left out; beside it the lag from when the generator sent the
window's last audio, from when its clock was due to send it, and the
analyzer's own window cut -> message (see :func:`call_lags`).
A run is sustained when nothing is lost (every call's windows arrive; no
media gap, ring overrun, dropped message or refused connection) and the p95
of both the client's lag and the lag from the generator's send is within
``harness.P95_TARGET_MS``: zeroed at a stream's first score, the client's
figure cannot see what that first score waited (a slow start makes every
later lag look negative), the send figure can.
Also reported: memory (RSS and PSS) and CPU of the analyzer with its worker
processes, the client's own CPU, the time from a call's first audio to its
first score, and the parse cost of one media message in the event loop.
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
    SETTLE_S,
    SPEECH_RATE,
    BenchError,
    cpu_seconds,
    expected_windows,
    lag_summary,
    run_tool,
    speech_like,
    start_dashboard_client,
    tree_cpu_seconds,
    tree_memory_mb,
    zeroed_lags_ms,
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


def call_lags(scores: list[list], gen: dict, sends: dict[str, np.ndarray], settle_s: float = SETTLE_S) -> dict:
    """The lag figures of one run, in ms, each as p50 / p95 / p99 / max.

    Parameters
    ----------
    scores : list
        The dashboard client's ``[stream, channel, t, arrival, latency_ms]``
        rows, in arrival order (:func:`tools.harness.record_dashboard`).
    gen : dict
        The generator's ``--report``: tick due times, phases, each call's first tick.
    sends : dict
        Call id -> wall time each of its media messages began to go out (``--sends``).
    settle_s : float
        The headline figures leave out scores of each stream's first
        ``settle_s`` of audio (``t <= settle_s``); ``*_incl_first_5s`` keep them.

    Returns
    -------
    dict
        ``client_lag_ms`` (the headline): per stream, arrival minus audio
        time, zeroed at that stream's first score (:func:`zeroed_lags_ms`);
        ``client_lag_ms_stream_max``: over the streams, each one's largest
        such lag; ``send_to_client_ms``: arrival minus the moment the
        generator began sending the 20 ms message holding the window's last
        sample; ``tick_to_client_ms`` (the bench's earlier figure): arrival
        minus the moment the generator's clock was due to send that message
        (its own lateness counts against the analyzer); and ``counts`` (scores
        per call) and ``first_scores_s`` (a call's first tick to its first score).
    """
    ticks = np.asarray(gen["ticks"])
    kept = [row for row in scores if gen["starts"].get(row[0]) is not None]  # calls the generator started
    streams = [row[0] for row in kept]
    t = np.array([row[2] for row in kept], dtype=float)
    arrival = np.array([row[3] for row in kept], dtype=float)
    start = np.array([gen["starts"][s] for s in streams], dtype=int)
    chunk = np.ceil(np.round(t / TICK_S, 6)).astype(int) - 1  # the 20 ms message holding the window's last sample
    due = ticks[np.minimum(start + chunk * gen["phases"], len(ticks) - 1)]
    sent = np.array([sends[s][min(k, len(sends[s]) - 1)] for s, k in zip(streams, chunk)], dtype=float)
    zeroed = zeroed_lags_ms(streams, t, arrival)
    from_send, from_tick = (arrival - sent) * 1000, (arrival - due) * 1000
    late = t > settle_s
    worst: dict[str, float] = {}
    counts: dict[str, int] = {}
    first_scores: dict[str, float] = {}
    for i, stream in enumerate(streams):
        counts[stream] = counts.get(stream, 0) + 1
        first_scores.setdefault(stream, arrival[i] - ticks[start[i]])
        if late[i]:
            worst[stream] = max(worst.get(stream, -math.inf), zeroed[i])
    sent_known = np.isfinite(sent)
    return {
        "client_lag_ms": lag_summary(zeroed[late]),
        "client_lag_ms_incl_first_5s": lag_summary(zeroed),
        "client_lag_ms_stream_max": lag_summary(list(worst.values())),
        "send_to_client_ms": lag_summary(from_send[late & sent_known]),
        "send_to_client_ms_incl_first_5s": lag_summary(from_send[sent_known]),
        "tick_to_client_ms": lag_summary(from_tick[late]),
        "tick_to_client_ms_incl_first_5s": lag_summary(from_tick),
        "counts": counts,
        "first_scores_s": first_scores,
    }


async def _run(calls: int, seconds: float, both: bool, ramp_s: float, speech: Path, analyzer_args=()) -> dict:
    """One run of ``calls`` calls; the generator's and the client's records go to a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        return await _measure(Path(tmp), calls, seconds, both, ramp_s, speech, analyzer_args)


async def _measure(
    tmp: Path, calls: int, seconds: float, both: bool, ramp_s: float, speech: Path, analyzer_args=()
) -> dict:
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
    report, sends_file, recorded_file = tmp / "loadgen.json", tmp / "sends.npz", tmp / "client.json"
    cpu_before = tree_cpu_seconds(analyzer.pid)
    client = None
    try:
        # The dashboard client is its own process, connected before any call starts (no history replayed).
        client = await start_dashboard_client(port, recorded_file)
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
            "--sends",
            str(sends_file),
            *(["--both-tracks"] if both else []),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        generating = asyncio.create_task(generator.communicate())
        # The analyzer's peak memory (with its workers) while the calls ran, sampled: each call
        # hangs up when its audio ends.
        rss = pss = 0.0
        while not generating.done():
            now_rss, now_pss = await asyncio.to_thread(tree_memory_mb, analyzer.pid)
            rss, pss = max(rss, now_rss), max(pss, now_pss)
            await asyncio.wait([generating], timeout=1.0)
        await asyncio.sleep(3.0)  # the last windows and final statuses reach the client
        cpu = tree_cpu_seconds(analyzer.pid) - cpu_before
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as response:
            hub = json.loads(response.read())["hub"]
        out, err = generating.result()
        client.stdin.close()  # the client writes what it recorded and exits
        if await asyncio.wait_for(client.wait(), 60) != 0 or not recorded_file.exists():
            raise BenchError("the dashboard client failed")
    finally:
        if client is not None and client.returncode is None:
            client.kill()
            await client.wait()
        analyzer.terminate()
        await analyzer.wait()
    analysis = ANALYSIS_LINE.search((await stderr_task).decode(errors="replace"))
    if generator.returncode not in (0, 1) or not report.exists() or not sends_file.exists():
        raise BenchError(f"the load generator failed: {err.decode()[-300:]}")
    gen = json.loads(report.read_text())
    recorded = json.loads(recorded_file.read_text())
    with np.load(sends_file) as saved:
        sends = dict(zip(saved["calls"].tolist(), saved["sent_at"]))
    lags = call_lags(recorded["scores"], gen, sends)
    counts, statuses = lags.pop("counts"), recorded["statuses"]
    if not counts:
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
    within = {  # each figure's p95, first 5 s left out, against the target
        key: lags[figure] is not None and lags[figure]["p95"] <= P95_TARGET_MS
        for key, figure in (("client", "client_lag_ms"), ("send", "send_to_client_ms"))
    }
    processing = [row[4] for row in recorded["scores"]]  # the analyzer's own: window cut -> message
    first = np.asarray(list(lags.pop("first_scores_s").values()))
    return {
        "calls": calls,
        "tracks": "both" if both else "inbound",
        "seconds": seconds,
        "analysis": analysis.group(1) if analysis else None,
        "workers": int(analysis.group(2)) if analysis else None,
        "sustained": bool(lossless and all(within.values())),
        "lossless": bool(lossless),
        "p95_within_target": within,
        **lags,
        "scores_received": sum(counts.values()),
        "client_streams": len(counts),
        "client_frames": recorded["frames"],
        "client_messages": recorded["messages"],
        "client_cpu_cores": round(recorded["cpu_s"] / max(recorded["seconds"], 1e-9), 3),
        "client_parse_us_per_message": round(recorded["parse_s"] / max(recorded["messages"], 1) * 1e6, 2),
        "client_extensions": recorded["extensions"],
        "windows_expected_per_call": due,
        "windows_per_call_min_max": [min(per_call), max(per_call)],
        "missing_windows": missing,
        "media_gaps": gaps,
        "overruns": overruns,
        "dropped_messages": dropped,
        "refused_or_failed_calls": gen["failed"] + hub["call_errors"],
        "generator_tick_late_ms_p95": gen["tick_late_ms_p95"],
        "window_cut_to_message_ms_p50_p95": [round(float(np.percentile(processing, q)), 1) for q in (50, 95)],
        "first_score_s_p50_max": [round(float(np.median(first)), 2), round(float(first.max()), 2)],
        "rss_mb": rss,  # peak while the calls ran, summed over the analyzer and its worker processes
        "pss_mb": pss,
        "analyzer_cpu_s": round(cpu, 2),
        "analyzer_cpu_cores": round(cpu / (seconds + ramp_s + 3.0), 2),
    }


def format_table(runs: list[dict]) -> str:
    """One row per call count; the independent client's lag (each stream's first 5 s left out) first."""

    def cell(summary: dict | None, keys=("p50", "p95", "p99", "max")) -> str:
        return " / ".join(str(summary[k]) for k in keys) if summary else "-"

    header = (
        "calls",
        "sustained",
        "lossless",
        "CLIENT LAG ms p50/p95/p99/max",
        "send->client ms p50/p95/p99/max",
        "tick->client ms p95/max",
        "cut->message ms p95",
        "scores / lost",
        "client CPU",
    )
    rows = [header]
    for r in runs:
        rows.append(
            (
                f"{r['calls']} ({r['tracks']})",
                "yes" if r["sustained"] else "no",
                "yes" if r["lossless"] else "no",
                cell(r["client_lag_ms"]),
                cell(r["send_to_client_ms"]),
                cell(r["tick_to_client_ms"], ("p95", "max")),
                str(r["window_cut_to_message_ms_p50_p95"][1]),
                f"{r['scores_received']} / {r['missing_windows']}",
                f"{r['client_cpu_cores']} cores",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    legend = (
        f"CLIENT LAG (the headline): at an independent dashboard client, per stream, arrival minus audio time "
        f"zeroed at the stream's first score; scores of each stream's first {SETTLE_S:g} s of audio left out, as "
        "in the other lags. send->client: from when the generator began sending the window's last 20 ms. "
        "tick->client: from when its clock was due to send it (the bench's earlier figure). cut->message: the "
        "analyzer's own latency_ms. lost: windows that never reached the client. A negative client lag: the "
        "score came sooner after its audio than the stream's first did. sustained: nothing lost, and the p95 of "
        f"both CLIENT LAG and send->client <= {P95_TARGET_MS:g} ms."
    )
    return "\n".join([*lines, legend])


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
    if args.seconds <= SETTLE_S:
        parser.error(f"--seconds must exceed {SETTLE_S:g}: the headline leaves out each call's first {SETTLE_S:g} s")
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
    print(format_table(results["runs"]))
    print(
        f"most calls sustained ({tracks}; nothing lost, client and send->client p95 <= {P95_TARGET_MS:g} ms; "
        f"of {' '.join(map(str, args.calls))}): {results['max_calls_sustained']}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_tool(main)
