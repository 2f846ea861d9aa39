"""Training on random window crops of cached clip features, and clip scoring.

Sampling is balanced: each corpus gets a fixed share of every batch and each
emotion an equal share within its corpus, so TESS's two speakers (2/3 of the
clips) do not dominate RAVDESS's twenty-four, and RAVDESS's half-size
neutral class is not under-learned.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from streamer.features import FeatureConfig, FeatureStats, normalize_windows, window_starts
from streamer.labels import EMOTIONS
from streamer.training.cache import N_VARIANTS, FeatureCache

CORPUS_SHARE = {"ravdess": 0.6, "tess": 0.4}
# Probability of drawing the clean, telephone and each augmented variant.
VARIANT_P = np.array([0.2, 0.2] + [0.6 / (N_VARIANTS - 2)] * (N_VARIANTS - 2))


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 64
    learning_rate: float = 2e-3
    label_smoothing: float = 0.1
    seed: int = 0


def sampling_weights(cache: FeatureCache, indices: np.ndarray) -> np.ndarray:
    """Per-clip probability: corpus share, then equal per emotion within a corpus."""
    weights = np.zeros(len(indices))
    corpora = np.array([cache.clips[i].corpus for i in indices])
    labels = np.array([cache.clips[i].label for i in indices])
    present = [c for c in CORPUS_SHARE if np.any(corpora == c)]
    for corpus in present:
        in_corpus = corpora == corpus
        classes = np.unique(labels[in_corpus])
        for label in classes:
            members = in_corpus & (labels == label)
            weights[members] = CORPUS_SHARE[corpus] / len(classes) / members.sum()
    return weights / weights.sum()


def crop(frames: np.ndarray, length: int, start: int) -> np.ndarray:
    """``length`` frames from ``start``; short sequences are padded with their quietest frame."""
    if frames.shape[0] >= start + length:
        return frames[start : start + length]
    pad = np.repeat(frames.min(axis=0, keepdims=True), start + length - frames.shape[0], axis=0)
    return np.concatenate([frames, pad])[start : start + length]


def estimate_stats(cache: FeatureCache, indices: np.ndarray, config: FeatureConfig, seed: int = 0) -> FeatureStats:
    """Mean/std of level-normalised features over sampled training windows."""
    rng = np.random.default_rng(seed)
    identity = FeatureStats(np.zeros(config.n_mels, np.float32), np.ones(config.n_mels, np.float32))
    sample = _draw_windows(cache, indices, None, config, rng, 2000)[0]
    x = normalize_windows(sample, config, identity).reshape(-1, config.n_mels)
    return FeatureStats(x.mean(axis=0).astype(np.float32), (x.std(axis=0) + 1e-3).astype(np.float32))


def _draw_windows(
    cache: FeatureCache,
    indices: np.ndarray,
    weights: np.ndarray | None,
    config: FeatureConfig,
    rng: np.random.Generator,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    chosen = rng.choice(indices, size=count, p=weights)
    variants = rng.choice(N_VARIANTS, size=count, p=VARIANT_P)
    length = config.window_frames
    batch = np.empty((count, length, config.n_mels), np.float32)
    for row, (clip, variant) in enumerate(zip(chosen, variants)):
        frames = cache.get(clip, variant)
        start = int(rng.integers(max(1, frames.shape[0] - length + 1)))
        batch[row] = crop(frames, length, start)
    labels = np.array([cache.clips[i].label for i in chosen])
    return batch, labels


def spec_augment(batch: np.ndarray, rng: np.random.Generator) -> None:
    """In place: two frequency and two time masks per window (set to the mean, 0)."""
    count, frames, bands = batch.shape
    for row in range(count):
        for _ in range(2):
            width = rng.integers(0, 9)
            start = rng.integers(0, bands - width + 1)
            batch[row, :, start : start + width] = 0.0
            width = rng.integers(0, 9)
            start = rng.integers(0, frames - width + 1)
            batch[row, start : start + width, :] = 0.0


def train_model(
    cache: FeatureCache,
    train_indices: np.ndarray,
    config: FeatureConfig,
    settings: TrainSettings = TrainSettings(),
    label: str = "train",
):
    """Train a fresh model on the given clips; returns ``(keras_model, stats)``."""
    import keras

    from streamer.training.model import build_model

    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    stats = estimate_stats(cache, train_indices, config, settings.seed)
    weights = sampling_weights(cache, train_indices)
    model = build_model(config.window_frames, config.n_mels, len(EMOTIONS))
    total = settings.epochs * settings.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, total, warmup_target=None)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
        metrics=["accuracy"],
    )
    started = time.monotonic()
    for epoch in range(settings.epochs):
        x, y = _draw_windows(cache, train_indices, weights, config, rng, settings.steps_per_epoch * settings.batch_size)
        x = normalize_windows(x, config, stats)
        spec_augment(x, rng)
        history = model.fit(
            x,
            keras.utils.to_categorical(y, len(EMOTIONS)),
            batch_size=settings.batch_size,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        elapsed = time.monotonic() - started
        eta = elapsed / (epoch + 1) * (settings.epochs - epoch - 1)
        print(
            f"[{label}] epoch {epoch + 1}/{settings.epochs} loss {history.history['loss'][0]:.3f} "
            f"acc {history.history['accuracy'][0]:.3f} ({elapsed:.0f}s, eta {eta:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    return model, stats


def clip_windows(frames: np.ndarray, config: FeatureConfig, hop_frames: int) -> np.ndarray:
    """Every sliding window of a clip, as the file analyzer would cut it."""
    length = config.window_frames
    starts = window_starts(frames.shape[0], length, hop_frames)
    return np.stack([crop(frames, length, s) for s in starts])


def predict_clips(
    model,
    cache: FeatureCache,
    indices: np.ndarray,
    variant: int,
    config: FeatureConfig,
    stats: FeatureStats,
    hop_s: float = 0.5,
) -> np.ndarray:
    """Clip probabilities: the mean over the clip's sliding windows."""
    hop_frames = max(1, int(round(hop_s * config.sample_rate / config.hop_length)))
    per_clip = [clip_windows(cache.get(i, variant).astype(np.float32), config, hop_frames) for i in indices]
    counts = [w.shape[0] for w in per_clip]
    x = normalize_windows(np.concatenate(per_clip), config, stats)
    probs = model.predict(x, batch_size=256, verbose=0)
    bounds = np.cumsum([0] + counts)
    return np.stack([probs[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
