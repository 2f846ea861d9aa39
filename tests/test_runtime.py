"""The shipped model: files present, loads, valid distributions, backends agree."""

import json

import numpy as np
import pytest

from streamer.analysis.model import (
    CONFIG_NAME,
    DEFAULT_MODEL_DIR,
    KERAS_NAME,
    LITERT_BATCH_SIZES,
    EmotionModel,
    litert_name,
)
from streamer.core.features import FeatureConfig
from streamer.core.labels import EMOTIONS


def random_windows(model, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, model.config.window_frames, model.config.n_features)
    return (rng.standard_normal(shape) * 10 - 40).astype(np.float32)


def test_shipped_files_are_small_and_complete():
    meta = json.loads((DEFAULT_MODEL_DIR / CONFIG_NAME).read_text())
    assert meta["labels"] == list(EMOTIONS)
    assert len(meta["normalization"]["mean"]) == FeatureConfig.from_dict(meta["features"]).n_features
    files = [KERAS_NAME, *(litert_name(b) for b in LITERT_BATCH_SIZES)]
    total = sum((DEFAULT_MODEL_DIR / f).stat().st_size for f in files)
    assert total < 20e6


def test_litert_model_gives_distributions(model):
    assert model.backend == "litert"
    for n in (1, 3, 8, 13, 40):
        probs = model.predict(random_windows(model, n))
        assert probs.shape == (n, len(EMOTIONS))
        assert np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_results(model):
    windows = random_windows(model, 13, seed=1)
    together = model.predict(windows)
    alone = np.concatenate([model.predict(w[None]) for w in windows])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_keras_and_litert_agree(model):
    keras_model = EmotionModel(backend="keras")
    windows = random_windows(model, 9, seed=2)
    np.testing.assert_allclose(keras_model.predict(windows), model.predict(windows), atol=1e-4)


def test_wrong_shape_is_rejected(model):
    with pytest.raises(ValueError, match="expected windows"):
        model.predict(np.zeros((1, 10, 64), np.float32))
