"""Pure parts of the live path: ring buffer, windows, rolling scores, messages, worker."""

import time

import numpy as np
import pytest

from streamer.features import FeatureConfig
from streamer.labels import EMOTIONS
from streamer.messages import scores_message, status_message
from streamer.pipeline import AnalysisWorker, StreamAnalyzer
from streamer.ringbuffer import AudioRing
from streamer.scoring import RollingScores
from streamer.vad import FunctionVAD
from streamer.windowing import SlidingWindows

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


def test_ring_blocking_write_waits_for_reader():
    ring = AudioRing(4)
    assert ring.write_blocking(ramp(0, 4), timeout=0.1)
    assert not ring.write_blocking(ramp(4, 1), timeout=0.05)  # full: times out, nothing lost
    ring.read(2)
    assert ring.write_blocking(ramp(4, 2), timeout=0.1)
    assert ring.read()[1][:, 0].tolist() == [2, 3, 4, 5]


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
    }
    silent = scores_message("s", "mono", 1.0, None, None, 0.5)
    assert (silent["speech"], silent["probs"], silent["rolling"], silent["top"]) == (False, None, None, None)
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
    from streamer.vad import CHUNK, SpeechTracker

    tracker = SpeechTracker()
    tracker.feed(np.ones(100, np.float32))
    tracker.skip(CHUNK * 3)
    assert tracker.samples_decided == CHUNK * 3 and tracker.pending_chunks == 0
    assert tracker.speech_fraction(0, CHUNK * 3) == 0.0


class FakeModel:
    config = CONFIG

    def __init__(self):
        self.batches = []

    def predict(self, frames):
        self.batches.append(len(frames))
        return np.tile(np.eye(8, dtype=np.float32)[4], (len(frames), 1))


class FakeSource:
    exhausted = False

    def __init__(self, stream_id, audio):
        self.stream_id = stream_id
        self.ring = AudioRing(len(audio))
        self.ring.write(audio)
        self.analyzer = StreamAnalyzer(stream_id, ["mono"], 16000, CONFIG)

    def status(self):
        return status_message(self.stream_id, "fake", "running", 0, self.analyzer.windows_done)


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
    from streamer.features import frame_features

    class Recording(FakeModel):
        def predict(self, frames):
            self.seen = getattr(self, "seen", []) + list(frames)
            return super().predict(frames)

    model = Recording()
    worker = AnalysisWorker(model, lambda m: None, vad=FunctionVAD(lambda c: 1.0))
    audio = np.concatenate([speech_audio, speech_audio])
    source = FakeSource("a", audio)
    worker.add(source)
    jobs = []
    for start in range(0, audio.size, 2400):  # 0.15 s blocks, as a device would deliver
        pos, frames = start, audio[start : start + 2400, None]
        batch = source.analyzer.push(pos, frames)
        FunctionVAD(lambda c: 1.0).score(source.analyzer.trackers)
        for job in batch:
            source.analyzer.resolve_speech(job)
        worker._process(batch)
        jobs += batch
    assert len(jobs) == int((audio.size - CONFIG.window_samples) / 8000) + 1
    for job in jobs:
        expected = frame_features(audio[job.end - CONFIG.window_samples : job.end], CONFIG)
        np.testing.assert_allclose(job.frames, expected, atol=2e-3)
