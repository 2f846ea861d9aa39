"""The pure telephony core: codecs, the call as a source, the call desk, the three protocol sessions."""

import base64
import json
import time
import uuid
import warnings

import numpy as np
import pytest

from streamer.analysis.analyzer import AnalysisSettings, StreamAnalyzer
from streamer.analysis.vad import FunctionVAD
from streamer.calls.call import CallSource
from streamer.calls.desk import CallDesk
from streamer.calls.sessions.audiosocket import AudioSocketSession
from streamer.calls.sessions.base import AGENT, CALLER, ProtocolError
from streamer.calls.sessions.fork import ForkSession
from streamer.calls.sessions.twilio import TwilioSession
from streamer.core.alerts import AlertEngine, parse_rule
from streamer.core.codecs import l16_encode, l16_to_float, mulaw_encode, mulaw_to_float
from streamer.core.features import FeatureConfig
from streamer.workers.thread import AnalysisWorker
from tools.loadgen import Call, TwilioCall, audiosocket_frame, twilio_payloads

CONFIG = FeatureConfig()
LOUD = FunctionVAD(lambda c: float(np.abs(c).max() > 0.05))


def allow(_token):
    return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make_desk(**kw):
    attached = []
    desk = CallDesk(attached.append, clock=kw.pop("clock", Clock()), **kw)
    return desk, attached


def test_mulaw_decoding_matches_the_standard_library_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # G.711 reference, deprecated but present in 3.11
    every = bytes(range(256))
    reference = np.frombuffer(audioop.ulaw2lin(every, 2), "<i2") / 32768.0
    np.testing.assert_array_equal(mulaw_to_float(every), reference.astype(np.float32))
    # and the load generator's encoder inverts it to within a quantisation step
    x = np.linspace(-0.9, 0.9, 1001).astype(np.float32)
    y = mulaw_to_float(mulaw_encode(x))
    assert np.max(np.abs(y - x) / np.maximum(np.abs(x), 0.01)) < 0.07


def test_l16_is_little_endian_interleaved_and_whole_samples_only():
    frames = l16_to_float(np.array([1, -2, 256, 32767], "<i2").tobytes(), channels=2)
    np.testing.assert_allclose(frames * 32768, [[1, -2], [256, 32767]])
    with pytest.raises(ValueError, match="not whole"):
        l16_to_float(b"\x00\x01\x02", 1)


def test_call_time_comes_from_media_timestamps_and_gaps_are_filled_and_counted():
    call = CallSource("c", "twilio", 8000, [CALLER])
    chunk = np.full(160, 0.5, np.float32)
    call.push(0, chunk, at=0)
    call.push(0, chunk, at=160)
    call.push(0, chunk, at=800)  # 480 samples (60 ms) lost
    assert call.ring.written == 960 and call.gaps == 1 and call.gap_samples == 480
    _, audio = call.ring.read()
    assert np.all(audio[320:800] == 0) and np.all(audio[800:] == 0.5)
    call.push(0, chunk, at=800)  # the same chunk again: dropped, counted
    call.push(0, chunk, at=964)  # 4 samples off: jitter, not a gap
    assert call.ring.written == 1120 and call.late_samples == 160 and call.gaps == 1
    assert call.status()["lost_s"] == 0.06 and call.status()["gaps"] == 1


def test_two_voices_are_aligned_and_a_silent_track_is_padded():
    call = CallSource("c", "twilio", 8000, [CALLER, AGENT])
    caller, agent = np.full(160, 0.25, np.float32), np.full(160, -0.25, np.float32)
    call.push(0, caller, at=0)
    assert call.ring.written == 0  # waits for the agent's chunk of the same moment
    call.push(1, agent, at=0)
    call.push(0, caller, at=160)
    call.push(1, agent, at=160)
    _, audio = call.ring.read()
    assert audio.shape == (320, 2) and np.all(audio[:, 0] == 0.25) and np.all(audio[:, 1] == -0.25)
    for k in range(2, 60):  # the agent's track stops; after a second it is taken as silence
        call.push(0, caller, at=k * 160)
    _, audio = call.ring.read()
    assert len(audio) >= 8000 - 320 and np.all(audio[:, 1] == 0) and np.all(audio[:, 0] == 0.25)
    call.end()
    assert call.ring.written == 60 * 160  # the tail too


def test_the_desk_analyses_the_caller_only_unless_asked_and_bounds_calls():
    desk, attached = make_desk(max_calls=2)
    source = desk.open("a", "twilio", 8000, [CALLER, AGENT])
    assert source.channels == [CALLER] and attached == [source]
    with pytest.raises(ProtocolError, match="analyze-agent"):
        desk.open("m", "fork", 8000, ["mixed"])
    with pytest.raises(ProtocolError, match="already connected"):
        desk.open("a", "twilio", 8000, [CALLER])
    desk.open("b", "twilio", 8000, [CALLER])
    with pytest.raises(ProtocolError, match="max-calls"):
        desk.open("c", "twilio", 8000, [CALLER])
    both, _ = make_desk(analyze_agent=True)
    assert both.open("a", "twilio", 8000, [CALLER, AGENT]).channels == [CALLER, AGENT]
    assert both.open("m", "fork", 8000, ["mixed"]).channels == ["mixed"]


def test_a_dropped_call_waits_for_its_reconnect_and_then_ends():
    clock = Clock()
    desk, attached = make_desk(clock=clock, resume_s=10)
    source = desk.open("a", "twilio", 8000, [CALLER])
    source.push(0, np.ones(800, np.float32), at=0)
    desk.close(source, ended=False)
    assert source.status()["state"] == "reconnecting"
    clock.now = 5
    desk.housekeeping()
    again = desk.open("a", "twilio", 8000, [CALLER])  # the same call id: the same stream, time goes on
    assert again is source and attached == [source] and source.reconnects == 1
    source.push(0, np.ones(160, np.float32), at=0)  # the new connection's media time starts at 0
    assert source.ring.written == 960 and source.gaps == 0 and source.status()["state"] == "running"
    desk.close(source, ended=False)
    clock.now = 16
    desk.housekeeping()
    assert source.input_ended and source.error == "connection lost"
    source.ring.read()
    source.figures.flushed = True
    desk.housekeeping()
    assert "a" not in desk.calls and source.status()["state"] == "finished"


def twilio_start(call_sid="CA1", tracks=("inbound",), params=None, encoding="audio/x-mulaw"):
    return json.dumps(
        {
            "event": "start",
            "start": {
                "streamSid": "MZ1",
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": params or {},
                "mediaFormat": {"encoding": encoding, "sampleRate": 8000, "channels": 1},
            },
        }
    )


def twilio_media(track, timestamp, samples):
    payload = base64.b64encode(mulaw_encode(samples)).decode()
    return json.dumps({"event": "media", "media": {"track": track, "timestamp": str(timestamp), "payload": payload}})


def test_twilio_session_opens_feeds_and_stops_a_call():
    desk, _ = make_desk()
    session = TwilioSession(desk, allow)
    for text in ('{"event":"connected","protocol":"Call"}', twilio_start(params={"agent": "Ana", "queue": "billing"})):
        session.receive(text)
    tone = np.full(160, 0.5, np.float32)
    session.receive(twilio_media("inbound", 0, tone))
    session.receive(twilio_media("outbound", 0, tone))  # the agent: received and discarded
    session.receive('{"event":"dtmf","dtmf":{"digit":"1"}}')
    session.receive(twilio_media("inbound", 40, tone))  # 20 ms lost
    assert session.ignored == 3 and session.source.ring.written == 480 and session.source.gaps == 1
    status = session.source.status()
    assert (status["stream"], status["agent"], status["queue"], status["source"]) == ("CA1", "Ana", "billing", "twilio")
    session.receive('{"event":"stop","stop":{}}')
    assert session.ended


@pytest.mark.parametrize(
    "messages, reason",
    [
        (['{"event":"media","media":{}}'], "before start"),
        ([twilio_start(encoding="audio/l16")], "unsupported media format"),
        (["[1]"], "not a JSON object"),
        (["{"], "not JSON"),
        ([twilio_start(), '{"event":"teleport"}'], "unknown event"),
        ([twilio_start(), '{"event":"media","media":{"track":"inbound","timestamp":"0","payload":"!!"}}'], "payload"),
        ([twilio_start(), twilio_start()], "second start"),
        ([twilio_start(call_sid="///")], "no usable characters"),
    ],
)
def test_twilio_session_refuses_bad_input_with_a_reason(messages, reason):
    session = TwilioSession(make_desk()[0], allow)
    with pytest.raises(ProtocolError, match=reason):
        for text in messages:
            session.receive(text)


def test_twilio_token_comes_from_the_url_or_a_custom_parameter():
    def token_ok(token):
        return token == "s3cret-token-0123456789"

    with pytest.raises(ProtocolError, match="token"):
        TwilioSession(make_desk()[0], token_ok).receive(twilio_start())
    TwilioSession(make_desk()[0], token_ok).receive(twilio_start(params={"token": "s3cret-token-0123456789"}))
    TwilioSession(make_desk()[0], token_ok, url_token="s3cret-token-0123456789").receive(twilio_start())


def test_the_load_generators_twilio_frames_are_what_the_session_reads():
    audio = np.sin(np.arange(8000) / 7).astype(np.float32) * 0.4
    call = Call("CA9", audio, audio * 0.5, agent_name="Bo")
    frames = TwilioCall(call, twilio_payloads(audio), twilio_payloads(audio * 0.5), offset=0)
    desk, _ = make_desk(analyze_agent=True)
    session = TwilioSession(desk, allow)
    for text in frames.opening + [m for k in range(50) for m in frames.media(k)] + frames.closing():
        session.receive(text)
    assert session.ended and session.source.channels == [CALLER, AGENT]
    _, got = session.source.ring.read()
    np.testing.assert_allclose(got[:, 0], audio, atol=0.02)
    np.testing.assert_allclose(got[:, 1], audio * 0.5, atol=0.02)


def test_fork_session_takes_the_caller_from_stereo_l16():
    desk, _ = make_desk()
    session = ForkSession(desk, query="rate=16000")
    session.receive_text(json.dumps({"callId": "fs-1", "mixType": "stereo", "agent": "Cy"}))
    stereo = np.stack([np.full(320, 0.5), np.full(320, -0.5)], axis=1).astype(np.float32)
    session.receive_bytes(l16_encode(stereo))
    session.receive_text('{"anything": "later"}')  # later text frames carry nothing we use
    source = session.source
    assert (source.rate, source.channels, source.stream_id) == (16000, [CALLER], "fs-1")
    _, got = source.ring.read()
    np.testing.assert_allclose(got[:, 0], 0.5, atol=1e-4)


@pytest.mark.parametrize(
    "meta, frames, reason",
    [
        ({"callId": "x", "mixType": "mixed"}, [], "analyze-agent"),
        ({"callId": "x", "sampleRate": 44100}, [], "sample rate"),
        ({"callId": "x", "mixType": "quad"}, [], "mix type"),
        ({}, [], "call id is missing"),
        ({"callId": "x", "mixType": "stereo"}, [b"\x00\x01\x02\x03\x04\x05"], "not whole"),
        (None, [b"\x00\x00"], "before the metadata"),
    ],
)
def test_fork_session_refuses_bad_input_with_a_reason(meta, frames, reason):
    session = ForkSession(make_desk()[0])
    with pytest.raises(ProtocolError, match=reason):
        if meta is not None:
            session.receive_text(json.dumps(meta))
        for frame in frames:
            session.receive_bytes(frame)


def test_audiosocket_frames_may_arrive_split_anywhere():
    desk, _ = make_desk()
    call_id = uuid.uuid4()
    audio = l16_encode(np.full(160, 0.25, np.float32))
    stream = (
        audiosocket_frame(0x01, call_id.bytes)
        + audiosocket_frame(0x10, audio)
        + audiosocket_frame(0x03, b"5")
        + audiosocket_frame(0x10, audio)
        + audiosocket_frame(0x00)
    )
    session = AudioSocketSession(desk)
    for i in range(0, len(stream), 7):  # TCP delivers what it likes
        session.receive(stream[i : i + 7])
    assert session.ended and session.ignored == 1
    assert session.source.stream_id == str(call_id) and session.source.ring.written == 320


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([audiosocket_frame(0x10, b"\x00\x00")], "before the call id"),
        ([audiosocket_frame(0x01, b"short")], "16"),
        ([audiosocket_frame(0x01, uuid.uuid4().bytes), audiosocket_frame(0x12, b"\x00\x00")], "not supported"),
        ([audiosocket_frame(0x42)], "unknown frame kind"),
    ],
)
def test_audiosocket_session_refuses_bad_input_with_a_reason(frames, reason):
    session = AudioSocketSession(make_desk()[0])
    with pytest.raises(ProtocolError, match=reason):
        session.receive(b"".join(frames))


def test_audiosocket_error_frame_ends_the_call_with_its_code():
    session = AudioSocketSession(make_desk()[0])
    session.receive(audiosocket_frame(0x01, uuid.uuid4().bytes) + audiosocket_frame(0xFF, b"\x02"))
    assert session.ended and "02" in session.error


class AngryModel:
    config = CONFIG

    def predict(self, frames, stats=None):
        return np.tile(np.eye(8, dtype=np.float32)[4], (len(frames), 1))


def test_a_finished_call_leaves_its_worker_and_its_raised_alert_is_cleared():
    out = []
    alerts = AlertEngine([parse_rule("caller:angry>=0.5 for 1s")])
    worker = AnalysisWorker(AngryModel(), out.append, poll_s=0.01, status_every_s=0.05, alerts=alerts, vad=LOUD)
    desk = CallDesk(worker.add)
    source = desk.open("call-1", "twilio", 8000, [CALLER])
    worker.start()
    try:
        tone = (0.3 * np.sin(np.arange(8000 * 5) / 3)).astype(np.float32)
        source.push(0, tone, at=0)
        desk.close(source, ended=True)
        deadline = time.monotonic() + 10
        while worker.sources and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert worker.sources == []
    events = [(m["state"], m["at"]) for m in out if m["type"] == "alert"]
    assert events[0][0] == "raised" and events[-1] == ("cleared", 5.0)
    statuses = [m["state"] for m in out if m["type"] == "status"]
    assert statuses[-1] == "finished"
    assert not any(key[1] == "call-1" for key in alerts._state)


def test_a_call_is_read_once_its_next_window_can_be_cut():
    call = CallSource("c", "twilio", 8000, [CALLER])
    analyzer = StreamAnalyzer.for_source(call, CONFIG, AnalysisSettings())
    lookahead = analyzer._resampler.lookahead  # the 2x filter's delay, in input frames
    assert analyzer.frames_wanted(call.read_block_s) == 16000 + lookahead  # the first window: 2 s
    assert analyzer.frames_wanted(0.0) == 1 and analyzer.frames_wanted(0.1) == 800
    jobs = analyzer.push(0, np.zeros((16000 + lookahead, 1), np.float32))
    assert [job.end for job in jobs] == [32000]  # exactly enough for the first window
    assert analyzer.frames_wanted(call.read_block_s) == 4000 + lookahead  # then one hop more


def test_refusals_are_logged_at_most_so_often_and_the_rest_counted():
    from streamer.calls.net.refusals import LogBudget

    clock = Clock()
    budget = LogBudget(per_minute=2, clock=clock)
    assert [budget.allow() for _ in range(5)] == [(True, 0), (True, 0), (False, 0), (False, 0), (False, 0)]
    clock.now = 61
    assert budget.allow() == (True, 3)  # the next line says how many were not logged
