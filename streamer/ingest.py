"""Network adapters for calls: Twilio and FreeSWITCH websockets on the dashboard's port, Asterisk AudioSocket.

Each connection is an asyncio protocol running one session from
``streamer.telephony``: in ``data_received`` it parses what arrived and copies
the audio into the call's ring (the analysis workers do the rest), with no
task, queue or flow-control step per message. Through ASGI (uvicorn and
Starlette) a 20 ms media message cost about 60 µs of the event loop, and 300
Twilio calls send 15 000 a second. Bad input closes that connection with its
reason logged and counted (``CallDesk.errors``); every other call goes on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from urllib.parse import parse_qsl

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from streamer.access import AccessConfig
from streamer.telephony import AudioSocketSession, CallDesk, ForkSession, ProtocolError, TwilioSession

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
MAX_REASON = 120  # bytes a websocket close reason may carry (125 less margin)
MAX_MESSAGE = 2**20
CLOSE_TIMEOUT_S = 2.0  # for the peer's answer to our close frame


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
    allowed, suppressed = REFUSALS.allow()
    if allowed:
        more = f" ({suppressed} more not logged)" if suppressed else ""
        log.warning("%s; connection closed%s", exc, more)
    return str(exc).encode()[:MAX_REASON].decode(errors="ignore")


def _fork_subprotocol(conn: ServerProtocol, offered) -> Subprotocol | None:
    """mod_audio_fork's subprotocol when offered; a client that offers none is served too."""
    return Subprotocol(ForkSession.SUBPROTOCOL) if ForkSession.SUBPROTOCOL in offered else None


class MediaConnection(asyncio.Protocol):
    """One call's websocket (Twilio or fork), on python-websockets' sans-I/O protocol."""

    def __init__(self, desk: CallDesk, access: AccessConfig, kind: str, registry: set) -> None:
        self.desk, self.access, self.kind, self.registry = desk, access, kind, registry
        self.conn = ServerProtocol(select_subprotocol=_fork_subprotocol, max_size=MAX_MESSAGE)
        self.session: TwilioSession | ForkSession | None = None
        self.transport: asyncio.Transport | None = None
        self.ended = False  # the call ended here: stop, bad input, or shutdown
        self._parts: list[bytes] = []  # a fragmented message so far
        self._binary = False
        self._closing = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.registry.add(self)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        try:
            for event in self.conn.events_received():
                if isinstance(event, Request):
                    self._handshake(event)
                elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT) and not self.ended:
                    self._frame(event)
            if self.conn.parser_exc is not None:  # not websocket framing: the library closed it
                raise ProtocolError(f"{self.kind}: {self.conn.parser_exc}")
        except Exception as exc:
            self._end(_refuse(self.desk, self.kind, exc))
        self._flush()

    def _handshake(self, request: Request) -> None:
        path, _, query = request.path.partition("?")
        offered = dict(parse_qsl(query)).get("token")
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            offered = authorization[7:].strip()
        if not self.access.origin_ok(request.headers.get("Origin"), request.headers.get("Host")):
            response = self.conn.reject(403, "origin not allowed\n")  # a web page must not feed calls
        elif self.kind == "fork" and not self.access.token_ok(offered):
            response = self.conn.reject(403, "a valid token is needed\n")
        else:
            response = self.conn.accept(request)
            if self.kind == "twilio":  # Twilio sends no headers: the token may come in its start message
                self.session = TwilioSession(self.desk, self.access.token_ok, offered)
            else:
                self.session = ForkSession(self.desk, query)
        self.conn.send_response(response)

    def _frame(self, frame) -> None:
        if frame.opcode != Opcode.CONT:
            self._binary = frame.opcode == Opcode.BINARY
        self._parts.append(frame.data)
        if not frame.fin:
            if sum(map(len, self._parts)) > MAX_MESSAGE:
                raise ProtocolError(f"{self.kind}: a message over {MAX_MESSAGE} bytes")
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        session = self.session
        if isinstance(session, TwilioSession):
            session.receive(data)
            if session.ended:
                self._end(None)
        elif self._binary:
            session.receive_bytes(data)
        else:
            session.receive_text(data.decode())

    def _end(self, reason: str | None, code: int | None = None) -> None:
        """The call is over here: close with 1000, or 1008 and the reason."""
        if self.ended:
            return
        self.ended = True
        if self.session is not None and self.session.source is not None:
            self.desk.close(self.session.source, ended=True, error=reason)
        if self.conn.state is State.OPEN:
            self.conn.send_close(code or (POLICY_VIOLATION if reason else 1000), reason or "")

    def _flush(self) -> None:
        for data in self.conn.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
            else:  # TLS cannot half-close: the closing handshake is done, so close
                self.transport.close()
        if self.conn.close_expected() and not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.transport.close)

    def connection_lost(self, exc) -> None:
        self.registry.discard(self)
        self.conn.receive_eof()
        source = self.session.source if self.session is not None else None
        if source is not None and not self.ended:
            # Twilio: a dropped connection may come back with the same call id. A fork
            # connection closing is its hangup: mod_audio_fork sends nothing else.
            self.desk.close(source, ended=self.kind == "fork")

    def shutdown(self) -> None:
        """The analyzer is going away (1001)."""
        self._end("the analyzer is shutting down", code=1001)
        self._flush()
        self.transport.close()


def front_door(desk: CallDesk, access: AccessConfig, twilio_path: str = "/twilio", fork_path: str = "/fork") -> type:
    """An HTTP protocol class for uvicorn (``Config(http=...)``) that shares the dashboard's port.

    A connection whose request line asks for ``twilio_path`` or ``fork_path``
    becomes a :class:`MediaConnection`; every other one is handed, with the
    bytes read so far, to uvicorn's own HTTP protocol. The class's
    ``connections`` are the open media connections (for shutdown).
    """
    kinds = {twilio_path: "twilio", fork_path: "fork"}
    connections: set[MediaConnection] = set()

    class FrontDoor(asyncio.Protocol):
        def __init__(self, **uvicorn_kw) -> None:
            self.uvicorn_kw = uvicorn_kw
            self.transport = None
            self.head = b""

        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.head += data
            line_end = self.head.find(b"\r\n")
            if line_end < 0 and len(self.head) < 8192:
                return  # the request line is not complete yet
            parts = self.head[: max(line_end, 0)].split(b" ")
            path = parts[1].split(b"?")[0].decode("latin-1") if len(parts) == 3 and parts[0] == b"GET" else ""
            kind = kinds.get(path)
            protocol = MediaConnection(desk, access, kind, connections) if kind else AutoHTTPProtocol(**self.uvicorn_kw)
            self.transport.set_protocol(protocol)
            protocol.connection_made(self.transport)
            protocol.data_received(self.head)

    FrontDoor.connections = connections
    return FrontDoor


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

    def __init__(self, desk: CallDesk, allowed: list, refused: set[str]) -> None:
        self.desk, self.allowed, self.refused = desk, allowed, refused
        self.session = AudioSocketSession(desk)
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

    def data_received(self, data: bytes) -> None:
        if self.session.ended:
            return
        try:
            self.session.feed(data)
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

    def connection_lost(self, exc) -> None:
        if not self.session.ended and self.session.source is not None:
            self.desk.close(self.session.source, ended=False)  # may reconnect with the same call id


async def serve_audiosocket(host: str, port: int, desk: CallDesk, allow: list | None = None) -> asyncio.Server:
    """Listen for Asterisk AudioSocket connections (default: from loopback only)."""
    refused: set[str] = set()
    allowed = allow or LOOPBACK
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: AudioSocketConnection(desk, allowed, refused), host, port)
