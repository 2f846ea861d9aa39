"""Pure parts of the live path: ring buffer, windows, rolling scores, messages, worker."""

import time

import numpy as np
import pytest

from streamer.analysis.analyzer import StreamAnalyzer
from streamer.analysis.vad import FunctionVAD
from streamer.core.adaptation import AdaptationConfig, SpeakerAdapter
from streamer.core.features import FeatureConfig, FeatureStats
from streamer.core.labels import EMOTIONS
from streamer.core.messages import scores_message, status_message
from streamer.core.rolling import RollingScores
from streamer.core.windowing import SlidingWindows
from streamer.sources.base import AnalysisFigures, Source
from streamer.sources.ring import AudioRing
from streamer.workers.thread import AnalysisWorker

CONFIG = FeatureConfig()


def ramp(start: int, n: int, channels: int = 1) -> np.ndarray:
    return np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None], channels, axis=1)


def test_ring_wraps_around_in_order():
    ring = AudioRing(10, channels=2)
    pos = 0
    for n in (3, 4, 6, 2, 5):
        ring.write(ramp(pos, n, 2))
        start, frames = ring.read()
        assert start == pos and frames[:, 0].tolist() == list(range(pos, pos + n))
        pos += n
    assert ring.overruns == 0 and ring.available == 0


def test_ring_overrun_keeps_newest_and_counts_loss():
    ring = AudioRing(8)
    ring.write(ramp(0, 5))
    ring.write(ramp(5, 7))  # 12 written, capacity 8: 4 lost
    start, frames = ring.read()
    assert start == 4 and frames[:, 0].tolist() == list(range(4, 12))
    assert ring.overruns == 1 and ring.overrun_samples == 4
    ring.write(ramp(12, 20))  # one write larger than the ring
    start, frames = ring.read()
    assert start == 24 and frames[:, 0].tolist() == list(range(24, 32))
    assert ring.overrun_samples == 4 + 12


def test_sliding_windows_by_sample_count():
    cutter = SlidingWindows(window=10, hop=4)
    out = []
    for chunk in np.array_split(np.arange(30, dtype=np.float32), 7):
        out += cutter.push(chunk)
    assert [end for end, _ in out] == [10, 14, 18, 22, 26, 30]
    for end, window in out:
        assert window.tolist() == list(range(end - 10, end))


def test_windows_equal_slices_of_the_stream_for_any_pushes_and_gaps():
    """Against a reference: the whole signal with lost stretches as zeros, sliced."""
    rng = np.random.default_rng(3)
    cutter = SlidingWindows(window=50, hop=20)
    signal, got = [], []
    for _ in range(300):
        if rng.random() < 0.1:  # a gap, sometimes longer than a window
            n = int(rng.integers(1, 120))
            cutter.skip(n)
            signal.append(np.zeros(n, np.float32))
        else:  # blocks from tiny to larger than the buffer
            block = rng.standard_normal(int(rng.choice([1, 7, 33, 150]))).astype(np.float32)
            got += cutter.push(block)
            signal.append(block)
    reference = np.concatenate(signal)
    assert len(got) > 100
    for end, window in got:
        np.testing.assert_array_equal(window, reference[end - 50 : end])


def test_rolling_scores_average_speech_within_horizon():
    rolling = RollingScores(horizon_s=2.0)
    a, b = np.eye(8)[4], np.eye(8)[3]
    assert rolling.update(1.0, a)[4] == 1.0
    r = rolling.update(1.5, b)
    assert r[4] == pytest.approx(0.5) and r[3] == pytest.approx(0.5)
    assert rolling.update(2.0, None)[4] == pytest.approx(0.5)  # silence adds nothing
    assert rolling.update(3.2, None)[3] == pytest.approx(1.0)  # window at 1.0 s left the horizon
    assert rolling.update(4.0, None) is None  # no speech left
    with pytest.raises(ValueError):
        RollingScores(0)


def test_message_formats():
    probs = np.full(8, 1 / 8)
    rolling = np.eye(8)[2]
    m = scores_message("desk-7", "caller", 12.34567, probs, rolling, 3.21)
    assert m == {
        "type": "scores",
        "stream": "desk-7",
        "channel": "caller",
        "t": 12.346,
        "speech": True,
        "probs": dict.fromkeys(EMOTIONS, 0.125),
        "rolling": {e: (1.0 if e == "happy" else 0.0) for e in EMOTIONS},
        "top": "happy",
        "latency_ms": 3.21,
        "arousal": 1.0,  # rolling: all happy
        "confident": True,  # no threshold given
        "adapted": 0.0,
    }
    silent = scores_message("s", "mono", 1.0, None, None, 0.5, adapted=np.float64(0.123456))
    assert (silent["speech"], silent["probs"], silent["rolling"], silent["top"]) == (False, None, None, None)
    assert silent["adapted"] == 0.123 and type(silent["adapted"]) is float
    s = status_message("s", "pulse", "running", 2, 10, lost_s=0.5)
    assert s["type"] == "status" and s["overruns"] == 2 and s["lost_s"] == 0.5
    with pytest.raises(ValueError):
        status_message("s", "x", "exploded", 0, 0)


LOUD = FunctionVAD(lambda c: float(np.abs(c).max() > 0.05))


def resolve(analyzer, jobs):
    LOUD.score(analyzer.trackers)
    for job in jobs:
        analyzer.resolve_speech(job)
    return jobs


def test_stream_analyzer_resamples_and_stamps_by_sample_count():
    rate = 48000
    analyzer = StreamAnalyzer("s", ["agent", "caller"], rate, CONFIG, hop_s=0.5)
    t = np.arange(rate * 3) / rate
    agent = 0.3 * np.sin(2 * np.pi * 300 * t)
    caller = np.zeros_like(agent)
    frames = np.stack([agent, caller], axis=1).astype(np.float32)
    jobs = []
    for i in range(0, len(frames), 4800):  # 0.1 s blocks
        jobs += resolve(analyzer, analyzer.push(i, frames[i : i + 4800]))
    ends = sorted({j.end for j in jobs})
    assert [e / CONFIG.sample_rate for e in ends] == [2.0, 2.5]  # 3 s minus the resampler's delay
    assert {(j.channel, j.speech) for j in jobs} == {(0, True), (1, False)}
    assert all(j.audio.size == CONFIG.window_samples for j in jobs)


def test_stream_analyzer_skips_lost_audio_so_time_stays_true():
    analyzer = StreamAnalyzer("s", ["mono"], 16000, CONFIG)
    assert analyzer.push(0, np.zeros((16000, 1), np.float32)) == []
    jobs = analyzer.push(24000, np.full((32000, 1), 0.1, np.float32))  # 0.5 s lost in between
    # Windows ending inside the gap are skipped; later ones keep the 0.5 s grid of true time.
    assert [j.end for j in jobs] == [32000, 40000, 48000, 56000]
    assert analyzer.trackers[0].samples_decided + analyzer.trackers[0].pending_chunks * 512 >= 24000
    first = jobs[0].audio
    assert np.all(first[: 16000 - 8000] == 0)  # the lost stretch reads as silence


def test_tracker_skip_counts_silence():
    from streamer.analysis.vad import CHUNK, SpeechTracker

    tracker = SpeechTracker()
    tracker.feed(np.ones(100, np.float32))
    tracker.skip(CHUNK * 3)
    assert tracker.samples_decided == CHUNK * 3 and tracker.pending_chunks == 0
    assert tracker.speech_fraction(0, CHUNK * 3) == 0.0


class FakeModel:
    config = CONFIG

    def __init__(self):
        self.batches = []
        self.stats = []  # the stats argument of each call

    def predict(self, frames, stats=None):
        self.batches.append(len(frames))
        self.stats.append(stats)
        return np.tile(np.eye(8, dtype=np.float32)[4], (len(frames), 1))


class FakeSource(Source):
    def __init__(self, stream_id, audio):
        self.stream_id = stream_id
        self.ring = AudioRing(len(audio))
        self.ring.write(audio)
        self.rate, self.channels, self.figures = 16000, ["mono"], AnalysisFigures()

    def status(self):
        return status_message(self.stream_id, "fake", "running", 0, self.figures.windows)


def test_worker_batches_across_streams_and_skips_silence():
    model = FakeModel()
    out = []
    worker = AnalysisWorker(model, out.append, poll_s=0.01, vad=LOUD)
    speech = (0.3 * np.sin(np.arange(48000) / 5)).astype(np.float32)
    worker.add(FakeSource("a", speech))
    worker.add(FakeSource("b", speech))
    worker.add(FakeSource("quiet", np.zeros(48000, np.float32)))
    worker.start()
    time.sleep(0.3)
    worker.stop()
    scores = [m for m in out if m["type"] == "scores"]
    assert len(scores) == 9  # 3 streams x windows ending at 2.0, 2.5, 3.0 s
    assert model.batches == [2, 2, 2]  # each turn: both speech streams' windows in one model call
    assert all(m["top"] == "angry" for m in scores if m["stream"] != "quiet")
    assert all(not m["speech"] and m["probs"] is None for m in scores if m["stream"] == "quiet")
    assert all(m["latency_ms"] >= 0 for m in scores)
    assert {m["stream"] for m in out if m["type"] == "status"} == {"a", "b", "quiet"}
    # A model without adaptation: population statistics (no stats argument), nothing adapted.
    assert model.stats == [None, None, None]
    assert all(m["adapted"] == 0.0 for m in scores)
    assert all(m["adaptation"] == 0.0 for m in out if m["type"] == "status")


def test_flush_scores_the_unscored_tail():
    cutter = SlidingWindows(window=10, hop=4)
    assert [e for e, _ in cutter.push(np.arange(16, dtype=np.float32))] == [10, 14]
    end, window = cutter.flush()
    assert end == 16 and window.tolist() == list(range(6, 16))
    assert cutter.flush() is None
    short = SlidingWindows(window=10, hop=4)
    short.push(np.ones(3, np.float32))
    end, window = short.flush()
    assert end == 3 and window.tolist() == [0] * 7 + [1] * 3
    exact = SlidingWindows(window=10, hop=4)
    exact.push(np.ones(14, np.float32))
    assert exact.flush() is None  # the last window already ends at the last sample
    assert SlidingWindows(10, 4).flush() is None  # nothing pushed


def test_worker_features_equal_the_feature_function(speech_audio):
    """Incremental, batched stream features are the same numbers as frame_features(window)."""
    from streamer.core.features import frame_features

    class Recording(FakeModel):
        def predict(self, frames, stats=None):
            self.seen = getattr(self, "seen", []) + list(frames)
            return super().predict(frames, stats)

    model = Recording()
    worker = AnalysisWorker(model, lambda m: None, vad=FunctionVAD(lambda c: 1.0))
    audio = np.concatenate([speech_audio, speech_audio])
    source = FakeSource("a", audio)
    worker.add(source)
    (analyzer,) = worker.analyzers
    jobs = []
    for start in range(0, audio.size, 2400):  # 0.15 s blocks, as a device would deliver
        pos, frames = start, audio[start : start + 2400, None]
        batch = analyzer.push(pos, frames)
        FunctionVAD(lambda c: 1.0).score(analyzer.trackers)
        for job in batch:
            analyzer.resolve_speech(job)
        worker.step.process(batch)
        jobs += batch
    assert len(jobs) == int((audio.size - CONFIG.window_samples) / 8000) + 1
    for job in jobs:
        expected = frame_features(audio[job.end - CONFIG.window_samples : job.end], CONFIG)
        np.testing.assert_allclose(job.frames, expected, atol=2e-3)


# Speaker adaptation in the live path.

POPULATION = FeatureStats(np.zeros(CONFIG.n_mels, np.float32), np.ones(CONFIG.n_mels, np.float32))


class AdaptingModel(FakeModel):
    """FakeModel with speaker adaptation on, as a model trained for it has."""

    def __init__(self, max_weight=0.5, prior_windows=4.0):
        super().__init__()
        self.adaptation = AdaptationConfig(prior_windows=prior_windows, max_weight=max_weight)

    def new_adapter(self):
        return SpeakerAdapter(POPULATION, CONFIG, self.adaptation)

    def weights(self, speech_seen):
        return [round(self.adaptation.weight(k), 3) for k in speech_seen]


def tone(seconds, amplitude=0.3, freq=300.0):
    t = np.arange(int(seconds * 16000)) / 16000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds):
    return np.zeros(int(seconds * 16000), np.float32)


def drive(worker, analyzer, audio, block=8000, vad=LOUD):
    """Push ``audio`` (samples[, channels]) through the analyzer and the worker's batch path, turn by turn."""
    audio = audio.reshape(len(audio), -1)
    jobs = []
    for start in range(0, len(audio), block):
        batch = analyzer.push(start, audio[start : start + block])
        vad.score(analyzer.trackers)
        for job in batch:
            analyzer.resolve_speech(job)
        worker.step.process(batch)
        jobs += batch
    return jobs


def scores_of(messages, channel=None):
    return [m for m in messages if m["type"] == "scores" and channel in (None, m["channel"])]


def test_channel_adaptation_grows_with_speech_and_messages_carry_it():
    model = AdaptingModel()
    out = []
    worker = AnalysisWorker(model, out.append, vad=LOUD)
    analyzer = StreamAnalyzer("s", ["mono"], 16000, CONFIG)
    drive(worker, analyzer, np.concatenate([silence(2.5), tone(6.0), silence(3.0), tone(2.0)]))
    scores = scores_of(out)
    seen = np.cumsum([m["speech"] for m in scores])
    assert seen[-1] >= 10 and not all(m["speech"] for m in scores)
    # Each message: the weight after the channel's speech windows so far; silence windows change nothing.
    assert [m["adapted"] for m in scores] == model.weights(seen)
    assert scores[0]["adapted"] == 0.0 and scores[-1]["adapted"] > 0.35
    assert analyzer.adapters[0].moments.count == seen[-1]
    # One model call per batch, with one stats row per speech window.
    assert [len(s.mean) for s in model.stats] == model.batches == [1] * seen[-1]


def test_channels_adapt_independently_with_the_numbers_of_observe():
    model = AdaptingModel()
    out = []
    worker = AnalysisWorker(model, out.append, vad=LOUD)
    analyzer = StreamAnalyzer("s", ["agent", "caller"], 16000, CONFIG)
    agent = tone(8.0, freq=220.0)
    caller = np.concatenate([silence(4.0), tone(4.0, amplitude=0.1, freq=700.0)])
    jobs = drive(worker, analyzer, np.stack([agent, caller], axis=1))
    for name in ("agent", "caller"):
        mine = scores_of(out, name)
        assert [m["adapted"] for m in mine] == model.weights(np.cumsum([m["speech"] for m in mine]))
    assert scores_of(out, "agent")[0]["adapted"] > 0 and scores_of(out, "caller")[0]["adapted"] == 0.0
    assert scores_of(out, "agent")[-1]["adapted"] > scores_of(out, "caller")[-1]["adapted"] > 0

    # The rows that reached the model are each channel's own SpeakerAdapter.observe, window by window.
    speech = [j for j in jobs if j.speech]
    mean = np.concatenate([s.mean for s in model.stats])
    std = np.concatenate([s.std for s in model.stats])
    assert len(mean) == len(speech)
    for ch in (0, 1):
        rows = [i for i, j in enumerate(speech) if j.channel == ch]
        expected = SpeakerAdapter(POPULATION, CONFIG, model.adaptation).observe(
            np.stack([speech[i].frames for i in rows])
        )
        np.testing.assert_allclose(mean[rows], expected.mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std[rows], expected.std, rtol=1e-5, atol=1e-5)
    assert not np.allclose(analyzer.adapters[0].moments.total, analyzer.adapters[1].moments.total)


def test_adaptation_restarts_after_a_long_stretch_without_speech():
    model = AdaptingModel()
    call = np.concatenate([tone(5.0), silence(7.0), tone(3.0)])
    out, out_default = [], []
    drive(
        AnalysisWorker(model, out.append, vad=LOUD), StreamAnalyzer("s", ["mono"], 16000, CONFIG, adapt_reset_s=3), call
    )
    drive(AnalysisWorker(model, out_default.append, vad=LOUD), StreamAnalyzer("s", ["mono"], 16000, CONFIG), call)
    scores = scores_of(out)
    last_speech, peak = max((m["t"], m["adapted"]) for m in scores if m["speech"] and m["t"] < 10.0)
    assert peak > 0.3
    gap = [m for m in scores if last_speech < m["t"] and not m["speech"]]
    # Silence within 3 s of stream time keeps what was learnt; then the channel starts afresh.
    assert all(m["adapted"] == peak for m in gap if m["t"] - last_speech < 3.0)
    assert all(m["adapted"] == 0.0 for m in gap if m["t"] - last_speech >= 3.0)
    assert any(m["t"] - last_speech >= 3.0 for m in gap)
    after = [m for m in scores if m["t"] > last_speech and m["speech"]]
    assert [m["adapted"] for m in after] == model.weights(range(1, len(after) + 1))
    # With the default (30 s) the same call keeps adapting across the pause.
    default_after = [m for m in scores_of(out_default) if m["t"] > last_speech and m["speech"]]
    assert default_after[0]["adapted"] > peak
    with pytest.raises(ValueError):
        StreamAnalyzer("s", ["mono"], 16000, CONFIG, adapt_reset_s=0)


def test_a_new_stream_starts_unadapted_and_status_gives_the_limit():
    model = AdaptingModel(max_weight=0.4)
    out = []
    worker = AnalysisWorker(model, out.append, vad=LOUD)
    first = StreamAnalyzer("a", ["mono"], 16000, CONFIG)
    drive(worker, first, tone(6.0))
    before = len(out)
    second = StreamAnalyzer("a", ["mono"], 16000, CONFIG)  # the stream started again
    drive(worker, second, tone(3.0))
    assert out[before - 1]["adapted"] > out[before]["adapted"] == round(model.adaptation.weight(1), 3)
    assert second.adapters[0] is not first.adapters[0]
    worker._emit_status(FakeSource("a", silence(0.1)))
    assert out[-1]["type"] == "status" and out[-1]["adaptation"] == 0.4


def test_upload_requests_carry_their_stats_in_chunks():
    model = AdaptingModel()
    worker = AnalysisWorker(model, lambda m: None, vad=LOUD)
    frames = np.zeros((70, CONFIG.window_frames, CONFIG.n_mels), np.float32)
    rows = FeatureStats(np.arange(70 * CONFIG.n_mels, dtype=np.float32).reshape(70, -1), np.ones((70, CONFIG.n_mels)))
    whole = FeatureStats(np.full(CONFIG.n_mels, 2.0, np.float32), np.ones(CONFIG.n_mels, np.float32))
    worker.start()
    try:
        assert worker.predict(frames, rows).shape == (70, 8)
        worker.predict(frames[:5], whole)
        worker.predict(frames[:3])
    finally:
        worker.stop()
    assert model.batches == [32, 32, 6, 5, 3]
    np.testing.assert_array_equal(np.concatenate([s.mean for s in model.stats[:3]]), rows.mean)
    np.testing.assert_array_equal(np.concatenate([s.std for s in model.stats[:3]]), rows.std)
    assert model.stats[3] is whole and model.stats[4] is None


def test_live_windows_get_adapted_stats_with_the_shipped_model(model, speech_audio, monkeypatch):
    """Through the real EmotionModel: each speech window is scored with its channel's observe() stats."""
    monkeypatch.setattr(model, "adaptation", AdaptationConfig(max_weight=0.5))
    out = []
    always = FunctionVAD(lambda c: 1.0)
    worker = AnalysisWorker(model, out.append, vad=always)
    analyzer = StreamAnalyzer("s", ["mono"], 16000, model.config)
    jobs = drive(worker, analyzer, np.concatenate([speech_audio, speech_audio]), block=2400, vad=always)
    frames = np.stack([j.frames for j in jobs if j.speech])
    stats = model.new_adapter().observe(frames)
    expected = model.predict(frames, stats)
    scores = [m for m in scores_of(out) if m["speech"]]
    assert len(scores) == len(frames) >= 10
    np.testing.assert_allclose([list(m["probs"].values()) for m in scores], expected, atol=2e-4)
    assert scores[-1]["adapted"] == round(model.adaptation.weight(len(frames)), 3) > 0
    assert not np.allclose(expected, model.predict(frames), atol=1e-3)  # adaptation changed the scores


def test_adapt_reset_option_is_validated():
    from streamer.app import cli

    assert cli.parse_args([]).adapt_reset_s == 30.0
    assert cli.parse_args(["--adapt-reset-s", "12.5"]).adapt_reset_s == 12.5
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            cli.parse_args(["--adapt-reset-s", bad])


def test_one_pacer_delivers_files_in_real_time_by_position(tmp_path):
    """The file pacer: blocks due by stream time, caught up by position after a late tick; fast fills rings."""
    import soundfile as sf

    from streamer.sources.files import FilePacer, FileSource

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"call{i}.wav")
        sf.write(paths[-1], (np.arange(16000 * 3) % 100 / 1000).astype(np.float32), 16000)
    sources = [FileSource(p, p.stem, ["mono"]) for p in paths]
    for source in sources:
        source.start()
    sources[0].feed_until(0.5)
    assert sources[0].position == 8000 and sources[0].ring.available == 8000  # exactly what is due
    sources[0].feed_until(2.0)  # a late tick: catches up to the position due, no more
    assert sources[0].position == 32000
    sources[0].feed_until(10.0)
    assert sources[0].position == 48000 and not sources[0].reading  # the end of the file
    start, frames = sources[0].ring.read()
    assert start == 0 and np.allclose(frames[:100, 0], np.arange(100) / 1000, atol=1e-3)  # 16-bit WAV

    pacer = FilePacer(sources[1:], fast=False)
    pacer.start()
    time.sleep(0.5)
    delivered = [s.position / 16000 for s in sources[1:]]
    pacer.stop()
    assert all(0.35 <= seconds <= 0.65 for seconds in delivered), delivered  # real time, all files at once
    assert all(s.state == "stopped" and not s.reading for s in sources[1:])

    fast = [FileSource(p, p.stem, ["mono"], fast=True) for p in paths]
    pacer = FilePacer(fast, fast=True)
    pacer.start()
    deadline = time.monotonic() + 5
    while any(s.reading for s in fast) and time.monotonic() < deadline:
        for s in fast:
            s.ring.read()  # the analysis taking what arrives
        time.sleep(0.01)
    assert [s.position for s in fast] == [48000] * 3 and all(s.ring.overruns == 0 for s in fast)
