"""The one feature function: shape, determinism, and train/serve agreement."""

import numpy as np
import pytest

from streamer.core.features import (
    FeatureConfig,
    FeatureStats,
    frame_count,
    frame_features,
    normalize_windows,
    pad_to,
    window_starts,
)
from streamer.training.trainer import clip_windows, crop

CONFIG = FeatureConfig()
PROSODY_CONFIG = FeatureConfig(prosody=True)
BOTH = pytest.mark.parametrize("config", [CONFIG, PROSODY_CONFIG], ids=["mel", "mel+prosody"])


@BOTH
def test_frame_count_matches_features(config):
    rng = np.random.default_rng(0)
    for n in (0, 500, config.n_fft, config.n_fft + 1, config.window_samples, 12345):
        frames = frame_features(rng.standard_normal(n).astype(np.float32) * 0.1, config)
        assert frames.shape == (frame_count(n, config), config.n_features)
    assert config.n_features == 64 + 4 * config.prosody
    assert CONFIG.window_frames == frame_count(CONFIG.window_samples, CONFIG) == 97


@BOTH
def test_features_are_deterministic(speech_audio, config):
    a = frame_features(speech_audio, config)
    b = frame_features(speech_audio.copy(), config)
    assert a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))


@BOTH
def test_hop_aligned_slice_equals_features_of_the_slice(speech_audio, config):
    """Training crops cached clip frames; serving computes a window's frames.

    Both must give the model the same input.
    """
    whole = frame_features(speech_audio, config)
    hop = config.hop_length
    for start_frame in (0, 7, 25, 50):
        start = start_frame * hop
        window_audio = speech_audio[start : start + config.window_samples]
        served = frame_features(window_audio, config)
        trained = crop(whole, config.window_frames, start_frame)
        np.testing.assert_allclose(served, trained, rtol=0, atol=1e-3)


def test_training_and_file_analysis_cut_the_same_windows(speech_audio):
    frames = frame_features(speech_audio, CONFIG)
    hop_frames = 25
    from_training = clip_windows(frames, CONFIG, hop_frames)
    starts = [f * CONFIG.hop_length for f in window_starts(frames.shape[0], CONFIG.window_frames, hop_frames)]
    from_analyzer = np.stack([frame_features(speech_audio[s : s + CONFIG.window_samples], CONFIG) for s in starts])
    assert len(starts) == 6 and starts[-1] + CONFIG.window_samples > speech_audio.size - CONFIG.hop_length
    np.testing.assert_allclose(from_training, from_analyzer, atol=1e-3)


def test_level_normalisation_makes_features_gain_invariant(speech_audio):
    stats = FeatureStats(np.zeros(CONFIG.n_mels, np.float32), np.ones(CONFIG.n_mels, np.float32))
    window = speech_audio[16000 : 16000 + CONFIG.window_samples]
    quiet = normalize_windows(frame_features(window * 0.1, CONFIG), CONFIG, stats)
    loud = normalize_windows(frame_features(window, CONFIG), CONFIG, stats)
    np.testing.assert_allclose(quiet, loud, atol=1e-2)


def test_band_limited_to_telephone_range():
    """A 6 kHz tone lies outside 300-3400 Hz and barely registers."""
    t = np.arange(CONFIG.window_samples) / CONFIG.sample_rate
    inside = frame_features((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), CONFIG)
    outside = frame_features((0.1 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32), CONFIG)
    assert inside.max() - outside.max() > 60


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmax": 9000.0},
        {"fmin": 500.0, "fmax": 400.0},
        {"hop_length": 0},
        {"normalization": "none"},
        {"window_s": 0.01},
    ],
)
def test_invalid_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)


def test_config_round_trips_through_dict():
    assert FeatureConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_window_starts_cover_the_whole_signal():
    assert window_starts(100, 200, 50) == [0]
    assert window_starts(200, 200, 50) == [0]
    assert window_starts(300, 200, 50) == [0, 50, 100]
    assert window_starts(330, 200, 50) == [0, 50, 100, 130]
    with pytest.raises(ValueError):
        window_starts(300, 200, 0)


def test_pad_to():
    assert pad_to(np.ones(3, np.float32), 5).tolist() == [1, 1, 1, 0, 0]
    assert pad_to(np.ones(6, np.float32), 5).size == 6


@BOTH
def test_batched_features_equal_one_by_one(speech_audio, config):
    windows = np.stack([speech_audio[i * 4000 : i * 4000 + config.window_samples] for i in range(3)])
    batched = frame_features(windows, config)
    assert batched.shape == (3, config.window_frames, config.n_features)
    for i in range(3):
        np.testing.assert_allclose(batched[i], frame_features(windows[i], config), atol=1e-4)


def test_stft_is_librosas(speech_audio):
    """The scipy STFT inside frame_features equals librosa.stft(center=False, window='hann')."""
    import librosa

    from streamer.core.features import mel_basis

    audio = speech_audio[:20000]
    spec = librosa.stft(audio, n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length, center=False, window="hann")
    reference = 10 * np.log10(np.maximum(mel_basis(CONFIG) @ np.abs(spec) ** 2, 1e-10)).T
    np.testing.assert_allclose(frame_features(audio, CONFIG), reference, atol=1e-3)


def test_saved_mel_basis_is_librosas():
    """The filterbank shipped with the model (used without librosa) is librosa's for this config."""
    import librosa

    from streamer.analysis.model import DEFAULT_MODEL_DIR, MEL_BASIS_NAME

    shipped = np.load(DEFAULT_MODEL_DIR / MEL_BASIS_NAME)
    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=300.0, fmax=3400.0)
    np.testing.assert_allclose(shipped, expected, atol=1e-7)
