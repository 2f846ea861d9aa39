"""Per-stream analysis state: resampling, skipping lost audio, per-channel sliding windows,
speech gating, speaker adaptation, rolling scores and error counts. Pure bookkeeping: no threads, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamer.analysis.vad import SpeechTracker
from streamer.core.adaptation import SpeakerAdapter
from streamer.core.errors import error_text
from streamer.core.features import FeatureConfig
from streamer.core.messages import scores_message
from streamer.core.resampling import stream_resampler
from streamer.core.rolling import RollingScores
from streamer.core.windowing import SlidingWindows
from streamer.sources.base import MONO, AnalysisFigures, Source


@dataclass(frozen=True)
class AnalysisSettings:
    """How every stream is analysed: the same for all streams of an analyzer."""

    hop_s: float = 0.5
    horizon_s: float = 4.0  # seconds of speech the rolling scores average
    adapt_reset_s: float = 30.0  # a channel's speaker adaptation starts afresh after this long without speech


@dataclass
class WindowJob:
    """A window cut from a channel, waiting for the model."""

    analyzer: StreamAnalyzer
    channel: int
    end: int  # sample position (model rate) of the window's end
    audio: np.ndarray
    speech: bool | None = None  # decided once the VAD has scored the window's audio
    frames: np.ndarray | None = None  # the window's features, set by the worker
    adapted: float = 0.0  # the channel's adaptation weight once this window was seen, set by the worker
    cut_at: float = field(default_factory=time.perf_counter)


class StreamAnalyzer:
    """Windows, speech gating and rolling scores for one stream's channels.

    Parameters
    ----------
    stream_id : str
    channels : list of str
        Names of the captured channels, or ``["mono"]`` to downmix all.
    input_rate : int
        Rate of the pushed frames; resampled to the model rate here.
    adapt_reset_s : float
        A channel's speaker adaptation starts afresh once it has had no
        speech window for this long (stream time): a softphone tap does not
        know where one call ends and the next begins.
    """

    def __init__(
        self,
        stream_id: str,
        channels: list[str],
        input_rate: int,
        config: FeatureConfig,
        hop_s: float = 0.5,
        horizon_s: float = 4.0,
        adapt_reset_s: float = 30.0,
    ) -> None:
        if not 0 < adapt_reset_s < float("inf"):
            raise ValueError("adapt_reset_s must be positive and finite")
        self.stream_id = stream_id
        self.channel_names = channels
        self.config = config
        self.input_rate = input_rate
        hop = int(round(hop_s * config.sample_rate))
        if hop <= 0:
            raise ValueError("hop must be positive")
        self.hop = hop
        self._resampler = stream_resampler(input_rate, config.sample_rate, len(channels))
        self._windows = [SlidingWindows(config.window_samples, hop) for _ in channels]
        self.trackers = [SpeechTracker() for _ in channels]
        self._rolling = [RollingScores(horizon_s) for _ in channels]
        self.expected_pos = 0  # next input frame position we expect from the ring
        self.windows_done = 0
        self.flushed = False
        # Features of each channel's last window, to extend by one hop instead of recomputing.
        self.last_frames: list[np.ndarray | None] = [None] * len(channels)
        self.last_end = [-1] * len(channels)
        self.latency_ms: list[float] = []  # recent, for status
        self.errors = 0  # batches of this stream's windows that failed (see ScoringStep)
        self.last_error: str | None = None
        # Speaker adaptation, one adapter per channel; made by the worker from its model on first use.
        self.adapters: list[SpeakerAdapter] | None = None
        self.adapt_reset = int(round(adapt_reset_s * config.sample_rate))
        self._last_speech_end: list[int | None] = [None] * len(channels)

    source: Source | None = None  # what the analysis reads (set by ``for_source``)

    @classmethod
    def for_source(cls, source: Source, config: FeatureConfig, settings: AnalysisSettings) -> StreamAnalyzer:
        """The analysis of ``source``'s ring, as a worker runs it."""
        analyzer = cls(
            source.stream_id,
            source.channels,
            source.rate,
            config,
            hop_s=settings.hop_s,
            horizon_s=settings.horizon_s,
            adapt_reset_s=settings.adapt_reset_s,
        )
        analyzer.source = source
        return analyzer

    def push(self, start_pos: int, frames: np.ndarray) -> list[WindowJob]:
        """Frames ``(n, captured_channels)`` starting at input position ``start_pos``."""
        frames = frames.reshape(len(frames), -1)
        if self.channel_names == [MONO] and frames.shape[1] > 1:
            frames = frames.mean(axis=1, keepdims=True)
        elif frames.shape[1] != len(self.channel_names):
            raise ValueError(f"got {frames.shape[1]} channels, expected {len(self.channel_names)}")
        gap = start_pos - self.expected_pos
        self.expected_pos = start_pos + len(frames)
        if gap > 0:
            # Lost audio (an overrun): skip it at no cost, so an overloaded worker does
            # not get more work; positions advance, so timestamps stay true.
            skipped = int(round(gap * self.config.sample_rate / self.input_rate))
            for windows, tracker in zip(self._windows, self.trackers):
                windows.skip(skipped)
                tracker.skip(skipped)
        if self._resampler is not None:
            frames = self._resampler.resample_chunk(np.ascontiguousarray(frames, np.float32))
        return self._cut(frames)

    def _cut(self, frames: np.ndarray) -> list[WindowJob]:
        jobs = []
        for ch in range(len(self.channel_names)):
            samples = np.ascontiguousarray(frames[:, ch])
            self.trackers[ch].feed(samples)
            jobs.extend(WindowJob(self, ch, end, audio) for end, audio in self._windows[ch].push(samples))
        return jobs

    def frames_wanted(self, block_s: float) -> int:
        """Input frames worth reading at once: ``block_s`` of audio, or less if that ends the next window."""
        need = self._windows[0].needed * self.input_rate / self.config.sample_rate  # channels are cut in step
        need = int(np.ceil(need)) + getattr(self._resampler, "lookahead", 0)
        return max(1, min(need, int(min(block_s, 3600.0) * self.input_rate)))

    @property
    def mean_latency_ms(self) -> float | None:
        """Mean processing latency of the recent windows, for status messages."""
        return round(float(np.mean(self.latency_ms)), 2) if self.latency_ms else None

    def figures(self) -> AnalysisFigures:
        """What a status shows of this analysis (the worker hands them to the source)."""
        return AnalysisFigures(self.windows_done, self.mean_latency_ms, self.errors, self.last_error, self.flushed)

    def record_error(self, exc: BaseException) -> None:
        """Count a failure that cost this stream windows; its status shows it."""
        self.errors += 1
        self.last_error = error_text(exc)

    def resolve_speech(self, job: WindowJob) -> None:
        """Decide whether a window is speech, once the VAD has scored its chunks."""
        job.speech = self.trackers[job.channel].is_speech(job.end - self.config.window_samples, job.end)

    def use_adapters(self, new_adapter: Callable[[], SpeakerAdapter]) -> None:
        """Give every channel fresh adaptation state (``new_adapter``: the model's)."""
        self.adapters = [new_adapter() for _ in self.channel_names]
        self._last_speech_end = [None] * len(self.channel_names)

    def adapter(self, job: WindowJob) -> SpeakerAdapter:
        """The adapter of ``job``'s channel, reset first if the channel has been without speech too long.

        Call for every window of a channel (silence too), in time order, once
        its speech is resolved. "Too long": no speech window for
        ``adapt_reset_s`` of stream time (window ends, from sample counts).
        """
        if self.adapters is None:
            raise RuntimeError("no adapters: call use_adapters first")
        ch = job.channel
        last = self._last_speech_end[ch]
        if last is not None and job.end - last >= self.adapt_reset:
            self.adapters[ch].reset()
            last = None
        self._last_speech_end[ch] = job.end if job.speech else last
        return self.adapters[ch]

    def flush(self) -> list[WindowJob]:
        """End of stream: cut the final partial window of each channel."""
        self.flushed = True
        jobs = []
        if self._resampler is not None:  # the resampler's held-back tail: time ends where the audio does
            empty = np.zeros((0, len(self.channel_names)), np.float32)
            jobs = self._cut(self._resampler.resample_chunk(empty, last=True))
        for ch, windows in enumerate(self._windows):
            last = windows.flush()
            if last is not None:
                jobs.append(WindowJob(self, ch, *last))
        return jobs

    def complete(self, job: WindowJob, probs: np.ndarray | None, confident_at: float = 0.0) -> dict:
        """The scores message for a finished window (``probs`` None for silence).

        ``confident_at``: the model's threshold for naming the top emotion.
        """
        t = job.end / self.config.sample_rate
        rolling = self._rolling[job.channel].update(t, probs)
        latency = (time.perf_counter() - job.cut_at) * 1000.0
        self.windows_done += 1
        self.latency_ms = (self.latency_ms + [latency])[-20:]
        return scores_message(
            self.stream_id,
            self.channel_names[job.channel],
            t,
            probs,
            rolling,
            latency,
            adapted=job.adapted,
            confident_at=confident_at,
        )
