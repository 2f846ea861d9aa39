"""From captured frames to scored windows: per-stream state and one analysis turn.

``StreamAnalyzer`` is pure bookkeeping for one stream (resampling, skipping
lost audio, per-channel sliding windows, speech gating, speaker adaptation
state, rolling scores, errors). ``ScoringStep`` is one turn of the analysis:
it drains its sources' ring buffers and runs VAD, features, speaker
adaptation and the model batched across all its streams and channels,
handing finished messages to ``emit``. Neither has a thread or I/O; the
thread around them is ``streamer.worker.AnalysisWorker``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from streamer.adaptation import SpeakerAdapter, stats_after, window_moments
from streamer.features import FeatureConfig, FeatureStats, frame_features
from streamer.messages import scores_message
from streamer.metrics import LatencyHistogram
from streamer.resampling import stream_resampler
from streamer.ringbuffer import AudioRing
from streamer.scoring import RollingScores
from streamer.vad import SpeechTracker
from streamer.windowing import SlidingWindows

log = logging.getLogger(__name__)
MONO = "mono"


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

    def figures(self) -> dict:
        """What a status shows of this analysis; a worker process sends them to the main process."""
        return {
            "windows_done": self.windows_done,
            "latency_ms": self.mean_latency_ms,
            "errors": self.errors,
            "last_error": self.last_error,
            "flushed": self.flushed,
        }

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

    def complete(self, job: WindowJob, probs: np.ndarray | None) -> dict:
        """The scores message for a finished window (``probs`` None for silence)."""
        t = job.end / self.config.sample_rate
        rolling = self._rolling[job.channel].update(t, probs)
        latency = (time.perf_counter() - job.cut_at) * 1000.0
        self.windows_done += 1
        self.latency_ms = (self.latency_ms + [latency])[-20:]
        return scores_message(
            self.stream_id, self.channel_names[job.channel], t, probs, rolling, latency, adapted=job.adapted
        )


class Source:
    """What the workers and the application need from every source of audio: a device, a file, a call.

    The source writes into ``ring`` (one column per channel) from its own
    thread or the event loop; the worker reads it and runs ``analyzer``.
    """

    stream_id: str
    ring: AudioRing
    analyzer: StreamAnalyzer  # once handed to a worker process, a MirroredAnalysis of it (streamer.procworker)
    transient: bool = False  # leaves its worker once finished (a call), with its state
    # Audio worth gathering before the worker reads it (less when that ends a window): 0 reads
    # whatever came. Calls deliver 20 ms at a time; visiting 300 of them every turn cost a worker
    # more than their windows did. Files started together read every turn instead: gathered,
    # their VAD work all fell into one turn (p95 lag 263 against 174 ms at 300 files).
    read_block_s: float = 0.0

    @property
    def channels(self) -> list[str]:
        return self.analyzer.channel_names

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
        """Every window, the last partial one included, has been cut."""
        return self.exhausted and self.analyzer.flushed

    def start(self) -> None:
        """Begin delivering audio; a source that cannot raises a one-line error."""

    def stop(self) -> None:
        """Deliver no more audio (what is in the ring is still analysed)."""

    def status(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


class ScoringStep:
    """One turn of analysis across streams: collect → VAD → features → model groups → messages.

    No threads and no I/O: ``turn(sources)`` reads what the sources' rings
    hold and hands each finished message to ``emit`` (which must not block).
    A failure is contained to the batch it happened in: its windows are
    dropped, and each stream in it counts the error (``StreamAnalyzer.errors``,
    shown in its status); the next turn goes on.

    Parameters
    ----------
    model : EmotionModel-like
        Has ``predict(frames, stats=None)`` and ``config``; speaker adaptation
        runs when it also has ``adaptation`` (max_weight > 0) and ``new_adapter()``.
    emit : callable
        Receives each message dict.
    alerts : AlertEngine, optional
        Alert events it raises are emitted right after their scores message.
    vad : VAD engine, optional
        Default: Silero VAD, batched across streams.
    max_batch : int
        Windows per feature computation.
    """

    MODEL_BATCH = 32  # speech windows per model call; their messages go out as soon as it returns

    def __init__(self, model, emit: Callable[[dict], None], alerts=None, vad=None, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.emit = emit
        self.alerts = alerts
        self.vad = vad
        self.max_batch = max_batch
        self.errors = 0  # failed batches (and failed turns), across streams
        self.windows = 0  # windows turned into messages
        self.latency = LatencyHistogram()  # of those windows' messages, for /metrics

    def turn(self, sources: list[Source]) -> int:
        """Process what the sources hold now; returns the number of windows cut."""
        jobs = self.collect(sources)
        if jobs:
            self.process(jobs)
        return len(jobs)

    def fail(self, what: str, analyzers: Iterable[StreamAnalyzer], exc: BaseException) -> None:
        """Count and log a failure that cost the windows of ``analyzers``."""
        self.errors += 1
        streams = {a.stream_id: a for a in analyzers}
        for analyzer in streams.values():
            analyzer.record_error(exc)
        if self.errors <= 10 or self.errors % 100 == 0:  # a persistent fault must not flood the log
            log.error(
                "%s failed for %s: %s (%d failures so far; the stream goes on)",
                what,
                ", ".join(sorted(streams)) or "no stream",
                error_text(exc),
                self.errors,
            )
            log.debug("traceback", exc_info=exc)

    def collect(self, sources: list[Source]) -> list[WindowJob]:
        """New windows of every source, with their speech decided."""
        jobs: list[WindowJob] = []
        for source in sources:
            try:
                available = source.ring.available
                if available and (
                    available >= source.analyzer.frames_wanted(source.read_block_s) or source.input_ended
                ):
                    # At most one hop's worth of audio per source per turn: a worker that
                    # falls behind keeps bounded batches (and memory); the ring counts the loss.
                    start, frames = source.ring.read(self._read_limit(source))
                    jobs.extend(source.analyzer.push(start, frames))
                elif source.exhausted and not source.analyzer.flushed:
                    jobs.extend(source.analyzer.flush())
            except Exception as exc:  # one broken stream must not stop the others
                self.fail("reading audio", [source.analyzer], exc)
        trackers = [t for s in sources for t in s.analyzer.trackers]
        if jobs or any(t.pending_chunks for t in trackers):
            try:
                if self.vad is None:
                    from streamer.vad import SileroVAD

                    self.vad = SileroVAD()
                self.vad.score(trackers)
                for job in jobs:
                    job.analyzer.resolve_speech(job)
            except Exception as exc:
                self.fail("voice activity detection", [s.analyzer for s in sources], exc)
                return []
        return jobs

    @staticmethod
    def _read_limit(source: Source) -> int:
        analyzer = source.analyzer
        return max(1, int(analyzer.hop * analyzer.input_rate / analyzer.config.sample_rate))

    def features(self, jobs: list[WindowJob]) -> None:
        """Set ``job.frames`` for every window, batched across streams.

        A window one hop after its channel's previous window reuses that
        window's frames and computes only the hop's new frames (the same
        numbers: features are frame-local, see ``streamer.features``); other
        windows (a channel's first, after a gap, the final partial one) are
        computed whole. Either way one vectorised STFT per kind and length.
        The reuse state (each channel's last frames) lives in its analyzer,
        so it goes when the stream goes.
        """
        config: FeatureConfig = self.model.config
        n_frames, step = config.window_frames, config.hop_length
        ordered = sorted(jobs, key=lambda j: (id(j.analyzer), j.channel, j.end))
        extend: dict[int, list[WindowJob]] = {}  # new frames per hop -> jobs
        whole: list[WindowJob] = []
        previous: dict[tuple[int, int], int] = {}
        for job in ordered:
            key = (id(job.analyzer), job.channel)
            prev_end = previous.get(key, job.analyzer.last_end[job.channel])
            k, rest = divmod(job.analyzer.hop, step)
            if rest == 0 and 0 < k < n_frames and prev_end == job.end - job.analyzer.hop:
                extend.setdefault(k, []).append(job)
            else:
                whole.append(job)
            previous[key] = job.end
        for job, frames in zip(whole, self._batched_features(whole, slice(None))):
            job.frames = frames
        new_frames: dict[int, np.ndarray] = {}
        for k, group in extend.items():
            hop_audio = slice((n_frames - k) * step, (n_frames - 1) * step + config.n_fft)
            new_frames.update(zip(map(id, group), self._batched_features(group, hop_audio)))
        for job in ordered:  # in time order per channel: each window extends the one before
            if job.frames is None:
                previous_frames = job.analyzer.last_frames[job.channel]
                added = new_frames[id(job)]
                job.frames = np.concatenate([previous_frames[len(added) :], added])
            job.analyzer.last_frames[job.channel] = job.frames
            job.analyzer.last_end[job.channel] = job.end

    def _batched_features(self, jobs: list[WindowJob], audio_part: slice) -> list[np.ndarray]:
        """``frame_features`` of each job's ``audio[audio_part]``, one STFT per ``max_batch`` jobs."""
        out: list[np.ndarray] = []
        for i in range(0, len(jobs), self.max_batch):
            part = np.stack([j.audio[audio_part] for j in jobs[i : i + self.max_batch]])
            out.extend(frame_features(part, self.model.config))
        return out

    def process(self, jobs: list[WindowJob]) -> None:
        """Features, adaptation, model and messages for windows whose speech is decided."""
        try:
            self.features(jobs)
        except Exception as exc:
            for job in jobs:  # the next window of each channel is computed whole
                job.analyzer.last_end[job.channel] = -1
            self.fail(f"features of {len(jobs)} windows", [j.analyzer for j in jobs], exc)
            return
        # In order, in groups holding up to MODEL_BATCH speech windows: in a burst the
        # first windows need not wait for the last, and each channel stays in time order.
        group: list[WindowJob] = []
        speech = 0
        for job in jobs:
            group.append(job)
            speech += bool(job.speech)
            if speech == self.MODEL_BATCH:
                self._classify_and_emit(group)
                group, speech = [], 0
        if group:
            self._classify_and_emit(group)

    @property
    def max_adaptation(self) -> float:
        """The model's adaptation limit (0: adaptation off)."""
        adaptation = getattr(self.model, "adaptation", None)
        return float(adaptation.max_weight) if adaptation is not None else 0.0

    def adapt(self, jobs: list[WindowJob], frames: np.ndarray | None) -> FeatureStats | None:
        """Feed the speech windows to their channels' adapters; per-window stats for ``frames``.

        ``frames`` are the speech windows of ``jobs``, in their order. Every
        job (silence too) gets ``adapted``, its channel's weight once it was
        seen. Batched: one moments computation and one blend for the whole
        batch (a batch usually holds one window per channel); the numbers
        equal each channel's ``SpeakerAdapter.observe`` (a test checks).
        """
        if self.max_adaptation <= 0 or frames is None or not len(frames):
            for job in jobs:
                job.adapted = 0.0 if job.analyzer.adapters is None else job.analyzer.adapter(job).weight
            return None
        mean, mean_sq = window_moments(frames, self.model.config)
        steps, population = [], None
        for job in jobs:  # a channel's jobs come in time order (push and flush cut them so)
            if job.analyzer.adapters is None:
                job.analyzer.use_adapters(self.model.new_adapter)
            adapter = job.analyzer.adapter(job)
            if job.speech:
                steps.append(adapter.add(mean[len(steps)], mean_sq[len(steps)]))
                job.adapted, population = steps[-1].weight, adapter.population
            else:
                job.adapted = adapter.weight
        return stats_after(population, steps)

    def _classify_and_emit(self, jobs: list[WindowJob]) -> None:
        speech = [j for j in jobs if j.speech]
        try:
            frames = np.stack([j.frames for j in speech]) if speech else None
            stats = self.adapt(jobs, frames)
            probs = dict(zip(map(id, speech), self.model.predict(frames, stats))) if speech else {}
        except Exception as exc:
            self.fail(f"the model on {len(speech)} windows", [j.analyzer for j in jobs], exc)
            return  # the group's windows are lost (counted); silence in it too, to keep each channel in order
        for job in jobs:
            message = job.analyzer.complete(job, probs.get(id(job)))
            self.windows += 1
            self.latency.observe(message["latency_ms"] / 1000.0)
            self.emit(message)
            if self.alerts is not None:
                for event in self.alerts.evaluate(message):
                    self.emit(event)


def error_text(exc: BaseException) -> str:
    """One line for logs and status messages: the exception's type and first line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
