"""The dashboard's websocket fan-out: history, bounded per-client queues, frames of messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


FRAME_MESSAGES = 256


def frames(texts: list[str]) -> list[str]:
    """Encoded messages joined into websocket frames (JSON arrays)."""
    return ["[" + ",".join(texts[i : i + FRAME_MESSAGES]) + "]" for i in range(0, len(texts), FRAME_MESSAGES)]


class ClientQueue:
    """Bounded queue of encoded messages; when full the oldest is dropped and counted."""

    def __init__(self, maxlen: int) -> None:
        self._items: deque[str] = deque()
        self.maxlen = maxlen
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, text: str) -> None:
        if len(self._items) >= self.maxlen:
            self._items.popleft()
            self.dropped += 1
        self._items.append(text)
        self._ready.set()

    async def get_all(self) -> list[str]:
        await self._ready.wait()
        items = list(self._items)
        self._items.clear()
        self._ready.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)


class Hub:
    """The dashboard's sink. Keeps the last ``history_s`` of scores per stream channel, the latest
    status per stream and recent alerts, and fans messages out to clients.

    Parameters
    ----------
    history_s : float
        Seconds of score history a new client receives first.
    hop_s : float
        Expected seconds between scores of one channel (sizes the history).
    client_queue : int
        Messages a client may lag behind before its oldest are dropped.
    max_streams : int
        Streams it keeps; messages of further streams are dropped and counted
        (remote analyzers on a broker must not grow it without bound).
    stream_ttl_s : float
        A stream whose last status says it ended (stopped, finished, offline)
        is forgotten this long after its last message (``expire``).
    clock : callable
        Seconds, monotonic; injected so tests need no sleeps.
    """

    ENDED = ("stopped", "finished", "offline")
    CLOSE_S = 0.5  # at shutdown, for clients to be closed

    def __init__(
        self,
        history_s: float = 300.0,
        hop_s: float = 0.5,
        client_queue: int = 2000,
        max_streams: int = 1000,
        stream_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client_queue < 1 or max_streams < 1 or not (math.isfinite(stream_ttl_s) and stream_ttl_s > 0):
            raise ValueError("client_queue and max_streams must be at least 1, stream_ttl_s positive and finite")
        self._history_len = max(1, int(history_s / hop_s))
        self._scores: dict[tuple[str, str], deque[str]] = {}
        self._status: dict[str, str] = {}
        self._ended: dict[str, bool] = {}  # stream -> its last status says it ended
        self._last_seen: dict[str, float] = {}
        self.max_streams = max_streams
        self.stream_ttl_s = stream_ttl_s
        self._clock = clock
        self.streams_refused = 0  # messages of streams beyond max_streams
        self.streams_expired = 0
        self._alerts: deque[str] = deque(maxlen=200)
        self._raised: dict[str, dict[tuple[str, str], dict]] = {}  # stream -> (channel, rule) -> raised alert
        self._clients: set[ClientQueue] = set()
        self.client_queue = client_queue
        self.dropped_total = 0  # by clients that have left, plus live ones via stats()
        self.published = 0
        self.invalid = 0  # messages not encodable as strict JSON (NaN, Infinity), dropped
        self._closing = asyncio.Event()
        self._clients_gone = asyncio.Event()  # set once closing and the last client has left
        self.extra_stats: Callable[[], dict] = dict  # e.g. the worker->loop bridge's drops

    def offer(self, message: dict) -> None:
        """Store and fan out one message; call on the event loop thread."""
        try:
            text = json.dumps(message, separators=(",", ":"), allow_nan=False)
        except (ValueError, TypeError) as exc:
            self.invalid += 1
            if self.invalid == 1 or self.invalid % 1000 == 0:
                log.warning("%d messages not valid JSON dropped (%s)", self.invalid, exc)
            return
        stream = message.get("stream")
        if stream not in self._last_seen and len(self._last_seen) >= self.max_streams:
            self.streams_refused += 1
            if self.streams_refused == 1 or self.streams_refused % 1000 == 0:
                log.warning(
                    "%d messages of streams beyond --max-streams %d dropped", self.streams_refused, self.max_streams
                )
            return
        self._last_seen[stream] = self._clock()
        kind = message.get("type")
        if kind == "scores":
            key = (message["stream"], message["channel"])
            if key not in self._scores:
                self._scores[key] = deque(maxlen=self._history_len)
            self._scores[key].append(text)
        elif kind == "status":
            self._status[message["stream"]] = text
            self._ended[message["stream"]] = message.get("state") in self.ENDED
        elif kind == "alert":
            self._alerts.append(text)
            raised = self._raised.setdefault(stream, {})
            if message.get("state") == "raised":
                raised[(message["channel"], message["rule"])] = message
            else:
                raised.pop((message["channel"], message["rule"]), None)
        self.published += 1
        for client in self._clients:
            client.put(text)
        if kind == "status" and message.get("state") == "offline":
            self._clear_alerts_of(stream)

    def _clear_alerts_of(self, stream: str) -> None:
        """Its analyzer died (MQTT Last Will): nobody will clear what it raised, so clear it here."""
        for alert in list(self._raised.pop(stream, {}).values()):
            self.offer({**alert, "state": "cleared", "score": 0.0, "note": "its analyzer went offline"})

    def expire(self) -> list[str]:
        """Forget streams that ended more than ``stream_ttl_s`` ago (their status and history)."""
        now = self._clock()
        gone = [s for s, seen in self._last_seen.items() if self._ended.get(s) and now - seen >= self.stream_ttl_s]
        for stream in gone:
            del self._last_seen[stream]
            self._status.pop(stream, None)
            self._ended.pop(stream, None)
            self._raised.pop(stream, None)
            for key in [k for k in self._scores if k[0] == stream]:
                del self._scores[key]
        self.streams_expired += len(gone)
        return gone

    def snapshot(self) -> list[str]:
        """What a new client gets first: statuses, alerts, then score history."""
        out = list(self._status.values()) + list(self._alerts)
        for history in self._scores.values():
            out.extend(history)
        return out

    def stats(self) -> dict:
        return {
            "clients": len(self._clients),
            "published": self.published,
            "dropped": self.dropped_total + sum(c.dropped for c in self._clients),
            "invalid": self.invalid,
            "streams": sorted(self._status),
            "streams_refused": self.streams_refused,
            "streams_expired": self.streams_expired,
            **self.extra_stats(),
        }

    def statuses(self) -> list[dict]:
        return [json.loads(s) for s in self._status.values()]

    async def serve(self, send_text, receive) -> None:
        """Serve one client until it disconnects or the hub closes.

        ``send_text(str)`` and ``receive()`` are the websocket's coroutines;
        ``receive`` must raise or return a disconnect when the client leaves.
        """
        client = ClientQueue(self.client_queue)
        history = self.snapshot()
        self._clients.add(client)  # no await between snapshot and add: no gap, no duplicate

        async def pump() -> None:
            # History goes first and whole (it is bounded by the hub); live messages
            # published meanwhile wait in the client's bounded queue.
            for frame in frames(history):
                await send_text(frame)
            while True:
                for frame in frames(await client.get_all()):
                    await send_text(frame)

        async def drain_incoming() -> None:
            while True:
                message = await receive()
                if message.get("type") == "websocket.disconnect":
                    return

        tasks = [
            asyncio.create_task(pump()),
            asyncio.create_task(drain_incoming()),
            asyncio.create_task(self._closing.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._clients.discard(client)
            if self._closing.is_set() and not self._clients:
                self._clients_gone.set()
            self.dropped_total += client.dropped
            if client.dropped:
                log.info("a dashboard client left after %d dropped messages", client.dropped)

    def end_serving(self) -> None:
        """Make every ``serve`` return so the server can close the sockets (shutdown)."""
        self._closing.set()

    async def close(self) -> None:
        """The Sink's close: ``end_serving``, then wait (at most ``CLOSE_S``) for every client's ``serve`` to end."""
        self.end_serving()
        if self._clients:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._clients_gone.wait(), self.CLOSE_S)
