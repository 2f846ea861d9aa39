"""A fixed-bucket latency histogram (the analysis keeps it; /metrics reads it)."""

from __future__ import annotations

import bisect
import threading

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
