"""The eight emotion labels, in the one order used everywhere."""

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
