"""Training on random window crops of cached clip features, and clip scoring.

Sampling is balanced: each corpus gets a fixed share of every batch and each
emotion an equal share within its corpus, so TESS's two speakers (a third of
the clips) do not dominate RAVDESS's twenty-four and nEMO's nine, and
RAVDESS's half-size neutral class is not under-learned.

Speaker adaptation in training: each window is standardised with a blend of
the population's statistics and its speaker's own (``streamer.core.adaptation``),
at a random weight and from a random subset of the speaker's clips (sometimes
of one emotion only), so the model works at every point of a live call: at
its start (population only), later (mostly the talker's own) and for a
talker who is one emotion all along.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from streamer.analysis.scoring import recording_stats
from streamer.core.adaptation import AdaptationConfig, SpeakerAdapter, adapted_stats, speaker_stats, window_moments
from streamer.core.calibration import apply_temperature
from streamer.core.features import FeatureConfig, FeatureStats, normalize_windows, window_starts
from streamer.core.labels import EMOTIONS
from streamer.training.cache import N_VARIANTS, FeatureCache

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
    # Renormalised over the corpora trained on (EmoSpeech's share applies only when it is).
    corpus_share: tuple[tuple[str, float], ...] = (
        ("ravdess", 0.45),
        ("tess", 0.15),
        ("nemo", 0.4),
        ("emospeech", 0.25),
    )
    adapt: bool = True  # speaker-adapted standardisation (else the population's only)
    band_warp: float = 0.0  # max relative stretch of the mel axis (VTLP-like), 0 = off
    adversarial: float = 0.0  # weight of a corpus classifier behind gradient reversal, 0 = off
    mixup: float = 0.0  # Beta(a, a) mixup of windows and labels across the batch, 0 = off


def sampling_weights(cache: FeatureCache, indices: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Per-clip probability: corpus share (renormalised over the corpora present), then equal per emotion."""
    weights = np.zeros(len(indices))
    corpora = np.array([cache.clips[i].corpus for i in indices])
    labels = np.array([cache.clips[i].label for i in indices])
    present = [c for c in shares if np.any(corpora == c)]
    for corpus in present:
        in_corpus = corpora == corpus
        classes = np.unique(labels[in_corpus])
        for label in classes:
            members = in_corpus & (labels == label)
            weights[members] = shares[corpus] / len(classes) / members.sum()
    return weights / weights.sum()


def crop(frames: np.ndarray, length: int, start: int) -> np.ndarray:
    """``length`` frames from ``start``; short sequences are padded with their quietest frame."""
    if frames.shape[0] >= start + length:
        return frames[start : start + length]
    pad = np.repeat(frames.min(axis=0, keepdims=True), start + length - frames.shape[0], axis=0)
    return np.concatenate([frames, pad])[start : start + length]


def estimate_stats(cache: FeatureCache, indices: np.ndarray, config: FeatureConfig, seed: int = 0) -> FeatureStats:
    """Mean/std of level-normalised features over sampled training windows (pitch: voiced frames)."""
    rng = np.random.default_rng(seed)
    identity = FeatureStats(np.zeros(config.n_features, np.float32), np.ones(config.n_features, np.float32))
    sample = _draw_windows(cache, indices, None, config, rng, 2000)[0]
    x = normalize_windows(sample, config, identity).reshape(-1, config.n_features)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    if config.prosody:
        pitch = config.channel("pitch")
        voiced = x[x[:, config.channel("voiced")] > 0, pitch]
        mean[pitch], std[pitch] = voiced.mean(), voiced.std() + 1e-3
    return FeatureStats(mean.astype(np.float32), std.astype(np.float32))


def _draw_windows(
    cache: FeatureCache,
    indices: np.ndarray,
    weights: np.ndarray | None,
    config: FeatureConfig,
    rng: np.random.Generator,
    count: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random window crops: ``(windows, labels, clip indices, variants)``."""
    chosen = rng.choice(indices, size=count, p=weights)
    variants = rng.choice(N_VARIANTS, size=count, p=VARIANT_P)
    length = config.window_frames
    batch = np.empty((count, length, config.n_features), np.float32)
    for row, (clip, variant) in enumerate(zip(chosen, variants)):
        frames = cache.get(clip, variant)
        start = int(rng.integers(max(1, frames.shape[0] - length + 1)))
        batch[row] = crop(frames, length, start)
    labels = np.array([cache.clips[i].label for i in chosen])
    return batch, labels, chosen, variants


HOP_FRAMES = 25  # 0.5 s hops, as the analyzer cuts windows


@dataclass
class ClipMoments:
    """Window moments summed per clip and variant: the material of speaker statistics."""

    count: np.ndarray  # (n_clips, N_VARIANTS) windows
    total: np.ndarray  # (n_clips, N_VARIANTS, n_features)
    total_sq: np.ndarray  # (n_clips, N_VARIANTS, n_features)


def clip_moments(cache: FeatureCache, config: FeatureConfig) -> ClipMoments:
    """Sums of :func:`window_moments` over each clip's sliding windows, per variant."""
    n = len(cache.clips)
    dims = config.n_features
    out = ClipMoments(np.zeros((n, N_VARIANTS)), np.zeros((n, N_VARIANTS, dims)), np.zeros((n, N_VARIANTS, dims)))
    for i in range(n):
        for v in range(N_VARIANTS):
            mean, mean_sq = window_moments(clip_windows(cache.get(i, v).astype(np.float32), config, HOP_FRAMES), config)
            out.count[i, v] = mean.shape[0]
            out.total[i, v] = mean.sum(axis=0)
            out.total_sq[i, v] = mean_sq.sum(axis=0)
    return out


def sample_speaker_stats(
    cache: FeatureCache,
    moments: ClipMoments,
    train_indices: np.ndarray,
    chosen: np.ndarray,
    variants: np.ndarray,
    population: FeatureStats,
    rng: np.random.Generator,
    config: FeatureConfig,
) -> FeatureStats:
    """Per-window standardisation as a live channel would have it at a random moment.

    A quarter of the windows get the population's statistics (a call's first
    seconds); the rest a uniform random weight of their speaker's statistics,
    estimated from a random number of the speaker's training clips in the
    same variant, a quarter of the time all of one emotion (a talker who is
    one emotion all along). The traits' weight is drawn on its own (serving
    centres them faster and further than the rest).
    """
    by_speaker: dict[str, np.ndarray] = {}
    by_speaker_emotion: dict[tuple[str, int], np.ndarray] = {}
    for i in train_indices:
        clip = cache.clips[i]
        by_speaker.setdefault(clip.speaker, []).append(i)  # type: ignore[arg-type]
        by_speaker_emotion.setdefault((clip.speaker, clip.label), []).append(i)  # type: ignore[arg-type]
    count = np.zeros(len(chosen))
    total = np.zeros((len(chosen), population.mean.size))
    total_sq = np.zeros_like(total)
    weight = np.where(rng.random(len(chosen)) < 0.25, 0.0, rng.random(len(chosen)))
    trait = np.where(rng.random(len(chosen)) < 0.25, 0.0, rng.random(len(chosen)))
    for row, (clip_index, variant) in enumerate(zip(chosen, variants)):
        clip = cache.clips[clip_index]
        pool = by_speaker_emotion[(clip.speaker, clip.label)] if rng.random() < 0.25 else by_speaker[clip.speaker]
        size = int(np.exp(rng.uniform(0, np.log(len(pool) + 1))))  # log-uniform: short and long sessions
        subset = rng.choice(pool, size=max(1, min(size, len(pool))), replace=False)
        count[row] = moments.count[subset, variant].sum()
        total[row] = moments.total[subset, variant].sum(axis=0)
        total_sq[row] = moments.total_sq[subset, variant].sum(axis=0)
    return adapted_stats(population, speaker_stats(config, count, total, total_sq), weight, trait, config)


def warp_bands(batch: np.ndarray, max_warp: float, rng: np.random.Generator, n_mels: int | None = None) -> np.ndarray:
    """Stretch each window's mel axis by a random factor in ``1 ± max_warp`` (vocal-tract length).

    Only the first ``n_mels`` values of a frame (default: all) are bands; the rest pass unchanged.
    """
    if n_mels is not None and n_mels < batch.shape[-1]:
        return np.concatenate([warp_bands(batch[..., :n_mels], max_warp, rng), batch[..., n_mels:]], axis=-1)
    count, _, bands = batch.shape
    alpha = rng.uniform(1 - max_warp, 1 + max_warp, size=count)
    src = np.clip(np.arange(bands)[None, :] * alpha[:, None], 0, bands - 1)  # (count, bands)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, bands - 1)
    frac = (src - low)[:, None, :].astype(np.float32)
    rows = np.arange(count)[:, None, None]
    frames = np.arange(batch.shape[1])[None, :, None]
    return batch[rows, frames, low[:, None, :]] * (1 - frac) + batch[rows, frames, high[:, None, :]] * frac


def mixup(x: np.ndarray, target: np.ndarray, alpha: float, rng: np.random.Generator):
    """Each window blended with a random other (mostly of another corpus), labels alike."""
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    lam = np.maximum(lam, 1 - lam)  # the window keeps the larger part: its own label dominates
    other = rng.permutation(len(x))
    mixed = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[other]
    return mixed.astype(np.float32), lam[:, None] * target + (1 - lam[:, None]) * target[other]


def spec_augment(batch: np.ndarray, rng: np.random.Generator, bands: int | None = None) -> None:
    """In place: two frequency masks (within the first ``bands`` values) and two time masks per window.

    Masked values are set to 0, the standardised mean.
    """
    count, frames, dims = batch.shape
    bands = dims if bands is None else bands
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
    moments: ClipMoments | None = None,
):
    """Train a fresh model on the given clips; returns ``(keras_model, stats)``.

    ``moments`` (from :func:`clip_moments` over the whole cache) can be passed
    in when several models are trained on one cache.
    """
    import keras

    from streamer.training.model import build_model, emotion_only

    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    stats = estimate_stats(cache, train_indices, config, settings.seed)
    weights = sampling_weights(cache, train_indices, dict(settings.corpus_share))
    if settings.adapt and moments is None:
        moments = clip_moments(cache, config)
    corpora = sorted({cache.clips[i].corpus for i in train_indices})
    adversarial = settings.adversarial > 0 and len(corpora) > 1
    model = build_model(config.window_frames, config.n_features, len(EMOTIONS), n_domains=len(corpora) * adversarial)
    total = settings.epochs * settings.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, total, warmup_target=None)
    emotion_loss = keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing)
    if adversarial:
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss={"probs": emotion_loss, "domain": keras.losses.CategoricalCrossentropy()},
            loss_weights={"probs": 1.0, "domain": settings.adversarial},
            metrics={"probs": ["accuracy"]},
        )
    else:
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=emotion_loss, metrics=["accuracy"])
    started = time.monotonic()
    for epoch in range(settings.epochs):
        count = settings.steps_per_epoch * settings.batch_size
        x, y, chosen, variants = _draw_windows(cache, train_indices, weights, config, rng, count)
        if settings.band_warp > 0:
            x = warp_bands(x, settings.band_warp, rng, config.n_mels)
        window_stats = stats
        if settings.adapt:
            window_stats = sample_speaker_stats(cache, moments, train_indices, chosen, variants, stats, rng, config)
        x = normalize_windows(x, config, window_stats)
        spec_augment(x, rng, config.n_mels)
        target = keras.utils.to_categorical(y, len(EMOTIONS))
        if settings.mixup > 0:
            x, target = mixup(x, target, settings.mixup, rng)
        if adversarial:
            domain = np.array([corpora.index(cache.clips[i].corpus) for i in chosen])
            target = {"probs": target, "domain": keras.utils.to_categorical(domain, len(corpora))}
        history = model.fit(
            x,
            target,
            batch_size=settings.batch_size,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        elapsed = time.monotonic() - started
        eta = elapsed / (epoch + 1) * (settings.epochs - epoch - 1)
        print(
            f"[{label}] epoch {epoch + 1}/{settings.epochs} loss {history.history['loss'][0]:.3f} "
            f"acc {history.history['probs_accuracy' if adversarial else 'accuracy'][0]:.3f} "
            f"({elapsed:.0f}s, eta {eta:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    return emotion_only(model), stats


def clip_windows(frames: np.ndarray, config: FeatureConfig, hop_frames: int) -> np.ndarray:
    """Every sliding window of a clip, as the file analyzer would cut it."""
    length = config.window_frames
    starts = window_starts(frames.shape[0], length, hop_frames)
    return np.stack([crop(frames, length, s) for s in starts])


@dataclass
class WindowPredictions:
    """Uncalibrated window probabilities of clips; clip ``i`` owns rows ``bounds[i]:bounds[i + 1]``."""

    probs: np.ndarray
    bounds: np.ndarray
    weights: np.ndarray  # adaptation weight each window was scored at

    def clip_probs(self, temperature: float = 1.0) -> np.ndarray:
        """Clip probabilities: the mean of its windows' (temperature-scaled) probabilities."""
        p = apply_temperature(self.probs, temperature)
        return np.stack([p[a:b].mean(axis=0) for a, b in zip(self.bounds[:-1], self.bounds[1:])])


def predict_clips(
    model,
    cache: FeatureCache,
    indices: np.ndarray,
    variant: int,
    config: FeatureConfig,
    population: FeatureStats,
    adaptation: AdaptationConfig,
    sessions: np.ndarray | None = None,
    seed: int = 0,
) -> WindowPredictions:
    """Window probabilities of clips, scored as the analyzer would.

    Without ``sessions`` each clip is a file of its own (``analyze``): its
    windows are standardised with the statistics of its own speech. With
    ``sessions`` (one id per clip), the clips of a session are streamed one
    after another in a random order through a live channel's
    :class:`SpeakerAdapter`, each window standardised with what the channel
    knows by then.
    """
    per_clip = [clip_windows(cache.get(i, variant).astype(np.float32), config, HOP_FRAMES) for i in indices]
    bounds = np.cumsum([0] + [w.shape[0] for w in per_clip])
    mean = np.empty((bounds[-1], config.n_features), np.float32)
    std = np.empty_like(mean)
    weights = np.empty(bounds[-1])
    if sessions is None:
        for k, windows in enumerate(per_clip):
            stats, weight = recording_stats(SpeakerAdapter(population, config, adaptation), windows)
            mean[bounds[k] : bounds[k + 1]], std[bounds[k] : bounds[k + 1]] = stats.mean, stats.std
            weights[bounds[k] : bounds[k + 1]] = weight
    else:
        rng = np.random.default_rng(seed)
        for session in np.unique(sessions):
            order = rng.permutation(np.flatnonzero(sessions == session))
            adapter = SpeakerAdapter(population, config, adaptation)
            for k in order:
                stats = adapter.observe(per_clip[k])
                mean[bounds[k] : bounds[k + 1]], std[bounds[k] : bounds[k + 1]] = stats.mean, stats.std
                weights[bounds[k] : bounds[k + 1]] = adapter.weight
    x = normalize_windows(np.concatenate(per_clip), config, FeatureStats(mean, std))
    probs = model.predict(x, batch_size=256, verbose=0)
    return WindowPredictions(probs, bounds, weights)
