"""Rolling emotion scores: a moving average of speech windows over a horizon."""

from __future__ import annotations

from collections import deque

import numpy as np


class RollingScores:
    """Mean of the speech windows' probabilities whose end lies within ``horizon_s``.

    Silence does not pull scores toward any emotion: non-speech windows add
    nothing, and once no speech window is left in the horizon the rolling
    score is ``None``.
    """

    def __init__(self, horizon_s: float = 4.0) -> None:
        if horizon_s <= 0:
            raise ValueError("horizon_s must be positive")
        self.horizon_s = horizon_s
        self._recent: deque[tuple[float, np.ndarray]] = deque()

    def update(self, t: float, probs: np.ndarray | None) -> np.ndarray | None:
        """Add the window ending at ``t`` seconds; return the rolling scores then."""
        if probs is not None:
            self._recent.append((t, np.asarray(probs, np.float64)))
        while self._recent and self._recent[0][0] <= t - self.horizon_s:
            self._recent.popleft()
        if not self._recent:
            return None
        mean = np.mean([p for _, p in self._recent], axis=0)
        return mean / mean.sum()
