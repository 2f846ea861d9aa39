"""The numpy FIR pieces equal scipy.signal's (the serving process does not import scipy.signal)."""

import numpy as np
import pytest
import scipy.signal

from streamer.core.fir import fir_stream, lowpass_taps


@pytest.mark.parametrize("numtaps, cutoff", [(31, 0.45), (15, 0.3), (64, 0.9)])
def test_lowpass_taps_equal_firwin(numtaps, cutoff):
    np.testing.assert_allclose(lowpass_taps(numtaps, cutoff), scipy.signal.firwin(numtaps, cutoff), atol=1e-7)
    np.testing.assert_allclose(
        lowpass_taps(numtaps, cutoff, kaiser_beta=8.0),
        scipy.signal.firwin(numtaps, cutoff, window=("kaiser", 8.0)),
        atol=1e-7,
    )


def test_a_signal_filtered_in_chunks_equals_it_filtered_whole():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((1000, 2)).astype(np.float32)
    taps = lowpass_taps(32, 0.5)
    history = np.zeros((31, 2), np.float32)
    parts = []
    for start in range(0, 1000, 137):  # uneven chunks, some shorter than the filter
        out, history = fir_stream(taps, signal[start : start + 137], history)
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts), scipy.signal.lfilter(taps, 1.0, signal, axis=0), atol=1e-5)
