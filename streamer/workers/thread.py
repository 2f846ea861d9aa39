"""The analysis worker as a thread: a ``ScoringStep`` per turn over its streams, uploads in between, statuses.

The worker owns its streams' analysis: ``add(source)`` makes the source's
:class:`StreamAnalyzer`, which lives and goes with the worker's list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from streamer.analysis.analyzer import AnalysisSettings, StreamAnalyzer
from streamer.analysis.step import ScoringStep
from streamer.analysis.uploads import UploadScheduler
from streamer.core.features import FeatureStats
from streamer.sources.base import Source
from streamer.workers.base import analysed_status, safe_emit

log = logging.getLogger(__name__)


class AnalysisWorker(threading.Thread):
    """Runs ``ScoringStep`` turns over its sources, serves uploads, emits statuses.

    Parameters
    ----------
    model, emit, alerts, vad, max_batch
        As for :class:`ScoringStep` (ignored when ``step`` is given).
    settings : AnalysisSettings
        How its streams are analysed.
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
        settings: AnalysisSettings | None = None,
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
        self.settings = settings or AnalysisSettings()
        self._analyzers: list[StreamAnalyzer] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self.uploads.wake = self._wake.set
        self._last_status = 0.0
        self.started_at: float | None = None

    def replacement(self) -> AnalysisWorker:
        """A new, unstarted worker taking over this one's step, sources and uploads (this one died)."""
        worker = AnalysisWorker(
            self.model,
            self.emit,
            self.poll_s,
            status_every_s=self.status_every_s,
            settings=self.settings,
            step=self.step,
            uploads=self.uploads,
        )
        worker._analyzers = self.analyzers  # the streams go on where they were
        return worker

    def add(self, source: Source) -> None:
        analyzer = StreamAnalyzer.for_source(source, self.model.config, self.settings)
        with self._lock:
            self._analyzers.append(analyzer)

    def _retire(self, analyzer: StreamAnalyzer) -> None:
        """A finished call leaves: its state (windows, adaptation, rolling scores, alerts) goes with it."""
        with self._lock:
            self._analyzers.remove(analyzer)
        source = analyzer.source
        if self.step.alerts is not None:
            for event in self.step.alerts.forget(source.stream_id, source.ring.written / source.rate):
                self._safe_emit(event)

    @property
    def analyzers(self) -> list[StreamAnalyzer]:
        with self._lock:
            return list(self._analyzers)

    @property
    def sources(self) -> list[Source]:
        return [analyzer.source for analyzer in self.analyzers]

    def wait_ready(self, timeout: float = 0.0) -> None:
        """Its model is loaded when it is made; load its VAD now too."""
        self.step.prepare()

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
            return self.step.turn(self.analyzers)
        except Exception:  # a fault outside any one batch: count it, pause, go on
            self.step.errors += 1
            log.exception("an analysis turn failed (%d failures so far); going on", self.step.errors)
            self._stop_event.wait(self.TURN_ERROR_PAUSE_S)
            return 0

    def _report(self, retire: bool = True) -> None:
        """Every source's status; finished calls leave, their final status the last message of theirs."""
        for analyzer in self.analyzers:
            source = analyzer.source
            source.figures = analyzer.figures()
            if retire and source.transient and source.finished:
                self._retire(analyzer)  # alerts still raised are cleared first
            self._emit_status(source)

    def _emit_status(self, source: Source) -> None:
        message = analysed_status(source, self.step.max_adaptation)
        if message is not None:
            self._safe_emit(message)

    def _safe_emit(self, message: dict) -> None:
        safe_emit(self.emit, message)
