"""One MQTT publisher per stream around its ``SendingPolicy`` (Last Will, reconnect loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from streamer.core.backoff import Backoff
from streamer.core.messages import DEFAULT_QUEUE, legacy_status_topic, mqtt_topic
from streamer.core.tasks import keep_running
from streamer.outputs.mqtt.broker import MAX_BACKOFF_S, Broker, client_id
from streamer.outputs.mqtt.policy import SendingPolicy, dumps
from streamer.outputs.mqtt.spool import AlertSpool, ThreadedSpool

log = logging.getLogger(__name__)


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
    queue : str
        The queue the stream belongs to: the level after the prefix in every
        topic, and the ``queue`` of its status. A valid topic level (see
        :func:`~streamer.core.messages.valid_queue`).
    clear_legacy_status : bool
        Clear the stream's retained status in the layout before queues once
        connected: a device's stale copy (its last state, or its Last Will)
        that supervisors still reading that layout would show too. Calls
        have none (their ids are new and their retained status is cleared).
    """

    def __init__(
        self,
        broker: Broker,
        prefix: str,
        stream_id: str,
        interval_s: float = 1.0,
        max_alerts: int = 1000,
        spool_dir: Path | None = None,
        queue: str = DEFAULT_QUEUE,
        clear_legacy_status: bool = False,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.stream_id = stream_id
        self.queue = queue
        self._legacy_status_to_clear = clear_legacy_status
        self.connected = False
        self._spool = ThreadedSpool(AlertSpool(Path(spool_dir) / f"{stream_id}.jsonl")) if spool_dir else None
        self.policy = SendingPolicy(stream_id, interval_s, max_alerts, self._spool)
        self.policy.status["queue"] = queue  # a Last Will made before the stream's first status says it too
        self._wake = asyncio.Event()
        self._closing = False
        self.ended = False  # a finished call: its retained status is cleared once the final one is out

    def offer(self, message: dict) -> None:
        """Called on the event loop for every message of this stream; never waits."""
        if message["type"] == "status":  # and so its Last Will: say the queue the topics are under
            message = {**message, "queue": self.queue}
        if self.policy.offer(message):
            self._wake.set()

    async def run(self) -> None:
        status_topic = mqtt_topic(self.prefix, self.queue, {"type": "status", "stream": self.stream_id})
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
                    if self._legacy_status_to_clear:
                        await client.publish(legacy_status_topic(self.prefix, self.stream_id), b"", qos=1, retain=True)
                        self._legacy_status_to_clear = False
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
                await client.publish(mqtt_topic(self.prefix, self.queue, alert), dumps(alert), qos=1, retain=False)
                policy.alert_sent()
            for message in policy.scores_due(time.monotonic(), self._closing):  # a call's last before its end
                await client.publish(mqtt_topic(self.prefix, self.queue, message), dumps(message), qos=0)
            if policy.status_due(self._closing):
                await client.publish(status_topic, policy.status_payload(not self._closing), qos=1, retain=True)
                if self._closing and self.ended:
                    # Live dashboards got the final status; the broker need not keep every call ever made.
                    await client.publish(status_topic, b"", qos=1, retain=True)
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
    """The MQTT sink: one :class:`StreamPublisher` per stream, created on first message, each kept running.

    ``keep`` names the streams whose publisher stays once they finish (devices
    and files); any other stream's final status ends its publisher (a call).
    """

    ENDED_CLOSE_S = 10.0  # a finished call's publisher gets this long to deliver its last alerts
    _COUNTED = ("published", "alerts_dropped", "invalid_dropped")  # policy counters that stats() sums

    def __init__(self, factory: Callable[[str], StreamPublisher], restarts=None, keep: frozenset = frozenset()) -> None:
        self._factory = factory
        self._keep = keep
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
        if message["type"] == "status" and message["state"] == "finished" and stream not in self._keep:
            self.end(stream)  # a call's last message (its worker retired it)

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
