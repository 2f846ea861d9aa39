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
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiomqtt

from streamer.backoff import Backoff
from streamer.messages import mqtt_topic, validate_message
from streamer.mqtt_policy import AlertSpool, SendingPolicy, dumps
from streamer.supervision import keep_running

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0
PASSWORD_ENV = "EMOTION_MQTT_PASSWORD"
MAX_QUEUED_INCOMING = 10_000  # messages aiomqtt holds for the subscriber; beyond, dropped and counted


@dataclass(frozen=True)
class Broker:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs or error messages
    tls: bool = False
    ca_file: str | None = None

    def client(self, identifier: str, will: aiomqtt.Will | None = None, **options) -> aiomqtt.Client:
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
            **options,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.hostname}:{self.port}"


def client_id(role: str) -> str:
    """Unique per connection: host and pid alone collide across containers (pid 1 everywhere)."""
    return f"emotion-{role}-{secrets.token_hex(4)}"[:64]


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return url.replace(netloc[0], f"{parts.username or ''}:***", 1) if len(netloc) == 2 else url


def load_mqtt_password(password_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The broker password from ``--mqtt-password-file`` or ``$EMOTION_MQTT_PASSWORD`` (file first)."""
    if password_file is not None:
        try:
            return Path(password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"--mqtt-password-file: cannot read '{password_file}' ({exc.strerror})") from None
    return env.get(PASSWORD_ENV) or None


def parse_broker_url(url: str, ca_file: str | None = None, password: str | None = None) -> Broker:
    """``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://…``; ``password`` (from a file or the
    environment) replaces one in the URL. Raises ValueError with a readable, redacted message."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got '{shown}'")
    if not parts.hostname:
        raise ValueError(f"broker URL has no host: '{shown}'")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL has an invalid port: '{shown}'") from None
    tls = parts.scheme == "mqtts"
    return Broker(
        hostname=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=password if password is not None else (unquote(parts.password) if parts.password else None),
        tls=tls,
        ca_file=ca_file,
    )


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


class StreamPublisher:
    """Publishes one stream's messages through a :class:`SendingPolicy`; reconnects with backoff.

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
        self.connected = False
        self._spool = ThreadedSpool(AlertSpool(Path(spool_dir) / f"{stream_id}.jsonl")) if spool_dir else None
        self.policy = SendingPolicy(stream_id, interval_s, max_alerts, self._spool)
        self._wake = asyncio.Event()
        self._closing = False
        self.ended = False  # a finished call: its retained status is cleared once the final one is out

    def offer(self, message: dict) -> None:
        """Called on the event loop for every message of this stream; never waits."""
        if self.policy.offer(message):
            self._wake.set()

    async def run(self) -> None:
        status_topic = f"{self.prefix}/{self.stream_id}/status"
        backoff = Backoff(1.0, MAX_BACKOFF_S)
        while not self._closing:
            will = aiomqtt.Will(status_topic, self.policy.status_payload(online=False, will=True), qos=1, retain=True)
            try:
                async with self.broker.client(client_id(self.stream_id), will) as client:
                    if not self.connected:
                        log.warning("stream %s: connected to MQTT broker %s", self.stream_id, self.broker)
                    self.connected = True
                    backoff.reset()
                    self.policy.connected()
                    await self._publish_loop(client, status_topic)
                    return
            except aiomqtt.MqttError as exc:
                if self.connected or backoff.first:
                    log.warning(
                        "stream %s: MQTT broker %s unreachable (%s); retrying with backoff",
                        self.stream_id,
                        self.broker,
                        exc,
                    )
                self.connected = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_closing(), backoff.next_delay())

    async def _wait_closing(self) -> None:
        while not self._closing:
            self._wake.clear()
            await self._wake.wait()

    async def _publish_loop(self, client: aiomqtt.Client, status_topic: str) -> None:
        policy = self.policy
        while True:
            while (alert := policy.next_alert()) is not None:  # oldest first; removed once the broker has it
                await client.publish(mqtt_topic(self.prefix, alert), dumps(alert), qos=1, retain=False)
                policy.alert_sent()
            if policy.status_due(self._closing):
                await client.publish(status_topic, policy.status_payload(not self._closing), qos=1, retain=True)
                if self._closing and self.ended:
                    # Live dashboards got the final status; the broker need not keep every call ever made.
                    await client.publish(status_topic, b"", qos=1, retain=True)
            for message in policy.scores_due(time.monotonic()):
                await client.publish(mqtt_topic(self.prefix, message), dumps(message), qos=0)
            if self._closing:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), policy.interval_s)

    async def close(self, task: asyncio.Task, timeout: float = 1.5) -> None:
        """Deliver what is queued and mark the stream offline, if the broker is there in time."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
        if self.policy.alerts:
            log.warning("stream %s: %d alerts not delivered to MQTT", self.stream_id, len(self.policy.alerts))
        if self._spool is not None:
            await asyncio.to_thread(self._spool.close)


class Publishers:
    """One :class:`StreamPublisher` per stream, created on first message, each kept running."""

    ENDED_CLOSE_S = 10.0  # a finished call's publisher gets this long to deliver its last alerts
    _COUNTED = ("published", "alerts_dropped", "invalid_dropped")  # policy counters that stats() sums

    def __init__(self, factory: Callable[[str], StreamPublisher], restarts=None) -> None:
        self._factory = factory
        self._by_stream: dict[str, tuple[StreamPublisher, asyncio.Task]] = {}
        self._ending: dict[str, asyncio.Task] = {}
        self._ended_counts = dict.fromkeys(self._COUNTED, 0)  # of publishers already closed
        self._stop = asyncio.Event()
        self._restarts = restarts  # a supervision.TaskRestarts, counted when a publisher dies and restarts

    def __contains__(self, stream: str) -> bool:
        return stream in self._by_stream or stream in self._ending

    def end(self, stream: str) -> None:
        """The stream is over (a finished call): deliver what it queued, clear its retained status,
        disconnect. Calls come and go; a connection per call ever made would not."""
        entry = self._by_stream.pop(stream, None)
        if entry is None:
            return
        publisher, task = entry
        publisher.ended = True

        async def close() -> None:
            try:
                await publisher.close(task, self.ENDED_CLOSE_S)
            finally:
                for name in self._COUNTED:
                    self._ended_counts[name] += getattr(publisher.policy, name)
                self._ending.pop(stream, None)

        self._ending[stream] = asyncio.get_running_loop().create_task(close())

    def offer(self, message: dict) -> None:
        stream = message["stream"]
        if stream not in self._by_stream:
            publisher = self._factory(stream)
            task = asyncio.get_running_loop().create_task(
                keep_running(f"the MQTT publisher of {stream}", publisher.run, self._stop, self._restarts)
            )
            self._by_stream[stream] = (publisher, task)
        self._by_stream[stream][0].offer(message)

    def stats(self) -> dict:
        publishers = [p for p, _ in self._by_stream.values()]
        return {
            "mqtt_connected": sum(p.connected for p in publishers),
            "mqtt_streams": len(publishers),
            "mqtt_alerts_queued": sum(len(p.policy.alerts) for p in publishers),
            **{
                f"mqtt_{name}": self._ended_counts[name] + sum(getattr(p.policy, name) for p in publishers)
                for name in self._COUNTED
            },
        }

    async def close(self) -> None:
        self._stop.set()
        await asyncio.gather(*(p.close(t) for p, t in self._by_stream.values()), *self._ending.values())


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
                log.warning("dashboard: subscribed to %s/# on %s", prefix, broker)
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
        stream, channel, kind = topic_parts(prefix, topic)
    except ValueError as exc:
        stats.drop("", topic, str(exc))
        return
    try:
        payload = message.payload
        if not payload and kind == "status":  # its retained status cleared (a call ended): nothing to show
            return
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
