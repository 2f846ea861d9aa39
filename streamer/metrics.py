"""Prometheus metrics for ``/metrics``: a snapshot of counters the parts already keep.

Nothing is counted twice: the pipeline, hub, bridge and MQTT adapters keep
their own counters (they show in ``/api/status`` too), and the collector
reads them at scrape time. The one thing kept only for metrics is the window
latency histogram (``LatencyHistogram``, pure, updated by the scoring step).
``prometheus_client`` is imported only when metrics are rendered.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Seconds from a window's last sample to its message: the live target is 0.25 s.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Cumulative latency counts per bucket (thread-safe; one writer per worker)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("buckets must be non-empty and increasing")
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum += seconds

    def load(self, counts: list[int], total: float) -> None:
        """Take counts kept elsewhere (a worker process's), as ``snapshot`` gave them."""
        if len(counts) != len(self._counts):
            raise ValueError("counts do not match the buckets")
        with self._lock:
            self._counts, self._sum = list(counts), total

    def snapshot(self) -> tuple[list[int], float]:
        """(per-bucket counts, the last for +Inf; sum of the observations)."""
        with self._lock:
            return list(self._counts), self._sum


@dataclass
class Snapshot:
    """What the analyzer reports at one scrape; filled by the application from its parts."""

    windows_scored: int = 0
    errors: int = 0  # failed batches and turns
    restarts: int = 0  # workers and tasks restarted after dying
    overruns: int = 0  # audio blocks lost because analysis fell behind
    dropped: dict[str, int] = field(default_factory=dict)  # where -> messages dropped
    clients: int = 0
    streams: int = 0  # streams the dashboard knows (local and, with --serve --mqtt, remote)
    mqtt_queue: int = 0  # alerts waiting for the broker
    latencies: Iterable[LatencyHistogram] = ()


def render(snapshot: Snapshot) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``snapshot``: (body, content type)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    class _Collector:
        def collect(self):
            yield CounterMetricFamily("emotion_windows_scored", "Windows turned into scores", snapshot.windows_scored)
            yield CounterMetricFamily("emotion_errors", "Analysis batches or turns that failed", snapshot.errors)
            yield CounterMetricFamily("emotion_restarts", "Threads or tasks restarted after dying", snapshot.restarts)
            yield CounterMetricFamily("emotion_audio_overruns", "Audio blocks lost to a full ring", snapshot.overruns)
            dropped = CounterMetricFamily("emotion_messages_dropped", "Messages dropped, by where", labels=["where"])
            for where, count in sorted(snapshot.dropped.items()):
                dropped.add_metric([where], count)
            yield dropped
            yield GaugeMetricFamily("emotion_dashboard_clients", "Connected dashboard websockets", snapshot.clients)
            yield GaugeMetricFamily("emotion_streams", "Streams the dashboard shows", snapshot.streams)
            yield GaugeMetricFamily("emotion_mqtt_queue", "Alerts waiting for the MQTT broker", snapshot.mqtt_queue)
            counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
            total = 0.0
            for histogram in snapshot.latencies:
                part, part_sum = histogram.snapshot()
                counts = [a + b for a, b in zip(counts, part)]
                total += part_sum
            cumulative, running = [], 0
            for bound, count in zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], counts):
                running += count
                cumulative.append((bound, running))
            yield HistogramMetricFamily(
                "emotion_window_latency_seconds",
                "From a window's last sample to its scores message",
                buckets=cumulative,
                sum_value=total,
            )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def collector(snapshot: Callable[[], Snapshot]) -> Callable[[], tuple[bytes, str]]:
    """The ``metrics`` callable for ``create_app``: renders a fresh snapshot per scrape."""
    return lambda: render(snapshot())
