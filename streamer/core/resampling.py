"""Stream resamplers for the live path: exact 2x upsampling without buffering, soxr for everything else.

soxr's stream resampler works in internal blocks: fed the 20 ms messages a
phone system sends, it holds audio back for several of them, and every
score waits for it. Telephone audio is 8 kHz and the model's
rate 16 kHz, so that case gets a half-band FIR whose state carries across
chunks (``streamer.core.fir``): every input sample comes out at once, late
only by the filter's 1.9 ms group delay, which is trimmed so output sample
``n`` still stands for input time ``n / 16000``.
"""

from __future__ import annotations

import numpy as np
import soxr

from streamer.core.fir import fir_stream, lowpass_taps


class Upsample2x:
    """2x upsampling (8 → 16 kHz), streaming, with soxr's ``resample_chunk(frames, last=False)``.

    A half-band filter: its odd taps are zero but the centre, so the odd
    output samples are the input delayed and only the even ones need a
    32-tap filter. Flat to 3.4 kHz, where the features end (300–3400 Hz);
    images of speech below 3.4 kHz (at 4.6 kHz and up) are attenuated by
    the Kaiser window (β = 8).
    """

    TAPS = 63  # centre tap 31: odd, so the half-band zeros fall on the odd indices

    def __init__(self, input_rate: int, channels: int) -> None:
        taps = lowpass_taps(self.TAPS, 0.5, kaiser_beta=8.0) * 2.0
        self.even_taps = taps[0::2].astype(np.float32)  # 32 taps on the input
        self.odd_delay = (self.TAPS // 2) // 2  # the odd phase: the input, 15 samples late
        self._even_history = np.zeros((len(self.even_taps) - 1, channels), np.float32)
        self._history = np.zeros((self.odd_delay, channels), np.float32)
        self._trim = self.TAPS // 2  # output samples of group delay, dropped at the start
        self.lookahead = (self.TAPS // 2 + 1) // 2  # input frames it needs beyond an output sample
        self._channels = channels

    def resample_chunk(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        frames = np.asarray(frames, np.float32).reshape(-1, self._channels)
        if last:  # push the delayed tail out; exactly 2x the input comes out in all
            frames = np.concatenate([frames, np.zeros((len(self.even_taps) // 2, self._channels), np.float32)])
        even, self._even_history = fir_stream(self.even_taps, frames, self._even_history)
        delayed = np.concatenate([self._history, frames])
        self._history = delayed[len(frames) :]
        out = np.empty((2 * len(frames), self._channels), np.float32)
        out[0::2] = even
        out[1::2] = delayed[: len(frames)]
        if last:
            out = out[: len(out) - 1]
        if self._trim:
            cut = min(self._trim, len(out))
            out, self._trim = out[cut:], self._trim - cut
        return out


def stream_resampler(input_rate: int, output_rate: int, channels: int):
    """The resampler for a live stream, or None when the rates agree."""
    if input_rate == output_rate:
        return None
    if output_rate == 2 * input_rate:
        return Upsample2x(input_rate, channels)
    return soxr.ResampleStream(input_rate, output_rate, channels, dtype="float32")
