"""Training-only audio cleaning: resample, trim silence, level."""

from __future__ import annotations

import numpy as np
import soxr

# Level that every clip is normalised to before features and augmentation.
TARGET_RMS_DBFS = -23.0


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality resampling (soxr); a no-op when the rates match."""
    if rate_in == rate_out:
        return np.ascontiguousarray(audio, dtype=np.float32)
    return soxr.resample(audio, rate_in, rate_out).astype(np.float32, copy=False)


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for silence)."""
    power = float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def normalize_level(audio: np.ndarray, target_dbfs: float = TARGET_RMS_DBFS) -> np.ndarray:
    """Scale to ``target_dbfs`` RMS, limiting the peak to 0.99 to avoid clipping."""
    level = rms_dbfs(audio)
    if not np.isfinite(level):
        return audio.astype(np.float32, copy=True)
    gain = 10.0 ** ((target_dbfs - level) / 20.0)
    peak = float(np.max(np.abs(audio))) * gain
    if peak > 0.99:
        gain *= 0.99 / peak
    return (audio * gain).astype(np.float32)


def trim_silence(audio: np.ndarray, sample_rate: int, top_db: float = 35.0) -> np.ndarray:
    """Cut leading and trailing parts quieter than ``top_db`` below the peak.

    Uses 32 ms frames; a clip that is all silence comes back unchanged.
    """
    frame = max(1, int(0.032 * sample_rate))
    hop = frame // 4
    if audio.size < frame:
        return audio
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop]
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    if not np.any(power > 0):
        return audio
    loud = np.flatnonzero(10.0 * np.log10(np.maximum(power, 1e-20) / power.max()) > -top_db)
    start = loud[0] * hop
    end = min(audio.size, loud[-1] * hop + frame)
    return audio[start:end]


def clean_clip(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Corpus cleaning used for training: trim silence, then normalise level."""
    return normalize_level(trim_silence(audio, sample_rate))
