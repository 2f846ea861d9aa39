"""Files through the live path, delivered by one pacing clock as a sound card would."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import soundfile as sf

from streamer.core.errors import first_line
from streamer.core.messages import status_message
from streamer.sources.base import MONO, AnalysisFigures, DeviceError, Source
from streamer.sources.ring import RING_SECONDS, AudioRing

log = logging.getLogger(__name__)


class FileSource(Source):
    """A file through the live path, as a sound card would deliver it.

    It does not pace itself: a ``FilePacer`` (one thread for every file)
    calls ``feed_until`` with the seconds of audio that are due, or
    ``feed_fast`` to fill the ring as fast as the analysis takes it.
    """

    BLOCK_S = 0.05  # read and delivered in 50 ms blocks, as a device callback would

    def __init__(self, path: Path, stream_id: str, channels: list[str], fast: bool = False):
        self.path = Path(path)
        self.stream_id = stream_id
        try:
            info = sf.info(str(self.path))
        except Exception as exc:
            raise DeviceError(f"cannot read '{self.path}': {first_line(exc)}") from None
        self.n_channels = 1 if channels == [MONO] else len(channels)
        if info.channels < self.n_channels:
            raise DeviceError(f"'{self.path}' has {info.channels} channels, {self.n_channels} requested")
        self.rate = info.samplerate
        self.fast = fast
        self.channels = channels
        self.ring = AudioRing(int(RING_SECONDS * self.rate), self.n_channels)
        self.figures = AnalysisFigures()
        self.state = "running"
        self.error: str | None = None
        self.position = 0  # frames delivered to the ring
        self._block = max(1, int(self.rate * self.BLOCK_S))
        self._file: sf.SoundFile | None = None

    def start(self) -> None:
        """Open the file; the pacer delivers it."""
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.error = f"reading failed: {first_line(exc)}"
        log.warning("stream %s: %s", self.stream_id, self.error)
        self._finish_reading()

    def _finish_reading(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.input_ended = True

    @property
    def reading(self) -> bool:
        return not self.input_ended

    def _deliver_block(self) -> bool:
        """Read one block into the ring; False at the end of the file."""
        frames = self._file.read(self._block, dtype="float32", always_2d=True)
        if not len(frames):
            self._finish_reading()
            return False
        # Downmix every channel, or (named channels) keep the first N.
        frames = frames.mean(axis=1, keepdims=True) if self.channels == [MONO] else frames[:, : self.n_channels]
        self.ring.write(frames)  # real time: if analysis is behind, the oldest is lost and counted
        self.position += len(frames)
        return True

    def feed_until(self, seconds: float) -> None:
        """Deliver the blocks due by ``seconds`` of stream time."""
        try:
            while self.reading and self.position < seconds * self.rate and self._deliver_block():
                pass
        except Exception as exc:
            self._fail(exc)

    def feed_fast(self, max_blocks: int = 4) -> bool:
        """Deliver up to ``max_blocks`` while the ring has room; True if anything was delivered."""
        delivered = False
        try:
            for _ in range(max_blocks):
                room = self.ring.capacity - self.ring.available
                if not self.reading or room < self._block or not self._deliver_block():
                    break
                delivered = True
        except Exception as exc:
            self._fail(exc)
        return delivered

    def stop(self) -> None:
        if self.reading:
            self._finish_reading()
        if self.state == "running":
            self.state = "stopped"

    def status(self) -> dict:
        if self.state == "running" and self.finished:
            self.state = "finished"
        return status_message(
            self.stream_id,
            str(self.path),
            self.state,
            overruns=self.ring.overruns,
            windows=self.figures.windows,
            channels=self.channels,
            latency_ms=self.figures.latency_ms,
            error=self.error,
        )


class FilePacer:
    """One thread that delivers every file source's audio: in real time, or with ``fast`` as fast
    as the analysis takes it.

    One clock instead of a thread per file: hundreds of reader threads each
    waking 20 times a second queue for the GIL with the analysis and fall
    behind real time. A late tick catches up by position, so stream time
    stays true.
    """

    def __init__(self, sources: list[FileSource], fast: bool = False) -> None:
        self.sources = sources
        self.fast = fast
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-pacer", daemon=True)

    def start(self) -> None:
        for source in self.sources:
            source.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)  # not mid-read when the files close
        for source in self.sources:
            source.stop()

    def _run(self) -> None:
        started = time.monotonic()
        ticks = 0
        while not self._stop.is_set():
            reading = [s for s in self.sources if s.reading]
            if not reading:
                return
            if self.fast:
                if not any([s.feed_fast() for s in reading]):
                    self._stop.wait(0.005)  # every ring is full: let the analysis catch up
                continue
            ticks += 1
            due = ticks * FileSource.BLOCK_S
            # A block is delivered once its last sample is due, as a sound card would.
            if self._stop.wait(max(0.0, started + due - time.monotonic())):
                return
            for source in reading:
                source.feed_until(due)
