"""Message formats shared by the websocket hub, MQTT and the dashboard (plain dicts).

``SCHEMA`` declares every field of every message kind once, with its check.
The builders (``status_message`` refuses fields it does not declare) and
``validate_message`` (what a dashboard accepts from MQTT) both use it, so
what we send and what we accept cannot drift apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np

from streamer.core.labels import EMOTIONS, arousal

STATES = ("running", "reconnecting", "stopped", "finished", "offline")  # offline: an analyzer's MQTT Last Will
KINDS = ("scores", "status", "alert")


def _rounded_probs(values: np.ndarray | None, labels: Sequence[str] = EMOTIONS) -> dict[str, float] | None:
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
    confident_at: float = 0.0,
) -> dict:
    """One analysed window: ``speech`` is False (and ``probs`` null) for silence.

    ``t`` is seconds since the stream started, at the window's end, from the
    sample counter. ``adapted`` is how much the channel's own voice
    statistics weigh in its normalisation now (0-1; speaker adaptation).
    ``arousal`` (0-1) is the rolling scores' high-arousal share, None like
    ``top`` when no speech is within the horizon. ``confident`` says whether
    ``top``'s rolling probability reaches ``confident_at``, the model's
    measured threshold (below it a display says "uncertain").
    """
    return {
        "type": "scores",
        "stream": stream,
        "channel": channel,
        "t": round(t, 3),
        "speech": probs is not None,
        "probs": _rounded_probs(probs),
        "rolling": _rounded_probs(rolling),
        "top": None if rolling is None else EMOTIONS[int(np.argmax(rolling))],
        "arousal": None if rolling is None else round(min(1.0, arousal(rolling)), 4),
        "confident": None if rolling is None else bool(np.max(rolling) >= confident_at),
        "latency_ms": round(latency_ms, 2),
        "adapted": round(float(adapted), 3),
    }


def status_message(stream: str, source: str, state: str, overruns: int, windows: int, **extra) -> dict:
    """Health of one stream; ``extra`` carries fields ``SCHEMA["status"]`` declares (``error``, ``channels``…)."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    unknown = set(extra) - set(SCHEMA["status"])
    if unknown:
        raise ValueError(f"status messages have no field {sorted(unknown)[0]!r} (declare it in SCHEMA)")
    return {
        "type": "status",
        "stream": stream,
        "source": source,
        "state": state,
        "overruns": int(overruns),
        "windows": int(windows),
        **extra,
    }


MAX_PAYLOAD_BYTES = 64 * 1024
MAX_NAME_LEN = 128
DEFAULT_QUEUE = "default"  # the queue of streams that name none (devices, files, calls without one)
MAX_TEXT_LEN = 1024
MAX_LIST_LEN = 64
MAX_DEPTH = 16
ALERT_STATES = ("raised", "cleared")


def valid_queue(name: object) -> bool:
    """Whether ``name`` can be a queue: one MQTT topic level, so a supervisor can subscribe to it alone.

    Non-empty, at most ``MAX_NAME_LEN`` characters, printable, no whitespace
    and none of ``/`` (a level separator), ``+`` or ``#`` (wildcards).
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LEN
        and all(c.isprintable() and not c.isspace() and c not in "/+#" for c in name)
    )


def mqtt_topic(prefix: str, queue: str, message: dict) -> str:
    """``<prefix>/<queue>/<stream>/<channel>/scores|alert`` or ``<prefix>/<queue>/<stream>/status``.

    The queue comes first after the prefix so that a supervisor watching some
    queues subscribes to those alone and the broker never sends it the others.
    """
    kind = message["type"]
    if kind == "status":
        return f"{prefix}/{queue}/{message['stream']}/status"
    if kind in ("scores", "alert"):
        return f"{prefix}/{queue}/{message['stream']}/{message['channel']}/{kind}"
    raise ValueError(f"no MQTT topic for message type {kind!r}")


def legacy_status_topic(prefix: str, stream: str) -> str:
    """``<prefix>/<stream>/status``: a stream's retained status in the layout before queues.

    Supervisors still read that layout while analyzers are upgraded; an
    upgraded publisher clears its stream's stale copy there.
    """
    return f"{prefix}/{stream}/status"


# -- field checks: each returns the value (possibly normalised) or raises ValueError ----------


def _name(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LEN:
        raise ValueError(f"must be a non-empty string of at most {MAX_NAME_LEN} characters")
    return value


def _text(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT_LEN):
        raise ValueError(f"must be a string of at most {MAX_TEXT_LEN} characters, or null")
    return value


def _number(value: object) -> float | None:
    # bool is an int in Python, never a number here; finiteness is checked for the whole message.
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("must be a number or null")
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _unit(value: object) -> float | None:
    if _number(value) is not None and not 0.0 <= value <= 1.0:
        raise ValueError("must be a number in [0, 1]")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _flag_or_null(value: object) -> bool | None:
    return None if value is None else _flag(value)


def _one_of(options: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return check


def _emotion(value: object) -> str | None:
    return None if value is None else _one_of(EMOTIONS)(value)


def _probs(value: object) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("must be an object or null")
    for name, p in value.items():
        if name not in EMOTIONS:
            raise ValueError("has an unknown emotion")
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ValueError("values must be numbers in [0, 1]")
    return value


def _names(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST_LEN:
        raise ValueError(f"must be a list of at most {MAX_LIST_LEN} names")
    return [_name(v) for v in value]


def _kind(value: object) -> str:
    return _one_of(KINDS)(value)


# Every field of every kind: name -> check. Fields in REQUIRED must be present.
SCHEMA: dict[str, dict[str, Callable[[object], object]]] = {
    "scores": {
        "type": _kind,
        "stream": _name,
        "channel": _name,
        "t": _number,
        "speech": _flag,
        "probs": _probs,
        "rolling": _probs,
        "top": _emotion,
        "arousal": _unit,
        "confident": _flag_or_null,
        "latency_ms": _number,
        "adapted": _unit,
    },
    "status": {
        "type": _kind,
        "stream": _name,
        "source": _text,
        "state": _one_of(STATES),
        "overruns": _count,
        "windows": _count,
        "lost_s": _number,
        "latency_ms": _number,
        "channels": _names,
        "reconnects": _count,
        "error": _text,
        "errors": _count,  # failed analysis batches
        "last_error": _text,
        "adaptation": _unit,
        "online": _flag,  # set by the MQTT publisher
        "gaps": _count,  # calls: media gaps (lost packets), filled with silence
        "agent": _text,  # calls: who and which queue, for the floor view
        "queue": _text,  # free text from analyzers before queues were topic levels: still accepted
    },
    "alert": {
        "type": _kind,
        "rule": _text,
        "stream": _name,
        "channel": _name,
        "emotion": _text,
        "score": _number,
        "since": _number,
        "at": _number,
        "severity": _text,
        "state": _one_of(ALERT_STATES),
    },
}
REQUIRED = {
    "scores": ("type", "stream", "channel", "t", "speech"),
    "status": ("type", "stream", "state"),
    "alert": ("type", "stream", "channel", "rule", "state"),
}


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


def validate_message(
    message: object,
    stream: str | None = None,
    channel: str | None = None,
    kind: str | None = None,
    queue: str | None = None,
) -> dict:
    """Check a message that arrived from outside (MQTT) before it reaches dashboards.

    ``message`` is the raw payload (bytes or str: size-checked, then parsed
    strictly) or an already parsed object. ``stream``, ``channel`` and
    ``kind`` are what the MQTT topic says; if given, the message must agree
    (a publisher cannot speak for another stream). So must its ``queue``
    field, if it has one and ``queue`` is given (the topic's). Every field ``SCHEMA``
    declares is checked; fields it does not declare are dropped (a newer
    analyzer's additions do not break an older dashboard, and nothing
    undeclared reaches a browser). Returns the checked message; raises
    ValueError with a short reason. Pure.
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
    fields = SCHEMA[message["type"]]
    for key in REQUIRED[message["type"]]:
        if key not in message:
            raise ValueError(f"{key} is missing")
    checked = {}
    for key, check in fields.items():
        if key in message:
            try:
                checked[key] = check(message[key])
            except ValueError as exc:
                raise ValueError(f"{key} {exc}") from None
    for key, expected in (("stream", stream), ("channel", channel)):
        if expected is not None and checked.get(key) != expected:
            raise ValueError(f"{key} {str(checked.get(key))[:40]!r} does not match the topic's {expected[:40]!r}")
    if queue is not None and checked.get("queue") not in (None, queue):  # optional: only if it says one
        raise ValueError(f"queue {str(checked['queue'])[:40]!r} does not match the topic's {queue[:40]!r}")
    return checked
