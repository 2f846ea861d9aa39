"""The one feature function shared by training, file analysis and live streams.

Features are log-mel frames restricted to the telephone band (300-3400 Hz),
so wideband and call audio look alike to the model. Frames are computed
without centring (``center=False``): frame ``i`` covers samples
``[i * hop, i * hop + n_fft)``. Hence the frames of any hop-aligned slice of
a signal are exactly the matching slice of the whole signal's frames, which
lets training crop cached clip features and lets a stream reuse frames.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.fft

NORMALIZATIONS = ("level", "cmn")


@dataclass(frozen=True)
class FeatureConfig:
    """Feature settings; saved next to the model and loaded with it.

    Attributes
    ----------
    sample_rate : int
        Rate all audio is resampled to before features, Hz.
    n_fft, hop_length : int
        STFT frame and hop, samples.
    n_mels : int
        Number of mel bands between ``fmin`` and ``fmax``.
    window_s : float
        Length of the window the model classifies, seconds.
    normalization : str
        ``"level"``: subtract the window's mean log-energy (gain invariance);
        ``"cmn"``: subtract each band's mean over the window (also removes
        the channel's fixed colouring).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 300.0
    fmax: float = 3400.0
    window_s: float = 2.0
    normalization: str = "level"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.n_fft <= 0:
            raise ValueError("sample_rate, n_fft and hop_length must be positive")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError("need 0 <= fmin < fmax <= sample_rate / 2")
        if self.window_samples < self.n_fft:
            raise ValueError("window must be at least one STFT frame long")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def window_frames(self) -> int:
        return frame_count(self.window_samples, self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        return cls(**data)


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean and std of level-normalised training features."""

    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureStats:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


def frame_count(n_samples: int, config: FeatureConfig) -> int:
    """Number of complete frames in ``n_samples`` samples."""
    if n_samples < config.n_fft:
        return 0
    return 1 + (n_samples - config.n_fft) // config.hop_length


_MEL_BASES: dict[tuple, np.ndarray] = {}
_MEL_BANDS: dict[tuple, tuple[slice, np.ndarray]] = {}


def _basis_key(config: FeatureConfig) -> tuple:
    return (config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)


def mel_basis(config: FeatureConfig) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` librosa mel filterbank for ``config`` (cached)."""
    key = _basis_key(config)
    if key not in _MEL_BASES:
        import librosa

        _MEL_BASES[key] = librosa.filters.mel(
            sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
        ).astype(np.float32)
    return _MEL_BASES[key]


def _mel_band(config: FeatureConfig) -> tuple[slice, np.ndarray]:
    """FFT bins where the filterbank is non-zero, and its transpose over them.

    The filters cover only fmin..fmax, so the other bins' power is never
    needed: skipping them gives the same numbers at a third of the cost.
    """
    key = _basis_key(config)
    if key not in _MEL_BANDS:
        basis = mel_basis(config)
        used = np.flatnonzero(basis.any(axis=0))
        band = slice(int(used[0]), int(used[-1]) + 1) if used.size else slice(0, 0)
        _MEL_BANDS[key] = band, np.ascontiguousarray(basis[:, band].T)
    return _MEL_BANDS[key]


def use_mel_basis(config: FeatureConfig, basis: np.ndarray) -> None:
    """Use a filterbank saved with the model instead of computing it with librosa."""
    expected = (config.n_mels, config.n_fft // 2 + 1)
    if basis.shape != expected:
        raise ValueError(f"mel basis has shape {basis.shape}, expected {expected}")
    _MEL_BASES[_basis_key(config)] = np.ascontiguousarray(basis, np.float32)
    _MEL_BANDS.pop(_basis_key(config), None)


@functools.lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window, as librosa/scipy ``get_window("hann", n)``."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
    window.flags.writeable = False  # cached and shared
    return window


def frame_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel frames of mono audio at ``config.sample_rate``.

    Parameters
    ----------
    audio : np.ndarray
        ``(n,)`` samples, or a batch ``(..., n)`` of equally long signals
        (one vectorised STFT for all: how the stream worker batches streams).
    config : FeatureConfig

    Returns
    -------
    np.ndarray
        ``(..., frame_count(n), n_mels)`` float32, in dB.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim < 1:
        raise ValueError("audio must have at least one dimension")
    n = frame_count(audio.shape[-1], config)
    if n == 0:
        return np.zeros((*audio.shape[:-1], 0, config.n_mels), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, config.n_fft, axis=-1)[..., :: config.hop_length, :]
    band, basis = _mel_band(config)
    spectrum = scipy.fft.rfft(frames[..., :n, :] * _hann(config.n_fft), axis=-1, workers=1)[..., band]
    power = spectrum.real**2 + spectrum.imag**2
    mel = np.matmul(power, basis)
    return (10.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32)


def level_normalize(windows: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Remove each window's level (or each band's mean over the window, ``"cmn"``)."""
    x = np.asarray(windows, dtype=np.float32)
    if config.normalization == "level":
        return x - x.mean(axis=(-2, -1), keepdims=True)
    return x - x.mean(axis=-2, keepdims=True)


def normalize_windows(windows: np.ndarray, config: FeatureConfig, stats: FeatureStats) -> np.ndarray:
    """Level- (or band-) normalise then standardise windows of frames.

    Parameters
    ----------
    windows : np.ndarray
        ``(window_frames, n_mels)`` or a batch ``(batch, window_frames, n_mels)``.
    stats : FeatureStats
        ``(n_mels,)`` mean and std for all windows, or ``(batch, n_mels)``
        for one set per window (speaker adaptation).

    Returns
    -------
    np.ndarray
        float32 array of the same shape, ready for the model.
    """
    x = level_normalize(windows, config)
    mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    if mean.ndim == 2:
        mean, std = mean[:, None, :], std[:, None, :]
    return ((x - mean) / std).astype(np.float32, copy=False)


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Starts of sliding windows that cover a whole sequence of ``n`` items.

    Windows start every ``hop``; if the last one ends before the sequence
    does, one more window is aligned to the end, so no tail goes unscored.
    A sequence shorter than one window gives the single start 0 (the caller
    pads it). Used on feature frames, so starts stay frame-aligned.
    """
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def pad_to(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad ``audio`` at the end to at least ``length`` samples."""
    if audio.size >= length:
        return audio
    return np.concatenate([audio, np.zeros(length - audio.size, dtype=audio.dtype)])
