"""A linear baseline: softmax regression on clip-pooled log-mel statistics.

Measurements outside the project found such a model transferring to new
corpora about as well as sequence networks; the evaluation reports it beside
the network so a network that overfits corpus specifics shows.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from streamer.core.features import FeatureConfig, level_normalize
from streamer.core.labels import EMOTIONS
from streamer.training.cache import CLEAN, FeatureCache


def pooled_features(cache: FeatureCache, indices: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Per clip: mean and std over frames of each level-normalised band, ``(n, 2 * n_mels)``."""
    rows = []
    for i in indices:
        frames = level_normalize(cache.get(i, CLEAN).astype(np.float32)[None], config)[0]
        rows.append(np.concatenate([frames.mean(axis=0), frames.std(axis=0)]))
    return np.asarray(rows, np.float64)


def normalize_per_speaker(x: np.ndarray, speakers: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """Each speaker's rows by that speaker's own statistics.

    ``columns`` None: every feature standardised by the speaker's mean and
    std; else only those columns centred on the speaker's mean.
    """
    out = x.copy()
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        if columns is None:
            out[rows] = (x[rows] - x[rows].mean(axis=0)) / (x[rows].std(axis=0) + 1e-6)
        else:
            block = np.ix_(rows, columns)
            out[block] = x[block] - x[block].mean(axis=0)
    return out


def fit_softmax_regression(
    x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, l2: float = 1e-2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted multinomial logistic regression (L-BFGS); returns ``(w, b, mean, std)``."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    n_classes, dim = len(EMOTIONS), x.shape[1]
    onehot = np.eye(n_classes)[y]
    weight = sample_weight / sample_weight.sum()

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[: dim * n_classes].reshape(dim, n_classes), params[dim * n_classes :]
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -np.sum(weight * np.sum(onehot * logp, axis=1)) + l2 * np.sum(w * w)
        grad_logits = (np.exp(logp) - onehot) * weight[:, None]
        grad = np.concatenate([(z.T @ grad_logits + 2 * l2 * w).ravel(), grad_logits.sum(axis=0)])
        return value, grad

    result = minimize(loss, np.zeros(dim * n_classes + n_classes), jac=True, method="L-BFGS-B")
    params = result.x
    return params[: dim * n_classes].reshape(dim, n_classes), params[dim * n_classes :], mean, std


def predict_softmax_regression(model: tuple, x: np.ndarray) -> np.ndarray:
    w, b, mean, std = model
    logits = ((x - mean) / std) @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)
