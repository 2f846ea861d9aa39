"""The calls' websockets on the dashboard's port, on python-websockets' sans-I/O protocol.

Each connection is an asyncio protocol running one :class:`Session`: in
``data_received`` it parses what arrived and the session copies the audio
into the call's ring (the workers do the rest), with no task, queue or ASGI
step per message: a phone system sends one message per call every 20 ms,
and the event loop's cost per message sets how many calls one process
takes. Bad input closes that connection with its reason logged and counted
(``CallDesk.errors``); every other call goes on.

The front door also guards the port (:mod:`streamer.calls.net.gate`): a
connection must send its request head within ``handshake_timeout_s``; one
client address may hold ``max_per_address`` connections; a call connection
that brings no audio for ``call_idle_timeout_s`` is ended. While the
analyzer drains, a new call's handshake gets 503 with ``Retry-After``, so
the phone system or the load balancer tries another analyzer.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from streamer.calls.desk import CallDesk
from streamer.calls.net.gate import ConnectionGate, IdleWatch
from streamer.calls.net.refusals import MAX_REASON, _refuse
from streamer.calls.sessions import SESSIONS
from streamer.calls.sessions.base import ProtocolError, Session
from streamer.core.access import AccessConfig

POLICY_VIOLATION = 1008


MAX_MESSAGE = 2**20
MAX_HEAD = 16384  # bytes of request line and headers; more is not a client of ours


CLOSE_TIMEOUT_S = 2.0  # for the peer's answer to our close frame


def _subprotocol(wanted: str | None):
    """Choose the session's subprotocol when offered; a client that offers none is served too."""

    def select(conn: ServerProtocol, offered) -> Subprotocol | None:
        return Subprotocol(wanted) if wanted is not None and wanted in offered else None

    return select


class MediaConnection(asyncio.Protocol):
    """One call's websocket (any websocket Session), on python-websockets' sans-I/O protocol."""

    def __init__(
        self, desk: CallDesk, access: AccessConfig, kind: str, registry: set, gate: ConnectionGate, peer: str
    ) -> None:
        self.desk, self.access, self.kind, self.registry = desk, access, kind, registry
        self.gate, self.peer = gate, peer
        self.idle = IdleWatch(asyncio.get_running_loop().time())
        self.protocol = SESSIONS[kind]
        self.conn = ServerProtocol(select_subprotocol=_subprotocol(self.protocol.SUBPROTOCOL), max_size=MAX_MESSAGE)
        self.session: Session | None = None
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
            if self.conn.parser_exc is not None and not self.ended:  # not websocket framing: the library closed it
                raise ProtocolError(f"{self.kind}: {self.conn.parser_exc}")
        except Exception as exc:
            if not self.ended:  # the rest of a refused message is not refused again
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
        elif self.protocol.TOKEN_IN_HANDSHAKE and not self.access.token_ok(offered):
            response = self.conn.reject(403, "a valid token is needed\n")
        elif self.desk.draining:  # a new call: the load balancer or the phone system tries another analyzer
            response = self.conn.reject(503, "this analyzer is draining: connect to another\n")
            response.headers["Retry-After"] = "1"
        else:  # (Twilio sends no headers: its token may come in its start message)
            response = self.conn.accept(request)
            self.session = self.protocol(self.desk, self.access.token_ok, offered, query)
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
        self.session.receive(data, self._binary)
        if self.session.ended:
            self._end(self.session.error)

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

    def end_if_idle(self, now: float) -> None:
        """End the call if it brought no audio for ``call_idle_timeout_s`` (the housekeeping asks once a second)."""
        if self.ended:
            return
        source = self.session.source if self.session is not None else None
        reason = self.gate.idle_reason(self.idle, source, now, f"{self.kind} from {self.peer}")
        if reason is not None:
            self._end(reason[:MAX_REASON])
            self._flush()

    def connection_lost(self, exc) -> None:
        self.registry.discard(self)
        self.gate.release(self.peer)
        self.conn.receive_eof()
        source = self.session.source if self.session is not None else None
        if source is not None and not self.ended:
            self.desk.close(source, ended=self.protocol.CLOSE_ENDS_CALL)  # else it may come back

    def shutdown(self) -> None:
        """The analyzer is going away (1001)."""
        self._end("the analyzer is shutting down", code=1001)
        self._flush()
        self.transport.close()


def front_door(
    desk: CallDesk, access: AccessConfig, paths: dict[str, str] | None = None, gate: ConnectionGate | None = None
) -> type:
    """An HTTP protocol class for uvicorn (``Config(http=...)``) that shares the dashboard's port.

    A connection whose request line asks for a call protocol's path becomes
    a :class:`MediaConnection` running that protocol's session; every other
    one is handed, with the bytes read so far, to uvicorn's own HTTP
    protocol. Each websocket session in ``SESSIONS`` is served at
    ``/<protocol>`` unless ``paths`` (path -> protocol) moves it. The class's
    ``connections`` are the open media connections (for shutdown and the
    idle check) and ``gate`` its :class:`ConnectionGate`.
    """
    moved = set((paths or {}).values())
    kinds = {f"/{name}": name for name, cls in SESSIONS.items() if cls.TRANSPORT == "websocket" and name not in moved}
    kinds.update(paths or {})
    connections: set[MediaConnection] = set()
    gate = gate or ConnectionGate()

    class GatedHTTP(AutoHTTPProtocol):  # uvicorn's own, giving the address back when the connection ends
        def __init__(self, peer: str, **uvicorn_kw) -> None:
            super().__init__(**uvicorn_kw)
            self.peer = peer

        def connection_lost(self, exc) -> None:
            super().connection_lost(exc)
            gate.release(self.peer)

    class FrontDoor(asyncio.Protocol):
        def __init__(self, **uvicorn_kw) -> None:
            self.uvicorn_kw = uvicorn_kw
            self.transport = None
            self.head = b""
            self.peer = "?"
            self.deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            self.transport = transport
            self.peer = str((transport.get_extra_info("peername") or ("?",))[0])
            if not gate.admit(self.peer):
                transport.abort()  # at its address's cap: no bytes spent on it
                return
            self.deadline = asyncio.get_running_loop().call_later(gate.limits.handshake_timeout_s, self._too_slow)

        def _too_slow(self) -> None:
            gate.slow_requests += 1
            self.transport.abort()

        def connection_lost(self, exc) -> None:  # before the head was complete (after, the handler owns it)
            if self.deadline is not None:
                self.deadline.cancel()
                gate.release(self.peer)

        def data_received(self, data: bytes) -> None:
            self.head += data
            if b"\r\n\r\n" not in self.head and len(self.head) < MAX_HEAD:
                return  # the request head is not complete yet
            self.deadline.cancel()
            self.deadline = None
            line = self.head[: self.head.find(b"\r\n")]
            parts = line.split(b" ")
            path = parts[1].split(b"?")[0].decode("latin-1") if len(parts) == 3 and parts[0] == b"GET" else ""
            kind = kinds.get(path)
            if kind:
                protocol = MediaConnection(desk, access, kind, connections, gate, self.peer)
            else:
                protocol = GatedHTTP(self.peer, **self.uvicorn_kw)
            self.transport.set_protocol(protocol)
            protocol.connection_made(self.transport)
            protocol.data_received(self.head)

    FrontDoor.connections = connections
    FrontDoor.gate = gate
    return FrontDoor
