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
        # Recent samples, appended in place: the last window is moved to the front
        # only when the buffer is full, not copied on every push.
        self._buffer = np.zeros(2 * window + hop, np.float32)
        self._size = 0  # valid samples at the front of _buffer, ending at ``position``

    def _append(self, samples: np.ndarray) -> None:
        n = samples.size
        if self._size + n > self._buffer.size:
            keep = min(self._size, self.window)
            recent = self._buffer[self._size - keep : self._size]
            if keep + n > self._buffer.size:  # a push larger than the buffer: grow it
                self._buffer = np.zeros(keep + n, np.float32)
            self._buffer[:keep] = recent
            self._size = keep
        self._buffer[self._size : self._size + n] = samples
        self._size += n

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add samples; returns ``(end_position, window_samples)`` for each window completed."""
        self._append(np.asarray(samples, np.float32).reshape(-1))
        self.position += samples.size
        base = self.position - self._size  # absolute position of _buffer[0]
        out = []
        while self._next_end <= self.position:
            end = self._next_end - base
            out.append((self._next_end, self._buffer[end - self.window : end].copy()))
            self._next_end += self.hop
        return out

    @property
    def needed(self) -> int:
        """Samples still to push before the next window ends."""
        return self._next_end - self.position

    def skip(self, n: int) -> None:
        """Advance over ``n`` lost samples: no windows end inside the gap, time stays true."""
        self._append(np.zeros(min(n, self.window), np.float32))
        self.position += n
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
        tail = self._buffer[max(0, self._size - self.window) : self._size]
        return self.position, np.concatenate([np.zeros(self.window - tail.size, np.float32), tail])
