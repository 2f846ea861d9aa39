"""Exponential backoff for reconnect and restart loops (pure: the caller sleeps).

One policy for every loop that retries: the MQTT publisher and subscriber
reconnecting, and the supervisor restarting a thread or task.
"""

from __future__ import annotations

import math


class Backoff:
    """Delays ``initial``, ``2·initial``, … capped at ``maximum``; ``reset()`` after a success.

    Parameters
    ----------
    initial, maximum : float
        Seconds; ``0 < initial <= maximum``, both finite.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 30.0) -> None:
        if not (0 < initial <= maximum and math.isfinite(maximum)):
            raise ValueError("backoff needs 0 < initial <= maximum, finite")
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    @property
    def first(self) -> bool:
        """True until a delay has been taken since the last reset (log the first failure only)."""
        return self._next == self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial
