"""Twilio Media Streams, as a sans-I/O session."""

from __future__ import annotations

import base64
import binascii

from streamer.calls.call import CallSource
from streamer.calls.sessions.base import AGENT, CALLER, ProtocolError, Session, _json_object, _meta_text, call_name
from streamer.core.codecs import mulaw_to_float


class TwilioSession(Session):
    """Twilio Media Streams: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``.

    Inbound (the caller) and outbound (the agent) tracks; μ-law at 8 kHz.
    ``token`` (when the server has one) must come in the stream URL or as the
    custom parameter ``token``; ``url_token`` is what the URL carried.
    """

    PROTOCOL = "twilio"
    TRACKS = {"inbound": CALLER, "outbound": AGENT}
    RATE = 8000

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.voice: dict[str, int] = {}  # track -> voice index, for analysed tracks

    def receive(self, data: bytes | str, binary: bool = False) -> None:
        message = _json_object(data, "twilio")
        event = message.get("event")
        if event == "media":
            self._media(message.get("media"))
        elif event == "start":
            self._start(message.get("start"))
        elif event == "stop":
            self._require_start("stop")
            self.ended = True
        elif event in ("connected", "dtmf", "mark"):
            self.ignored += 1
        else:
            raise ProtocolError(f"twilio: unknown event {str(event)[:40]!r}")

    def _require_start(self, event: str) -> CallSource:
        if self.source is None:
            raise ProtocolError(f"twilio: {event} before start")
        return self.source

    def _start(self, start: object) -> None:
        if self.source is not None:
            raise ProtocolError("twilio: a second start")
        if not isinstance(start, dict):
            raise ProtocolError("twilio: start without its object")
        media_format = start.get("mediaFormat") or {}
        if not isinstance(media_format, dict) or (
            media_format.get("encoding"),
            media_format.get("sampleRate"),
            media_format.get("channels", 1),
        ) != ("audio/x-mulaw", self.RATE, 1):
            wanted = "audio/x-mulaw 8000 Hz mono"
            raise ProtocolError(f"twilio: unsupported media format {str(media_format)[:80]} (want {wanted})")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError("twilio: customParameters is not an object")
        if not self.token_ok(self.url_token or _meta_text(params.get("token"))):
            raise ProtocolError("twilio: no valid token (in the stream URL or the custom parameter 'token')")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) and t in self.TRACKS for t in tracks):
            raise ProtocolError(f"twilio: unknown tracks {str(tracks)[:60]}")
        call_id = call_name(start.get("callSid") or start.get("streamSid"), "twilio")
        offered = [self.TRACKS[t] for t in tracks]
        self.source = self.desk.open(
            call_id,
            self.PROTOCOL,
            self.RATE,
            offered,
            agent=_meta_text(params.get("agent")),
            queue=_meta_text(params.get("queue")),
        )
        self.voice = {t: self.source.channels.index(v) for t, v in zip(tracks, offered) if v in self.source.channels}

    def _media(self, media: object) -> None:
        source = self._require_start("media")
        if not isinstance(media, dict):
            raise ProtocolError("twilio: media without its object")
        track = media.get("track", "inbound")
        voice = self.voice.get(track) if isinstance(track, str) else None
        if voice is None:
            if not isinstance(track, str) or track not in self.TRACKS:
                raise ProtocolError(f"twilio: unknown track {str(track)[:40]!r}")
            self.ignored += 1  # a voice not analysed: received and discarded
            return
        try:
            samples = mulaw_to_float(base64.b64decode(media["payload"], validate=True))
            at = int(media["timestamp"]) * self.RATE // 1000
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise ProtocolError("twilio: media without a valid payload and timestamp") from None
        if at < 0:
            raise ProtocolError("twilio: a negative media timestamp")
        source.push(voice, samples, at)
