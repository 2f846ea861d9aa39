"""Undelivered alerts kept in an append-only, fsynced file, written off the event loop."""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streamer.outputs.mqtt.policy import dumps

log = logging.getLogger(__name__)


class ThreadedSpool:
    """An ``AlertSpool`` written by one background thread, in order: fsync never blocks the event loop."""

    def __init__(self, spool: AlertSpool) -> None:
        self._spool = spool
        self.pending = list(spool.pending)  # read once, before any write is queued
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-spool")
        self._failed = False

    def _submit(self, fn, *args) -> None:
        self._executor.submit(fn, *args).add_done_callback(self._check)

    def _check(self, future) -> None:
        if future.exception() is not None and not self._failed:
            self._failed = True  # once: a full disk would otherwise log every alert
            log.warning(
                "MQTT spool %s: cannot write (%s); alerts stay queued in memory", self._spool.path, future.exception()
            )

    def append(self, alert: dict) -> None:
        self._submit(self._spool.append, alert)

    def done(self) -> None:
        self._submit(self._spool.done)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class AlertSpool:
    """Undelivered alerts in an append-only JSON-lines file.

    Each alert is appended as ``{"alert": …}``; each alert that left the
    queue (delivered, or dropped when the queue was full) appends
    ``{"done": 1}``, since alerts leave in order. Every write is fsynced.
    The file is rewritten with only the pending alerts once ``compact_every``
    have left. Not thread-safe: give it one writer (``StreamPublisher`` runs
    it on a single-thread executor, off the event loop).
    """

    def __init__(self, path: Path, compact_every: int = 1000) -> None:
        if compact_every < 1:
            raise ValueError("compact_every must be at least 1")
        self.path = Path(path)
        self.compact_every = compact_every
        self.pending: deque[dict] = deque()
        self.skipped = 0  # unreadable lines at load (e.g. cut short by a crash)
        self._done = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                if "alert" in record and isinstance(record["alert"], dict):
                    self.pending.append(record["alert"])
                elif record.get("done") == 1 and self.pending:
                    self.pending.popleft()
                else:
                    raise ValueError("unknown record")
            except (ValueError, AttributeError, TypeError):
                self.skipped += 1
        if self.skipped:
            log.warning("MQTT spool %s: skipped %d unreadable lines", self.path, self.skipped)
        self._compact()  # start from a clean file

    def _write(self, text: str) -> None:
        with open(self.path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def append(self, alert: dict) -> None:
        self.pending.append(alert)
        self._write(dumps({"alert": alert}) + "\n")

    def done(self) -> None:
        """The oldest pending alert left the queue."""
        if self.pending:
            self.pending.popleft()
        self._write('{"done":1}\n')
        self._done += 1
        if self._done >= self.compact_every:
            self._compact()

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write("".join(dumps({"alert": a}) + "\n" for a in self.pending))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self._done = 0
