"""One call's audio as a Source: voices aligned, time from media timestamps, gaps filled and counted."""

from __future__ import annotations

import numpy as np

from streamer.core.messages import status_message
from streamer.sources.base import AnalysisFigures, Source
from streamer.sources.ring import RING_SECONDS, AudioRing


class CallSource(Source):
    """One call's audio, delivered by a protocol session.

    Parameters
    ----------
    stream_id : str
        The call's id (the stream's name on the dashboard and MQTT).
    protocol : str
        ``twilio``, ``fork`` or ``audiosocket`` (shown in its status).
    rate : int
        Sample rate of the pushed audio.
    channels : list of str
        The voices analysed, in ring order (``caller``, and ``agent`` if asked).
    agent, queue : str, optional
        Shown in its status, for the dashboard's floor view.
    """

    transient = True  # removed from its worker once finished: calls come and go
    read_block_s = float("inf")  # read once the next window's end is in (see Source)
    MAX_SKEW_S = 1.0  # one voice this far ahead of the other: the other's missing audio is silence
    TOLERANCE_S = 0.010  # media timestamps this close to the sample count are the same moment

    def __init__(
        self,
        stream_id: str,
        protocol: str,
        rate: int,
        channels: list[str],
        agent: str | None = None,
        queue: str | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.protocol = protocol
        self.rate = rate
        self.agent, self.queue = agent, queue
        self.ring = AudioRing(int(RING_SECONDS * rate), len(channels))
        self.channels = channels
        self.figures = AnalysisFigures()
        self.state = "running"
        self.error: str | None = None
        self.reconnects = 0
        self.gaps = 0  # media gaps (lost packets), filled with silence
        self.gap_samples = 0
        self.late_samples = 0  # media that came again or out of order, dropped
        self.lost_at: float | None = None  # wall clock of a dropped connection (reconnect grace)
        self._received = [0] * len(channels)  # per voice: samples accepted, in stream time
        self._pending: list[list[np.ndarray]] = [[] for _ in channels]
        self._offset = 0  # added to a connection's media positions (0 until a reconnect)
        self._tolerance = int(self.TOLERANCE_S * rate)

    # -- fed by a protocol session (one connection at a time, on the event loop) --

    def push(self, voice: int, samples: np.ndarray, at: int | None = None) -> None:
        """Samples of voice ``voice`` (index in ``channels``), starting at media position ``at`` if known."""
        if self.input_ended:
            return
        received = self._received[voice]
        if at is not None:
            at += self._offset
            if at > received + self._tolerance:  # lost media: silence for it, counted
                gap = at - received
                self.gaps += 1
                self.gap_samples += gap
                self._append(voice, np.zeros(min(gap, self.ring.capacity), np.float32))
                received = self._received[voice]
                if gap > self.ring.capacity:  # longer than the ring holds: keep the clock, not the silence
                    self._offset -= gap - self.ring.capacity
            elif at < received - self._tolerance:  # media again or out of order: keep what is new
                late = min(received - at, len(samples))
                self.late_samples += late
                samples = samples[late:]
                if not len(samples):
                    return
        self._append(voice, samples)

    @property
    def samples_received(self) -> int:
        """Audio received so far (the voice furthest on), for idle detection."""
        return max(self._received)

    def _append(self, voice: int, samples: np.ndarray) -> None:
        self._received[voice] += len(samples)
        if len(self.channels) == 1:
            self.ring.write(samples)
            return
        self._pending[voice].append(samples)
        # Voices arrive in separate messages: write the span both have; a voice that
        # falls MAX_SKEW_S behind (its track stopped) is padded with silence.
        ahead = max(self._received)
        for other, received in enumerate(self._received):
            if ahead - received > self.MAX_SKEW_S * self.rate:
                self._pad(other, ahead - received)
        self._write_common()

    def _pad(self, voice: int, n: int) -> None:
        self._received[voice] += n
        self._pending[voice].append(np.zeros(n, np.float32))

    def _write_common(self) -> None:
        n = min(self._received) - self.ring.written
        if n <= 0:
            return
        columns = []
        for voice, parts in enumerate(self._pending):
            joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
            columns.append(joined[:n])
            self._pending[voice] = [joined[n:]] if len(joined) > n else []
        self.ring.write(np.stack(columns, axis=1))

    def end(self, error: str | None = None) -> None:
        """The call is over (stop, hangup, or given up): what was received is still analysed."""
        if self.input_ended:
            return
        if len(self.channels) > 1:  # the shorter voice's tail is silence
            ahead = max(self._received)
            for voice, received in enumerate(self._received):
                if ahead > received:
                    self._pad(voice, ahead - received)
            self._write_common()
        self.input_ended = True
        self.error = error
        self.state = "running"  # until its last window is out; then finished

    def connection_lost(self, now: float) -> None:
        """The connection dropped without the call ending: keep it for a reconnect."""
        if not self.input_ended:
            self.state, self.error, self.lost_at = "reconnecting", "connection lost", now

    def resume(self) -> None:
        """The same call connected again: its media positions restart, stream time goes on."""
        self._offset = max(self._received)
        self.input_ended = False
        self.state, self.error, self.lost_at = "running", None, None
        self.reconnects += 1

    # -- read by the worker --

    def stop(self) -> None:
        self.end()

    def status(self) -> dict:
        if self.finished:
            self.state = "finished"
        extra = {"agent": self.agent, "queue": self.queue}
        return status_message(
            self.stream_id,
            self.protocol,
            self.state,
            overruns=self.ring.overruns,
            windows=self.figures.windows,
            channels=self.channels,
            latency_ms=self.figures.latency_ms,
            reconnects=self.reconnects,
            gaps=self.gaps,
            lost_s=round((self.gap_samples + self.ring.overrun_samples) / self.rate, 3),
            error=self.error,
            **{k: v for k, v in extra.items() if v is not None},
        )
