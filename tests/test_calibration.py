"""Temperature scaling and ECE (streamer/calibration.py) on synthetic data with known answers."""

import numpy as np
import pytest

from streamer.core.calibration import apply_temperature, expected_calibration_error, fit_temperature, nll


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def sample_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row drawn from that row's distribution."""
    u = rng.random((len(probs), 1))
    return np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


@pytest.fixture(scope="module")
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 2.5, (20_000, 8))


def test_temperature_keeps_the_argmax_and_t1_is_identity(logits):
    probs = softmax(logits).astype(np.float32)
    np.testing.assert_array_equal(apply_temperature(probs, 1.0), probs)
    for t in (0.3, 0.7, 2.0, 5.0):
        scaled = apply_temperature(probs, t)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(scaled, softmax(logits / t), atol=1e-5)  # = softmax(logits / T)
    assert apply_temperature(probs, 2.0).max(axis=1).mean() < probs.max(axis=1).mean()  # T > 1 softens
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            apply_temperature(probs, bad)


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_temperature_recovers_a_known_temperature(logits, true_t):
    rng = np.random.default_rng(1)
    labels = sample_labels(softmax(logits / true_t), rng)  # the truth is softmax(logits / T)
    fitted = fit_temperature(softmax(logits), labels)  # the model outputs softmax(logits)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert nll(apply_temperature(softmax(logits), fitted), labels) <= nll(softmax(logits), labels)
    assert fit_temperature(softmax(logits), labels[:0]) == 1.0


def test_ece_small_when_calibrated_large_when_over_confident(logits):
    rng = np.random.default_rng(2)
    calibrated = softmax(logits)
    labels = sample_labels(calibrated, rng)
    assert expected_calibration_error(calibrated, labels) < 0.02
    over_confident = softmax(logits * 3)  # same argmax, probabilities pushed towards 0/1
    ece = expected_calibration_error(over_confident, labels)
    assert ece > 0.15
    # Temperature scaling fixes it.
    fixed = apply_temperature(over_confident, fit_temperature(over_confident, labels))
    assert expected_calibration_error(fixed, labels) < 0.02 < ece
    assert expected_calibration_error(calibrated[:0], labels[:0]) == 0.0
