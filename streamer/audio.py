"""Reading and cleaning audio: decode, downmix, resample, trim, level.

Everything returns float32 mono numpy arrays. Decoding problems raise
:class:`AudioError` with one readable sentence, never a library traceback.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

# Level that every clip is normalised to before features and augmentation.
TARGET_RMS_DBFS = -23.0


class AudioError(ValueError):
    """Audio that cannot be decoded or used; the message is user-facing."""


def load_audio(source: str | os.PathLike | BinaryIO, sample_rate: int) -> np.ndarray:
    """Decode any libsndfile format to mono float32 at ``sample_rate``.

    Parameters
    ----------
    source : path or binary file object
        WAV, FLAC, OGG, AIFF... anything libsndfile reads.
    sample_rate : int
        Target rate in Hz.

    Returns
    -------
    np.ndarray
        1-D float32 array, channels averaged.

    Raises
    ------
    AudioError
        Missing, empty, truncated or undecodable input.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise AudioError("file not found")
        if os.path.isdir(path):
            raise AudioError("is a directory, not an audio file")
        if os.path.getsize(path) == 0:
            raise AudioError("file is empty")
    try:
        with sf.SoundFile(source) as f:
            rate = f.samplerate
            resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
            parts = []
            # Decode in blocks so a long multi-channel call never sits in memory at its native rate.
            for block in f.blocks(blocksize=rate * 10, dtype="float32", always_2d=True):
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                parts.append(resampler.resample_chunk(mono) if resampler else mono)
            if resampler:
                parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"not a readable audio file ({_short_reason(exc)})") from None
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if audio.size == 0:
        raise AudioError("audio contains no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError("audio contains invalid (NaN or infinite) samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _short_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile messages repeat the file name; keep the reason only.
    return text.split(": ")[-1].rstrip(".")


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
