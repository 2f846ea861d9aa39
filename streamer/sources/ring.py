"""A single-producer, single-consumer ring buffer of audio frames.

The producer is an audio callback: :meth:`AudioRing.write` only copies into
preallocated memory and moves a counter; it never blocks, allocates or
raises. The consumer reads everything written since its last read. If the
consumer falls a whole buffer behind, the oldest unread audio is overwritten
and the loss is counted (``overrun_samples``), never hidden.

Positions are absolute sample counters since the stream started, so
timestamps come from counts, not wall clocks.

A ring can move into shared memory (:meth:`AudioRing.share`) so that a worker
process reads what the main process writes (``streamer.workers.process``): the
samples and the counters then live in one ``SharedMemory`` block, and the
other process opens it with :meth:`AudioRing.attach`.
"""

from __future__ import annotations

import contextlib
import os
from multiprocessing import shared_memory

import numpy as np

RING_SECONDS = 10.0  # audio a source's ring holds: how far the analysis may fall behind before loss
SHM_DIR = "/dev/shm"
# The counters, one int64 each; in shared memory each has one writing process.
_WRITTEN, _READ_POS, _OVERRUN_SAMPLES, _OVERRUNS, _ENDED = range(5)


def _counter(index: int, doc: str) -> property:
    def get(self: AudioRing) -> int:
        return self._count[index]

    def set_(self: AudioRing, value: int) -> None:
        self._count[index] = value

    return property(get, set_, doc=doc)


class AudioRing:
    """Ring of ``capacity`` frames of ``channels`` float32 samples.

    Thread-safety: one writer and one reader (threads, or processes once
    shared). The writer publishes ``written`` after copying, so the reader
    never sees a frame before it is complete (an aligned int64 store is
    atomic, and x86 keeps stores in order).
    """

    written = _counter(_WRITTEN, "frames ever written (the writer's)")
    read_pos = _counter(_READ_POS, "frames ever consumed or skipped (the reader's)")
    overrun_samples = _counter(_OVERRUN_SAMPLES, "frames overwritten before they were read")
    overruns = _counter(_OVERRUNS, "times the reader found audio overwritten")

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError("capacity and channels must be positive")
        self.capacity = capacity
        self.channels = channels
        self._hold(np.zeros(5, np.int64), np.zeros((capacity, channels), np.float32))
        self._shm: shared_memory.SharedMemory | None = None
        self._owner = False

    def _hold(self, counters: np.ndarray, data: np.ndarray) -> None:
        """Keep the counters and samples in these arrays (private, or views of a shared block)."""
        self._count = memoryview(counters)  # item access: a third of numpy's cost, per media message
        self._data = data

    @property
    def ended(self) -> bool:
        """The writer's word that no more audio will come (read across processes)."""
        return bool(self._count[_ENDED])

    @ended.setter
    def ended(self, value: bool) -> None:
        self._count[_ENDED] = bool(value)

    # -- shared memory --

    def share(self) -> str:
        """Move the ring into shared memory (once; before any writer runs); returns the block's name.

        Raises MemoryError with a one-line message when ``/dev/shm`` has no
        room for it (a container's default is 64 MB): touching pages beyond
        it would kill the process instead.
        """
        if self._shm is None:
            size = self._count.nbytes + self._data.nbytes
            if os.path.isdir(SHM_DIR):
                free = os.statvfs(SHM_DIR)
                if free.f_bavail * free.f_frsize < size:
                    raise MemoryError(f"{SHM_DIR} is full: no room for another {size // 1024} kB audio ring")
            shm = shared_memory.SharedMemory(create=True, size=size)
            counters, data = self._views(shm, self.capacity, self.channels)
            counters[:] = self._count
            data[:] = self._data
            self._hold(counters, data)
            self._shm, self._owner = shm, True
        return self._shm.name

    @classmethod
    def attach(cls, name: str, capacity: int, channels: int) -> AudioRing:
        """The ring ``share`` moved into the block ``name``, opened in another process."""
        ring = cls.__new__(cls)
        ring.capacity, ring.channels = capacity, channels
        ring._shm, ring._owner = shared_memory.SharedMemory(name=name), False
        ring._hold(*cls._views(ring._shm, capacity, channels))
        return ring

    @staticmethod
    def _views(shm: shared_memory.SharedMemory, capacity: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        counters = np.ndarray((5,), np.int64, buffer=shm.buf)
        data = np.ndarray((capacity, channels), np.float32, buffer=shm.buf, offset=counters.nbytes)
        return counters, data

    def release(self) -> None:
        """Close this process's view of a shared ring (and free the block, in the process that made it).

        The ring keeps working on a private copy, so a late reader or writer does no harm.
        """
        if self._shm is None:
            return
        shm, self._shm = self._shm, None
        self._hold(np.array(self._count), self._data.copy())
        with contextlib.suppress(BufferError):  # a view still held (another thread): unmapped when it goes
            shm.close()
        if self._owner:
            shm.unlink()

    @property
    def shared_name(self) -> str | None:
        return None if self._shm is None else self._shm.name

    def write(self, frames: np.ndarray) -> None:
        """Copy frames in; never blocks. Shape ``(n, channels)`` or ``(n,)`` for mono."""
        frames = frames.reshape(len(frames), -1)
        n = frames.shape[0]
        skip = max(0, n - self.capacity)  # more than fits: keep the newest
        frames = frames[skip:]
        written = self.written
        start = (written + skip) % self.capacity
        first = min(frames.shape[0], self.capacity - start)
        self._data[start : start + first] = frames[:first]
        self._data[: frames.shape[0] - first] = frames[first:]
        self.written = written + n

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
