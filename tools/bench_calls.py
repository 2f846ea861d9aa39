"""Telephony capacity, real path: ``python -m tools.bench calls [--calls N ...] [--both-tracks] [--cluster N]``.

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

With ``--cluster N`` the calls go instead to ``deploy/local-cluster.sh N``
(a broker, N analyzers with ``--own-streams-only``, HAProxy, a supervisor;
free loopback ports, its own folder) through HAProxy's calls port. One
independent client per analyzer records that analyzer's ``/ws``; their
recordings are merged and every figure is computed as for one analyzer.
Memory and CPU are summed over the analyzers' process trees; the broker's,
HAProxy's and the supervisor's CPU are reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.app.application import DASHBOARD_LINE
from tools.harness import (
    HOP_S,
    P95_TARGET_MS,
    ROOT,
    SERVER_START_TIMEOUT_S,
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


@dataclass
class Service:
    """Where the generator's calls go: one analyzer (:func:`one_analyzer`) or a cluster (:func:`local_cluster`)."""

    mode: str  # "1 analyzer" or "cluster of N"
    target: str  # the generator's --target
    ports: list[int]  # each analyzer's dashboard port: its /ws shows its own calls
    analyzers: list[int]  # each analyzer's pid: memory and CPU are summed over their process trees
    analysis: str  # an analyzer's "analysis: KIND (N workers)" line
    others: dict[str, int] = field(default_factory=dict)  # a cluster's broker, HAProxy and supervisor (CPU apart)


@contextlib.asynccontextmanager
async def one_analyzer(calls: int, analyzer_args=()):
    """``run_stream.py --serve`` on a port the OS picks, stopped on exit."""
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
    draining = None
    try:
        port = analysis = None
        while port is None or analysis is None:  # it prints its analysis line right after its dashboard's
            line = (await asyncio.wait_for(analyzer.stderr.readline(), 120)).decode(errors="replace")
            if not line:
                raise BenchError("the analyzer exited before it listened")
            found = DASHBOARD_LINE.search(line)
            port = int(found.group(2)) if found else port
            analysis = line if ANALYSIS_LINE.search(line) else analysis
        draining = asyncio.create_task(analyzer.stderr.read())  # keep its pipe drained
        yield Service("1 analyzer", f"ws://127.0.0.1:{port}/twilio", [port], [analyzer.pid], analysis)
    finally:
        if analyzer.returncode is None:
            analyzer.terminate()
        await analyzer.wait()
        if draining is not None:
            await draining


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive loopback ports free now, below the ephemeral range."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        try:
            for port in range(base, base + count):
                socket.create_server(("127.0.0.1", port)).close()
        except OSError:
            continue
        return base
    raise BenchError(f"no {count} consecutive free loopback ports")


@contextlib.asynccontextmanager
async def local_cluster(n: int, calls: int, analyzer_args=()):
    """``deploy/local-cluster.sh n`` (broker, n analyzers, HAProxy, supervisor) on free loopback ports with
    its own folder; stopped (SIGTERM to its process group) and the folder removed on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        base = free_port_block(4 + 2 * n)  # calls, AudioSocket, supervisor, broker; n analyzers; n AudioSockets
        ports = {
            "CALLS_PORT": base,
            "AUDIOSOCKET_PORT": base + 1,
            "DASHBOARD_PORT": base + 2,
            "MQTT_PORT": base + 3,
            "FIRST_ANALYZER_PORT": base + 4,
            "FIRST_AUDIOSOCKET_PORT": base + 4 + n,
            "MAX_PER_ADDRESS": calls + 10,  # every call comes from this machine's address
        }
        env = os.environ | {k: str(v) for k, v in ports.items()} | {"CLUSTER_DIR": folder}
        script = await asyncio.create_subprocess_exec(
            "deploy/local-cluster.sh",
            str(n),
            "--max-calls",
            str(calls + 10),
            "--client-queue",
            "100000",
            *analyzer_args,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, with everything it starts
        )
        draining = None
        try:
            said = ""
            while "cluster ready" not in said:
                try:
                    line = await asyncio.wait_for(script.stderr.readline(), SERVER_START_TIMEOUT_S)
                except TimeoutError:
                    line = b""
                if not line:
                    raise BenchError(f"the {n}-analyzer cluster did not start: {said[-1000:]}")
                said += line.decode(errors="replace")
            draining = asyncio.create_task(script.stderr.read())
            pid = {p.stem: int(p.read_text()) for p in Path(folder).glob("*.pid")}
            analysis = ANALYSIS_LINE.search(Path(folder, "analyzer-1.log").read_text(errors="replace"))
            yield Service(
                f"cluster of {n}",
                f"ws://127.0.0.1:{ports['CALLS_PORT']}/twilio",
                [ports["FIRST_ANALYZER_PORT"] + k for k in range(n)],
                [pid[f"analyzer-{k + 1}"] for k in range(n)],
                analysis.group(0) if analysis else "",
                {name: pid[name] for name in ("broker", "haproxy", "supervisor")},
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(script.pid, signal.SIGTERM)  # the script stops its children and waits for them
            try:
                await asyncio.wait_for(script.wait(), 60)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(script.pid, signal.SIGKILL)
                await script.wait()
            if draining is not None:
                await draining


def merge_recordings(recordings: list[dict]) -> dict:
    """The recordings of several dashboard clients (one per analyzer, each seeing only its own calls) as one.

    Scores in arrival order (a stream's own stay in order: it is on one
    analyzer); statuses, frames, messages and CPU summed; ``seconds`` the
    longest, so ``cpu_s / seconds`` is about the clients' cores together.
    """
    return {
        "scores": sorted((row for r in recordings for row in r["scores"]), key=lambda row: row[3]),
        "statuses": {stream: s for r in recordings for stream, s in r["statuses"].items()},
        **{key: sum(r[key] for r in recordings) for key in ("frames", "messages", "parse_s", "cpu_s")},
        "seconds": max(r["seconds"] for r in recordings),
        "extensions": sorted({e for r in recordings for e in r["extensions"]}),
    }


def service_cpu_s(service: Service) -> dict[str, float]:
    """CPU seconds so far: the analyzers' process trees summed, and each of a cluster's other processes."""
    trees = {name: tree_cpu_seconds(pid) for name, pid in service.others.items()}
    return {"analyzers": sum(tree_cpu_seconds(pid) for pid in service.analyzers), **trees}


def service_memory_mb(service: Service) -> tuple[float, float]:
    """(RSS, PSS) in MB of the analyzers' process trees, summed."""
    rss, pss = zip(*(tree_memory_mb(pid) for pid in service.analyzers))
    return round(sum(rss), 1), round(sum(pss), 1)


async def _run(
    calls: int, seconds: float, both: bool, ramp_s: float, speech: Path, analyzer_args=(), cluster: int = 0
) -> dict:
    """One run of ``calls`` calls against one analyzer, or a cluster of ``cluster`` analyzers; the
    generator's and the clients' records go to a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        starting = local_cluster(cluster, calls, analyzer_args) if cluster else one_analyzer(calls, analyzer_args)
        async with starting as service:
            return await _measure(Path(tmp), service, calls, seconds, both, ramp_s, speech, analyzer_args)


async def _measure(
    tmp: Path, service: Service, calls: int, seconds: float, both: bool, ramp_s: float, speech: Path, analyzer_args=()
) -> dict:
    report, sends_file = tmp / "loadgen.json", tmp / "sends.npz"
    recorded_files = [tmp / f"client-{k + 1}.json" for k in range(len(service.ports))]
    cpu_before = service_cpu_s(service)
    clients = []
    try:
        # One dashboard client per analyzer, each its own process, connected before any call starts
        # (no history replayed).
        for port, recorded_file in zip(service.ports, recorded_files):
            clients.append(await start_dashboard_client(port, recorded_file))
        generator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.loadgen",
            "twilio",
            str(speech),
            "--target",
            service.target,
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
        # The analyzers' peak memory (with their workers) while the calls ran, sampled: each call
        # hangs up when its audio ends.
        rss = pss = 0.0
        while not generating.done():
            now_rss, now_pss = await asyncio.to_thread(service_memory_mb, service)
            rss, pss = max(rss, now_rss), max(pss, now_pss)
            await asyncio.wait([generating], timeout=1.0)
        await asyncio.sleep(3.0)  # the last windows and final statuses reach the clients
        cpu_after = service_cpu_s(service)
        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
        hubs = []
        for port in service.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as response:
                hubs.append(json.loads(response.read())["hub"])
        out, err = generating.result()
        for client in clients:
            client.stdin.close()  # the client writes what it recorded and exits
        for client, recorded_file in zip(clients, recorded_files):
            if await asyncio.wait_for(client.wait(), 60) != 0 or not recorded_file.exists():
                raise BenchError("the dashboard client failed")
    finally:
        for client in clients:
            if client.returncode is None:
                client.kill()
                await client.wait()
    analysis = ANALYSIS_LINE.search(service.analysis)
    if generator.returncode not in (0, 1) or not report.exists() or not sends_file.exists():
        raise BenchError(f"the load generator failed: {err.decode()[-300:]}")
    gen = json.loads(report.read_text())
    recordings = [json.loads(f.read_text()) for f in recorded_files]
    recorded = merge_recordings(recordings)
    hub = {key: sum(h.get(key, 0) for h in hubs) for key in ("dropped", "bridge_dropped", "call_errors")}
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
    elapsed, analyzer_cpu = seconds + ramp_s + 3.0, cpu.pop("analyzers")
    return {
        "calls": calls,
        "mode": service.mode,
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
        "calls_per_analyzer": [len({row[0] for row in r["scores"]}) for r in recordings],
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
        "rss_mb": rss,  # peak while the calls ran, summed over the analyzers and their worker processes
        "pss_mb": pss,
        "analyzer_cpu_s": round(analyzer_cpu, 2),  # every analyzer's process tree
        "analyzer_cpu_cores": round(analyzer_cpu / elapsed, 2),
        # A cluster's broker, HAProxy and supervisor (with its workers), each on its own.
        "cluster_cpu_cores": {name: round(s / elapsed, 3) for name, s in cpu.items()},
    }


def format_table(runs: list[dict]) -> str:
    """One row per call count; the independent client's lag (each stream's first 5 s left out) first."""

    def cell(summary: dict | None, keys=("p50", "p95", "p99", "max")) -> str:
        return " / ".join(str(summary[k]) for k in keys) if summary else "-"

    header = (
        "service",
        "calls",
        "sustained",
        "lossless",
        "CLIENT LAG ms p50/p95/p99/max",
        "send->client ms p50/p95/p99/max",
        "tick->client ms p95/max",
        "cut->message ms p95",
        "scores / lost",
        "client CPU",
        "analyzers CPU / PSS",
        "broker / HAProxy / supervisor CPU",
    )
    rows = [header]
    for r in runs:
        others = r["cluster_cpu_cores"]
        rows.append(
            (
                r["mode"],
                f"{r['calls']} ({r['tracks']})",
                "yes" if r["sustained"] else "no",
                "yes" if r["lossless"] else "no",
                cell(r["client_lag_ms"]),
                cell(r["send_to_client_ms"]),
                cell(r["tick_to_client_ms"], ("p95", "max")),
                str(r["window_cut_to_message_ms_p50_p95"][1]),
                f"{r['scores_received']} / {r['missing_windows']}",
                f"{r['client_cpu_cores']} cores",
                f"{r['analyzer_cpu_cores']} cores / {r['pss_mb']:.0f} MB",
                " / ".join(str(others[k]) for k in ("broker", "haproxy", "supervisor")) if others else "-",
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
        f"both CLIENT LAG and send->client <= {P95_TARGET_MS:g} ms. service: one run_stream.py --serve, or "
        "deploy/local-cluster.sh N (the calls through HAProxy; one client per analyzer, their recordings merged). "
        "analyzers CPU / PSS: every analyzer with its worker processes, summed (cores over the run; peak PSS); "
        "a cluster's broker, HAProxy and supervisor apart. The generator, the clients and everything else share "
        "this machine's cores."
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
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="run the calls through deploy/local-cluster.sh N (N analyzers behind HAProxy) instead of one analyzer",
    )
    parser.add_argument("--loop-seconds", type=float, default=30.0, help="length of the event-loop cost run")
    args = parser.parse_args(argv)
    if args.cluster < 0:
        parser.error("--cluster N needs N >= 1 analyzers")
    if args.seconds <= SETTLE_S:
        parser.error(f"--seconds must exceed {SETTLE_S:g}: the headline leaves out each call's first {SETTLE_S:g} s")
    results = {"per_message": message_cost_us(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        sf.write(speech, speech_like(max(args.seconds, 30.0), seed=5), SPEECH_RATE)
        results["per_message"] |= loop_cost(max(args.calls), args.loop_seconds, speech)
        print(json.dumps(results["per_message"]), flush=True)
        for n in args.calls:
            run = asyncio.run(
                _run(n, args.seconds, args.both_tracks, args.ramp, speech, args.analyzer_arg, args.cluster)
            )
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    sustained = [run["calls"] for run in results["runs"] if run["sustained"]]
    results["max_calls_sustained"] = max(sustained, default=0)
    tracks = "both tracks" if args.both_tracks else "the inbound track"
    service = f"a cluster of {args.cluster} analyzers" if args.cluster else "1 analyzer"
    print(format_table(results["runs"]))
    print(
        f"most calls sustained ({service}; {tracks}; nothing lost, client and send->client p95 <= "
        f"{P95_TARGET_MS:g} ms; of {' '.join(map(str, args.calls))}): {results['max_calls_sustained']}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_tool(main)
