"""What the benchmark and load tools share: the test signal, expected window counts, process figures, clients.

``tools.bench``, ``tools.bench_calls`` and ``tools.soak`` import this module
and not each other, so a tool's private helpers stay private and the count
of windows a run must deliver is computed one way everywhere.

The capacity server (``python -m tools.bench --serve-streams N``) runs the
product's own :class:`~streamer.app.application.Application` with simulated
sound cards; :func:`start_stream_server` spawns it and speaks its protocol,
one JSON object a line:

- server → client: ``{"ready": true, "port": P}`` once the dashboard listens;
- client → server: ``go`` (a line on stdin) once its websocket is connected;
- server → client: ``{"start_wall": T}`` (the simulated cards' clock starts),
  then ``{"report": {...}}`` every ``--report-every`` seconds, and once the
  analyzer has stopped its final counters (see ``tools.bench.server_counters``).

The independent dashboard client (``python -m tools.harness dashboard-client
URL OUT``, started by :func:`start_dashboard_client`) runs in its own process:
it prints ``connected`` once its websocket is open, records the wall-clock
arrival of every scores message until its stdin closes, then writes them to
OUT (JSON, see :func:`record_dashboard`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from streamer.app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
P95_TARGET_MS = 250.0  # a count is sustained only within this latency, window end to client
HOP_S = Settings.hop  # the product's default --hop
TICK_S = 0.05  # simulated sound cards deliver 50 ms blocks, as a device callback does
SPEECH_RATE = 16000  # the sample rate of speech_like
SERVER_START_TIMEOUT_S = 300.0  # model loads in the server and its worker processes
SETTLE_S = 5.0  # headline lags leave out each stream's first 5 s of audio (its start-up)


class BenchError(RuntimeError):
    """A measurement that could not be made: a tool fails rather than report a number it did not measure."""


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A test signal of ``seconds`` at ``SPEECH_RATE``.

    Parameters
    ----------
    seconds : float
    seed : int
        Picks the clips and pauses, so runs are repeatable.

    Returns
    -------
    numpy.ndarray
        float32. RAVDESS clips with pauses between them when the corpus is
        at ``$EMOTION_DATA_DIR`` (real speech exercises VAD and adaptation
        as calls do); otherwise voiced synthetic bursts, so the tools also
        run on a machine without the data.
    """
    rng = np.random.default_rng(seed)
    data = os.environ.get("EMOTION_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    clips = sorted(Path(data).glob("ravdess/Actor_0*/*.flac"))[:40]
    rate = SPEECH_RATE
    if clips:
        from streamer.analysis.decode import load_audio

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


# -- windows ----------------------------------------------------------------------------


@functools.cache
def model_window_s() -> float:
    """The shipped model's window length in seconds (its ``config.json``; the analyzer cuts these)."""
    from streamer.analysis.model import EmotionModel

    return float(EmotionModel().config.window_s)


def expected_windows(seconds: float, window_s: float | None = None, hop_s: float = HOP_S, ends: bool = False) -> int:
    """Windows the analyzer scores for a stream of ``seconds`` of audio.

    Windows end at ``window_s``, then every ``hop_s`` (``SlidingWindows``).

    Parameters
    ----------
    seconds : float
        Audio delivered to the stream.
    window_s : float, optional
        Window length; default the shipped model's (:func:`model_window_s`).
    hop_s : float
        Seconds between window ends (``--hop``).
    ends : bool
        The stream ends (a call hangs up, a file runs out): audio after the
        last whole window is then scored as one final window. A device
        stream that is stopped does not end.

    Returns
    -------
    int
    """
    window_s = model_window_s() if window_s is None else window_s
    eps = 1e-6  # well under one sample
    if seconds < window_s - eps:
        return int(ends and seconds > 0)
    whole = math.floor((seconds - window_s) / hop_s + eps) + 1
    unscored = seconds - (window_s + (whole - 1) * hop_s) > eps
    return whole + int(ends and unscored)


# -- the simulated streams of the capacity server ---------------------------------------


def stream_name(index: int) -> str:
    """The stream id of simulated stream ``index`` (its index is read back from scores messages)."""
    return f"s{index:04d}"


def start_offset_s(index: int, ramp_s: float) -> float:
    """When simulated stream ``index`` starts, after the cards' clock starts.

    Real calls start at random times, so their windows end at different
    moments and their first windows (computed whole, not one hop at a time)
    do not all come at once. Streams start one tick apart, cycling through
    ``ramp_s``: window ends spread evenly over the hop once ``ramp_s >= hop``.
    ``ramp_s = 0`` starts every stream at once: the worst case, where every
    stream's windows end in the same 50 ms block.
    """
    ticks = int(round(ramp_s / TICK_S))
    return (index % ticks) * TICK_S if ticks else 0.0


def stream_ticks(seconds: float) -> int:
    """Blocks a simulated stream running ``seconds`` receives (its audio is this many ``TICK_S``)."""
    return int(round(seconds / TICK_S))


async def start_stream_server(
    n_streams: int,
    seconds: float,
    ramp_s: float,
    report_s: float = 0.0,
    analysis: str | None = None,
    hop_s: float = HOP_S,
) -> tuple[asyncio.subprocess.Process, dict]:
    """Spawn the capacity server with ``n_streams`` simulated streams, and wait until it listens.

    Parameters
    ----------
    analysis : {"threads", "processes"}, optional
        Passed as the product's ``--analysis``; None lets the product choose.

    Returns
    -------
    process : asyncio.subprocess.Process
    ready : dict
        Its ready line: ``port``, the model's ``window_s``, ``hop_s``, and
        the analysis it runs (``analysis``, ``workers``).

    Raises
    ------
    BenchError
        The server exited or did not listen within ``SERVER_START_TIMEOUT_S``
        (with the end of its stderr).
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the process's stderr, read on failure
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.bench",
        "--serve-streams",
        str(n_streams),
        "--seconds",
        str(seconds),
        "--ramp",
        str(ramp_s),
        "--report-every",
        str(report_s),
        "--hop",
        str(hop_s),
        *(["--analysis", analysis] if analysis else []),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        limit=2**20,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), SERVER_START_TIMEOUT_S)
    except TimeoutError:
        line = b""
    if not line:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.seek(0)
        tail = log.read().decode(errors="replace")[-1500:]
        raise BenchError(f"the {n_streams}-stream capacity server did not start: {tail}")
    return proc, json.loads(line)


async def receive_scores(
    ws,
    done: asyncio.Future,
    record: Callable[[dict, float], None],
    statuses: dict[str, dict] | None = None,
) -> None:
    """Read a dashboard websocket until ``done`` completes or the server closes it.

    Parameters
    ----------
    ws
        A connected ``websockets`` client.
    done : asyncio.Future
    record : callable
        ``record(message, arrival)`` for each scores message; ``arrival`` is
        ``time.time()`` when its frame came in.
    statuses : dict, optional
        Filled with each stream's latest status message.
    """
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
                record(message, now)
            elif message["type"] == "status" and statuses is not None:
                statuses[message["stream"]] = message


def run_tool(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code; a :class:`BenchError` (a figure that could not be measured) is one line, exit 1."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


async def watch_capacity_run(proc, ready: dict, ramp_s: float, record, until) -> object:
    """Be the dashboard client of a capacity server from ``start_stream_server``, then stop the server.

    Connects to its ``/ws``, starts its clock, and calls ``record(message,
    latency_ms, since_start_s)`` for each scores message (latency from the
    end of the window's audio at the simulated card, ``since_start_s`` from
    the clock's start) until ``until()`` (reading the server's stdout)
    returns; returns what it returned.
    """
    from websockets.asyncio.client import connect

    start_wall = 0.0

    def on_scores(message: dict, arrival: float) -> None:
        start = start_wall + start_offset_s(int(message["stream"][1:]), ramp_s)  # stream_name's index
        record(message, (arrival - (start + message["t"])) * 1000, arrival - start_wall)

    try:
        async with connect(f"ws://127.0.0.1:{ready['port']}/ws", max_size=None, max_queue=None) as ws:
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            start_wall = json.loads(await proc.stdout.readline())["start_wall"]
            reading = asyncio.create_task(until())
            await receive_scores(ws, reading, on_scores)
        return await reading
    finally:
        if proc.returncode is None:
            proc.stdin.close()
            proc.terminate()
        await proc.wait()


# -- an independent dashboard client ---------------------------------------------------


def lag_summary(values_ms: Sequence[float] | np.ndarray) -> dict[str, float] | None:
    """p50, p95, p99 and max of lags in ms (0.1 ms), or None when there are none."""
    values = np.asarray(values_ms, dtype=float)
    if not values.size:
        return None
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {k: round(float(v), 1) for k, v in (("p50", p50), ("p95", p95), ("p99", p99), ("max", values.max()))}


def zeroed_lags_ms(streams: Sequence[str], t: Sequence[float], arrival: Sequence[float]) -> np.ndarray:
    """The lag of each score as a client without the sender's clock sees it, in ms.

    Per stream: arrival minus audio time, zeroed at that stream's first
    score to arrive, ``(arrival - first arrival) - (t - first t)``. A stream
    that falls behind real time shows a growing lag; what the first score
    itself waited is not seen (0 by construction). Scores in arrival order.
    """
    first: dict[str, float] = {}
    out = np.empty(len(streams))
    for i, (stream, ti, arrived) in enumerate(zip(streams, t, arrival)):
        offset = first.setdefault(stream, arrived - ti)
        out[i] = (arrived - ti - offset) * 1000
    return out


async def record_dashboard(url: str, out: Path) -> None:
    """Be a dashboard client of ``url`` (``ws://…/ws``) until stdin closes or the server closes; write OUT.

    OUT (JSON): ``scores`` as ``[stream, channel, t, arrival, latency_ms]``
    rows in arrival order (``arrival``: ``time.time()`` when the frame was
    handed over by the websocket library), the latest ``statuses`` per
    stream, ``frames`` and ``messages`` received, the websocket
    ``extensions`` negotiated (permessage-deflate, as a browser's), and this
    process's own cost: ``cpu_s`` and ``seconds`` (wall) while connected,
    ``parse_s`` (CPU) spent decoding and recording frames.
    """
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    scores: list[list] = []
    statuses: dict[str, dict] = {}
    counts = {"frames": 0, "messages": 0}
    parse_s = 0.0

    async def read(ws) -> None:
        nonlocal parse_s
        async for text in ws:
            arrival = time.time()
            began = time.process_time()  # CPU, not wall: on a busy machine wall time counts preemption
            batch = json.loads(text)  # ~10 µs a message; all of it, as the dashboard page parses all of it
            for m in batch:
                kind = m["type"]
                if kind == "scores":
                    scores.append([m["stream"], m["channel"], m["t"], arrival, m["latency_ms"]])
                elif kind == "status":
                    statuses[m["stream"]] = m
            counts["frames"] += 1
            counts["messages"] += len(batch)
            parse_s += time.process_time() - began

    async with connect(url, max_size=None, max_queue=None) as ws:  # unbounded: never push back on the hub
        cpu0, wall0 = time.process_time(), time.perf_counter()
        print("connected", flush=True)
        reader = asyncio.create_task(read(ws))
        stop = asyncio.create_task(stdin.read())  # EOF: the bench is done (or gone)
        await asyncio.wait([reader, stop], return_when=asyncio.FIRST_COMPLETED)
        for task in (reader, stop):
            task.cancel()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        extensions = [e.name for e in ws.protocol.extensions]
    result = {"scores": scores, "statuses": statuses, **counts, "extensions": extensions}
    result |= {"parse_s": parse_s, "cpu_s": cpu, "seconds": wall}
    out.write_text(json.dumps(result))


async def start_dashboard_client(port: int, out: Path) -> asyncio.subprocess.Process:
    """Spawn :func:`record_dashboard` on the analyzer's ``/ws`` at ``port``; return once it is connected.

    Close its stdin to make it write ``out`` and exit. In its own process so
    that neither the analyzer's event loop nor the generator's shares its
    work, and its CPU can be measured on its own.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.harness",
        "dashboard-client",
        f"ws://127.0.0.1:{port}/ws",
        str(out),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
    except TimeoutError:
        line = b""
    if line.strip() != b"connected":
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise BenchError("the dashboard client did not connect")
    return proc


# -- a process and its children ---------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (an analyzer and its worker processes); [] once it has exited."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    pids = [pid]
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that just ended
            continue
        pids += [p for child in children for p in process_tree(int(child))]
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process; 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its descendants (those alive now)."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """Memory of ``pid`` and its descendants, as (RSS summed, PSS summed) in MB.

    RSS counts pages the processes share (libraries, shared audio rings)
    once per process; PSS splits them between the processes, so its sum is
    what the tree holds.
    """
    rss = pss = 0.0
    for p in process_tree(pid):
        try:
            lines = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in lines:
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) / 1024
    return round(rss, 1), round(pss, 1)


if __name__ == "__main__":  # python -m tools.harness dashboard-client URL OUT
    if sys.argv[1:2] != ["dashboard-client"] or len(sys.argv) != 4:
        sys.exit("usage: python -m tools.harness dashboard-client ws://HOST:PORT/ws OUT.json")
    import uvloop

    uvloop.run(record_dashboard(sys.argv[2], Path(sys.argv[3])))
