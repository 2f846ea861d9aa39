"""Asterisk AudioSocket, as a sans-I/O session."""

from __future__ import annotations

import uuid

from streamer.calls.sessions.base import CALLER, ProtocolError, Session, l16_frames


class AudioSocketSession(Session):
    """Asterisk AudioSocket (TCP): frames of kind (1 byte), length (uint16 big-endian), payload.

    ``0x01`` the call's UUID (16 bytes, first), ``0x10`` signed linear 16-bit
    8 kHz mono little-endian, ``0x03`` DTMF (ignored), ``0x00`` hangup,
    ``0xff`` an error from Asterisk. The higher-rate audio kinds (``0x11``–
    ``0x18``) are refused: documents disagree on their rates, and a wrong
    rate would skew every feature silently.
    """

    PROTOCOL = "audiosocket"
    TRANSPORT = "tcp"
    HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
    RATE = 8000

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._buffer = bytearray()

    def receive(self, data: bytes, binary: bool = True) -> None:
        """Bytes as they arrived; whole frames are handled, the rest kept for the next call."""
        self._buffer += data
        while len(self._buffer) >= 3 and not self.ended:
            kind = self._buffer[0]
            length = int.from_bytes(self._buffer[1:3], "big")
            if len(self._buffer) < 3 + length:
                return
            payload = bytes(self._buffer[3 : 3 + length])
            del self._buffer[: 3 + length]
            self._frame(kind, payload)

    def _frame(self, kind: int, payload: bytes) -> None:
        if kind == self.UUID:
            if self.source is not None:
                raise ProtocolError("audiosocket: a second call id")
            if len(payload) != 16:
                raise ProtocolError(f"audiosocket: a call id of {len(payload)} bytes (want 16)")
            self.source = self.desk.open(str(uuid.UUID(bytes=payload)), self.PROTOCOL, self.RATE, [CALLER])
        elif kind == self.AUDIO:
            if self.source is None:
                raise ProtocolError("audiosocket: audio before the call id")
            self.source.push(0, l16_frames(payload, 1, "audiosocket")[:, 0])
        elif kind == self.DTMF:
            self.ignored += 1
        elif kind == self.HANGUP:
            self.ended = True
        elif kind == self.ERROR:
            self.ended = True
            self.error = f"Asterisk reported error {payload[:1].hex() or 'without a code'}"
        elif 0x11 <= kind <= 0x18:
            raise ProtocolError(f"audiosocket: audio kind 0x{kind:02x} is not supported; use slin (0x10, 8 kHz)")
        else:
            raise ProtocolError(f"audiosocket: unknown frame kind 0x{kind:02x}")
