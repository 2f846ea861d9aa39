"""Speaker adaptation: standardise features by the talker's own statistics.

The model sees level-normalised log-mel windows standardised per band. With
the training population's mean and std, a new voice (another vocal tract,
language, microphone or phone line) sits off-centre and the model collapses
onto one class. Standardising by the talker's own statistics removes that
offset; but a talker who is one emotion all along would be "centred" into
neutral. So two kinds of dimension adapt differently:

- the talker's *traits*, :data:`TRAITS` (how loud the channel is, the pitch
  level of the voice), which say who is talking and on what line rather than
  how they feel, are centred on the talker's own mean, fully and quickly:
  ``trait = trait_weight * n / (n + trait_prior_windows)``;
- everything else (mel bands, periodicity, voicing), which carries the
  emotion itself, blends the talker's mean and std with the population's
  only partly: ``weight = max_weight * n / (n + prior_windows)``;

after ``n`` speech windows. Training draws both weights and the talker's
statistics at random (from random subsets of the speaker's clips, sometimes
of one emotion only), so the model works at every point of a call.

One implementation for training, file analysis and live streams; pure
numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from streamer.core.features import FeatureConfig, FeatureStats, level_normalize

TRAITS = ("level", "pitch")  # prosody channels centred on the talker's own mean


@dataclass(frozen=True)
class AdaptationConfig:
    """How fast and how far a channel's own statistics replace the population's.

    Attributes
    ----------
    prior_windows : float
        Speech windows after which the talker's statistics weigh half of
        ``max_weight`` (windows come every hop, 0.5 s).
    max_weight : float
        The weight's limit, in [0, 1]; 0 turns adaptation off (traits too).
        Below 1 so a talker who is one emotion all along keeps part of it.
    trait_prior_windows, trait_weight : float
        The same for the :data:`TRAITS` channels' means (their std stays
        the population's).
    """

    prior_windows: float = 20.0
    max_weight: float = 0.5
    trait_prior_windows: float = 6.0
    trait_weight: float = 1.0

    def __post_init__(self) -> None:
        if not (self.prior_windows > 0 and self.trait_prior_windows > 0):
            raise ValueError("prior_windows and trait_prior_windows must be positive")
        if not (0.0 <= self.max_weight <= 1.0 and 0.0 <= self.trait_weight <= 1.0):
            raise ValueError("max_weight and trait_weight must be within [0, 1]")

    def weight(self, n_windows: float) -> float:
        """The talker's share after ``n_windows`` speech windows."""
        return self.max_weight * n_windows / (n_windows + self.prior_windows)

    def trait(self, n_windows: float) -> float:
        """The talker's share of the trait channels' means after ``n_windows`` speech windows."""
        if self.max_weight <= 0:
            return 0.0
        return self.trait_weight * n_windows / (n_windows + self.trait_prior_windows)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> AdaptationConfig:
        return cls(**data) if data else cls(max_weight=0.0)


def window_moments(windows: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and mean square over each level-normalised window's frames.

    Parameters
    ----------
    windows : np.ndarray
        ``(n, window_frames, n_features)`` raw features (:func:`frame_features`).

    Returns
    -------
    tuple of np.ndarray
        Two ``(n, n_features)`` float64 arrays.
    """
    x = np.asarray(windows, np.float32)
    if config.normalization != "level":
        x = level_normalize(x, config)
        return x.mean(axis=1, dtype=np.float64), np.einsum("nfm,nfm->nm", x, x, dtype=np.float64) / x.shape[1]
    # Level normalisation subtracts one number L per window from the mel bands, so their moments
    # follow from the raw ones: mean - L and mean_sq - 2 L mean + L^2. Half the cost of a
    # normalised copy (runs per live batch).
    mean = x.mean(axis=1).astype(np.float64)
    mean_sq = (np.einsum("nfm,nfm->nm", x, x) / x.shape[1]).astype(np.float64)
    mel = slice(0, config.n_mels)
    level = mean[:, mel].mean(axis=1, keepdims=True)
    mean_sq[:, mel] += level * level - 2 * level * mean[:, mel]
    mean[:, mel] -= level
    return mean, mean_sq


@dataclass
class SpeakerMoments:
    """Running sums of window moments: what is known of one talker so far."""

    count: float
    total: np.ndarray  # sum of window means, (n_features,)
    total_sq: np.ndarray  # sum of window mean squares, (n_features,)

    @classmethod
    def empty(cls, n_features: int) -> SpeakerMoments:
        return cls(0.0, np.zeros(n_features), np.zeros(n_features))

    def add(self, mean: np.ndarray, mean_sq: np.ndarray) -> None:
        """Add window moments ``(n, n_features)`` (or one window's ``(n_features,)``)."""
        mean, mean_sq = np.atleast_2d(mean), np.atleast_2d(mean_sq)
        self.count += mean.shape[0]
        self.total += mean.sum(axis=0)
        self.total_sq += mean_sq.sum(axis=0)


def speaker_stats(
    config: FeatureConfig, count: float | np.ndarray, total: np.ndarray, total_sq: np.ndarray, floor: float = 1e-3
) -> FeatureStats:
    """Mean and std from moment sums (arrays broadcast: one talker or many).

    The pitch mean is over voiced frames only (unvoiced frames hold 0): NaN
    for a talker not heard voiced yet, which :func:`adapted_stats` reads as
    "nothing known".
    """
    count = np.maximum(np.asarray(count, np.float64), 1e-9)[..., None]
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    if config.prosody:
        voiced = total[..., config.channel("voiced")]
        pitch = config.channel("pitch")
        mean[..., pitch] = np.where(voiced > 0, total[..., pitch] / np.where(voiced > 0, voiced, 1.0), np.nan)
    return FeatureStats(mean.astype(np.float32), (np.sqrt(var) + floor).astype(np.float32))


def adapted_stats(
    population: FeatureStats,
    speaker: FeatureStats,
    weight: float | np.ndarray,
    trait: float | np.ndarray,
    config: FeatureConfig,
) -> FeatureStats:
    """Blend a talker's statistics into the population's (one blend, or one per row if arrays).

    ``weight`` of the talker's mean and std on every dimension but the
    :data:`TRAITS`, whose means take ``trait`` of the talker's and whose
    std stays the population's.
    """
    w = np.asarray(weight, np.float32)[..., None]
    mean = w * speaker.mean + (1 - w) * population.mean
    std = w * speaker.std + (1 - w) * population.std
    if config.prosody:
        t = np.asarray(trait, np.float32)
        for name in TRAITS:
            i = config.channel(name)
            own = speaker.mean[..., i]
            mean[..., i] = np.where(np.isfinite(own), t * own + (1 - t) * population.mean[i], population.mean[i])
            std[..., i] = population.std[i]
    return FeatureStats(mean.astype(np.float32), std.astype(np.float32))


class AdapterStep(NamedTuple):
    """A channel's adaptation state right after one of its speech windows."""

    count: float
    total: np.ndarray
    total_sq: np.ndarray
    weight: float
    trait: float


def stats_after(population: FeatureStats, config: FeatureConfig, steps: list[AdapterStep]) -> FeatureStats:
    """Per-window statistics ``(len(steps), n_features)`` from :meth:`SpeakerAdapter.add` steps.

    Steps may come from different channels (the live worker batches them).
    """
    if not steps:
        empty = np.zeros((0, population.mean.size), np.float32)
        return FeatureStats(empty, empty)
    count, total, total_sq, weight, trait = (np.array(v) for v in zip(*steps))
    return adapted_stats(population, speaker_stats(config, count, total, total_sq), weight, trait, config)


class SpeakerAdapter:
    """Adaptation state of one channel (one talker), carried between windows.

    Feed each speech window in time order with :meth:`observe`; it returns
    the statistics to standardise those windows with. :meth:`reset` when a
    new call starts on the channel.
    """

    def __init__(self, population: FeatureStats, feature_config: FeatureConfig, config: AdaptationConfig) -> None:
        self.population = population
        self.feature_config = feature_config
        self.config = config
        self.moments = SpeakerMoments.empty(feature_config.n_features)

    @property
    def weight(self) -> float:
        """How much the channel's own statistics weigh now (0-1; traits aside)."""
        return self.config.weight(self.moments.count)

    def reset(self) -> None:
        self.moments = SpeakerMoments.empty(self.feature_config.n_features)

    def add(self, mean: np.ndarray, mean_sq: np.ndarray) -> AdapterStep:
        """Add one speech window's moments (:func:`window_moments` rows); the state after it."""
        m = self.moments  # in place and without SpeakerMoments.add's checks: this runs per live window
        m.count += 1
        m.total += mean
        m.total_sq += mean_sq
        return AdapterStep(m.count, m.total.copy(), m.total_sq.copy(), self.weight, self.config.trait(m.count))

    def observe(self, windows: np.ndarray) -> FeatureStats:
        """Add speech windows ``(n, frames, n_features)``; per-window stats ``(n, n_features)``.

        Window ``i`` is standardised with what is known after it: the
        statistics of the channel's speech so far, including itself.
        """
        mean, mean_sq = window_moments(windows, self.feature_config)
        return stats_after(self.population, self.feature_config, [self.add(m, s) for m, s in zip(mean, mean_sq)])

    def stats_for_whole(self, windows: np.ndarray | Iterable[np.ndarray]) -> tuple[FeatureStats, float]:
        """Statistics for windows of a finished recording: all of its speech at once.

        A file is known whole before it is scored, so every window gets the
        statistics of all the speech (the weight after all its windows).
        ``windows``: ``(n, frames, n_features)``, or an iterable of such batches
        (a long recording need not be stacked whole). Returns the statistics
        and that weight; the adapter's state is untouched.
        """
        config = self.feature_config
        moments = SpeakerMoments.empty(config.n_features)
        for batch in [windows] if isinstance(windows, np.ndarray) else windows:
            if len(batch):
                moments.add(*window_moments(batch, config))
        weight, trait = self.config.weight(moments.count), self.config.trait(moments.count)
        speaker = speaker_stats(config, moments.count, moments.total, moments.total_sq)
        return adapted_stats(self.population, speaker, weight, trait, config), weight
