"""Closing a call's connection for bad input: counted, logged within a budget."""

from __future__ import annotations

import logging
import time

from streamer.calls.desk import CallDesk
from streamer.calls.sessions.base import ProtocolError

log = logging.getLogger(__name__)


MAX_REASON = 120  # bytes a websocket close reason may carry (125 less margin)


class LogBudget:
    """At most ``per_minute`` log lines a minute (a flood of bad connections must not flood the log);
    the rest are counted and reported with the next line let through."""

    def __init__(self, per_minute: int = 20, clock=time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self.window_start, self.used, self.suppressed = clock(), 0, 0

    def allow(self) -> tuple[bool, int]:
        """(whether to log this one, how many were suppressed before it)."""
        now = self.clock()
        if now - self.window_start >= 60.0:
            self.window_start, self.used = now, 0
        if self.used >= self.per_minute:
            self.suppressed += 1
            return False, 0
        self.used += 1
        suppressed, self.suppressed = self.suppressed, 0
        return True, suppressed


REFUSALS = LogBudget()


def _refuse(desk: CallDesk, where: str, exc: Exception) -> str:
    """Count and log why a connection is closed; returns the close reason.

    Anything but a ProtocolError is a bug met by odd input: it still ends only
    this connection.
    """
    desk.errors += 1
    if not isinstance(exc, ProtocolError):
        log.debug("traceback", exc_info=exc)
        exc = ProtocolError(f"{where}: could not handle a frame ({type(exc).__name__}: {str(exc)[:80]})")
    log_closed(str(exc))
    return str(exc).encode()[:MAX_REASON].decode(errors="ignore")


def log_closed(reason: str) -> None:
    """Log why a connection was closed, within the budget."""
    allowed, suppressed = REFUSALS.allow()
    if allowed:
        more = f" ({suppressed} more not logged)" if suppressed else ""
        log.warning("%s; connection closed%s", reason, more)
