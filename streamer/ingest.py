"""Network adapters for calls: Twilio and FreeSWITCH websockets, the Asterisk AudioSocket TCP listener.

Each connection runs one protocol session from ``streamer.telephony`` on the
event loop; all it does per message is parse and copy audio into the call's
ring (the analysis workers do the rest). Bad input closes that connection
with its reason logged and counted (``CallDesk.errors``); every other call
goes on. A connection that drops without the call ending leaves the call
waiting for a reconnect (``CallDesk.resume_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from streamer.telephony import AudioSocketSession, CallDesk, ForkSession, ProtocolError, TwilioSession

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
MAX_REASON = 120  # bytes a websocket close reason may carry (125 less margin)


def _refuse(desk: CallDesk, where: str, exc: Exception) -> str:
    """Count and log why a connection is closed; the close reason. Not a ProtocolError: a bug met by
    odd input, which must still end only this connection."""
    desk.errors += 1
    if not isinstance(exc, ProtocolError):
        log.debug("traceback", exc_info=exc)
        exc = ProtocolError(f"{where}: could not handle a frame ({type(exc).__name__}: {str(exc)[:80]})")
    log.warning("%s; connection closed", exc)
    return str(exc).encode()[:MAX_REASON].decode(errors="ignore")


async def _close(websocket: WebSocket, reason: str | None) -> None:
    with contextlib.suppress(Exception):  # already gone
        await websocket.close(POLICY_VIOLATION if reason else 1000, reason or "")


def call_routes(
    desk: CallDesk, token_ok: Callable[[str | None], bool], twilio_path: str = "/twilio", fork_path: str = "/fork"
) -> list[WebSocketRoute]:
    """The websocket endpoints calls arrive at. ``twilio_path`` checks the token itself (Twilio
    cannot send headers; the token comes in the URL or as a custom parameter)."""

    async def twilio(websocket: WebSocket) -> None:
        await websocket.accept()
        session = TwilioSession(desk, token_ok, websocket.query_params.get("token"))
        reason = None
        try:
            while not session.ended:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                session.receive(message.get("text") or message.get("bytes") or "")
        except WebSocketDisconnect:
            pass
        except Exception as exc:
            reason = _refuse(desk, "twilio", exc)
        finally:
            if session.source is not None:
                desk.close(session.source, ended=session.ended or reason is not None, error=reason)
        await _close(websocket, reason)

    async def fork(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(ForkSession.SUBPROTOCOL if ForkSession.SUBPROTOCOL in offered else None)
        session = ForkSession(desk, websocket.scope.get("query_string", b"").decode("latin-1"))
        reason = None
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    session.receive_bytes(message["bytes"])
                else:
                    session.receive_text(message.get("text") or "")
        except WebSocketDisconnect:
            pass
        except Exception as exc:
            reason = _refuse(desk, "fork", exc)
        finally:
            # mod_audio_fork ends a call by closing the socket: a close is the hangup.
            if session.source is not None:
                desk.close(session.source, ended=True, error=reason)
        await _close(websocket, reason)

    return [WebSocketRoute(twilio_path, twilio), WebSocketRoute(fork_path, fork)]


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


async def serve_audiosocket(
    host: str, port: int, desk: CallDesk, allow: list | None = None, read_size: int = 65536
) -> asyncio.Server:
    """Listen for Asterisk AudioSocket connections; only addresses in ``allow`` (default loopback) get in."""
    allowed = allow or LOOPBACK
    refused: set[str] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        try:
            address = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            address = None
        if address is None or not any(address in net for net in allowed):
            if peer not in refused and len(refused) < 1000:
                refused.add(peer)
                log.warning("audiosocket: refused a connection from %s (see --audiosocket-allow)", peer)
            writer.close()
            return
        session = AudioSocketSession(desk)
        reason = None
        try:
            while not session.ended:
                data = await reader.read(read_size)
                if not data:
                    break
                session.feed(data)
        except OSError:
            pass
        except Exception as exc:
            reason = _refuse(desk, f"audiosocket from {peer}", exc)
        finally:
            if session.source is not None:
                ended = session.ended or reason is not None
                desk.close(session.source, ended=ended, error=reason or session.error)
            writer.close()

    return await asyncio.start_server(handle, host, port)
