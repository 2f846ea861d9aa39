"""Low-pass FIR design and streaming FIR filtering in numpy.

Written out rather than taken from ``scipy.signal`` (tests check both equal
it): importing ``scipy.signal`` costs the serving process about 50 MB and
0.7 s, and the serving path needs only these two small pieces.
"""

from __future__ import annotations

import numpy as np


def lowpass_taps(numtaps: int, cutoff: float, kaiser_beta: float | None = None) -> np.ndarray:
    """Windowed-sinc low-pass FIR, as ``scipy.signal.firwin(numtaps, cutoff[, window=("kaiser", beta)])``.

    Parameters
    ----------
    numtaps : int
    cutoff : float
        Relative to Nyquist (0–1).
    kaiser_beta : float, optional
        A Kaiser window of this β; default a Hamming window (firwin's).

    Returns
    -------
    np.ndarray
        float64 taps with unit gain at DC.
    """
    m = np.arange(numtaps) - (numtaps - 1) / 2
    window = np.hamming(numtaps) if kaiser_beta is None else np.kaiser(numtaps, kaiser_beta)
    taps = cutoff * np.sinc(cutoff * m) * window
    return taps / taps.sum()


def fir_stream(taps: np.ndarray, frames: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Filter ``frames`` ``(n, channels)`` by ``taps``, continuing from ``history``.

    ``history`` holds the previous ``len(taps) - 1`` input frames (zeros at
    the start); returns the output and the history for the next chunk, so a
    signal filtered chunk by chunk equals it filtered whole (``lfilter(taps, 1, x)``).
    """
    signal = np.concatenate([history, frames])
    windows = np.lib.stride_tricks.sliding_window_view(signal, len(taps), axis=0)  # (n, channels, taps)
    return (windows @ taps[::-1]).astype(frames.dtype, copy=False), signal[len(signal) - len(history) :]
