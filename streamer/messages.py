"""Message formats shared by the websocket hub, MQTT and the dashboard (plain dicts)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamer.labels import EMOTIONS

STATES = ("running", "reconnecting", "stopped", "finished")


def _probs(values: np.ndarray | None, labels: Sequence[str] = EMOTIONS) -> dict[str, float] | None:
    if values is None:
        return None
    return {name: round(float(v), 4) for name, v in zip(labels, values)}


def scores_message(
    stream: str,
    channel: str,
    t: float,
    probs: np.ndarray | None,
    rolling: np.ndarray | None,
    latency_ms: float,
) -> dict:
    """One analysed window: ``speech`` is False (and ``probs`` null) for silence.

    ``t`` is seconds since the stream started, at the window's end, from the
    sample counter.
    """
    return {
        "type": "scores",
        "stream": stream,
        "channel": channel,
        "t": round(t, 3),
        "speech": probs is not None,
        "probs": _probs(probs),
        "rolling": _probs(rolling),
        "top": None if rolling is None else EMOTIONS[int(np.argmax(rolling))],
        "latency_ms": round(latency_ms, 2),
    }


def status_message(stream: str, source: str, state: str, overruns: int, windows: int, **extra) -> dict:
    """Health of one stream; ``extra`` carries e.g. ``error``, ``channels``, ``dropped``."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    return {
        "type": "status",
        "stream": stream,
        "source": source,
        "state": state,
        "overruns": int(overruns),
        "windows": int(windows),
        **extra,
    }
