"""The calls' websockets on the dashboard's port, on python-websockets' sans-I/O protocol.

Each connection is an asyncio protocol running one :class:`Session`: in
``data_received`` it parses what arrived and the session copies the audio
into the call's ring (the workers do the rest), with no task, queue or ASGI
step per message: a phone system sends one message per call every 20 ms,
and the event loop's cost per message sets how many calls one process
takes. Bad input closes that connection with its reason logged and counted
(``CallDesk.errors``); every other call goes on.
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
from streamer.calls.net.refusals import _refuse
from streamer.calls.sessions import SESSIONS
from streamer.calls.sessions.base import ProtocolError, Session
from streamer.core.access import AccessConfig

POLICY_VIOLATION = 1008


MAX_MESSAGE = 2**20


CLOSE_TIMEOUT_S = 2.0  # for the peer's answer to our close frame


def _subprotocol(wanted: str | None):
    """Choose the session's subprotocol when offered; a client that offers none is served too."""

    def select(conn: ServerProtocol, offered) -> Subprotocol | None:
        return Subprotocol(wanted) if wanted is not None and wanted in offered else None

    return select


class MediaConnection(asyncio.Protocol):
    """One call's websocket (any websocket Session), on python-websockets' sans-I/O protocol."""

    def __init__(self, desk: CallDesk, access: AccessConfig, kind: str, registry: set) -> None:
        self.desk, self.access, self.kind, self.registry = desk, access, kind, registry
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
        elif self.protocol.TOKEN_IN_HANDSHAKE and not self.access.token_ok(offered):
            response = self.conn.reject(403, "a valid token is needed\n")
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

    def connection_lost(self, exc) -> None:
        self.registry.discard(self)
        self.conn.receive_eof()
        source = self.session.source if self.session is not None else None
        if source is not None and not self.ended:
            self.desk.close(source, ended=self.protocol.CLOSE_ENDS_CALL)  # else it may come back

    def shutdown(self) -> None:
        """The analyzer is going away (1001)."""
        self._end("the analyzer is shutting down", code=1001)
        self._flush()
        self.transport.close()


def front_door(desk: CallDesk, access: AccessConfig, paths: dict[str, str] | None = None) -> type:
    """An HTTP protocol class for uvicorn (``Config(http=...)``) that shares the dashboard's port.

    A connection whose request line asks for a call protocol's path becomes
    a :class:`MediaConnection` running that protocol's session; every other
    one is handed, with the bytes read so far, to uvicorn's own HTTP
    protocol. Each websocket session in ``SESSIONS`` is served at
    ``/<protocol>`` unless ``paths`` (path -> protocol) moves it. The class's
    ``connections`` are the open media connections (for shutdown).
    """
    moved = set((paths or {}).values())
    kinds = {f"/{name}": name for name, cls in SESSIONS.items() if cls.TRANSPORT == "websocket" and name not in moved}
    kinds.update(paths or {})
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
