"""The prosody channels of the feature function: pitch, voicing, periodicity and level."""

import numpy as np
import pytest

from streamer.core.features import PITCH_REFERENCE_HZ, FeatureConfig, FeatureStats, frame_features, normalize_windows

CONFIG = FeatureConfig(prosody=True)
RATE = CONFIG.sample_rate


def frame_centres(n_frames: int) -> np.ndarray:
    return (np.arange(n_frames) * CONFIG.hop_length + CONFIG.n_fft / 2) / RATE


def semitones(hz):
    return 12 * np.log2(np.asarray(hz) / PITCH_REFERENCE_HZ)


def glide(seconds: float = 2.0, low: float = 90.0, high: float = 320.0, noise: float = 0.002) -> tuple:
    """A harmonic voice-like tone gliding from ``low`` to ``high`` Hz, and its F0 at each sample."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = low * (high / low) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 30)) * 0.05
    rng = np.random.default_rng(0)
    return (tone + noise * rng.standard_normal(t.size)).astype(np.float32), f0


def test_pitch_follows_a_glide_within_a_semitone():
    audio, f0 = glide()
    frames = frame_features(audio, CONFIG)
    voiced = frames[:, CONFIG.channel("voiced")]
    pitch = frames[:, CONFIG.channel("pitch")]
    centres = (frame_centres(len(frames)) * RATE).astype(int)
    assert voiced.mean() > 0.95
    error = np.abs(pitch - semitones(f0[centres]))[voiced > 0]
    assert np.mean(error < 1.0) > 0.95
    assert np.all(frames[:, CONFIG.channel("periodicity")][voiced > 0] >= 0.5)


def test_the_fundamental_is_found_without_its_lowest_harmonics():
    """Through a phone line (no energy below 300 Hz) a 120 Hz voice is still 120 Hz, not an octave up."""
    t = np.arange(RATE) / RATE
    audio = (sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(3, 28)) * 0.05).astype(np.float32)
    frames = frame_features(audio, CONFIG)
    pitch = frames[:, CONFIG.channel("pitch")]
    assert np.all(frames[:, CONFIG.channel("voiced")] == 1)
    np.testing.assert_allclose(pitch, semitones(120), atol=0.3)


def test_noise_and_silence_are_unvoiced_with_zero_pitch():
    rng = np.random.default_rng(1)
    for audio in (0.1 * rng.standard_normal(RATE), np.zeros(RATE)):
        frames = frame_features(audio.astype(np.float32), CONFIG)
        voiced = frames[:, CONFIG.channel("voiced")]
        assert voiced.mean() < 0.05
        assert np.all(frames[voiced == 0, CONFIG.channel("pitch")] == 0)


def test_level_channel_keeps_the_gain_the_mel_bands_lose():
    audio, _ = glide(1.0)
    quiet, loud = frame_features(audio, CONFIG), frame_features(audio * 4, CONFIG)
    level = CONFIG.channel("level")
    np.testing.assert_allclose(loud[:, level] - quiet[:, level], 20 * np.log10(4), atol=0.01)
    identity = FeatureStats(np.zeros(CONFIG.n_features, np.float32), np.ones(CONFIG.n_features, np.float32))
    a = normalize_windows(quiet[None, :48], CONFIG, identity)
    b = normalize_windows(loud[None, :48], CONFIG, identity)
    np.testing.assert_allclose(a[..., : CONFIG.n_mels], b[..., : CONFIG.n_mels], atol=1e-3)  # level-normalised
    assert np.allclose(b[..., level] - a[..., level], 20 * np.log10(4), atol=0.01)  # not


def test_unvoiced_frames_pitch_stays_at_the_mean_after_standardisation():
    rng = np.random.default_rng(2)
    audio = np.concatenate([glide(1.0)[0], 0.05 * rng.standard_normal(RATE).astype(np.float32)])
    frames = frame_features(audio, CONFIG)[None, :97]
    stats = FeatureStats(np.full(CONFIG.n_features, 5.0, np.float32), np.full(CONFIG.n_features, 2.0, np.float32))
    x = normalize_windows(frames, CONFIG, stats)
    unvoiced = frames[0, :, CONFIG.channel("voiced")] == 0
    assert unvoiced.any() and (~unvoiced).any()
    assert np.all(x[0, unvoiced, CONFIG.channel("pitch")] == 0)
    np.testing.assert_allclose(
        x[0, ~unvoiced, CONFIG.channel("pitch")], (frames[0, ~unvoiced, CONFIG.channel("pitch")] - 5) / 2, rtol=1e-5
    )


def test_channel_names_need_prosody():
    assert CONFIG.channel("level") == 64 and CONFIG.channel("pitch") == 67
    with pytest.raises(ValueError):
        FeatureConfig().channel("pitch")


@pytest.mark.data
def test_pitch_agrees_with_librosa_pyin_on_real_speech(data_dir):
    """On acted speech the cheap pitch agrees with pYIN within a semitone on most frames both call voiced."""
    import librosa

    from streamer.analysis.decode import load_audio

    paths = sorted((data_dir / "ravdess").glob("Actor_0[1-4]/*.flac"))[::40]
    agree, both_voiced = [], 0
    for path in paths:
        audio = load_audio(path, RATE)
        frames = frame_features(audio, CONFIG)
        f0, flag, _ = librosa.pyin(
            audio, fmin=60, fmax=450, sr=RATE, frame_length=CONFIG.n_fft, hop_length=CONFIG.hop_length, center=False
        )
        n = min(len(f0), len(frames))
        both = flag[:n] & (frames[:n, CONFIG.channel("voiced")] > 0)
        both_voiced += both.sum()
        agree.append(np.abs(frames[:n, CONFIG.channel("pitch")][both] - semitones(f0[:n][both])) < 1.0)
    assert both_voiced > 200
    assert np.concatenate(agree).mean() > 0.7
