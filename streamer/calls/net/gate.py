"""What the front door lets hold a connection: a cap per client address, and a deadline for the request head.

A connection costs a file descriptor and some memory whether or not it is
used; a client that opens thousands and sends half a request, or one
address that opens more than a phone system would, must not starve the
calls. Every refusal is counted (``/api/status``, ``/metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.calls.net.refusals import log_closed


@dataclass(frozen=True)
class GateLimits:
    """``handshake_timeout_s``: for the request line and headers (HTTP or websocket handshake);
    ``max_per_address``: connections at once from one client address (0: no cap);
    ``call_idle_timeout_s``: a call connection without audio this long is ended."""

    handshake_timeout_s: float = 10.0
    max_per_address: int = 1000
    call_idle_timeout_s: float = 30.0


class ConnectionGate:
    """Counts connections per client address against ``limits.max_per_address``."""

    def __init__(self, limits: GateLimits | None = None) -> None:
        self.limits = limits or GateLimits()
        self.open: dict[str, int] = {}
        self.slow_requests = 0  # closed for not sending their request head in time
        self.over_address_cap = 0  # refused: their address had max_per_address open
        self.idle_calls = 0  # call connections ended for bringing no audio

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; False (counted) if its address is at the cap."""
        held = self.open.get(address, 0)
        if self.limits.max_per_address and held >= self.limits.max_per_address:
            self.over_address_cap += 1
            return False
        self.open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.open.get(address, 0) - 1
        if held > 0:
            self.open[address] = held
        else:
            self.open.pop(address, None)

    def idle_reason(self, idle: IdleWatch, source, now: float, who: str) -> str | None:
        """Why a call connection is ended for bringing no audio for ``call_idle_timeout_s`` (counted and
        logged), or None while it is within it. ``source`` is its call (None before the call started)."""
        timeout = self.limits.call_idle_timeout_s
        if idle.idle_for(source.samples_received if source is not None else 0, now) < timeout:
            return None
        self.idle_calls += 1
        reason = f"{who}: no audio for {timeout:g} s (--call-idle-timeout)"
        log_closed(reason)
        return reason

    def stats(self) -> dict:
        return {
            "slow_requests_closed": self.slow_requests,
            "connections_over_address_cap": self.over_address_cap,
            "idle_calls_ended": self.idle_calls,
        }


class IdleWatch:
    """How long a call connection has brought no audio (loop time; never stream time)."""

    def __init__(self, now: float) -> None:
        self.samples = 0
        self.since = now

    def idle_for(self, samples: int, now: float) -> float:
        """Seconds since ``samples`` (audio received so far) last grew."""
        if samples != self.samples:
            self.samples, self.since = samples, now
        return now - self.since
