"""Prometheus text of a ``Snapshot`` of the parts' counters.

``prometheus_client`` is imported only when metrics are rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from streamer.core.histogram import LATENCY_BUCKETS_S, LatencyHistogram


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
