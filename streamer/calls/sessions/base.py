"""The Session interface of a call protocol, and what the sessions share.

A session is a sans-I/O state machine, like python-websockets' protocol: the
network adapters (``streamer.calls.net``) hand it each message or each chunk
of bytes that arrived; it opens, feeds and ends its call through the
:class:`~streamer.calls.desk.CallDesk`, and raises :class:`ProtocolError`
(one line, for the log and the close reason) on anything malformed, which
ends that connection only. A new protocol is one file here plus one line in
``streamer.calls.sessions.SESSIONS``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from streamer.core.codecs import l16_to_float

if TYPE_CHECKING:
    from streamer.calls.call import CallSource
    from streamer.calls.desk import CallDesk

CALLER, AGENT, MIXED = "caller", "agent", "mixed"  # mixed: both voices in one channel


MAX_META_LEN = 200  # characters of an agent/queue name kept


MAX_ID_LEN = 64


class ProtocolError(ValueError):
    """Input that ends one connection; the message is the (one-line) reason."""


class Session(ABC):
    """One connection's call protocol.

    Parameters
    ----------
    desk : CallDesk
    token_ok : callable
        Checks an offered token (always true when the server has none).
    url_token : str, optional
        The token the connection's URL or headers carried.
    query : str
        The connection URL's query string (websockets), for metadata sent there.

    Attributes
    ----------
    source : CallSource or None
        The call, once the protocol has named it.
    ended : bool
        The call ended in-band (stop, hang-up, an error from the peer).
    error : str or None
        Why it ended, when the peer reported an error.
    """

    PROTOCOL: ClassVar[str]  # its name: in statuses, the registry and (websockets) the default path
    TRANSPORT: ClassVar[str] = "websocket"  # or "tcp": a listener of its own
    SUBPROTOCOL: ClassVar[str | None] = None  # websocket subprotocol chosen when offered
    TOKEN_IN_HANDSHAKE: ClassVar[bool] = False  # the upgrade request must carry the token
    CLOSE_ENDS_CALL: ClassVar[bool] = False  # a closed connection is the hang-up; else the call may resume

    def __init__(
        self,
        desk: CallDesk,
        token_ok: Callable[[str | None], bool] = lambda _: True,
        url_token: str | None = None,
        query: str = "",
    ) -> None:
        self.desk = desk
        self.token_ok = token_ok
        self.url_token = url_token
        self.query = query
        self.source: CallSource | None = None
        self.ended = False
        self.error: str | None = None
        self.ignored = 0  # messages received and deliberately not used

    @abstractmethod
    def receive(self, data: bytes, binary: bool = True) -> None:
        """One message (websockets: ``binary`` says which kind) or a chunk of a byte stream (TCP)."""


def call_name(raw: object, prefix: str) -> str:
    """A stream id from a call's own id: letters, digits, ``-`` and ``_`` (MQTT-topic safe)."""
    if not isinstance(raw, str) or not raw:
        raise ProtocolError(f"{prefix}: the call id is missing")
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in raw.strip())[:MAX_ID_LEN]
    if not name.strip("_"):
        raise ProtocolError(f"{prefix}: the call id {raw[:40]!r} has no usable characters")
    return name


def _meta_text(value: object) -> str | None:
    return value[:MAX_META_LEN] if isinstance(value, str) and value else None


def _json_object(text: str | bytes, what: str) -> dict:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting like [[[[…
        raise ProtocolError(f"{what}: not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"{what}: not a JSON object")
    return message


def l16_frames(payload: bytes, channels: int, protocol: str):
    """``l16_to_float`` with its error as the protocol's."""
    try:
        return l16_to_float(payload, channels)
    except ValueError as exc:
        raise ProtocolError(f"{protocol}: {exc}") from None
