"""Cutting a sample stream into sliding windows, by sample counters."""

from __future__ import annotations

import numpy as np


class SlidingWindows:
    """Windows of ``window`` samples every ``hop`` samples of a pushed stream.

    The first window ends at sample ``window``; later ones every ``hop``.
    Only the last ``window`` samples are kept between pushes.

    Parameters
    ----------
    window, hop : int
        Lengths in samples; ``0 < hop``.
    """

    def __init__(self, window: int, hop: int) -> None:
        if window <= 0 or hop <= 0:
            raise ValueError("window and hop must be positive")
        self.window = window
        self.hop = hop
        self.position = 0  # samples pushed so far
        self._next_end = window
        self._tail = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add samples; returns ``(end_position, window_samples)`` for each window completed."""
        data = np.concatenate([self._tail, np.asarray(samples, np.float32)])
        base = self.position - self._tail.size  # absolute position of data[0]
        self.position += len(samples)
        out = []
        while self._next_end <= self.position:
            end = self._next_end - base
            out.append((self._next_end, data[end - self.window : end].copy()))
            self._next_end += self.hop
        self._tail = data[-self.window :] if data.size > self.window else data
        return out

    def skip(self, n: int) -> None:
        """Advance over ``n`` lost samples: no windows end inside the gap, time stays true."""
        self.position += n
        gap = np.zeros(min(n, self.window), np.float32)
        self._tail = np.concatenate([self._tail, gap])[-self.window :]
        while self._next_end <= self.position:
            self._next_end += self.hop

    def flush(self) -> tuple[int, np.ndarray] | None:
        """At the end of a stream: one last window ending at the last sample, if
        audio after the last window's end is unscored (zero-padded in front when
        the whole stream is shorter than a window)."""
        last_end = self._next_end - self.hop
        if self.position == 0 or (self.position <= last_end and last_end >= self.window):
            return None
        self._next_end = self.position + self.hop
        pad = np.zeros(max(0, self.window - self._tail.size), np.float32)
        return self.position, np.concatenate([pad, self._tail[-self.window :]])
