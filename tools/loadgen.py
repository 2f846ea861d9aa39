"""Replay speech as concurrent real-time calls over real sockets: Twilio, FreeSWITCH fork or AudioSocket.

``python -m tools.loadgen twilio --calls 300 --seconds 60 --target ws://127.0.0.1:8765/twilio FILES...``

Every payload is encoded once per file (calls share them, each from its own
offset), and one 20 ms clock sends every call's next message, so the
generator stays light beside the analyzer it loads. With ``--report`` it
writes when each tick was due (wall clock) and at which tick each call
started, so a client can measure latency from the end of a window's audio
at the generator to its score; with ``--sends`` also when each call's media
messages actually went out (wall clock, one ``time.time()`` per message).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import sys
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from websockets.frames import Opcode

from streamer.calls.sessions.audiosocket import AudioSocketSession
from streamer.core.codecs import l16_encode, mulaw_encode

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension is in every wheel
    from websockets.utils import apply_mask


RATE = 8000


TICK_S = 0.020  # Twilio's 20 ms media messages; the others use the same frames


TICK = int(RATE * TICK_S)


PROTOCOLS = ("twilio", "fork", "audiosocket")


@dataclass
class Call:
    """One call's script: who it is and what its voices say (8 kHz float32)."""

    call_id: str
    caller: np.ndarray
    agent: np.ndarray | None = None
    agent_name: str | None = None
    queue: str | None = None
    sent: int = 0  # ticks sent
    started_tick: int | None = None
    error: str | None = None
    sent_at: array | None = None  # time.time() as media message k began to go out (NaN: not sent)

    @property
    def ticks(self) -> int:
        return len(self.caller) // TICK


class TwilioCall:
    """Frames of a Twilio Media Stream for one call (``connected``, ``start``, ``media``…, ``stop``)."""

    def __init__(self, call: Call, payloads: list[str], agent_payloads: list[str] | None, offset: int, token=None):
        self.call = call
        self.sid = "MZ" + uuid.uuid4().hex
        self.payloads, self.agent_payloads, self.offset = payloads, agent_payloads, offset
        self.sequence = 0
        params = {k: v for k, v in {"agent": call.agent_name, "queue": call.queue, "token": token}.items() if v}
        tracks = ["inbound", "outbound"] if agent_payloads is not None else ["inbound"]
        self.opening = [
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            self._event(
                "start",
                {
                    "start": {
                        "accountSid": "AC" + "0" * 32,
                        "streamSid": self.sid,
                        "callSid": call.call_id,
                        "tracks": tracks,
                        "customParameters": params,
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    }
                },
            ),
        ]

    def _event(self, event: str, body: dict) -> str:
        self.sequence += 1
        return json.dumps({"event": event, "sequenceNumber": str(self.sequence), **body, "streamSid": self.sid})

    def media(self, k: int) -> list[str]:
        """The messages of tick ``k``: the inbound chunk, and the outbound one if sent."""
        out = []
        n = len(self.payloads)
        for track, payloads in (("inbound", self.payloads), ("outbound", self.agent_payloads)):
            if payloads is None:
                continue
            self.sequence += 1
            out.append(
                f'{{"event":"media","sequenceNumber":"{self.sequence}","media":{{"track":"{track}",'
                f'"chunk":"{k + 1}","timestamp":"{k * 20}","payload":"{payloads[(self.offset + k) % n]}"}},'
                f'"streamSid":"{self.sid}"}}'
            )
        return out

    def closing(self) -> list[str]:
        return [self._event("stop", {"stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call.call_id}})]


def twilio_payloads(samples: np.ndarray) -> list[str]:
    """Base64 μ-law of each 20 ms chunk (encoded once; calls share them)."""
    codes = mulaw_encode(samples[: len(samples) // TICK * TICK])
    return [base64.b64encode(codes[i : i + TICK]).decode() for i in range(0, len(codes), TICK)]


def fork_frames(caller: np.ndarray, agent: np.ndarray | None) -> list[bytes]:
    """20 ms L16 frames: mono (the caller), or stereo (caller left, agent right)."""
    n = len(caller) // TICK * TICK
    audio = caller[:n] if agent is None else np.stack([caller[:n], agent[:n]], axis=1)
    data = l16_encode(audio)
    step = TICK * 2 * (1 if agent is None else 2)
    return [data[i : i + step] for i in range(0, len(data), step)]


def audiosocket_frame(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def audiosocket_frames(caller: np.ndarray) -> list[bytes]:
    """20 ms ``0x10`` (slin 8 kHz) frames."""
    data = l16_encode(caller[: len(caller) // TICK * TICK])
    return [audiosocket_frame(AudioSocketSession.AUDIO, data[i : i + TICK * 2]) for i in range(0, len(data), TICK * 2)]


class Clock:
    """One clock for every call, ticking ``PHASES`` times per 20 ms.

    A call sends every 20 ms at its own phase, as real calls do (each started
    at its own moment); the ramp spreads the phases, and ``ramp_s = 0`` sends
    every call's message in the same instant (the worst case). ``times``
    holds when each tick was due (wall clock): latency measured from there
    counts the generator's own lateness against the analyzer; ``late`` how
    late each tick's sending began.
    """

    PHASES = 4
    STEP_S = TICK_S / PHASES

    def __init__(self) -> None:
        self.times: list[float] = []
        self.late: list[float] = []

    async def ticks(self, count: int):
        start = time.perf_counter()
        wall = time.time() - start
        for k in range(count):
            due = start + k * self.STEP_S
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.times.append(wall + due)
            self.late.append(time.perf_counter() - due)
            yield k


async def run_calls(
    protocol: str,
    target: str,
    calls: list[Call],
    seconds: float,
    ramp_s: float = 5.0,
    token: str | None = None,
) -> Clock:
    """Connect every call, start them spread over ``ramp_s``, send ``seconds`` of audio each in real time.

    Each call's ``started_tick`` is the clock tick of its first message; its
    message ``k`` was due at tick ``started_tick + k * Clock.PHASES`` and
    began to go out at ``sent_at[k]`` (wall clock: the generator may run late). A
    call hangs up right after its last message, as a real one does: its
    last window is scored when it ends, so a hang-up held back until every
    call had finished would show up as that window's latency.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}")
    encoded: dict[int, tuple] = {}  # id(array) -> payloads: encode each file once
    senders = []
    for i, call in enumerate(calls):
        key = (id(call.caller), id(call.agent))
        if key not in encoded:
            if protocol == "twilio":
                agent = None if call.agent is None else twilio_payloads(call.agent)
                encoded[key] = (twilio_payloads(call.caller), agent)
            elif protocol == "fork":
                encoded[key] = (fork_frames(call.caller, call.agent), None)
            else:
                encoded[key] = (audiosocket_frames(call.caller), None)
        offset = (i * 977) % max(1, call.ticks)
        senders.append(await _connect(protocol, target, call, encoded[key], offset, token))
    clock = Clock()
    total = int(seconds / TICK_S)
    for sender in senders:
        sender.call.sent_at = array("d", [math.nan]) * total  # 8 bytes a message, no object each
    wall = time.time  # one clock read and one store per message (~0.1 µs): the hot path stays cheap
    phases: list[list[tuple[_Sender, int]]] = [[] for _ in range(Clock.PHASES)]
    last_start = 0
    for i, sender in enumerate(senders):
        start = int(i * ramp_s / Clock.STEP_S / max(1, len(senders)))
        phases[start % Clock.PHASES].append((sender, start))
        last_start = max(last_start, start)
    hanging_up: dict[int, asyncio.Task] = {}  # id(sender) -> its close
    async for tick in clock.ticks(total * Clock.PHASES + last_start):
        for sender, start in phases[tick % Clock.PHASES]:
            k = (tick - start) // Clock.PHASES
            if 0 <= k < total and sender.call.error is None:
                if k == 0:
                    sender.call.started_tick = tick
                sender.call.sent_at[k] = wall()  # the same clock as a client's arrival times
                await sender.send_tick(k)
                if k == total - 1:  # not awaited here: the clock goes on for the other calls
                    hanging_up[id(sender)] = asyncio.create_task(sender.close())
    for sender in senders:
        if id(sender) not in hanging_up:  # failed calls
            await sender.close()
    await asyncio.gather(*hanging_up.values())
    return clock


class _Sender:
    def __init__(self, call: Call, send, close, media, opening: list, closing: list):
        self.call, self._send, self._close, self._media = call, send, close, media
        self.opening, self.closing = opening, closing

    async def open(self) -> None:
        for frame in self.opening:
            await self._send(frame)

    async def send_tick(self, k: int) -> None:
        try:
            for frame in self._media(k):
                await self._send(frame)
            self.call.sent += 1
        except Exception as exc:  # the server closed this call: note it, go on with the others
            self.call.error = self.call.error or f"{type(exc).__name__}: {exc}"[:200]

    async def close(self) -> None:
        """Hang up (the protocol's stop or hangup, if it has one), then close."""
        try:
            for frame in self.closing:
                await self._send(frame)
            await self._close()
        except Exception:
            pass


async def _connect(protocol: str, target: str, call: Call, encoded: tuple, offset: int, token) -> _Sender:
    frames, agent_frames = encoded
    if protocol == "audiosocket":
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))

        async def send(data: bytes) -> None:
            writer.write(data)
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()

        async def close() -> None:
            writer.close()

        sender = _Sender(
            call,
            send,
            close,
            lambda k: [frames[(offset + k) % len(frames)]],
            [audiosocket_frame(AudioSocketSession.UUID, uuid.UUID(call.call_id).bytes)],
            [audiosocket_frame(AudioSocketSession.HANGUP)],
        )
    else:
        from websockets.asyncio.client import connect

        if protocol == "twilio":
            twilio = TwilioCall(call, frames, agent_frames, offset, token)
            ws = await connect(target, max_size=None, compression=None)
            sender = _Sender(call, _raw_sender(ws), ws.close, twilio.media, twilio.opening, twilio.closing())
        else:
            meta = {"callId": call.call_id, "mixType": "mono" if call.agent is None else "stereo", "sampleRate": 8000}
            meta |= {k: v for k, v in {"agent": call.agent_name, "queue": call.queue}.items() if v}
            url = target + (f"?token={token}" if token else "")
            ws = await connect(url, subprotocols=["audio.drachtio.org"], max_size=None, compression=None)
            media = lambda k: [frames[(offset + k) % len(frames)]]  # noqa: E731
            sender = _Sender(call, _raw_sender(ws), ws.close, media, [json.dumps(meta)], [])
    await sender.open()
    return sender


def client_frame(payload: bytes, opcode: int, mask: bytes) -> bytes:
    """One whole, masked websocket frame from a client (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + length + mask + apply_mask(payload, mask)


def _raw_sender(ws):
    """Send frames straight to the socket after the library's handshake.

    The generator shares the machine with the analyzer it loads, so it must
    stay light: the full client's per-message work would take CPU from the
    analyzer being measured. The mask key is drawn once per connection, not
    per frame (a load generator's shortcut; the server cannot tell).
    """
    mask = os.urandom(4)
    transport = ws.transport

    async def send(message: str | bytes) -> None:
        if transport.is_closing():
            raise ConnectionError("the analyzer closed the connection")
        if isinstance(message, str):
            transport.write(client_frame(message.encode(), Opcode.TEXT, mask))
        else:
            transport.write(client_frame(message, Opcode.BINARY, mask))
        while transport.get_write_buffer_size() > 1 << 18:  # the analyzer is not reading: wait
            if transport.is_closing():
                raise ConnectionError("the analyzer closed the connection")
            await asyncio.sleep(0.005)

    return send


def load_speech(paths: list[Path], seconds: float) -> list[np.ndarray]:
    """Each file at 8 kHz, repeated to ``seconds``."""
    from streamer.analysis.decode import load_audio

    out = []
    for path in paths:
        try:
            audio = load_audio(path, RATE)
        except Exception as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not len(audio):
            raise ValueError(f"{path}: no audio")
        out.append(np.tile(audio, int(np.ceil(seconds * RATE / len(audio))) + 1)[: int((seconds + 1) * RATE)])
    return out


def make_calls(protocol: str, speech: list[np.ndarray], count: int, both_tracks: bool) -> list[Call]:
    calls = []
    for i in range(count):
        call_id = str(uuid.uuid4()) if protocol == "audiosocket" else f"CA{uuid.uuid4().hex}"
        caller = speech[i % len(speech)]
        agent = speech[(i + 1) % len(speech)] if both_tracks else None
        calls.append(Call(call_id, caller, agent, agent_name=f"agent{i % 40:02d}", queue=f"queue{i % 4}"))
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("protocol", choices=PROTOCOLS)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--target", required=True, help="ws://host:port/twilio, ws://host:port/fork, or host:port")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the calls start")
    parser.add_argument("--both-tracks", action="store_true", help="send the agent's voice too (twilio, fork)")
    parser.add_argument("--token", help="the analyzer's token")
    parser.add_argument("--report", type=Path, help="write tick times and call starts here (JSON)")
    parser.add_argument(
        "--sends", type=Path, help="write when each media message went out here (.npz: calls, sent_at wall clock)"
    )
    args = parser.parse_args(argv)
    from websockets.exceptions import InvalidHandshake

    try:
        speech = load_speech(args.files, args.seconds)
        calls = make_calls(args.protocol, speech, args.calls, args.both_tracks)
        import uvloop

        clock = uvloop.run(run_calls(args.protocol, args.target, calls, args.seconds, args.ramp, args.token))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, InvalidHandshake) as exc:
        print(f"error: cannot connect to {args.target}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    failed = [c for c in calls if c.error]
    late = np.asarray(clock.late or [0.0])
    summary = {
        "calls": len(calls),
        "failed": len(failed),
        "ticks_sent": sum(c.sent for c in calls),
        "tick_late_ms_p95": round(float(np.percentile(late, 95)) * 1000, 2),
        "first_error": failed[0].error if failed else None,
    }
    print(json.dumps(summary))
    if args.report:
        starts = {c.call_id: c.started_tick for c in calls}
        report = {"ticks": clock.times, "phases": Clock.PHASES, "starts": starts, **summary}
        args.report.write_text(json.dumps(report))
    if args.sends and calls:  # one row per call, in the order of `calls`; NaN where nothing was sent
        with args.sends.open("wb") as out:  # a file object: np.savez would append .npz to a path
            np.savez(out, calls=np.array([c.call_id for c in calls]), sent_at=np.array([c.sent_at for c in calls]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
