"""The eight emotion labels, in the one order used everywhere, and the groups signals are built from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

EMOTION_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

# High arousal (an excited voice) against low (neutral, calm, sad); disgust belongs to neither.
HIGH_AROUSAL: tuple[str, ...] = ("angry", "fearful", "happy", "surprised")
NEGATIVE: tuple[str, ...] = ("angry", "disgust", "fearful", "sad")


def arousal(probs: Mapping[str, float] | Sequence[float]) -> float:
    """How excited a voice sounds, 0-1: the summed probability of the high-arousal emotions.

    ``probs`` by name, or in ``EMOTIONS`` order.
    """
    if isinstance(probs, Mapping):
        return float(sum(probs[e] for e in HIGH_AROUSAL))
    return float(sum(probs[EMOTION_INDEX[e]] for e in HIGH_AROUSAL))
