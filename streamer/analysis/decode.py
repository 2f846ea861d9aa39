"""Decode any libsndfile file to mono float32 at a rate, block-wise and bounded.

Problems raise :class:`AudioError` (or a subclass) with one readable sentence.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from streamer.core.errors import first_line

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
    # libsndfile messages repeat the file name; keep the reason only.
    return first_line(exc).split(": ")[-1].rstrip(".")
