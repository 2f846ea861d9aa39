"""Augmentations do what their names say."""

import numpy as np
import pytest

from streamer.training.augment import (
    change_speed,
    colored_noise,
    mix_at_snr,
    mu_law_roundtrip,
    random_augment,
    telephone_channel,
)

RATE = 16000


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_telephone_channel_keeps_300_to_3400_hz():
    noise = colored_noise(RATE * 2, 0.0, np.random.default_rng(0)) * 0.1
    phone = telephone_channel(noise, RATE)
    assert phone.size == noise.size
    assert band_energy(phone, 5000, 8000) < 1e-3 * band_energy(noise, 5000, 8000)
    assert band_energy(phone, 0, 100) < 0.05 * band_energy(noise, 0, 100)
    assert band_energy(phone, 800, 3000) > 0.5 * band_energy(noise, 800, 3000)


def test_mu_law_is_close_but_quantised():
    x = np.linspace(-0.5, 0.5, 1001).astype(np.float32)
    y = mu_law_roundtrip(x)
    assert np.max(np.abs(x - y)) < 0.02
    assert len(np.unique(y)) <= 256


def test_mix_at_snr():
    rng = np.random.default_rng(1)
    speech = rng.standard_normal(RATE).astype(np.float32)
    noise = rng.standard_normal(RATE).astype(np.float32) * 3
    mixed = mix_at_snr(speech, noise, 10.0)
    added = mixed - speech
    snr = 10 * np.log10(np.mean(speech**2) / np.mean(added**2))
    assert snr == pytest.approx(10.0, abs=0.01)


def test_speed_change_changes_length():
    x = np.zeros(RATE, np.float32)
    assert change_speed(x, 1.1, RATE).size == pytest.approx(RATE / 1.1, abs=2)


def test_random_augment_is_reproducible():
    x = colored_noise(RATE, 1.0, np.random.default_rng(2)) * 0.05
    a = random_augment(x, RATE, np.random.default_rng(3))
    b = random_augment(x, RATE, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) <= 1.0
