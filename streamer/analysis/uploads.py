"""Uploads' model work: served between live turns by the thread worker, or directly."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from streamer.core.features import FeatureStats
from streamer.core.labels import EMOTIONS


class DirectUploads:
    """Uploads' model work on the calling thread, one request at a time.

    With worker processes (``streamer.workers.process``) the main process's own
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
