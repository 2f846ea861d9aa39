"""FreeSWITCH ``mod_audio_fork``, as a sans-I/O session."""

from __future__ import annotations

from urllib.parse import parse_qsl

from streamer.calls.sessions.base import (
    AGENT,
    CALLER,
    MIXED,
    ProtocolError,
    Session,
    _json_object,
    _meta_text,
    call_name,
    l16_frames,
)


class ForkSession(Session):
    """FreeSWITCH ``mod_audio_fork``: a JSON metadata text frame, then binary L16 frames.

    L16 is little-endian (FreeSWITCH's native byte order on x86 and ARM). The
    mix type and rate are not sent in-band: they come from the metadata
    (``mixType``, ``sampleRate``) or the URL's query (``mix``, ``rate``):
    ``mono`` is the caller alone; ``stereo`` interleaves the caller (left,
    the channel's read side) and the agent (right); ``mixed`` holds both
    voices in one channel and is refused unless the agent may be analysed.
    The call id is the metadata's ``callId``/``callSid``/``uuid`` (or ``call``
    in the query); the queue is the metadata's ``queue`` (or ``queue`` in the query).
    """

    PROTOCOL = "fork"
    SUBPROTOCOL = "audio.drachtio.org"
    TOKEN_IN_HANDSHAKE = True
    CLOSE_ENDS_CALL = True  # mod_audio_fork sends nothing else at the end
    RATES = {"8000": 8000, "8k": 8000, "16000": 16000, "16k": 16000}
    ID_KEYS = ("callId", "callSid", "call_id", "uuid")

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.params = dict(parse_qsl(self.query))
        self.wire_channels = 1
        self.voice_columns: list[int] = []

    def receive(self, data: bytes, binary: bool = True) -> None:
        if binary:
            self.receive_bytes(data)
        else:
            self.receive_text(data.decode())

    def receive_text(self, text: str) -> None:
        if self.source is not None:
            return  # later text frames carry nothing we use
        meta = _json_object(text, "fork metadata")
        rate = self.RATES.get(str(meta.get("sampleRate", self.params.get("rate", "8000"))))
        if rate is None:
            raise ProtocolError("fork: the sample rate must be 8000 or 16000")
        mix = str(meta.get("mixType", self.params.get("mix", "mono")))
        if mix == "mono":
            offered = [CALLER]
        elif mix == "stereo":
            offered = [CALLER, AGENT]
        elif mix == "mixed":
            offered = [MIXED]
        else:
            raise ProtocolError(f"fork: unknown mix type {mix[:20]!r}")
        raw_id = next((meta[k] for k in self.ID_KEYS if isinstance(meta.get(k), str)), self.params.get("call"))
        call_id = call_name(raw_id, "fork")
        self.source = self.desk.open(call_id, self.PROTOCOL, rate, offered, **self._meta(meta, self.params))
        self.wire_channels = len(offered)
        self.voice_columns = [offered.index(v) for v in self.source.channels]

    @staticmethod
    def _meta(meta: dict, params: dict[str, str]) -> dict:
        """Agent and queue from the metadata; the queue also from the URL (``/fork?queue=sales``),
        where a dialplan sets it once for every call it forks."""
        queue = _meta_text(meta.get("queue")) or _meta_text(params.get("queue"))
        return {"agent": _meta_text(meta.get("agent")), "queue": queue}

    def receive_bytes(self, data: bytes) -> None:
        if self.source is None:
            raise ProtocolError("fork: audio before the metadata frame")
        frames = l16_frames(data, self.wire_channels, "fork")
        for voice, column in enumerate(self.voice_columns):
            self.source.push(voice, frames[:, column])
