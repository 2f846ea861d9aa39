"""The analysis thread: a ``ScoringStep`` per turn, uploads in between, statuses.

There is one worker per core, each with its own model; a stream stays on one
worker. ``emit`` receives every message and must not block (the loop bridge).
Uploaded files' windows are served between live turns by an
``UploadScheduler``, live first. A turn that fails outside any one batch (a
bug) is counted and logged and the loop goes on after a short pause; a worker
whose thread dies anyway is replaced by ``streamer.supervision``, which hands
the replacement the same step, sources and upload queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
from threadpoolctl import threadpool_limits

from streamer.features import FeatureStats
from streamer.labels import EMOTIONS
from streamer.pipeline import ScoringStep, Source

log = logging.getLogger(__name__)


def analysed_status(source: Source, max_adaptation: float) -> dict | None:
    """A source's status message with its analysis's figures; None (logged) if it has none."""
    try:
        message = source.status()
    except Exception:
        log.exception("stream %s: no status", source.stream_id)
        return None
    # What "fully adapted" is, so a dashboard can tell a channel still calibrating.
    message.setdefault("adaptation", max_adaptation)
    message["errors"] = source.analyzer.errors
    if source.analyzer.last_error is not None:
        message["last_error"] = source.analyzer.last_error
    return message


class DirectUploads:
    """Uploads' model work on the calling thread, one request at a time.

    With worker processes (``streamer.procworker``) the main process's own
    model has nothing else to do; a large upload holds the lock only for its
    own requests, and live streams are not affected (they are elsewhere).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.closed = False
        self._lock = threading.Lock()

    def predict(self, frames: np.ndarray, stats: FeatureStats | None, timeout: float = 300.0) -> np.ndarray:
        if self.closed or not self._lock.acquire(timeout=timeout):
            raise RuntimeError("the analyzer is shutting down" if self.closed else "the model stayed busy")
        try:
            return self.model.predict(frames, stats)
        finally:
            self._lock.release()

    def close(self) -> None:
        self.closed = True


class UploadScheduler:
    """Model work for uploaded files: bounded, split into small requests, served one per worker turn.

    ``predict`` (any thread) blocks until the worker has served every part;
    the queue outlives a worker thread, so a replacement serves what its
    predecessor left.
    """

    CHUNK = 32  # windows per request, so live windows never wait long

    def __init__(self, maxsize: int = 64) -> None:
        self._requests: queue.Queue[tuple[np.ndarray, FeatureStats | None, Future]] = queue.Queue(maxsize=maxsize)
        self.closed = False
        self.wake: Callable[[], None] = lambda: None  # set by the serving worker

    def predict(self, frames: np.ndarray, stats: FeatureStats | None, timeout: float = 300.0) -> np.ndarray:
        """Classify feature windows on the worker thread (blocking; call from another thread)."""
        futures = []
        for i in range(0, len(frames), self.CHUNK):
            if self.closed:
                raise RuntimeError("the analyzer is shutting down")
            part = slice(i, i + self.CHUNK)
            if stats is not None and np.ndim(stats.mean) == 2:
                part_stats = FeatureStats(stats.mean[part], stats.std[part])
            else:
                part_stats = stats
            future: Future = Future()
            self._requests.put((frames[part], part_stats, future), timeout=timeout)
            self.wake()
            futures.append(future)
        parts = [f.result(timeout) for f in futures]
        return np.concatenate(parts) if parts else np.zeros((0, len(EMOTIONS)), np.float32)

    def serve_one(self, predict: Callable[[np.ndarray, FeatureStats | None], np.ndarray]) -> bool:
        """Run one waiting request through ``predict``; False if none was waiting."""
        try:
            frames, stats, future = self._requests.get_nowait()
        except queue.Empty:
            return False
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(predict(frames, stats))
            except Exception as exc:
                future.set_exception(exc)
        return True

    def close(self) -> None:
        """Refuse new requests and fail the waiting ones (shutdown)."""
        self.closed = True
        while True:
            try:
                _, _, future = self._requests.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the analyzer is shutting down"))


class AnalysisWorker(threading.Thread):
    """Runs ``ScoringStep`` turns over its sources, serves uploads, emits statuses.

    Parameters
    ----------
    model, emit, alerts, vad, max_batch
        As for :class:`ScoringStep` (ignored when ``step`` is given).
    status_every_s : float
        How often each source's status is emitted.
    step, uploads : optional
        Shared with a worker this one replaces.
    """

    TURN_ERROR_PAUSE_S = 0.5  # after a failed turn: do not spin on a persistent fault

    def __init__(
        self,
        model,
        emit: Callable[[dict], None],
        poll_s: float = 0.02,
        max_batch: int = 256,
        status_every_s: float = 1.0,
        alerts=None,
        vad=None,
        step: ScoringStep | None = None,
        uploads: UploadScheduler | None = None,
    ) -> None:
        super().__init__(name="analysis-worker", daemon=True)
        # The workers are the parallelism (one per core); BLAS threads on top would
        # oversubscribe the cores, and OpenBLAS's spinning threads measurably raised latency.
        threadpool_limits(1, user_api="blas")
        self.model = model
        self.emit = emit
        self.step = step or ScoringStep(model, self._safe_emit, alerts=alerts, vad=vad, max_batch=max_batch)
        self.uploads = uploads or UploadScheduler()
        self.poll_s = poll_s
        self.status_every_s = status_every_s
        self._sources: list[Source] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self.uploads.wake = self._wake.set
        self._last_status = 0.0
        self.started_at: float | None = None

    def replacement(self) -> AnalysisWorker:
        """A new, unstarted worker taking over this one's step, sources and uploads (this one died)."""
        worker = AnalysisWorker(
            self.model, self.emit, self.poll_s, status_every_s=self.status_every_s, step=self.step, uploads=self.uploads
        )
        for source in self.sources:
            worker.add(source)
        return worker

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def _retire(self, source: Source) -> None:
        """A finished call leaves: its state (windows, adaptation, rolling scores, alerts) goes with it."""
        with self._lock:
            self._sources.remove(source)
        if self.step.alerts is not None:
            for event in self.step.alerts.forget(source.stream_id, source.ring.written / source.analyzer.input_rate):
                self._safe_emit(event)

    @property
    def sources(self) -> list[Source]:
        with self._lock:
            return list(self._sources)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the windows already captured (for at most ``timeout``), then end the thread."""
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def predict(self, frames: np.ndarray, stats: FeatureStats | None = None, timeout: float = 300.0) -> np.ndarray:
        """Classify feature windows on the worker thread (blocking; call from another thread).

        ``stats`` as for ``EmotionModel.predict``: ``(n_mels,)`` arrays for
        every window or one row per window. Large requests are split so live
        streams keep their latency.
        """
        return self.uploads.predict(frames, stats, timeout)

    def run(self) -> None:
        self.started_at = time.monotonic()
        while True:
            stopping = self._stop_event.is_set()
            cut = self._turn()
            served = self.uploads.serve_one(self.model.predict)
            now = time.monotonic()
            if now - self._last_status >= self.status_every_s:
                self._last_status = now
                self._report()
            if stopping:
                # Finish what was captured before the stop, then end.
                while any(source.ring.available for source in self.sources) and self._turn():
                    pass
                self._report(retire=False)
                self.uploads.close()
                return
            if not cut and not served:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _turn(self) -> int:
        try:
            return self.step.turn(self.sources)
        except Exception:  # a fault outside any one batch: count it, pause, go on
            self.step.errors += 1
            log.exception("an analysis turn failed (%d failures so far); going on", self.step.errors)
            self._stop_event.wait(self.TURN_ERROR_PAUSE_S)
            return 0

    def _report(self, retire: bool = True) -> None:
        """Every source's status; finished calls leave, their final status the last message of theirs."""
        for source in self.sources:
            if retire and source.transient and source.finished:
                self._retire(source)  # alerts still raised are cleared first
            self._emit_status(source)

    def _emit_status(self, source: Source) -> None:
        message = analysed_status(source, self.step.max_adaptation)
        if message is not None:
            self._safe_emit(message)

    def _safe_emit(self, message: dict) -> None:
        try:
            self.emit(message)
        except Exception:
            log.exception("could not deliver a message")
