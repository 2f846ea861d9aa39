"""The Source interface: what every source of audio (a device, a file, a call) gives the workers.

A source only delivers audio: it writes frames into its ``ring`` from its own
thread or the event loop, and says when no more will come. The analysis of a
stream belongs to the worker that reads the ring; what a status shows of it
comes back to the source as :class:`AnalysisFigures`.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.sources.ring import AudioRing

MONO = "mono"  # the one channel of a downmixed source


class DeviceError(RuntimeError):
    """A device or file that cannot be found or opened; the message is user-facing."""


@dataclass
class AnalysisFigures:
    """What the worker analysing a stream reports of it, for the stream's status."""

    windows: int = 0
    latency_ms: float | None = None
    errors: int = 0
    last_error: str | None = None
    flushed: bool = False  # every window, the last partial one included, has been cut


class Source:
    """A source of audio for the workers.

    Attributes
    ----------
    stream_id : str
    ring : AudioRing
        One column per channel; written by the source, read by one worker.
    rate : int
        Sample rate of what is written to the ring.
    channels : list of str
        Names of the ring's channels (``["mono"]``: one, downmixed).
    transient : bool
        Leaves its worker once finished (a call), with its analysis state.
    read_block_s : float
        Audio worth gathering before the worker reads it (less when that
        ends a window); 0 reads whatever came. Calls deliver 20 ms at a
        time and are read once the next window's end is in; devices and
        files are read every turn (their VAD work then spreads over turns).
    figures : AnalysisFigures
        Set by the worker that analyses the stream.
    """

    stream_id: str
    ring: AudioRing
    rate: int
    channels: list[str]
    transient: bool = False
    read_block_s: float = 0.0
    figures: AnalysisFigures

    @property
    def input_ended(self) -> bool:
        """No more audio will be written to the ring (kept in the ring, so a worker process sees it)."""
        return self.ring.ended

    @input_ended.setter
    def input_ended(self, value: bool) -> None:
        self.ring.ended = value

    @property
    def exhausted(self) -> bool:
        """No more audio is coming and the ring is empty."""
        return self.input_ended and self.ring.available == 0

    @property
    def finished(self) -> bool:
        """Every window, the last partial one included, has been cut and reported."""
        return self.exhausted and self.figures.flushed

    def start(self) -> None:
        """Begin delivering audio; a source that cannot raises a one-line error."""

    def stop(self) -> None:
        """Deliver no more audio (what is in the ring is still analysed)."""

    def status(self) -> dict:  # pragma: no cover - interface
        """The stream's status message (its analysis figures included)."""
        raise NotImplementedError
