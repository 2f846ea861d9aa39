"""Message formats shared by the websocket hub, MQTT and the dashboard (plain dicts)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamer.labels import EMOTIONS

STATES = ("running", "reconnecting", "stopped", "finished", "offline")  # offline: an analyzer's MQTT Last Will
KINDS = ("scores", "status", "alert")


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
    adapted: float = 0.0,
) -> dict:
    """One analysed window: ``speech`` is False (and ``probs`` null) for silence.

    ``t`` is seconds since the stream started, at the window's end, from the
    sample counter. ``adapted`` is how much the channel's own voice
    statistics weigh in its normalisation now (0-1; speaker adaptation).
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
        "adapted": round(float(adapted), 3),
    }


def status_message(stream: str, source: str, state: str, overruns: int, windows: int, **extra) -> dict:
    """Health of one stream; ``extra`` carries e.g. ``error``, ``channels``, ``adaptation``."""
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


def mqtt_topic(prefix: str, message: dict) -> str:
    """``<prefix>/<stream>/<channel>/scores|alert`` or ``<prefix>/<stream>/status``."""
    kind = message["type"]
    if kind == "status":
        return f"{prefix}/{message['stream']}/status"
    if kind in ("scores", "alert"):
        return f"{prefix}/{message['stream']}/{message['channel']}/{kind}"
    raise ValueError(f"no MQTT topic for message type {kind!r}")


def validate_message(message: object) -> dict:
    """Check a message that arrived from outside (MQTT) before it reaches dashboards."""
    if not isinstance(message, dict) or message.get("type") not in KINDS:
        raise ValueError("not a scores, status or alert message")
    if not isinstance(message.get("stream"), str) or not message["stream"]:
        raise ValueError("message has no stream")
    if message["type"] != "status" and not isinstance(message.get("channel"), str):
        raise ValueError("message has no channel")
    return message
