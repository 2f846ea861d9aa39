"""The Worker interface: what the application and the supervisor need from an analysis worker.

A worker owns the analysis of the streams it is given: one
:class:`~streamer.analysis.analyzer.StreamAnalyzer` per source, its VAD,
model and alert state. A stream stays on one worker. Two implementations:
a thread (``streamer.workers.thread``) and a process
(``streamer.workers.process``); ``streamer.workers.pool`` picks one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from streamer.core.histogram import LatencyHistogram
from streamer.sources.base import Source

log = logging.getLogger(__name__)


class StepCounters(Protocol):
    """A worker's counters, across its streams."""

    errors: int
    windows: int
    latency: LatencyHistogram
    max_adaptation: float


class Worker(Protocol):
    step: StepCounters
    started_at: float | None  # monotonic; None until started
    stopping: bool

    @property
    def sources(self) -> list[Source]: ...

    def add(self, source: Source) -> None:
        """Analyse ``source`` from now on (nothing written to it yet, or a replacement's)."""

    def start(self) -> None: ...

    def wait_ready(self, timeout: float) -> None:
        """Block until the worker can analyse; RuntimeError (one line) if it cannot."""

    def is_alive(self) -> bool: ...

    def stop(self, timeout: float) -> None:
        """Finish the windows already captured (for at most ``timeout``), then end."""

    def replacement(self) -> Worker:
        """A new, unstarted worker taking over this dead one's sources."""


def analysed_status(source: Source, max_adaptation: float) -> dict | None:
    """A source's status message with its analysis's figures; None (logged) if it has none."""
    try:
        message = source.status()
    except Exception:
        log.exception("stream %s: no status", source.stream_id)
        return None
    # What "fully adapted" is, so a dashboard can tell a channel still calibrating.
    message.setdefault("adaptation", max_adaptation)
    message["errors"] = source.figures.errors
    if source.figures.last_error is not None:
        message["last_error"] = source.figures.last_error
    return message


def safe_emit(emit: Callable[[dict], None], message: dict) -> None:
    """Hand ``message`` on; a failing receiver is logged, never raised into the analysis."""
    try:
        emit(message)
    except Exception:
        log.exception("could not deliver a message")
