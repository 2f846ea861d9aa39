"""Scoring a channel's speech windows: standardise (speaker adaptation), classify, average.

Two adaptation policies, each implemented once. A finished recording (a
file, an upload, a clip in the evaluation) is known whole, so every window
is standardised with all of its speech: :func:`recording_stats`, used by
:func:`score_recording` here and by the evaluation. A live channel knows
only what it has heard: ``ScoringStep`` does that incrementally across
streams (tests check it equals ``SpeakerAdapter.observe``, which the
evaluation's session scoring uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from streamer.core.adaptation import SpeakerAdapter
from streamer.core.features import FeatureStats

Predict = Callable[[np.ndarray, FeatureStats | None], np.ndarray]


def recording_stats(
    adapter: SpeakerAdapter | None, windows: np.ndarray | Iterable[np.ndarray]
) -> tuple[FeatureStats | None, float]:
    """Standardisation for every window of a finished recording, and its talker's weight in it.

    ``adapter`` None (adaptation off): no statistics, weight 0.
    """
    if adapter is None:
        return None, 0.0
    return adapter.stats_for_whole(windows)


def score_recording(
    speech_windows: Callable[[], Iterator[np.ndarray]],
    n_windows: int,
    n_classes: int,
    predict: Predict,
    adapter: SpeakerAdapter | None,
) -> tuple[np.ndarray, float]:
    """Probabilities of a finished recording's speech windows, each standardised with all of its speech.

    Parameters
    ----------
    speech_windows : callable
        Yields the speech windows' features in batches (called twice: a long
        recording is never stacked whole).
    n_windows, n_classes : int
    predict : callable
        ``predict(frames, stats)``, e.g. ``EmotionModel.predict``.
    adapter : SpeakerAdapter or None

    Returns
    -------
    probs : np.ndarray
        ``(n_windows, n_classes)``.
    weight : float
        The recording's own statistics' weight (0 without adaptation).
    """
    probs = np.zeros((n_windows, n_classes), np.float32)
    if not n_windows:
        return probs, 0.0
    stats, weight = recording_stats(adapter, speech_windows())
    done = 0
    for batch in speech_windows():
        probs[done : done + len(batch)] = predict(batch, stats)
        done += len(batch)
    return probs, weight


def overall(probs: np.ndarray) -> np.ndarray | None:
    """The mean of the speech windows' probabilities, renormalised; None without speech."""
    if not len(probs):
        return None
    mean = probs.mean(axis=0)
    return mean / mean.sum()
