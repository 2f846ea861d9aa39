"""Analysis in worker processes, so the event loop and the analysis do not share one interpreter lock.

With hundreds of calls the event loop parses tens of thousands of media
messages a second; in one process it and the analysis threads take turns on
the GIL and latency grows (figures in docs/architecture.md). Here the
sources stay in the main process and write their rings into shared memory
(``AudioRing.share``); each worker process attaches to its streams' rings and
runs an ordinary :class:`~streamer.workers.thread.AnalysisWorker` over them,
and its messages come back over a pipe.

:class:`ProcessWorker` is the main process's side of the
:class:`~streamer.workers.base.Worker` interface. A stream stays on one
process; its analysis state (windows, speaker adaptation, rolling scores,
alert state) lives there, and the main process keeps the figures a status
shows (the source's ``AnalysisFigures``, as last reported).

The pipe, one message per item:

- main → worker: ``("add", StreamSpec)``, ``("stop", seconds)``
- worker → main: ``("ready",)`` or ``("failed", text)`` once, then
  ``("messages", [dict, ...])`` after each turn and
  ``("report", {stream: figures}, [retired stream, ...], step figures)``
  once a second.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamer.analysis.analyzer import AnalysisSettings, StreamAnalyzer
from streamer.core.errors import error_text
from streamer.core.histogram import LatencyHistogram
from streamer.sources.base import AnalysisFigures, Source
from streamer.sources.ring import AudioRing
from streamer.workers.base import analysed_status, safe_emit
from streamer.workers.thread import AnalysisWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSpec:
    """What a worker process needs to analyse a stream whose ring the main process writes."""

    stream_id: str
    channels: list[str]
    rate: int
    ring: tuple[str, int, int]  # shared block name, capacity, channels
    transient: bool
    read_block_s: float

    @classmethod
    def of(cls, source: Source) -> StreamSpec:
        ring = source.ring
        name = ring.share()
        return cls(
            source.stream_id,
            list(source.channels),
            source.rate,
            (name, ring.capacity, ring.channels),
            source.transient,
            source.read_block_s,
        )


class StepFigures:
    """A worker process's step counters, as reported; what a dead process counted stays counted."""

    def __init__(self) -> None:
        self.max_adaptation = 0.0
        self.errors = self.windows = 0
        self.latency = LatencyHistogram()
        self._past = (0, 0, *self.latency.snapshot())  # errors, windows, latency counts and sum of the dead

    def update(self, figures: dict) -> None:
        errors, windows, counts, total = self._past
        self.errors, self.windows = errors + figures["errors"], windows + figures["windows"]
        now_counts, now_total = figures["latency"]
        self.latency.load([a + b for a, b in zip(counts, now_counts)], total + now_total)
        self.max_adaptation = figures["max_adaptation"]

    def carry_over(self) -> None:
        """The process died: its successor counts from zero, on top of what it counted."""
        self._past = (self.errors, self.windows, *self.latency.snapshot())


@dataclass(frozen=True)
class WorkerOptions:
    model_dir: Path
    settings: AnalysisSettings
    alerts: object | None  # an AlertEngine (each process keeps the state of its own streams)
    status_every_s: float
    log_level: str


class ProcessWorker:
    """One analysis worker process, seen from the main process.

    Parameters
    ----------
    options : WorkerOptions
    emit : callable
        Receives every message the process sends (on this side's receiving
        thread; must not block: the loop bridge).
    """

    START_TIMEOUT_S = 120.0

    def __init__(self, options: WorkerOptions, emit: Callable[[dict], None], step: StepFigures | None = None) -> None:
        self.options = options
        self.emit = emit
        self.step = step or StepFigures()
        context = multiprocessing.get_context("spawn")  # no fork: the main process has threads
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=worker_process_main, args=(child_end, options), name="analysis-process", daemon=True
        )
        self._child_end = child_end
        self._sources: dict[str, Source] = {}
        self._lock = threading.Lock()  # the sources: added on the loop, removed on the receiver
        self._send_lock = threading.Lock()
        self._receiver = threading.Thread(target=self._receive, name="analysis-process-receiver", daemon=True)
        self._ready = threading.Event()
        self._pending: list[StreamSpec] = []  # added before the process was ready
        self.failure: str | None = None
        self.started_at: float | None = None
        self.stopping = False

    # -- the AnalysisWorker face --

    @property
    def sources(self) -> list[Source]:
        with self._lock:
            return list(self._sources.values())

    def add(self, source: Source) -> None:
        """Hand a source (nothing written to it yet) to the process; its ring moves to shared memory.

        Raises MemoryError (one line) when shared memory is full.
        """
        spec = StreamSpec.of(source)
        with self._lock:
            self._sources[source.stream_id] = source
            if not self._ready.is_set():  # the process reads the pipe once its model is loaded
                self._pending.append(spec)
                return
        self._send(("add", spec))

    def start(self) -> None:
        self._process.start()
        self._child_end.close()  # the child has its own; EOF then means the child is gone
        self._receiver.start()
        self.started_at = time.monotonic()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the process has loaded its model; RuntimeError (one line) if it could not."""
        if not self._ready.wait(timeout):
            raise RuntimeError(f"an analysis process did not start within {timeout:.0f} s")
        if self.failure is not None:
            raise RuntimeError(f"an analysis process could not start: {self.failure}")

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the process finish the windows already captured (for at most ``timeout``), then end it."""
        self.stopping = True
        deadline = time.monotonic() + timeout
        if self._process.is_alive():
            self._send(("stop", max(0.1, timeout - 0.5)))
            self._receiver.join(timeout)  # its last messages and statuses are delivered first
            self._process.join(max(0.1, deadline - time.monotonic()))
            if self._process.is_alive():
                log.warning("an analysis process did not stop in time; terminating it")
                self._process.kill()
                self._process.join(1.0)
        for source in self.sources:
            source.ring.release()

    def replacement(self) -> ProcessWorker:
        """A new, unstarted process taking over this dead one's sources (their analysis starts afresh)."""
        self.step.carry_over()
        worker = ProcessWorker(self.options, self.emit, step=self.step)
        for source in self.sources:
            worker.add(source)
        return worker

    # -- the pipe --

    def _send(self, item: tuple) -> None:
        try:
            with self._send_lock:
                self._conn.send(item)
        except (OSError, ValueError):  # the process is gone: the supervisor replaces it with these sources
            log.debug("analysis process unreachable; %s not sent", item[0])

    def _receive(self) -> None:
        while True:
            try:
                item = self._conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._handle(item)
            except Exception:  # a bug here must not end the stream of messages
                log.exception("could not handle a message from an analysis process")
        if not self._ready.is_set():
            self.failure = self.failure or "it exited"
            self._ready.set()

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "messages":
            for message in item[1]:
                self._safe_emit(message)
        elif kind == "report":
            _, figures, retired, step = item
            self.step.update(step)
            with self._lock:
                sources = dict(self._sources)
            for stream_id, stream_figures in figures.items():
                source = sources.get(stream_id)
                if source is not None:
                    source.figures = stream_figures
                    message = analysed_status(source, self.step.max_adaptation)
                    if message is not None:
                        self._safe_emit(message)
            for stream_id in retired:
                with self._lock:
                    source = self._sources.pop(stream_id, None)
                if source is not None:
                    source.ring.release()
        elif kind == "ready":
            # Streams added before the process could read: sent now. Sent earlier, hundreds of
            # them would fill the pipe's buffer and block the sender until the model had loaded.
            with self._lock:
                pending, self._pending = self._pending, []
                self._ready.set()
            for spec in pending:
                self._send(("add", spec))
        elif kind == "failed":
            self.failure = item[1]
            self._ready.set()

    def _safe_emit(self, message: dict) -> None:
        safe_emit(self.emit, message)


# -- the worker process's side --------------------------------------------------------


class RemoteSource(Source):
    """A stream whose audio another process writes into a shared ring."""

    def __init__(self, spec: StreamSpec) -> None:
        self.stream_id = spec.stream_id
        self.ring = AudioRing.attach(*spec.ring)
        self.rate = spec.rate
        self.channels = spec.channels
        self.figures = AnalysisFigures()
        self.transient = spec.transient
        self.read_block_s = spec.read_block_s


class _ProcessSideWorker(AnalysisWorker):
    """An AnalysisWorker whose messages and figures go down the pipe in batches."""

    def __init__(self, conn, model, options: WorkerOptions) -> None:
        self._conn = conn
        self._outbox: list[dict] = []
        self._figures: dict[str, AnalysisFigures] = {}
        self._retired: list[str] = []
        super().__init__(
            model,
            self._outbox.append,
            alerts=options.alerts,
            status_every_s=options.status_every_s,
            settings=options.settings,
        )

    def _turn(self) -> int:
        cut = super()._turn()
        self._flush()
        return cut

    def _flush(self) -> None:
        if self._outbox:
            batch = self._outbox[:]
            del self._outbox[:]  # the step keeps appending to this same list
            self._send(("messages", batch))

    def _emit_status(self, source: Source) -> None:
        self._figures[source.stream_id] = source.figures

    def _retire(self, analyzer: StreamAnalyzer) -> None:
        super()._retire(analyzer)
        analyzer.source.ring.release()
        self._retired.append(analyzer.stream_id)

    def _report(self, retire: bool = True) -> None:
        super()._report(retire)
        self._flush()  # alerts cleared for retired streams come before their last status
        step = self.step
        counts = {
            "errors": step.errors,
            "windows": step.windows,
            "latency": step.latency.snapshot(),
            "max_adaptation": step.max_adaptation,
        }
        self._send(("report", self._figures, self._retired, counts))
        self._figures, self._retired = {}, []

    def _send(self, item: tuple) -> None:
        try:
            self._conn.send(item)
        except OSError:  # the main process is gone: nothing left to analyse for
            self._stop_event.set()


def worker_process_main(conn, options: WorkerOptions) -> None:
    """The worker process: load the model, then add streams and stop as the main process says."""
    # The main process decides when to stop (Ctrl-C and SIGTERM reach the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from streamer.analysis.model import EmotionModel

        model = EmotionModel(options.model_dir)
        model.warm_up()
        worker = _ProcessSideWorker(conn, model, options)
        worker.wait_ready()
    except Exception as exc:
        conn.send(("failed", error_text(exc)))
        return
    conn.send(("ready",))  # before the worker thread starts sending: one sender at a time
    worker.start()
    stop_s = 1.5
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            break
        if item[0] == "add":
            try:
                worker.add(RemoteSource(item[1]))
            except Exception as exc:
                log.error("stream %s: cannot analyse it here: %s", item[1].stream_id, error_text(exc))
        elif item[0] == "stop":
            stop_s = item[1]
            break
    worker.stop(stop_s)
    conn.close()
