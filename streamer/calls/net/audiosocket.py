"""The Asterisk AudioSocket listener (TCP), with an address allow-list."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from streamer.calls.desk import CallDesk
from streamer.calls.net.gate import ConnectionGate, IdleWatch
from streamer.calls.net.refusals import _refuse
from streamer.calls.sessions import SESSIONS

log = logging.getLogger(__name__)


def parse_networks(specs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``--audiosocket-allow`` values (addresses or CIDR networks); raises ValueError with the bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec, strict=False))
        except ValueError:
            raise ValueError(f"--audiosocket-allow: '{spec}' is not an address or network") from None
    return networks


LOOPBACK = parse_networks(["127.0.0.0/8", "::1"])


class AudioSocketConnection(asyncio.Protocol):
    """One Asterisk AudioSocket call over TCP; only addresses in ``allowed`` get in."""

    def __init__(self, desk: CallDesk, allowed: list, refused: set[str], registry: set, gate: ConnectionGate) -> None:
        self.desk, self.allowed, self.refused, self.registry, self.gate = desk, allowed, refused, registry, gate
        self.idle = IdleWatch(asyncio.get_running_loop().time())
        self.session = SESSIONS["audiosocket"](desk)
        self.transport = None
        self.peer = "?"

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = str((transport.get_extra_info("peername") or ("?",))[0])
        try:
            address = ipaddress.ip_address(self.peer.split("%")[0])
        except ValueError:
            address = None
        if address is None or not any(address in net for net in self.allowed):
            if self.peer not in self.refused and len(self.refused) < 1000:
                self.refused.add(self.peer)
                log.warning("audiosocket: refused a connection from %s (see --audiosocket-allow)", self.peer)
            self.session.ended = True
            transport.close()
            return
        self.registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self.session.ended:
            return
        try:
            self.session.receive(data)
        except Exception as exc:
            self._close(_refuse(self.desk, f"audiosocket from {self.peer}", exc))
            return
        if self.session.ended:  # hangup, or an error frame from Asterisk
            self._close(self.session.error)

    def _close(self, error: str | None) -> None:
        self.session.ended = True
        if self.session.source is not None:
            self.desk.close(self.session.source, ended=True, error=error)
        self.transport.close()

    def end_if_idle(self, now: float) -> None:
        """End the call if it brought no audio for ``call_idle_timeout_s``."""
        if self.session.ended:
            return
        reason = self.gate.idle_reason(self.idle, self.session.source, now, f"audiosocket from {self.peer}")
        if reason is not None:
            self._close(reason)

    def connection_lost(self, exc) -> None:
        self.registry.discard(self)
        if not self.session.ended and self.session.source is not None:
            self.desk.close(self.session.source, ended=False)  # may reconnect with the same call id


async def serve_audiosocket(
    host: str,
    port: int,
    desk: CallDesk,
    allow: list | None = None,
    gate: ConnectionGate | None = None,
    registry: set | None = None,
) -> asyncio.Server:
    """Listen for Asterisk AudioSocket connections (default: from loopback only).

    ``registry`` receives the open connections (for the idle check); ``gate``
    gives the idle timeout and counts the calls ended by it.
    """
    refused: set[str] = set()
    allowed = allow or LOOPBACK
    gate = gate or ConnectionGate()
    registry = registry if registry is not None else set()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: AudioSocketConnection(desk, allowed, refused, registry, gate), host, port)
