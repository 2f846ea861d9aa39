"""Speaker adaptation (streamer/adaptation.py): pure numpy, no model."""

import numpy as np
import pytest

from streamer.core.adaptation import AdaptationConfig, SpeakerAdapter, adapted_stats, speaker_stats
from streamer.core.features import FeatureConfig, FeatureStats, level_normalize, normalize_windows

CONFIG = FeatureConfig()
FRAMES, MELS = CONFIG.window_frames, CONFIG.n_mels
POPULATION = FeatureStats(np.linspace(-1, 1, MELS).astype(np.float32), np.linspace(0.5, 2, MELS).astype(np.float32))


def windows(n: int, seed: int = 0, offset: np.ndarray | float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(-40, 6, (n, FRAMES, MELS)) + offset).astype(np.float32)


def adapter(max_weight: float = 0.5, prior_windows: float = 20.0) -> SpeakerAdapter:
    return SpeakerAdapter(POPULATION, CONFIG, AdaptationConfig(prior_windows=prior_windows, max_weight=max_weight))


def test_config_weight_and_validation():
    config = AdaptationConfig(prior_windows=20, max_weight=0.5)
    for n in (0, 1, 5, 20, 100, 10_000):
        assert config.weight(n) == pytest.approx(0.5 * n / (n + 20))
    assert config.weight(20) == pytest.approx(0.25)  # half of max_weight after prior_windows
    assert AdaptationConfig.from_dict(None).max_weight == 0.0  # models without the key: off
    assert AdaptationConfig.from_dict(config.to_dict()) == config
    for bad in ({"prior_windows": 0}, {"max_weight": 1.5}, {"max_weight": -0.1}):
        with pytest.raises(ValueError):
            AdaptationConfig(**bad)


def test_adapter_weight_follows_the_speech_windows_seen():
    a = adapter(max_weight=0.6, prior_windows=10)
    assert a.weight == 0.0
    a.observe(windows(7))
    assert a.weight == pytest.approx(0.6 * 7 / 17)
    a.observe(windows(3, seed=1))
    assert a.weight == pytest.approx(0.6 * 10 / 20)
    a.reset()
    assert a.weight == 0.0


def test_observe_equals_the_batch_formula():
    """Window i is standardised with the talker's stats over windows 0..i, blended by weight(i + 1)."""
    w = windows(12)
    got = adapter().observe(w)
    x = level_normalize(w, CONFIG).astype(np.float64)
    means, squares = x.mean(axis=1), np.square(x).mean(axis=1)
    for i in range(len(w)):
        mu = means[: i + 1].mean(axis=0)
        sd = np.sqrt(np.maximum(squares[: i + 1].mean(axis=0) - mu**2, 0)) + 1e-3
        weight = 0.5 * (i + 1) / (i + 1 + 20)
        np.testing.assert_allclose(got.mean[i], weight * mu + (1 - weight) * POPULATION.mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.std[i], weight * sd + (1 - weight) * POPULATION.std, rtol=1e-5, atol=1e-5)


def test_incremental_observe_equals_all_at_once():
    w = windows(15, seed=3)
    whole = adapter().observe(w)
    stepwise = adapter()
    parts = [stepwise.observe(w[a:b]) for a, b in ((0, 3), (3, 4), (4, 10), (10, 15))]
    np.testing.assert_allclose(np.concatenate([p.mean for p in parts]), whole.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([p.std for p in parts]), whole.std, rtol=1e-6, atol=1e-6)
    assert whole.mean.shape == whole.std.shape == (15, MELS)


def test_weight_zero_gives_the_population_stats():
    stats = adapter(max_weight=0.0).observe(windows(5))
    np.testing.assert_array_equal(stats.mean, np.tile(POPULATION.mean, (5, 1)))
    np.testing.assert_array_equal(stats.std, np.tile(POPULATION.std, (5, 1)))
    talker = speaker_stats(CONFIG, 4.0, np.ones(MELS) * 8, np.ones(MELS) * 20)
    blended = adapted_stats(POPULATION, talker, 0.0, 0.0, CONFIG)
    np.testing.assert_array_equal(blended.mean, POPULATION.mean)
    np.testing.assert_array_equal(blended.std, POPULATION.std)
    whole, weight = adapter(max_weight=0.0).stats_for_whole(windows(5))
    assert weight == 0.0
    np.testing.assert_array_equal(whole.mean, POPULATION.mean)


def test_a_talkers_constant_offset_is_removed_as_the_weight_nears_one():
    """A talker whose bands sit off the population's: standardised by their own stats, the offset goes."""
    base = windows(200, seed=5)
    # The population is the base talker's own statistics; the new talker differs by a per-band offset.
    x = level_normalize(base, CONFIG)
    population = FeatureStats(x.mean(axis=(0, 1)), x.std(axis=(0, 1)))
    offset = np.where(np.arange(MELS) % 2, 4.0, -4.0)  # zero mean: survives level normalisation
    talker = base + offset.astype(np.float32)

    def residual(max_weight: float) -> float:
        config = AdaptationConfig(prior_windows=1.0, max_weight=max_weight)
        stats, _ = SpeakerAdapter(population, CONFIG, config).stats_for_whole(talker)
        normalised = normalize_windows(talker, CONFIG, stats)
        return float(np.abs(normalised.mean(axis=(0, 1))).mean())

    residuals = [residual(w) for w in (0.0, 0.5, 0.9, 1.0)]
    assert residuals[0] > 0.5  # population stats: every band visibly off-centre
    assert residuals == sorted(residuals, reverse=True)
    assert residuals[-1] < 0.05  # weight 200/201: offset-free


def test_stats_for_whole_leaves_the_adapter_alone_and_equals_observe_at_the_end():
    a = adapter()
    a.observe(windows(6, seed=7))
    count, total = a.moments.count, a.moments.total.copy()
    w = windows(9, seed=8)
    stats, weight = a.stats_for_whole(w)
    assert (
        a.moments.count == count and np.array_equal(a.moments.total, total) and a.weight == adapter().config.weight(6)
    )
    # A file's stats are what a fresh adapter knows after all of its windows.
    last = adapter().observe(w)
    assert weight == pytest.approx(adapter().config.weight(9))
    np.testing.assert_allclose(stats.mean, last.mean[-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.std, last.std[-1], rtol=1e-6, atol=1e-6)
    empty, weight = a.stats_for_whole(np.zeros((0, FRAMES, MELS), np.float32))
    assert weight == 0.0
    np.testing.assert_array_equal(empty.mean, POPULATION.mean)


def test_reset_starts_afresh():
    a = adapter()
    a.observe(windows(10, seed=1))
    a.reset()
    w = windows(4, seed=2)
    again, fresh = a.observe(w), adapter().observe(w)
    np.testing.assert_array_equal(again.mean, fresh.mean)
    np.testing.assert_array_equal(again.std, fresh.std)


def test_observing_no_windows_changes_nothing():
    a = adapter()
    stats = a.observe(np.zeros((0, FRAMES, MELS), np.float32))
    assert stats.mean.shape == (0, MELS) and a.weight == 0.0


PROSODY = FeatureConfig(prosody=True)
LEVEL, VOICED, PITCH = PROSODY.channel("level"), PROSODY.channel("voiced"), PROSODY.channel("pitch")


def prosody_windows(n: int, pitch: float, level: float, voiced_share: float = 0.6, seed: int = 0) -> np.ndarray:
    """Windows of a talker at a pitch (st) and level (dB); unvoiced frames carry pitch 0."""
    rng = np.random.default_rng(seed)
    w = np.empty((n, FRAMES, PROSODY.n_features), np.float32)
    w[..., :MELS] = rng.normal(-40, 6, (n, FRAMES, MELS))
    w[..., LEVEL] = rng.normal(level, 3, (n, FRAMES))
    w[..., PROSODY.channel("periodicity")] = rng.uniform(0, 1, (n, FRAMES))
    voiced = rng.random((n, FRAMES)) < voiced_share
    w[..., VOICED] = voiced
    w[..., PITCH] = np.where(voiced, rng.normal(pitch, 1.5, (n, FRAMES)), 0.0)
    return w


def prosody_population() -> FeatureStats:
    mean = np.zeros(PROSODY.n_features, np.float32)
    std = np.ones(PROSODY.n_features, np.float32)
    mean[LEVEL], std[LEVEL], mean[PITCH], std[PITCH] = 25.0, 6.0, 24.0, 4.0
    return FeatureStats(mean, std)


def test_traits_are_centred_on_the_talker_fully_and_fast():
    """A high-pitched, quiet talker: pitch level and loudness centre on their own, the rest only partly."""
    config = AdaptationConfig(prior_windows=20, max_weight=0.25, trait_prior_windows=6, trait_weight=1.0)
    a = SpeakerAdapter(prosody_population(), PROSODY, config)
    stats = a.observe(prosody_windows(60, pitch=31.0, level=15.0))
    last_trait = config.trait(60)
    assert last_trait == pytest.approx(60 / 66) and config.weight(60) == pytest.approx(0.25 * 60 / 80)
    # The pitch mean is over voiced frames only: unvoiced zeros do not drag it down.
    assert stats.mean[-1, PITCH] == pytest.approx(last_trait * 31.0 + (1 - last_trait) * 24.0, abs=0.1)
    assert stats.mean[-1, LEVEL] == pytest.approx(last_trait * 15.0 + (1 - last_trait) * 25.0, abs=0.2)
    assert stats.std[-1, PITCH] == 4.0 and stats.std[-1, LEVEL] == 6.0  # the population's spread
    assert stats.mean[0, PITCH] == pytest.approx(config.trait(1) * 31.0 + (1 - config.trait(1)) * 24.0, abs=0.3)
    # Mel bands move by the capped weight only.
    weight = config.weight(60)
    assert np.all(np.abs(stats.mean[-1, :MELS] - (1 - weight) * 0.0) <= weight * 40)


def test_a_talker_not_yet_voiced_keeps_the_population_pitch():
    a = SpeakerAdapter(prosody_population(), PROSODY, AdaptationConfig(max_weight=0.25))
    stats = a.observe(prosody_windows(3, pitch=31.0, level=15.0, voiced_share=0.0))
    assert np.all(stats.mean[:, PITCH] == 24.0)
    assert np.all(stats.mean[:, LEVEL] < 25.0)


def test_adaptation_off_turns_trait_centring_off_too():
    a = SpeakerAdapter(prosody_population(), PROSODY, AdaptationConfig(max_weight=0.0))
    stats = a.observe(prosody_windows(30, pitch=31.0, level=15.0))
    np.testing.assert_array_equal(stats.mean, np.tile(prosody_population().mean, (30, 1)))


def test_prosody_whole_recording_equals_the_live_end_state():
    a = SpeakerAdapter(prosody_population(), PROSODY, AdaptationConfig(max_weight=0.25))
    w = prosody_windows(12, pitch=20.0, level=30.0, seed=4)
    whole, weight = a.stats_for_whole(w)
    live = a.observe(w)
    np.testing.assert_allclose(whole.mean, live.mean[-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole.std, live.std[-1], rtol=1e-5, atol=1e-5)
    assert weight == a.weight
