"""The call protocols: one Session per file, registered here by name."""

from streamer.calls.sessions.audiosocket import AudioSocketSession
from streamer.calls.sessions.base import ProtocolError, Session
from streamer.calls.sessions.fork import ForkSession
from streamer.calls.sessions.twilio import TwilioSession

SESSIONS: dict[str, type[Session]] = {
    TwilioSession.PROTOCOL: TwilioSession,
    ForkSession.PROTOCOL: ForkSession,
    AudioSocketSession.PROTOCOL: AudioSocketSession,
}

__all__ = ["SESSIONS", "ProtocolError", "Session"]
