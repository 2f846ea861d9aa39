"""The bounded hand-off of messages from the analysis threads to the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class LoopBridge:
    """Bounded hand-off of messages from worker threads to the event loop.

    ``put`` (any thread) appends and, if no drain is pending, schedules one;
    the loop then delivers everything queued in one callback. When the loop
    falls behind, the oldest messages are dropped and counted instead of
    piling up as an unbounded queue of loop callbacks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[dict], None], maxlen: int = 20_000) -> None:
        self._loop = loop
        self._deliver = deliver
        self._items: deque[dict] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self.maxlen = maxlen
        self.dropped = 0

    def put(self, message: dict) -> None:
        with self._lock:
            if len(self._items) >= self.maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(message)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def flush(self) -> None:
        """Deliver what is queued now (on the loop: at shutdown, once the workers have stopped)."""
        self._drain()

    def _drain(self) -> None:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._scheduled = False
        for message in items:
            try:
                self._deliver(message)
            except Exception:
                log.exception("could not deliver a message")
