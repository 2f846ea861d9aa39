"""Audio augmentation for the conditions of call centres.

Noise (coloured noise and babble), gain, speed/pitch, reverberation and the
telephone channel. Pure numpy/scipy functions of an array and a random
generator, so a variant is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from streamer.training.cleaning import normalize_level, resample

TELEPHONE_RATE = 8000


def telephone_channel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Narrowband telephone: 8 kHz, 300-3400 Hz band-pass, 8-bit mu-law."""
    narrow = resample(audio, sample_rate, TELEPHONE_RATE)
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    narrow = signal.sosfilt(sos, narrow).astype(np.float32)
    narrow = mu_law_roundtrip(narrow)
    return resample(narrow, TELEPHONE_RATE, sample_rate)[: audio.size]


def mu_law_roundtrip(audio: np.ndarray, mu: int = 255) -> np.ndarray:
    """G.711-style mu-law companding to 8 bits and back (adds its quantisation noise)."""
    x = np.clip(audio, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((encoded + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu).astype(np.float32)


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.arange(n // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` (same length) scaled to ``snr_db`` below the speech power."""
    p_speech = float(np.mean(np.square(speech))) + 1e-12
    p_noise = float(np.mean(np.square(noise))) + 1e-12
    return (speech + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


def babble(n: int, pool: list[np.ndarray], rng: np.random.Generator, talkers: int = 4) -> np.ndarray:
    """Background talkers: random stretches of ``pool`` clips summed."""
    out = np.zeros(n, np.float32)
    for _ in range(talkers):
        clip = pool[rng.integers(len(pool))]
        tiled = np.tile(clip, int(np.ceil(n / max(clip.size, 1))) + 1)
        start = rng.integers(max(1, tiled.size - n))
        out += tiled[start : start + n]
    return out


def synthetic_rir(sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise tail with a direct path: a small room."""
    length = int(sample_rate * rt60)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[0] = 0.0
    rir = np.concatenate([[1.0], np.zeros(int(0.002 * sample_rate)), 0.3 * tail])
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def reverberate(audio: np.ndarray, sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    wet = signal.fftconvolve(audio, synthetic_rir(sample_rate, rt60, rng))[: audio.size]
    return wet.astype(np.float32)


def change_speed(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``factor`` times faster: tempo and pitch both change (Kaldi-style)."""
    return resample(audio, int(round(sample_rate * factor)), sample_rate)


def random_augment(
    audio: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    babble_pool: list[np.ndarray] | None = None,
) -> np.ndarray:
    """One random call-centre condition applied to a clean, level-normalised clip."""
    x = audio
    if rng.random() < 0.6:
        x = change_speed(x, float(rng.uniform(0.9, 1.1)), sample_rate)
    if rng.random() < 0.4:
        x = reverberate(x, sample_rate, float(rng.uniform(0.15, 0.7)), rng)
    if rng.random() < 0.7:
        if babble_pool and rng.random() < 0.4:
            noise = babble(x.size, babble_pool, rng)
            snr = rng.uniform(10, 25)
        else:
            noise = colored_noise(x.size, float(rng.choice([0.0, 1.0, 2.0])), rng)
            snr = rng.uniform(5, 30)
        x = mix_at_snr(x, noise, float(snr))
    # Gain before the channel matters: mu-law quantisation depends on level.
    x = normalize_level(x, float(rng.uniform(-40, -12)))
    if rng.random() < 0.5:
        x = telephone_channel(x, sample_rate)
    return x.astype(np.float32)
