"""Calls from the phone system: the call as a source, the call desk, and three wire protocols, without I/O.

A call is a :class:`CallSource`: a ring per call with one channel per voice
analysed (the caller's; the agent's only with ``analyze_agent``, see the AI
Act note in the README). Its time comes from the audio: sample counts, or
the media timestamps of the protocol; a gap in the media (lost packets) is
filled with silence, which the VAD leaves unscored, and counted.

The protocol sessions (:class:`TwilioSession`, :class:`ForkSession`,
:class:`AudioSocketSession`) are sans-I/O state machines like
python-websockets' protocol: the adapters in ``streamer.ingest`` hand them
what arrived on a socket; they open, feed and end calls through the
:class:`CallDesk`, and raise :class:`ProtocolError` (one line, for the log and
the close reason) on anything malformed, which ends that connection only.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qsl

import numpy as np

from streamer.features import FeatureConfig
from streamer.messages import status_message
from streamer.pipeline import Source, StreamAnalyzer
from streamer.ringbuffer import RING_SECONDS, AudioRing

CALLER, AGENT, MIXED = "caller", "agent", "mixed"  # mixed: both voices in one channel
MAX_META_LEN = 200  # characters of an agent/queue name kept
MAX_ID_LEN = 64


class ProtocolError(ValueError):
    """Input that ends one connection; the message is the (one-line) reason."""


def _mulaw_table() -> np.ndarray:
    """G.711 μ-law byte → float32 sample in [-1, 1)."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = (((codes & 0x0F) << 3) + 0x84) << exponent
    linear = np.where(codes & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return (linear / 32768.0).astype(np.float32)


MULAW = _mulaw_table()


def mulaw_to_float(payload: bytes) -> np.ndarray:
    """Decode G.711 μ-law bytes to float32 samples."""
    return MULAW[np.frombuffer(payload, np.uint8)]


def l16_to_float(payload: bytes, channels: int = 1, protocol: str = "l16") -> np.ndarray:
    """Little-endian signed 16-bit PCM, interleaved, to float32 ``(n, channels)``."""
    if len(payload) % (2 * channels):
        raise ProtocolError(f"{protocol}: a frame of {len(payload)} bytes is not whole {channels}-channel samples")
    return (np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0).reshape(-1, channels)


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


class CallSource(Source):
    """One call's audio, delivered by a protocol session.

    Parameters
    ----------
    stream_id : str
        The call's id (the stream's name on the dashboard and MQTT).
    protocol : str
        ``twilio``, ``fork`` or ``audiosocket`` (shown in its status).
    rate : int
        Sample rate of the pushed audio.
    channels : list of str
        The voices analysed, in ring order (``caller``, and ``agent`` if asked).
    agent, queue : str, optional
        Shown in its status, for the dashboard's floor view.
    """

    transient = True  # removed from its worker once finished: calls come and go
    read_block_s = float("inf")  # read once the next window's end is in (see Source)
    MAX_SKEW_S = 1.0  # one voice this far ahead of the other: the other's missing audio is silence
    TOLERANCE_S = 0.010  # media timestamps this close to the sample count are the same moment

    def __init__(
        self,
        stream_id: str,
        protocol: str,
        rate: int,
        channels: list[str],
        config: FeatureConfig,
        agent: str | None = None,
        queue: str | None = None,
        **analyzer_kw,
    ) -> None:
        self.stream_id = stream_id
        self.protocol = protocol
        self.rate = rate
        self.agent, self.queue = agent, queue
        self.ring = AudioRing(int(RING_SECONDS * rate), len(channels))
        self.analyzer = StreamAnalyzer(stream_id, channels, rate, config, **analyzer_kw)
        self.state = "running"
        self.error: str | None = None
        self.reconnects = 0
        self.gaps = 0  # media gaps (lost packets), filled with silence
        self.gap_samples = 0
        self.late_samples = 0  # media that came again or out of order, dropped
        self.lost_at: float | None = None  # wall clock of a dropped connection (reconnect grace)
        self._received = [0] * len(channels)  # per voice: samples accepted, in stream time
        self._pending: list[list[np.ndarray]] = [[] for _ in channels]
        self._offset = 0  # added to a connection's media positions (0 until a reconnect)
        self._tolerance = int(self.TOLERANCE_S * rate)

    # -- fed by a protocol session (one connection at a time, on the event loop) --

    def push(self, voice: int, samples: np.ndarray, at: int | None = None) -> None:
        """Samples of voice ``voice`` (index in ``channels``), starting at media position ``at`` if known."""
        if self.input_ended:
            return
        received = self._received[voice]
        if at is not None:
            at += self._offset
            if at > received + self._tolerance:  # lost media: silence for it, counted
                gap = at - received
                self.gaps += 1
                self.gap_samples += gap
                self._append(voice, np.zeros(min(gap, self.ring.capacity), np.float32))
                received = self._received[voice]
                if gap > self.ring.capacity:  # longer than the ring holds: keep the clock, not the silence
                    self._offset -= gap - self.ring.capacity
            elif at < received - self._tolerance:  # media again or out of order: keep what is new
                late = min(received - at, len(samples))
                self.late_samples += late
                samples = samples[late:]
                if not len(samples):
                    return
        self._append(voice, samples)

    def _append(self, voice: int, samples: np.ndarray) -> None:
        self._received[voice] += len(samples)
        if len(self.channels) == 1:
            self.ring.write(samples)
            return
        self._pending[voice].append(samples)
        # Voices arrive in separate messages: write the span both have; a voice that
        # falls MAX_SKEW_S behind (its track stopped) is padded with silence.
        ahead = max(self._received)
        for other, received in enumerate(self._received):
            if ahead - received > self.MAX_SKEW_S * self.rate:
                self._pad(other, ahead - received)
        self._write_common()

    def _pad(self, voice: int, n: int) -> None:
        self._received[voice] += n
        self._pending[voice].append(np.zeros(n, np.float32))

    def _write_common(self) -> None:
        n = min(self._received) - self.ring.written
        if n <= 0:
            return
        columns = []
        for voice, parts in enumerate(self._pending):
            joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
            columns.append(joined[:n])
            self._pending[voice] = [joined[n:]] if len(joined) > n else []
        self.ring.write(np.stack(columns, axis=1))

    def end(self, error: str | None = None) -> None:
        """The call is over (stop, hangup, or given up): what was received is still analysed."""
        if self.input_ended:
            return
        if len(self.channels) > 1:  # the shorter voice's tail is silence
            ahead = max(self._received)
            for voice, received in enumerate(self._received):
                if ahead > received:
                    self._pad(voice, ahead - received)
            self._write_common()
        self.input_ended = True
        self.error = error
        self.state = "running"  # until its last window is out; then finished

    def connection_lost(self, now: float) -> None:
        """The connection dropped without the call ending: keep it for a reconnect."""
        if not self.input_ended:
            self.state, self.error, self.lost_at = "reconnecting", "connection lost", now

    def resume(self) -> None:
        """The same call connected again: its media positions restart, stream time goes on."""
        self._offset = max(self._received)
        self.input_ended = False
        self.state, self.error, self.lost_at = "running", None, None
        self.reconnects += 1

    # -- read by the worker --

    def stop(self) -> None:
        self.end()

    def status(self) -> dict:
        if self.finished:
            self.state = "finished"
        extra = {"agent": self.agent, "queue": self.queue}
        return status_message(
            self.stream_id,
            self.protocol,
            self.state,
            overruns=self.ring.overruns,
            windows=self.analyzer.windows_done,
            channels=self.channels,
            latency_ms=self.analyzer.mean_latency_ms,
            reconnects=self.reconnects,
            gaps=self.gaps,
            lost_s=round((self.gap_samples + self.ring.overrun_samples) / self.rate, 3),
            error=self.error,
            **{k: v for k, v in extra.items() if v is not None},
        )


class CallDesk:
    """Opens, resumes and retires calls; the one place that decides which voices are analysed.

    Parameters
    ----------
    config : FeatureConfig
    attach : callable
        Receives each new :class:`CallSource` (the adapter hands it to a
        worker); a MemoryError from it refuses the call.
    analyze_agent : bool
        Analyse the agent's voice too. Off by default: in the EU, recognising
        the emotions of workers is prohibited (AI Act, Art. 5(1)(f)).
    max_calls : int
        Calls at once; more are refused.
    resume_s : float
        How long a call whose connection dropped waits for the same call id.
    clock : callable
        Wall clock for the reconnect grace only (never for stream time).
    """

    def __init__(
        self,
        config: FeatureConfig,
        attach: Callable[[CallSource], None],
        analyze_agent: bool = False,
        max_calls: int = 1000,
        resume_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        **analyzer_kw,
    ) -> None:
        self.config = config
        self.attach = attach
        self.analyze_agent = analyze_agent
        self.max_calls = max_calls
        self.resume_s = resume_s
        self.clock = clock
        self.analyzer_kw = analyzer_kw
        self.calls: dict[str, CallSource] = {}
        self.connected: set[str] = set()
        self.started = 0
        self.errors = 0  # connections closed for bad input

    def voices(self, offered: list[str]) -> list[str]:
        """Of the voices a connection carries, those analysed (caller first)."""
        wanted = [CALLER, AGENT, MIXED] if self.analyze_agent else [CALLER]
        return [v for v in wanted if v in offered]

    def open(self, call_id: str, protocol: str, rate: int, offered: list[str], **meta) -> CallSource:
        """The call's source: a new one, or the same call resumed after its connection dropped."""
        voices = self.voices(offered)
        if not voices:
            raise ProtocolError(
                f"call {call_id}: it carries no voice this analyzer may analyse ({', '.join(offered) or 'none'}); "
                "the agent's voice needs --analyze-agent"
            )
        if call_id in self.connected:
            raise ProtocolError(f"call {call_id} is already connected")
        source = self.calls.get(call_id)
        if source is not None and not source.finished and source.rate == rate and source.channels == voices:
            source.resume()  # a reconnect, or a new stream of the same call
        else:
            live = sum(not s.input_ended for s in self.calls.values())
            if live >= self.max_calls:
                raise ProtocolError(f"call {call_id}: already {self.max_calls} calls (--max-calls)")
            if source is not None:
                source.end()
            source = CallSource(call_id, protocol, rate, voices, self.config, **meta, **self.analyzer_kw)
            try:
                self.attach(source)
            except MemoryError as exc:  # no room for its ring in shared memory: refused, the others go on
                raise ProtocolError(f"call {call_id}: {exc}") from None
            self.calls[call_id] = source
            self.started += 1
        self.connected.add(call_id)
        return source

    def close(self, source: CallSource, ended: bool, error: str | None = None) -> None:
        """A connection closed: the call ended (stop/hangup/bad input), or may come back."""
        self.connected.discard(source.stream_id)
        if ended:
            source.end(error)
        else:
            source.connection_lost(self.clock())

    def housekeeping(self) -> None:
        """End calls whose reconnect grace ran out; forget finished ones (their worker drops them)."""
        now = self.clock()
        for call_id, source in list(self.calls.items()):
            if source.lost_at is not None and not source.input_ended and now - source.lost_at > self.resume_s:
                source.end("connection lost")
            if source.finished:
                del self.calls[call_id]

    def stats(self) -> dict:
        return {"calls": sum(not s.input_ended for s in self.calls.values()), "call_errors": self.errors}


def _json_object(text: str | bytes, what: str) -> dict:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting like [[[[…
        raise ProtocolError(f"{what}: not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"{what}: not a JSON object")
    return message


class TwilioSession:
    """Twilio Media Streams: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``.

    Inbound (the caller) and outbound (the agent) tracks; μ-law at 8 kHz.
    ``token`` (when the server has one) must come in the stream URL or as the
    custom parameter ``token``; ``url_token`` is what the URL carried.
    """

    PROTOCOL = "twilio"
    TRACKS = {"inbound": CALLER, "outbound": AGENT}
    RATE = 8000

    def __init__(self, desk: CallDesk, token_ok: Callable[[str | None], bool], url_token: str | None = None):
        self.desk = desk
        self.token_ok = token_ok
        self.url_token = url_token
        self.source: CallSource | None = None
        self.voice: dict[str, int] = {}  # track -> voice index, for analysed tracks
        self.ended = False
        self.ignored = 0  # dtmf, mark and discarded-track messages

    def receive(self, text: str | bytes) -> None:
        message = _json_object(text, "twilio")
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


class ForkSession:
    """FreeSWITCH ``mod_audio_fork``: a JSON metadata text frame, then binary L16 frames.

    L16 is little-endian (FreeSWITCH's native byte order on x86 and ARM). The
    mix type and rate are not sent in-band: they come from the metadata
    (``mixType``, ``sampleRate``) or the URL's query (``mix``, ``rate``):
    ``mono`` is the caller alone; ``stereo`` interleaves the caller (left,
    the channel's read side) and the agent (right); ``mixed`` holds both
    voices in one channel and is refused unless the agent may be analysed.
    The call id is the metadata's ``callId``/``callSid``/``uuid`` (or ``call``
    in the query).
    """

    PROTOCOL = "fork"
    SUBPROTOCOL = "audio.drachtio.org"
    RATES = {"8000": 8000, "8k": 8000, "16000": 16000, "16k": 16000}
    ID_KEYS = ("callId", "callSid", "call_id", "uuid")

    def __init__(self, desk: CallDesk, query: str = ""):
        self.desk = desk
        self.query = dict(parse_qsl(query))
        self.source: CallSource | None = None
        self.wire_channels = 1
        self.voice_columns: list[int] = []

    def receive_text(self, text: str) -> None:
        if self.source is not None:
            return  # later text frames carry nothing we use
        meta = _json_object(text, "fork metadata")
        rate = self.RATES.get(str(meta.get("sampleRate", self.query.get("rate", "8000"))))
        if rate is None:
            raise ProtocolError("fork: the sample rate must be 8000 or 16000")
        mix = str(meta.get("mixType", self.query.get("mix", "mono")))
        if mix == "mono":
            offered = [CALLER]
        elif mix == "stereo":
            offered = [CALLER, AGENT]
        elif mix == "mixed":
            offered = [MIXED]
        else:
            raise ProtocolError(f"fork: unknown mix type {mix[:20]!r}")
        raw_id = next((meta[k] for k in self.ID_KEYS if isinstance(meta.get(k), str)), self.query.get("call"))
        call_id = call_name(raw_id, "fork")
        self.source = self.desk.open(call_id, self.PROTOCOL, rate, offered, **self._meta(meta))
        self.wire_channels = len(offered)
        self.voice_columns = [offered.index(v) for v in self.source.channels]

    @staticmethod
    def _meta(meta: dict) -> dict:
        return {"agent": _meta_text(meta.get("agent")), "queue": _meta_text(meta.get("queue"))}

    def receive_bytes(self, data: bytes) -> None:
        if self.source is None:
            raise ProtocolError("fork: audio before the metadata frame")
        frames = l16_to_float(data, self.wire_channels, "fork")
        for voice, column in enumerate(self.voice_columns):
            self.source.push(voice, frames[:, column])


class AudioSocketSession:
    """Asterisk AudioSocket (TCP): frames of kind (1 byte), length (uint16 big-endian), payload.

    ``0x01`` the call's UUID (16 bytes, first), ``0x10`` signed linear 16-bit
    8 kHz mono little-endian, ``0x03`` DTMF (ignored), ``0x00`` hangup,
    ``0xff`` an error from Asterisk. The higher-rate audio kinds (``0x11``–
    ``0x18``) are refused: documents disagree on their rates, and a wrong
    rate would skew every feature silently.
    """

    PROTOCOL = "audiosocket"
    HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
    RATE = 8000

    def __init__(self, desk: CallDesk):
        self.desk = desk
        self.source: CallSource | None = None
        self.ended = False
        self.error: str | None = None
        self._buffer = bytearray()
        self.ignored = 0

    def feed(self, data: bytes) -> None:
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
            self.source.push(0, l16_to_float(payload, 1, "audiosocket")[:, 0])
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
