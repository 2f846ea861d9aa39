"""One analysis turn across streams: collect → VAD → features → adaptation → model → messages.

No thread and no I/O; the workers (``streamer.workers``) run it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from streamer.analysis.analyzer import StreamAnalyzer, WindowJob
from streamer.core.adaptation import stats_after, window_moments
from streamer.core.errors import error_text
from streamer.core.features import FeatureConfig, FeatureStats, frame_features
from streamer.core.histogram import LatencyHistogram

log = logging.getLogger(__name__)


class ScoringStep:
    """One turn of analysis across streams: collect → VAD → features → model groups → messages.

    No threads and no I/O: ``turn(analyzers)`` reads what their sources' rings
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

    def prepare(self) -> None:
        """Load the VAD now (default: Silero), so that the first windows do not wait for it."""
        if self.vad is None:
            from streamer.analysis.vad import SileroVAD

            self.vad = SileroVAD()

    def turn(self, analyzers: list[StreamAnalyzer]) -> int:
        """Process what the analyzers' sources hold now; returns the number of windows cut."""
        jobs = self.collect(analyzers)
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

    def collect(self, analyzers: list[StreamAnalyzer]) -> list[WindowJob]:
        """New windows of every analyzer's source, with their speech decided."""
        jobs: list[WindowJob] = []
        for analyzer in analyzers:
            source = analyzer.source
            try:
                available = source.ring.available
                if available and (available >= analyzer.frames_wanted(source.read_block_s) or source.input_ended):
                    # At most one hop's worth of audio per source per turn: a worker that
                    # falls behind keeps bounded batches (and memory); the ring counts the loss.
                    start, frames = source.ring.read(self._read_limit(analyzer))
                    jobs.extend(analyzer.push(start, frames))
                elif source.exhausted and not analyzer.flushed:
                    jobs.extend(analyzer.flush())
            except Exception as exc:  # one broken stream must not stop the others
                self.fail("reading audio", [analyzer], exc)
        trackers = [t for a in analyzers for t in a.trackers]
        if jobs or any(t.pending_chunks for t in trackers):
            try:
                self.prepare()
                self.vad.score(trackers)
                for job in jobs:
                    job.analyzer.resolve_speech(job)
            except Exception as exc:
                self.fail("voice activity detection", analyzers, exc)
                return []
        return jobs

    @staticmethod
    def _read_limit(analyzer: StreamAnalyzer) -> int:
        return max(1, int(analyzer.hop * analyzer.input_rate / analyzer.config.sample_rate))

    def features(self, jobs: list[WindowJob]) -> None:
        """Set ``job.frames`` for every window, batched across streams.

        A window one hop after its channel's previous window reuses that
        window's frames and computes only the hop's new frames (the same
        numbers: features are frame-local, see ``streamer.core.features``); other
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
        steps = []
        for job in jobs:  # a channel's jobs come in time order (push and flush cut them so)
            if job.analyzer.adapters is None:
                job.analyzer.use_adapters(self.model.new_adapter)
            adapter = job.analyzer.adapter(job)
            if job.speech:
                steps.append(adapter.add(mean[len(steps)], mean_sq[len(steps)]))
                job.adapted = steps[-1].weight
            else:
                job.adapted = adapter.weight
        return stats_after(adapter.population, adapter.feature_config, steps)  # a speech job set adapter

    def _classify_and_emit(self, jobs: list[WindowJob]) -> None:
        speech = [j for j in jobs if j.speech]
        try:
            frames = np.stack([j.frames for j in speech]) if speech else None
            stats = self.adapt(jobs, frames)
            probs = dict(zip(map(id, speech), self.model.predict(frames, stats))) if speech else {}
        except Exception as exc:
            self.fail(f"the model on {len(speech)} windows", [j.analyzer for j in jobs], exc)
            return  # the group's windows are lost (counted); silence in it too, to keep each channel in order
        confident_at = getattr(self.model, "confident_at", 0.0)
        for job in jobs:
            message = job.analyzer.complete(job, probs.get(id(job)), confident_at)
            self.windows += 1
            self.latency.observe(message["latency_ms"] / 1000.0)
            self.emit(message)
            if self.alerts is not None:
                for event in self.alerts.evaluate(message):
                    self.emit(event)
