"""What is sent to MQTT when: alerts kept until acknowledged, scores throttled, status on change.

Pure: no I/O.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque

log = logging.getLogger(__name__)


def dumps(message: dict) -> str:
    """Strict, compact JSON: raises ValueError on NaN or Infinity."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


class SendingPolicy:
    """One stream's outgoing MQTT traffic, decided without I/O.

    ``spool`` receives ``append(alert)`` and ``done()`` calls in order (it
    may do them asynchronously). The connection loop asks ``next_alert``,
    ``status_due`` and ``scores_due`` what to publish, and reports back with
    ``alert_sent`` and ``connected``.
    """

    def __init__(self, stream_id: str, interval_s: float = 1.0, max_alerts: int = 1000, spool=None) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError("the MQTT interval must be a positive number of seconds")
        if max_alerts < 1:
            raise ValueError("max_alerts must be at least 1")
        self.stream_id = stream_id
        self.interval_s = interval_s
        self.max_alerts = max_alerts
        self.spool = spool
        self.alerts: deque[dict] = deque(spool.pending if spool is not None else ())
        self.alerts_dropped = 0
        self.invalid_dropped = 0  # our own messages that are not strict JSON
        self.published = 0
        self._latest_scores: dict[str, dict] = {}
        self._last_scores = -math.inf
        self.status: dict = {"type": "status", "stream": stream_id, "state": "running", "source": ""}
        self._status_dirty = True

    def offer(self, message: dict) -> bool:
        """Take a message of this stream; True if the connection should wake (an alert, a new state)."""
        try:
            dumps(message)
        except (ValueError, TypeError) as exc:
            self.invalid_dropped += 1
            if self.invalid_dropped == 1 or self.invalid_dropped % 1000 == 0:
                log.warning(
                    "stream %s: %d unpublishable messages dropped (%s)", self.stream_id, self.invalid_dropped, exc
                )
            return False
        kind = message["type"]
        if kind == "scores":
            self._latest_scores[message["channel"]] = message
            return False
        if kind == "alert":
            if len(self.alerts) >= self.max_alerts:
                self.alerts.popleft()
                self.alerts_dropped += 1
                if self.spool is not None:
                    self.spool.done()
                log.warning("stream %s: MQTT alert queue full, dropped the oldest alert", self.stream_id)
            self.alerts.append(message)
            if self.spool is not None:
                self.spool.append(message)
            return True
        if kind == "status":
            changed = message.get("state") != self.status.get("state")
            self.status = message
            self._status_dirty = self._status_dirty or changed
            return changed
        return False

    def connected(self) -> None:
        """A new connection: the retained status is sent again first."""
        self._status_dirty = True

    def next_alert(self) -> dict | None:
        return self.alerts[0] if self.alerts else None

    def alert_sent(self) -> None:
        """The broker acknowledged ``next_alert()``."""
        self.alerts.popleft()
        self.published += 1
        if self.spool is not None:
            self.spool.done()

    def status_due(self, closing: bool) -> bool:
        """Whether to publish the status now (and it counts as sent)."""
        due = self._status_dirty or closing
        self._status_dirty = False
        return due

    def status_payload(self, online: bool, will: bool = False) -> str:
        """Retained status; the Last Will's says ``offline`` (the analyzer died)."""
        status = {**self.status, "online": online}
        if will:
            status["state"] = "offline"
        return dumps(status)

    def scores_due(self, now: float, closing: bool = False) -> list[dict]:
        """The latest scores per channel, if ``interval_s`` has passed since the last batch (or the
        stream is closing: its last scores are not held back)."""
        if (now - self._last_scores < self.interval_s and not closing) or not self._latest_scores:
            return []
        self._last_scores = now
        latest, self._latest_scores = self._latest_scores, {}
        self.published += len(latest)
        return list(latest.values())
