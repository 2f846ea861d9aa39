"""A single-producer, single-consumer ring buffer of audio frames.

The producer is an audio callback: :meth:`AudioRing.write` only copies into
preallocated memory and moves a counter; it never blocks, allocates or
raises. The consumer reads everything written since its last read. If the
consumer falls a whole buffer behind, the oldest unread audio is overwritten
and the loss is counted (``overrun_samples``), never hidden.

Positions are absolute sample counters since the stream started, so
timestamps come from counts, not wall clocks.
"""

from __future__ import annotations

import numpy as np

RING_SECONDS = 10.0  # audio a source's ring holds: how far the analysis may fall behind before loss


class AudioRing:
    """Ring of ``capacity`` frames of ``channels`` float32 samples.

    Thread-safety: one writer thread and one reader thread. The writer
    publishes ``written`` after copying, so the reader never sees a frame
    before it is complete (a Python int assignment is atomic).
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError("capacity and channels must be positive")
        self.capacity = capacity
        self.channels = channels
        self._data = np.zeros((capacity, channels), np.float32)
        self.written = 0  # frames ever written
        self.read_pos = 0  # frames ever consumed or skipped
        self.overrun_samples = 0
        self.overruns = 0  # times the reader found audio overwritten

    def write(self, frames: np.ndarray) -> None:
        """Copy frames in; never blocks. Shape ``(n, channels)`` or ``(n,)`` for mono."""
        frames = frames.reshape(len(frames), -1)
        n = frames.shape[0]
        skip = max(0, n - self.capacity)  # more than fits: keep the newest
        frames = frames[skip:]
        start = (self.written + skip) % self.capacity
        first = min(frames.shape[0], self.capacity - start)
        self._data[start : start + first] = frames[:first]
        self._data[: frames.shape[0] - first] = frames[first:]
        self.written += n

    @property
    def available(self) -> int:
        return self.written - self.read_pos

    def read(self, max_frames: int | None = None) -> tuple[int, np.ndarray]:
        """Unread frames as ``(start_position, copy)``; skips (and counts) overwritten ones."""
        written = self.written
        lost = written - self.read_pos - self.capacity
        if lost > 0:
            self.overruns += 1
            self.overrun_samples += lost
            self.read_pos += lost
        n = written - self.read_pos
        if max_frames is not None:
            n = min(n, max_frames)
        start_pos = self.read_pos
        start = start_pos % self.capacity
        first = min(n, self.capacity - start)
        out = np.concatenate([self._data[start : start + first], self._data[: n - first]])
        # The writer may have lapped us while we copied: drop what it overwrote.
        clobbered = self.written - self.capacity - start_pos
        if clobbered > 0:
            clobbered = min(clobbered, n)
            out = out[clobbered:]
            start_pos += clobbered
            self.overrun_samples += clobbered
            self.overruns += 1
        self.read_pos += n
        return start_pos, out
