"""MQTT adapter (aiomqtt): publish scores, alerts and status; subscribe for the aggregating dashboard.

Topics (``prefix`` defaults to ``emotion``):

- ``<prefix>/<stream>/<channel>/scores``: rolling scores, QoS 0, at most once per interval.
- ``<prefix>/<stream>/<channel>/alert``: alert events, QoS 1, not retained.
- ``<prefix>/<stream>/status``: retained; ``online`` on connect, and a Last Will
  marks the stream ``offline`` if the analyzer dies.

One connection per stream, because an MQTT Last Will covers one topic.
Reconnection is an explicit loop with backoff around aiomqtt's
``async with Client(...)``; nothing here ever blocks the audio path:
``offer`` only stores the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiomqtt

from streamer.messages import mqtt_topic, validate_message

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class Broker:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    def client(self, identifier: str, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
        tls = aiomqtt.TLSParameters(ca_certs=self.ca_file) if self.tls else None
        return aiomqtt.Client(
            self.hostname,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            will=will,
            tls_params=tls,
            keepalive=15,
            timeout=10,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.hostname}:{self.port}"


def parse_broker_url(url: str, ca_file: str | None = None) -> Broker:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://…``; raises ValueError with a readable message."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got '{url}'")
    if not parts.hostname:
        raise ValueError(f"broker URL has no host: '{url}'")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL has an invalid port: '{url}'") from None
    tls = parts.scheme == "mqtts"
    return Broker(
        hostname=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
        ca_file=ca_file,
    )


def _dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


class StreamPublisher:
    """Publishes one stream's messages; keeps alerts while the broker is away.

    Parameters
    ----------
    interval_s : float
        Scores are published at most this often per channel (the latest wins).
    max_alerts : int
        Alerts kept while disconnected; beyond that the oldest are dropped and counted.
    spool_dir : Path, optional
        If given, undelivered alerts are also kept in ``<spool_dir>/<stream>.jsonl``
        and survive a restart of the analyzer.
    """

    def __init__(
        self,
        broker: Broker,
        prefix: str,
        stream_id: str,
        interval_s: float = 1.0,
        max_alerts: int = 1000,
        spool_dir: Path | None = None,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.stream_id = stream_id
        self.interval_s = interval_s
        self.connected = False
        self.alerts_dropped = 0
        self.invalid_dropped = 0  # our own messages that are not valid JSON (NaN or Infinity)
        self.published = 0
        self._alerts: deque[dict] = deque()
        self._max_alerts = max_alerts
        self._latest_scores: dict[str, dict] = {}
        self._status: dict = {"type": "status", "stream": stream_id, "state": "running", "source": ""}
        self._status_dirty = True
        self._wake = asyncio.Event()
        self._closing = False
        self._spool = Path(spool_dir) / f"{stream_id}.jsonl" if spool_dir else None
        if self._spool and self._spool.exists():
            for line in self._spool.read_text().splitlines():
                try:
                    self._alerts.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("MQTT spool %s: skipping an unreadable line", self._spool)

    # -- called on the event loop for every message of this stream ---------------
    def offer(self, message: dict) -> None:
        try:
            _dumps(message)
        except (ValueError, TypeError) as exc:
            self.invalid_dropped += 1
            if self.invalid_dropped == 1 or self.invalid_dropped % 1000 == 0:
                log.warning(
                    "stream %s: %d unpublishable messages dropped (%s)", self.stream_id, self.invalid_dropped, exc
                )
            return
        kind = message["type"]
        if kind == "scores":
            self._latest_scores[message["channel"]] = message
        elif kind == "alert":
            if len(self._alerts) >= self._max_alerts:
                self._alerts.popleft()
                self.alerts_dropped += 1
                log.warning("stream %s: MQTT alert queue full, dropped the oldest alert", self.stream_id)
            self._alerts.append(message)
            self._write_spool()
            self._wake.set()
        elif kind == "status":
            if message.get("state") != self._status.get("state"):
                self._status_dirty = True
                self._wake.set()
            self._status = message

    def _write_spool(self) -> None:
        if self._spool is None:
            return
        tmp = self._spool.with_suffix(".tmp")
        tmp.write_text("".join(_dumps(a) + "\n" for a in self._alerts))
        tmp.replace(self._spool)

    def _status_payload(self, online: bool, will: bool = False) -> str:
        """Retained status; the Last Will's says ``offline`` (the analyzer died)."""
        status = {**self._status, "online": online}
        if will:
            status["state"] = "offline"
        return _dumps(status)

    # -- the connection loop --------------------------------------------------------
    async def run(self) -> None:
        status_topic = f"{self.prefix}/{self.stream_id}/status"
        backoff = 1.0
        while not self._closing:
            will = aiomqtt.Will(status_topic, self._status_payload(online=False, will=True), qos=1, retain=True)
            try:
                async with self.broker.client(f"emotion-{self.stream_id}-{os.getpid()}", will) as client:
                    if not self.connected:
                        log.warning("stream %s: connected to MQTT broker %s", self.stream_id, self.broker)
                    self.connected, backoff = True, 1.0
                    self._status_dirty = True
                    await self._publish_loop(client, status_topic)
                    return
            except aiomqtt.MqttError as exc:
                if self.connected or backoff == 1.0:
                    log.warning(
                        "stream %s: MQTT broker %s unreachable (%s); retrying with backoff",
                        self.stream_id,
                        self.broker,
                        exc,
                    )
                self.connected = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_closing(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _wait_closing(self) -> None:
        while not self._closing:
            self._wake.clear()
            await self._wake.wait()

    async def _publish_loop(self, client: aiomqtt.Client, status_topic: str) -> None:
        last_scores = 0.0
        while True:
            while self._alerts:  # oldest first; removed only once the broker has it (QoS 1)
                alert = self._alerts[0]
                await client.publish(mqtt_topic(self.prefix, alert), _dumps(alert), qos=1, retain=False)
                self._alerts.popleft()
                self._write_spool()
                self.published += 1
            if self._status_dirty or self._closing:
                self._status_dirty = False
                await client.publish(status_topic, self._status_payload(not self._closing), qos=1, retain=True)
            now = time.monotonic()
            if now - last_scores >= self.interval_s and self._latest_scores:
                last_scores = now
                latest, self._latest_scores = self._latest_scores, {}
                for message in latest.values():
                    await client.publish(mqtt_topic(self.prefix, message), _dumps(message), qos=0)
                    self.published += 1
            if self._closing:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def close(self, task: asyncio.Task, timeout: float = 3.0) -> None:
        """Deliver what is queued and mark the stream offline, if the broker is there."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            if self._alerts:
                log.warning("stream %s: %d alerts not delivered to MQTT", self.stream_id, len(self._alerts))


class Publishers:
    """One :class:`StreamPublisher` per stream, created on first message."""

    def __init__(self, factory: Callable[[str], StreamPublisher]) -> None:
        self._factory = factory
        self._by_stream: dict[str, tuple[StreamPublisher, asyncio.Task]] = {}

    def offer(self, message: dict) -> None:
        stream = message["stream"]
        if stream not in self._by_stream:
            publisher = self._factory(stream)
            self._by_stream[stream] = (publisher, asyncio.get_running_loop().create_task(publisher.run()))
        self._by_stream[stream][0].offer(message)

    async def close(self) -> None:
        await asyncio.gather(*(p.close(t) for p, t in self._by_stream.values()))


class SubscriberStats:
    """Invalid messages the subscriber dropped, with a warning per stream at most once a minute."""

    LOG_EVERY_S = 60.0

    def __init__(self) -> None:
        self.invalid = 0
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


def topic_parts(prefix: str, topic: str) -> tuple[str, str | None, str]:
    """(stream, channel or None, kind) of ``<prefix>/<stream>[/<channel>]/<kind>``."""
    rest = topic[len(prefix) + 1 :].split("/") if topic.startswith(prefix + "/") else []
    if len(rest) == 2 and rest[1] == "status":
        return rest[0], None, "status"
    if len(rest) == 3 and rest[2] in ("scores", "alert"):
        return rest[0], rest[1], rest[2]
    raise ValueError("unexpected topic")


async def subscribe(
    broker: Broker,
    prefix: str,
    deliver: Callable[[dict], None],
    stop: asyncio.Event,
    stats: SubscriberStats | None = None,
) -> None:
    """Feed every analyzer's valid messages from the broker to ``deliver`` until ``stop`` is set.

    Invalid messages are dropped and counted in ``stats``; no payload ends the loop.
    """
    stats = stats if stats is not None else SubscriberStats()
    filters = [(f"{prefix}/+/+/scores", 0), (f"{prefix}/+/+/alert", 1), (f"{prefix}/+/status", 1)]
    backoff = 1.0
    connected = False
    while not stop.is_set():
        try:
            async with broker.client(f"emotion-dashboard-{os.getpid()}") as client:
                for topic, qos in filters:
                    await client.subscribe(topic, qos=qos)
                log.warning("dashboard: subscribed to %s/# on %s", prefix, broker)
                connected, backoff = True, 1.0
                async for message in client.messages:
                    _handle(message, prefix, deliver, stats)
        except aiomqtt.MqttError as exc:
            if connected or backoff == 1.0:
                log.warning("dashboard: MQTT broker %s unreachable (%s); retrying with backoff", broker, exc)
            connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def _handle(message: aiomqtt.Message, prefix: str, deliver: Callable[[dict], None], stats: SubscriberStats) -> None:
    topic = message.topic.value
    try:
        stream, channel, kind = topic_parts(prefix, topic)
    except ValueError as exc:
        stats.drop("", topic, str(exc))
        return
    try:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray | str):
            raise ValueError("payload is not text")
        valid = validate_message(payload, stream, channel, kind)
    except Exception as exc:  # whatever a payload does, the subscriber goes on
        stats.drop(stream, topic, str(exc) if isinstance(exc, ValueError) else type(exc).__name__)
        return
    try:
        deliver(valid)
    except Exception:
        log.exception("dashboard: could not deliver a message from %s", topic[:200])
