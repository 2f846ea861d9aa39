"""The supervisor's MQTT subscriber: every analyzer's messages (or some queues'), validated, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import aiomqtt

from streamer.core.backoff import Backoff
from streamer.core.messages import validate_message
from streamer.outputs.mqtt.broker import MAX_BACKOFF_S, Broker, client_id

log = logging.getLogger(__name__)


MAX_QUEUED_INCOMING = 10_000  # messages aiomqtt holds for the subscriber; beyond, dropped and counted


class SubscriberStats:
    """Invalid messages the subscriber dropped, with a warning per stream at most once a minute;
    and messages aiomqtt dropped because its bounded queue was full."""

    LOG_EVERY_S = 60.0

    def __init__(self) -> None:
        self.invalid = 0
        self.queue_full = 0
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def drop(self, stream: str, topic: str, reason: str) -> None:
        self.invalid += 1
        now = time.monotonic()
        last = self._last_log.get(stream)
        if last is not None and now - last < self.LOG_EVERY_S:
            self._unlogged[stream] = self._unlogged.get(stream, 0) + 1
            return
        if len(self._last_log) > 10_000:  # forged stream ids cannot grow this without bound
            self._last_log.clear()
            self._unlogged.clear()
        self._last_log[stream] = now
        more = self._unlogged.pop(stream, 0)
        log.warning(
            "dashboard: dropped an invalid message on %s: %s%s",
            topic[:200],
            reason,
            f" (and {more} more from this stream in the last minute)" if more else "",
        )


class _QueueFullCounter(logging.Filter):
    """Counts aiomqtt's "queue is full" warnings and lets one through per minute."""

    def __init__(self, stats: SubscriberStats) -> None:
        super().__init__()
        self.stats = stats
        self._last = -SubscriberStats.LOG_EVERY_S

    def filter(self, record: logging.LogRecord) -> bool:
        if "queue is full" not in record.getMessage():
            return True
        self.stats.queue_full += 1
        now = time.monotonic()
        if now - self._last < SubscriberStats.LOG_EVERY_S:
            return False
        self._last = now
        return True


class Topic(NamedTuple):
    """What an MQTT topic says about its message."""

    queue: str | None  # None: the layout before queues (an analyzer not yet upgraded)
    stream: str
    channel: str | None  # None: a status
    kind: str


def topic_parts(prefix: str, topic: str) -> Topic:
    """The parts of a topic in either layout, told apart by their number of levels after the prefix.

    ``<prefix>/<queue>/<stream>/status`` and ``<prefix>/<queue>/<stream>/<channel>/scores|alert``;
    before queues ``<prefix>/<stream>/status`` and ``<prefix>/<stream>/<channel>/scores|alert``.
    Raises ValueError for anything else.
    """
    rest = topic[len(prefix) + 1 :].split("/") if topic.startswith(prefix + "/") else []
    kind = rest[-1] if rest else ""
    if kind == "status" and len(rest) == 3:
        return Topic(rest[0], rest[1], None, kind)
    if kind == "status" and len(rest) == 2:
        return Topic(None, rest[0], None, kind)
    if kind in ("scores", "alert") and len(rest) == 4:
        return Topic(rest[0], rest[1], rest[2], kind)
    if kind in ("scores", "alert") and len(rest) == 3:
        return Topic(None, rest[0], rest[1], kind)
    raise ValueError("unexpected topic")


def topic_filters(prefix: str, queues: Sequence[str] = ()) -> list[tuple[str, int]]:
    """(filter, QoS) to subscribe to: these ``queues`` only, or (none given) every queue and the old layout.

    Without queues the old layout's filters come first: Mosquitto sends each
    filter's retained messages as it is subscribed, so an analyzer's new
    retained status arrives after a stale copy in the old layout and wins.
    The layouts' filters are disjoint (their topics differ in depth), so no
    message arrives twice.
    """
    filters = [] if queues else [(f"{prefix}/+/+/scores", 0), (f"{prefix}/+/+/alert", 1), (f"{prefix}/+/status", 1)]
    for queue in dict.fromkeys(queues or ["+"]):  # "+": every queue
        filters += [(f"{prefix}/{queue}/+/+/scores", 0), (f"{prefix}/{queue}/+/+/alert", 1)]
        filters.append((f"{prefix}/{queue}/+/status", 1))
    return filters


async def subscribe(
    broker: Broker,
    prefix: str,
    deliver: Callable[[dict], None],
    stop: asyncio.Event,
    stats: SubscriberStats | None = None,
    queues: Sequence[str] = (),
) -> None:
    """Feed every analyzer's valid messages from the broker to ``deliver`` until ``stop`` is set.

    With ``queues``, only those queues' streams: the broker sends nothing
    else. Without, every queue's and those of analyzers still publishing in
    the layout before queues. Invalid messages are dropped and counted in
    ``stats``; no payload ends the loop.
    """
    stats = stats if stats is not None else SubscriberStats()
    filters = topic_filters(prefix, queues)
    watched = f"queues {', '.join(dict.fromkeys(queues))} of {prefix}/" if queues else f"{prefix}/#"
    backoff = Backoff(1.0, MAX_BACKOFF_S)
    connected = False
    client_log = logging.getLogger(f"{__name__}.client")
    for old in [f for f in client_log.filters if isinstance(f, _QueueFullCounter)]:
        client_log.removeFilter(old)  # a restarted subscriber counts once
    client_log.addFilter(_QueueFullCounter(stats))
    while not stop.is_set():
        try:
            client = broker.client(
                client_id("dashboard"), max_queued_incoming_messages=MAX_QUEUED_INCOMING, logger=client_log
            )
            async with client:
                for topic, qos in filters:
                    await client.subscribe(topic, qos=qos)
                log.warning("dashboard: subscribed to %s on %s", watched, broker)
                connected = True
                backoff.reset()
                async for message in client.messages:
                    _handle(message, prefix, deliver, stats)
        except aiomqtt.MqttError as exc:
            if connected or backoff.first:
                log.warning("dashboard: MQTT broker %s unreachable (%s); retrying with backoff", broker, exc)
            connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay())


def _handle(message: aiomqtt.Message, prefix: str, deliver: Callable[[dict], None], stats: SubscriberStats) -> None:
    topic = message.topic.value
    try:
        queue, stream, channel, kind = topic_parts(prefix, topic)
    except ValueError as exc:
        stats.drop("", topic, str(exc))
        return
    try:
        payload = message.payload
        if not payload and kind == "status":  # its retained status cleared (a call ended): nothing to show
            return
        if not isinstance(payload, bytes | bytearray | str):
            raise ValueError("payload is not text")
        valid = validate_message(payload, stream, channel, kind, queue)
        if kind == "status" and queue is not None:
            valid["queue"] = queue  # what the broker routes by, for the dashboard's queue filter
    except Exception as exc:  # whatever a payload does, the subscriber goes on
        stats.drop(stream, topic, str(exc) if isinstance(exc, ValueError) else type(exc).__name__)
        return
    try:
        deliver(valid)
    except Exception:
        log.exception("dashboard: could not deliver a message from %s", topic[:200])
