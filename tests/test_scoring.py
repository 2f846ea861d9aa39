"""A finished recording's scoring: every window standardised with all of its speech, then classified and averaged."""

import numpy as np

from streamer.analysis.scoring import overall, recording_stats, score_recording
from streamer.core.adaptation import AdaptationConfig, SpeakerAdapter
from streamer.core.features import FeatureConfig, FeatureStats

CONFIG = FeatureConfig()
POPULATION = FeatureStats(np.zeros(CONFIG.n_mels, np.float32), np.ones(CONFIG.n_mels, np.float32))


def adapter():
    return SpeakerAdapter(POPULATION, CONFIG, AdaptationConfig(prior_windows=4.0, max_weight=0.5))


def test_every_batch_gets_the_whole_recordings_stats_and_the_probabilities_line_up():
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((70, CONFIG.window_frames, CONFIG.n_mels)).astype(np.float32)
    seen = []

    def predict(frames, stats):
        seen.append(stats)
        return np.tile(frames[:, 0, :8].mean(axis=1, keepdims=True), (1, 8))  # one number per window

    def batches():
        for i in range(0, 70, 32):
            yield windows[i : i + 32]

    probs, weight = score_recording(batches, 70, 8, predict, adapter())
    expected_stats, expected_weight = adapter().stats_for_whole(windows)
    assert weight == expected_weight > 0 and len(seen) == 3
    for stats in seen:
        np.testing.assert_allclose(stats.mean, expected_stats.mean, rtol=1e-5)
        np.testing.assert_allclose(stats.std, expected_stats.std, rtol=1e-5)
    np.testing.assert_allclose(probs[:, 0], windows[:, 0, :8].mean(axis=1), rtol=1e-6)


def test_without_adaptation_or_speech():
    assert recording_stats(None, np.zeros((3, 1, 1))) == (None, 0.0)
    probs, weight = score_recording(lambda: iter(()), 0, 8, lambda f, s: f, adapter())
    assert probs.shape == (0, 8) and weight == 0.0 and overall(probs) is None
    np.testing.assert_allclose(overall(np.array([[0.2, 0.6], [0.4, 0.8]])), [0.3 / 1.0, 0.7 / 1.0])
