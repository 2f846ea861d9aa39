"""Reading and cleaning audio: decode, downmix, resample, trim, level.

Everything returns float32 mono numpy arrays. Decoding problems raise
:class:`AudioError` (or its subclasses :class:`AudioUnsupported`,
:class:`AudioTooLong`) with one readable sentence, never a library traceback.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

# Level that every clip is normalised to before features and augmentation.
TARGET_RMS_DBFS = -23.0


# Plausible stream formats; a header outside these is a crafted or broken file, not a recording.
MIN_RATE, MAX_RATE, MAX_CHANNELS = 1_000, 384_000, 32
# Decode at most this many samples (all channels) per block: bounds memory whatever the format.
_BLOCK_SAMPLES = 1 << 22
# libsndfile reports an unknown length as a huge count (SF_COUNT_MAX) or as zero.
_UNKNOWN_FRAMES = 1 << 62


class AudioError(ValueError):
    """Audio that cannot be decoded or used; the message is user-facing."""


class AudioUnsupported(AudioError):
    """Decodable, but its header is implausible (sample rate or channel count)."""


class AudioTooLong(AudioError):
    """Longer than the caller's ``max_seconds``; raised before the rest is decoded."""


def load_audio(source: str | os.PathLike | BinaryIO, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode any libsndfile format to mono float32 at ``sample_rate``.

    Parameters
    ----------
    source : path or binary file object
        WAV, FLAC, OGG, AIFF... anything libsndfile reads.
    sample_rate : int
        Target rate in Hz.
    max_seconds : float, optional
        Longest recording accepted. The header's length is checked first, and
        the decoded length is counted block by block (headers may not know or
        may misstate it), so a longer file is refused without decoding it.

    Returns
    -------
    np.ndarray
        1-D float32 array, channels averaged.

    Raises
    ------
    AudioTooLong
        Longer than ``max_seconds``.
    AudioUnsupported
        Sample rate outside 1 000-384 000 Hz or more than 32 channels.
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
    too_long = f"the recording is longer than the {max_seconds:g} s limit" if max_seconds is not None else ""
    try:
        with sf.SoundFile(source) as f:
            rate, channels = f.samplerate, f.channels
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioUnsupported(f"unsupported sample rate {rate} Hz (accepted: {MIN_RATE}-{MAX_RATE} Hz)")
            if not 1 <= channels <= MAX_CHANNELS:
                raise AudioUnsupported(f"unsupported channel count {channels} (accepted: 1-{MAX_CHANNELS})")
            max_frames = None if max_seconds is None else int(max_seconds * rate)
            if max_frames is not None and 0 < f.frames < _UNKNOWN_FRAMES and f.frames > max_frames:
                raise AudioTooLong(too_long)
            resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
            parts = []
            decoded = 0
            # Decode in blocks so a long multi-channel call never sits in memory at its native rate.
            # Read until the decoder runs dry rather than trusting the header's length (it may be
            # unknown or wrong), counting what was decoded.
            blocksize = max(1024, min(rate * 10, _BLOCK_SAMPLES // channels))
            while True:
                block = f.read(blocksize, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    break
                decoded += block.shape[0]
                if max_frames is not None and decoded > max_frames:
                    raise AudioTooLong(too_long)
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                parts.append(resampler.resample_chunk(mono) if resampler else mono)
            if resampler:
                parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    except AudioError:
        raise
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
