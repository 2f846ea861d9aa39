"""validate_message: what the supervisor accepts from the MQTT broker."""

import json

import pytest

from streamer.core.messages import MAX_PAYLOAD_BYTES, validate_message


def scores(**over) -> dict:
    return {
        "type": "scores",
        "stream": "desk-17",
        "channel": "caller",
        "t": 1.5,
        "speech": True,
        "probs": {"angry": 0.7, "calm": 0.3},
        "rolling": {"angry": 0.6, "calm": 0.4},
        "top": "angry",
        "latency_ms": 12.5,
        "adapted": 0.0,
        **over,
    }


def status(**over) -> dict:
    return {"type": "status", "stream": "desk-17", "source": "pulse", "state": "running", "windows": 3, **over}


def check(payload, stream="desk-17", channel="caller", kind=None):
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    return validate_message(payload, stream, channel, kind)


def test_valid_messages_pass():
    assert check(scores(), kind="scores")["probs"]["angry"] == 0.7
    assert check(scores(speech=False, probs=None, rolling=None))["speech"] is False
    assert check(status(), channel=None, kind="status")["windows"] == 3
    assert check(status(state="offline", online=False), channel=None)["state"] == "offline"
    alert = {"type": "alert", "stream": "desk-17", "channel": "caller", "rule": "r", "score": 0.8, "state": "raised"}
    assert check(alert, kind="alert")["rule"] == "r"
    assert validate_message(scores())["stream"] == "desk-17"  # parsed dict, no topic


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected(constant):
    with pytest.raises(ValueError, match="not a number"):
        check(json.dumps(status()).replace('"windows": 3', f'"windows": {constant}'), channel=None)
    with pytest.raises(ValueError, match="not a number"):
        check(json.dumps(scores()).replace('"t": 1.5', f'"t": [{{"x": {constant}}}]'))
    with pytest.raises(ValueError, match="non-finite"):  # an already parsed dict with a float nan
        validate_message(scores(latency_ms=float("nan")))


def test_huge_nesting_and_oversized_payloads_are_rejected():
    with pytest.raises(ValueError, match="bytes"):
        check("[" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        check("[" * (MAX_PAYLOAD_BYTES - 1))  # within the size limit: json's RecursionError is caught
    with pytest.raises(ValueError, match="nested too deeply"):
        check(json.dumps(status(extra=json.loads("[" * 20 + "]" * 20))), channel=None)
    with pytest.raises(ValueError, match="bytes"):
        check(status(source="x" * MAX_PAYLOAD_BYTES), channel=None)
    with pytest.raises(ValueError, match="not JSON"):
        check("{")
    for garbage in (b"\xff\xfe", b"\x80{}", b""):
        with pytest.raises(ValueError):
            check(garbage)


def test_stream_and_channel_must_match_the_topic():
    with pytest.raises(ValueError, match="stream"):
        check(scores(stream="desk-18"))
    with pytest.raises(ValueError, match="channel"):
        check(scores(channel="agent"))
    with pytest.raises(ValueError, match="stream"):
        check(status(stream="x" * 129), stream=None, channel=None)
    for bad in ("", None, 5):
        with pytest.raises(ValueError, match="stream"):
            check(status(stream=bad), stream=None, channel=None)
        with pytest.raises(ValueError, match="channel"):
            check(scores(channel=bad), channel=None)
    with pytest.raises(ValueError, match="topic"):
        check(status(), channel=None, kind="scores")


@pytest.mark.parametrize(
    "probs", [{"angry": 1.5}, {"angry": -0.1}, {"rage": 0.5}, {"angry": "0.5"}, {"angry": True}, [0.5]]
)
def test_probabilities_must_be_known_emotions_in_0_1(probs):
    with pytest.raises(ValueError, match="probs"):
        check(scores(probs=probs))
    with pytest.raises(ValueError, match="rolling"):
        check(scores(rolling=probs))


def test_unknown_type_and_state_are_rejected():
    for bad in ([], "x", 3, {"type": "command", "stream": "desk-17"}, {"stream": "desk-17"}):
        with pytest.raises(ValueError, match="not a scores"):
            check(bad if isinstance(bad, dict) else json.dumps(bad))
    with pytest.raises(ValueError, match="state"):
        check(status(state="hacked"), channel=None)


def test_what_we_build_is_what_we_accept():
    """The builders and the validator share one schema: every built message validates, field for field."""
    import numpy as np

    from streamer.core.alerts import AlertEngine, parse_rule
    from streamer.core.messages import SCHEMA, scores_message, status_message

    built_scores = scores_message("desk-17", "caller", 2.5, np.full(8, 0.125), np.full(8, 0.125), 3.2, adapted=0.1)
    silence = scores_message("desk-17", "caller", 3.0, None, None, 1.0)
    assert built_scores["arousal"] == 0.5 and silence["arousal"] is None  # 4 high-arousal emotions x 0.125
    with pytest.raises(ValueError, match="arousal"):
        validate_message(json.dumps(dict(built_scores, arousal=1.5)))
    # `confident`: does the top's rolling probability reach the model's threshold? None without speech.
    assert built_scores["confident"] is True and silence["confident"] is None
    rolling = np.array([0.3, 0.1, 0.1, 0.1, 0.2, 0.1, 0.05, 0.05])
    assert scores_message("d", "caller", 1.0, rolling, rolling, 1.0, confident_at=0.35)["confident"] is False
    assert scores_message("d", "caller", 1.0, rolling, rolling, 1.0, confident_at=0.3)["confident"] is True
    with pytest.raises(ValueError, match="confident"):
        validate_message(json.dumps(dict(built_scores, confident="yes")))
    built_status = status_message(
        "desk-17", "pulse", "running", 0, 4, lost_s=0.0, channels=["caller"], latency_ms=None, reconnects=0,
        error=None, errors=1, last_error="RuntimeError: x", adaptation=0.25,
    )  # fmt: skip
    engine = AlertEngine([parse_rule("caller:angry>=0.5")])
    angry = dict(built_scores, rolling={**built_scores["rolling"], "angry": 0.9})
    [alert] = engine.evaluate(angry)
    for message in (built_scores, silence, built_status, alert):
        assert set(message) <= set(SCHEMA[message["type"]])
        assert validate_message(json.dumps(message)) == message
    with pytest.raises(ValueError, match="no field 'mood'"):
        status_message("desk-17", "pulse", "running", 0, 4, mood="sunny")


def test_undeclared_fields_are_dropped_not_forwarded():
    checked = check(scores(script="<img onerror=alert(1)>", nested={"a": 1}))
    assert "script" not in checked and "nested" not in checked and checked["top"] == "angry"
    for field, bad in (("t", "soon"), ("speech", "yes"), ("top", "rage"), ("adapted", 2.0), ("latency_ms", True)):
        with pytest.raises(ValueError, match=field):
            check(scores(**{field: bad}))
    for field, bad in (("windows", -1), ("windows", 1.5), ("channels", ["a", ""]), ("source", "x" * 2000)):
        with pytest.raises(ValueError, match=field):
            check(status(**{field: bad}), channel=None)
    with pytest.raises(ValueError, match="state"):
        check({"type": "alert", "stream": "desk-17", "channel": "caller", "rule": "r", "state": "exploded"})
    with pytest.raises(ValueError, match="speech is missing"):
        check({k: v for k, v in scores().items() if k != "speech"})
