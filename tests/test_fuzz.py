"""Property tests (hypothesis, bounded and reproducible): whatever arrives from outside ends in a
result or a clear error, within a time bound — the MQTT message validator, the alert-rule parser
(command line and TOML) and the audio decoder fed mutated WAV/FLAC/Ogg headers."""

from __future__ import annotations

import io
import json
import signal
import time
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.analysis.decode import AudioError, load_audio
from streamer.core.alerts import AlertRule, RuleError, load_rules, parse_rule
from streamer.core.labels import EMOTIONS
from streamer.core.messages import scores_message, status_message, validate_message

BOUNDED = settings(
    max_examples=300,
    deadline=2000,  # ms per example
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) if the body takes longer; main thread only."""

    def expire(signum, frame):
        raise TimeoutError(f"took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the MQTT message validator ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def valid_messages() -> list[dict]:
    probs = np.full(len(EMOTIONS), 1 / len(EMOTIONS))
    return [
        scores_message("desk-1", "caller", 2.5, probs, probs, 3.0, adapted=0.2),
        scores_message("desk-1", "caller", 3.0, None, None, 1.0),
        status_message("desk-1", "pulse", "running", 0, 4, channels=["caller"], errors=0),
        {"type": "alert", "stream": "desk-1", "channel": "caller", "rule": "r", "score": 0.7, "state": "raised"},
    ]


def accepts_or_refuses(payload, **topic) -> None:
    try:
        result = validate_message(payload, **topic)
    except ValueError:
        return
    assert isinstance(result, dict)
    json.dumps(result, allow_nan=False)  # whatever passes is strict JSON a browser can parse


@BOUNDED
@given(st.binary(max_size=2000))
def test_validator_on_arbitrary_bytes(payload):
    accepts_or_refuses(payload, stream="desk-1", channel="caller")


@BOUNDED
@given(json_values)
def test_validator_on_arbitrary_json_values(value):
    accepts_or_refuses(value)
    try:
        text = json.dumps(value)
    except ValueError:
        return
    accepts_or_refuses(text, stream="desk-1")


@BOUNDED
@given(st.sampled_from(valid_messages()), st.text(max_size=12), json_values)
def test_validator_on_mutated_valid_messages(message, field, value):
    mutated = {**message, field: value}
    accepts_or_refuses(mutated, stream="desk-1", channel="caller" if message["type"] != "status" else None)
    accepts_or_refuses(json.dumps(mutated, allow_nan=True).encode(), stream="desk-1")


# -- the alert-rule parser ------------------------------------------------------------------

rule_words = st.sampled_from(
    [*EMOTIONS, "negative", "caller:", "agent:", ">=", "0.6", "1e9", "-1", "nan", "for", "5s", "cooldown", "severity",
     "high", "angry+sad", " ", ":", "s", "10", "inf", "0"]
)  # fmt: skip


@BOUNDED
@given(st.one_of(st.text(max_size=60), st.lists(rule_words, max_size=10).map("".join)))
def test_rule_parser_on_arbitrary_text(text):
    try:
        rule = parse_rule(text)
    except RuleError:
        return
    assert isinstance(rule, AlertRule) and 0 < rule.threshold <= 1 and rule.hold_s >= 0


@BOUNDED
@given(
    st.sampled_from(EMOTIONS),
    st.floats(0.001, 1),  # a threshold of 0 would always fire: refused
    st.floats(0, 600),
    st.sampled_from(["info", "warning", "high", "critical"]),
)
def test_valid_rules_parse_to_what_they_say(emotion, threshold, hold, severity):
    rule = parse_rule(f"caller:{emotion}>={threshold:.3f} for {hold:.1f}s severity {severity}")
    assert (rule.channel, rule.members, rule.severity) == ("caller", (emotion,), severity)
    assert rule.threshold == pytest.approx(round(threshold, 3)) and rule.hold_s == pytest.approx(round(hold, 1))


@BOUNDED
@given(st.text(max_size=300))
def test_rule_files_on_arbitrary_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("rules") / "rules.toml"
    path.write_text(text)
    try:
        rules = load_rules(path)
    except RuleError:
        return
    assert all(isinstance(r, AlertRule) for r in rules)


# -- the decoder, on mutated headers -------------------------------------------------------


def encoded(fmt: str, subtype: str | None = None) -> bytes:
    audio = (0.2 * np.sin(np.arange(8000) / 7)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, 8000, format=fmt, subtype=subtype)
    return buffer.getvalue()


SAMPLES = {"wav": encoded("WAV", "PCM_16"), "flac": encoded("FLAC"), "ogg": encoded("OGG", "VORBIS")}


def decodes_or_refuses(data: bytes) -> None:
    start = time.monotonic()
    with time_limit(5):
        try:
            audio = load_audio(io.BytesIO(data), 16000, max_seconds=60)
        except AudioError as exc:
            assert str(exc)  # a readable reason
        else:
            assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
            assert audio.size <= 60 * 16000
    assert time.monotonic() - start < 5


@BOUNDED
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.lists(st.tuples(st.integers(0, 99), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_decoder_on_mutated_headers(kind, changes):
    data = bytearray(SAMPLES[kind])
    for position, value in changes:
        data[position] = value
    decodes_or_refuses(bytes(data))


@BOUNDED
@given(st.sampled_from(sorted(SAMPLES)), st.integers(0, 400))
def test_decoder_on_truncated_files(kind, length):
    decodes_or_refuses(SAMPLES[kind][:length])


@BOUNDED
@given(
    st.sampled_from([2**32 - 1, 0, 1, 7, 96000, 400_000, 2**31]),
    st.sampled_from([0, 1, 2, 33, 255, 65535]),
    st.sampled_from([0, 8, 16, 24, 32, 64, 65535]),
)
def test_decoder_on_implausible_wav_fields(rate, channels, bits):
    """The fmt chunk's sample rate (bytes 24-27), channel count (22-23) and bit depth (34-35) set wild."""
    data = bytearray(SAMPLES["wav"])
    data[22:24] = channels.to_bytes(2, "little")
    data[24:28] = rate.to_bytes(4, "little")
    data[34:36] = bits.to_bytes(2, "little")
    decodes_or_refuses(bytes(data))


# -- the call protocols ---------------------------------------------------------------------


def _desk():
    from streamer.calls.desk import CallDesk

    return CallDesk(lambda source: None, analyze_agent=True)


def _twilio_script() -> list[str]:
    from tools.loadgen import Call, TwilioCall, twilio_payloads

    audio = (0.3 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    frames = TwilioCall(Call("CA1", audio, audio), twilio_payloads(audio), twilio_payloads(audio), 0, token="t")
    return frames.opening + [m for k in range(3) for m in frames.media(k)] + frames.closing()


def _mutate_json(text: str, data) -> str:
    """A valid message with one value replaced by an arbitrary JSON value, somewhere in its tree."""
    message = json.loads(text)
    node = message
    while True:
        keys = list(node) if isinstance(node, dict) else []
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if isinstance(node[key], dict) and data.draw(st.booleans()):
            node = node[key]
            continue
        node[key] = data.draw(json_values)
        break
    return json.dumps(message)


@BOUNDED
@given(st.data())
def test_twilio_session_ends_every_message_in_a_result_or_a_protocol_error(data):
    from streamer.calls.sessions.base import ProtocolError
    from streamer.calls.sessions.twilio import TwilioSession

    script = _twilio_script()
    position = data.draw(st.integers(0, len(script) - 1))
    how = data.draw(st.sampled_from(["mutate", "bytes", "drop"]))
    if how == "mutate":
        script[position] = _mutate_json(script[position], data)
    elif how == "bytes":
        script[position] = data.draw(st.binary(max_size=300))
    else:
        del script[position]
    session = TwilioSession(_desk(), lambda token: True)
    with time_limit(5):
        try:
            for message in script:
                session.receive(message)
        except ProtocolError as exc:
            assert str(exc).startswith(("twilio: ", "call ")) and "\n" not in str(exc)


@BOUNDED
@given(meta=json_values, frames=st.lists(st.binary(max_size=64), max_size=5), query=st.text(max_size=30))
def test_fork_session_ends_any_input_in_a_result_or_a_protocol_error(meta, frames, query):
    from streamer.calls.sessions.base import ProtocolError
    from streamer.calls.sessions.fork import ForkSession

    session = ForkSession(_desk(), query=query)
    with time_limit(5):
        try:
            session.receive_text(json.dumps(meta))
            for frame in frames:
                session.receive_bytes(frame)
        except ProtocolError as exc:
            assert str(exc).startswith(("fork", "call ")) and "\n" not in str(exc)


@BOUNDED
@given(st.data())
def test_audiosocket_session_ends_any_byte_stream_in_a_result_or_a_protocol_error(data):
    import uuid

    from streamer.calls.sessions.audiosocket import AudioSocketSession
    from streamer.calls.sessions.base import ProtocolError
    from tools.loadgen import audiosocket_frame

    valid = audiosocket_frame(0x01, uuid.UUID(int=7).bytes) + audiosocket_frame(0x10, b"\x01\x00" * 160)
    stream = bytearray(valid + audiosocket_frame(0x00))
    for _ in range(data.draw(st.integers(1, 4))):  # flip bytes of the headers and payloads
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] = data.draw(st.integers(0, 255))
    stream += data.draw(st.binary(max_size=40))
    cut = data.draw(st.integers(1, 64))
    session = AudioSocketSession(_desk())
    with time_limit(5):
        try:
            for i in range(0, len(stream), cut):
                session.receive(bytes(stream[i : i + cut]))
        except ProtocolError as exc:
            assert str(exc).startswith(("audiosocket", "call ")) and "\n" not in str(exc)
