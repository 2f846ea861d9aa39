"""Message formats shared by the websocket hub, MQTT and the dashboard (plain dicts)."""

from __future__ import annotations

import json
import math
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


MAX_PAYLOAD_BYTES = 64 * 1024
MAX_NAME_LEN = 128
MAX_DEPTH = 16


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _check_values(value: object, depth: int = 0) -> None:
    """Every number finite, nesting bounded (iterates children, recursion limited by MAX_DEPTH)."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite number")
    if isinstance(value, dict):
        for item in value.values():
            _check_values(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_values(item, depth + 1)


def _name(message: dict, key: str, expected: str | None) -> None:
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LEN:
        raise ValueError(f"{key} must be a non-empty string of at most {MAX_NAME_LEN} characters")
    if expected is not None and value != expected:
        raise ValueError(f"{key} {value[:40]!r} does not match the topic's {expected[:40]!r}")


def _check_probs(value: object, key: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object or null")
    for name, p in value.items():
        if name not in EMOTIONS:
            raise ValueError(f"{key} has an unknown emotion")
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{key} values must be numbers in [0, 1]")


def validate_message(
    message: object, stream: str | None = None, channel: str | None = None, kind: str | None = None
) -> dict:
    """Check a message that arrived from outside (MQTT) before it reaches dashboards.

    ``message`` is the raw payload (bytes or str: size-checked, then parsed
    strictly) or an already parsed object. ``stream``, ``channel`` and
    ``kind`` are what the MQTT topic says; if given, the message must agree
    (a publisher cannot speak for another stream). Raises ValueError with a
    short reason; pure.
    """
    if isinstance(message, bytes | bytearray | str):
        if len(message) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload over {MAX_PAYLOAD_BYTES} bytes")
        try:
            message = json.loads(message, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except UnicodeDecodeError:
            raise ValueError("payload is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(message, dict) or message.get("type") not in KINDS:
        raise ValueError("not a scores, status or alert message")
    if kind is not None and message["type"] != kind:
        raise ValueError(f"a {message['type']} message on a {kind} topic")
    _check_values(message)
    _name(message, "stream", stream)
    if message["type"] == "status":
        if "state" in message and message["state"] not in STATES:
            raise ValueError("unknown state")
    else:
        _name(message, "channel", channel)
    if message["type"] == "scores":
        _check_probs(message.get("probs"), "probs")
        _check_probs(message.get("rolling"), "rolling")
    return message
