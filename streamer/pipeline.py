"""From captured frames to scored windows: per-stream state and the model worker.

``StreamAnalyzer`` is pure bookkeeping for one stream (resampling, skipping
lost audio, per-channel sliding windows, speech gating, speaker adaptation
state, rolling scores). ``AnalysisWorker`` is a thread that drains its
sources' ring buffers, runs VAD, features, speaker adaptation and the model
batched across all its streams and channels, and hands finished messages to
``emit`` (which must not block). There is one worker per core, each with its
own model; a stream stays on one worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import soxr
from threadpoolctl import threadpool_limits

from streamer.adaptation import SpeakerAdapter, stats_after, window_moments
from streamer.features import FeatureConfig, FeatureStats, frame_features
from streamer.messages import scores_message
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
        self._resampler = (
            None
            if input_rate == config.sample_rate
            else soxr.ResampleStream(input_rate, config.sample_rate, len(channels), dtype="float32")
        )
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
        jobs = []
        for ch in range(len(self.channel_names)):
            samples = np.ascontiguousarray(frames[:, ch])
            self.trackers[ch].feed(samples)
            jobs.extend(WindowJob(self, ch, end, audio) for end, audio in self._windows[ch].push(samples))
        return jobs

    @property
    def mean_latency_ms(self) -> float | None:
        """Mean processing latency of the recent windows, for status messages."""
        return round(float(np.mean(self.latency_ms)), 2) if self.latency_ms else None

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
    """What the worker needs from a capture adapter (device or file)."""

    stream_id: str
    ring: AudioRing
    analyzer: StreamAnalyzer
    exhausted: bool = False  # True once a finite source has no more audio coming

    def status(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


class AnalysisWorker(threading.Thread):
    """Drains sources, batches windows across streams, runs features + model.

    Parameters
    ----------
    model : EmotionModel-like
        Has ``predict(frames, stats=None)`` and ``config``; speaker adaptation
        runs when it also has ``adaptation`` (max_weight > 0) and ``new_adapter()``.
    emit : callable
        Receives each message dict; must be quick and thread-safe.
    alerts : AlertEngine, optional
        Alert events it raises are emitted right after their scores message.
    vad : VAD engine, optional
        Default: Silero VAD, batched across streams.
    status_every_s : float
        How often each source's status is emitted.
    """

    def __init__(
        self,
        model,
        emit: Callable[[dict], None],
        poll_s: float = 0.02,
        max_batch: int = 256,
        status_every_s: float = 1.0,
        alerts=None,
        vad=None,
    ) -> None:
        super().__init__(name="analysis-worker", daemon=True)
        # The workers are the parallelism (one per core); BLAS threads on top would
        # oversubscribe the cores, and OpenBLAS's spinning threads measurably raised latency.
        threadpool_limits(1, user_api="blas")
        self.model = model
        self.vad = vad  # a VAD engine scoring all streams' chunks at once; Silero by default
        self.alerts = alerts  # an AlertEngine, evaluated on every scores message
        self.emit = emit
        self.poll_s = poll_s
        self.max_batch = max_batch
        self.status_every_s = status_every_s
        self._sources: list[Source] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._last_status = 0.0
        # Model work for uploaded files: served between live batches, live first.
        self._requests: queue.Queue[tuple[np.ndarray, FeatureStats | None, Future]] = queue.Queue(maxsize=64)
        self._wake = threading.Event()

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    @property
    def sources(self) -> list[Source]:
        with self._lock:
            return list(self._sources)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the windows already captured, then end the thread."""
        self._stop_event.set()
        self._wake.set()
        self.join(timeout)

    REQUEST_CHUNK = 32  # windows of an upload per worker turn, so live windows never wait long

    def predict(self, frames: np.ndarray, stats: FeatureStats | None = None, timeout: float = 300.0) -> np.ndarray:
        """Classify feature windows on the worker thread (blocking; call from another thread).

        ``stats`` as for ``EmotionModel.predict``: ``(n_mels,)`` arrays for
        every window or one row per window. Large requests are split so live
        streams keep their latency.
        """
        if not self.is_alive():
            raise RuntimeError("the analysis worker is not running")
        futures = []
        for i in range(0, len(frames), self.REQUEST_CHUNK):
            part = slice(i, i + self.REQUEST_CHUNK)
            if stats is not None and np.ndim(stats.mean) == 2:
                part_stats = FeatureStats(stats.mean[part], stats.std[part])
            else:
                part_stats = stats
            future: Future = Future()
            self._requests.put((frames[part], part_stats, future), timeout=timeout)
            self._wake.set()
            futures.append(future)
        parts = [f.result(timeout) for f in futures]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.model.labels)), np.float32)

    def run(self) -> None:
        while True:
            stopping = self._stop_event.is_set()
            jobs = self._collect()
            if jobs:
                self._process(jobs)
            served = self._serve_request()
            now = time.monotonic()
            if now - self._last_status >= self.status_every_s:
                self._last_status = now
                for source in self.sources:
                    self._emit_status(source)
            if stopping:
                # Finish what was captured before the stop, then end.
                while any(source.ring.available for source in self.sources):
                    self._process(self._collect())
                for source in self.sources:
                    self._emit_status(source)
                self._cancel_requests()
                return
            if not jobs and not served:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _cancel_requests(self) -> None:
        while True:
            try:
                _, _, future = self._requests.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the analyzer is shutting down"))

    def _serve_request(self) -> bool:
        try:
            frames, stats, future = self._requests.get_nowait()
        except queue.Empty:
            return False
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(self.model.predict(frames, stats))
            except Exception as exc:
                future.set_exception(exc)
        return True

    @property
    def max_adaptation(self) -> float:
        """The model's adaptation limit (0: adaptation off)."""
        adaptation = getattr(self.model, "adaptation", None)
        return float(adaptation.max_weight) if adaptation is not None else 0.0

    def _emit_status(self, source: Source) -> None:
        try:
            message = source.status()
        except Exception:
            log.exception("stream %s: no status", source.stream_id)
            return
        # What "fully adapted" is, so a dashboard can tell a channel still calibrating.
        message.setdefault("adaptation", self.max_adaptation)
        self._safe_emit(message)

    def _collect(self) -> list[WindowJob]:
        jobs: list[WindowJob] = []
        for source in self.sources:
            try:
                if source.ring.available:
                    # At most one hop's worth of audio per source per turn: a worker that
                    # falls behind keeps bounded batches (and memory); the ring counts the loss.
                    start, frames = source.ring.read(self._read_limit(source))
                    jobs.extend(source.analyzer.push(start, frames))
                elif source.exhausted and not source.analyzer.flushed:
                    jobs.extend(source.analyzer.flush())
            except Exception:  # one broken stream must not stop the others
                log.exception("stream %s: could not process audio", source.stream_id)
        if jobs or any(t.pending_chunks for s in self.sources for t in s.analyzer.trackers):
            if self.vad is None:
                from streamer.vad import SileroVAD

                self.vad = SileroVAD()
            self.vad.score([t for s in self.sources for t in s.analyzer.trackers])
            for job in jobs:
                job.analyzer.resolve_speech(job)
        return jobs

    @staticmethod
    def _read_limit(source: Source) -> int:
        analyzer = source.analyzer
        return max(1, int(analyzer.hop * analyzer.input_rate / analyzer.config.sample_rate))

    def _features(self, jobs: list[WindowJob]) -> None:
        """Set ``job.frames`` for every window, batched across streams.

        A window one hop after its channel's previous window reuses that
        window's frames and computes only the hop's new frames (the same
        numbers: features are frame-local, see ``streamer.features``); other
        windows (a channel's first, after a gap, the final partial one) are
        computed whole. Either way one vectorised STFT per kind and length.
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

    MODEL_BATCH = 32  # speech windows per model call; their messages go out as soon as it returns

    def _process(self, jobs: list[WindowJob]) -> None:
        try:
            self._features(jobs)
        except Exception:
            log.exception("features failed on a batch of %d windows", len(jobs))
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

    def _adapt(self, jobs: list[WindowJob], frames: np.ndarray | None) -> FeatureStats | None:
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
        probs: dict[int, np.ndarray] = {}
        try:
            frames = np.stack([j.frames for j in speech]) if speech else None
            stats = self._adapt(jobs, frames)
            if speech:
                probs = dict(zip(map(id, speech), self.model.predict(frames, stats)))
        except Exception:
            log.exception("model failed on a batch of %d windows", len(speech))
        for job in jobs:
            if job.speech and id(job) not in probs:
                continue  # failed batch: already logged
            message = job.analyzer.complete(job, probs.get(id(job)))
            self._safe_emit(message)
            if self.alerts is not None:
                for event in self.alerts.evaluate(message):
                    self._safe_emit(event)

    def _safe_emit(self, message: dict) -> None:
        try:
            self.emit(message)
        except Exception:
            log.exception("could not deliver a message")
