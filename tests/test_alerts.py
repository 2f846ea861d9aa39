"""Alert rules: parsing (clear errors naming the rule) and evaluation over stream time."""

import pytest

from streamer.core.alerts import AlertEngine, RuleError, load_rules, parse_rule
from streamer.core.labels import EMOTIONS
from streamer.core.messages import mqtt_topic, validate_message
from streamer.outputs.mqtt.broker import parse_broker_url


def rolling(**scores) -> dict:
    rest = (1.0 - sum(scores.values())) / (len(EMOTIONS) - len(scores))
    return {e: scores.get(e, rest) for e in EMOTIONS}


def msg(t: float, channel: str = "caller", stream: str = "desk", **scores) -> dict:
    return {
        "type": "scores",
        "stream": stream,
        "channel": channel,
        "t": t,
        "speech": bool(scores),
        "rolling": rolling(**scores) if scores else None,
    }


def test_parse_command_line_rules():
    r = parse_rule("caller:angry>=0.6 for 5s")
    assert (r.channel, r.emotion, r.members, r.threshold, r.hold_s, r.severity) == (
        "caller",
        "angry",
        ("angry",),
        0.6,
        5.0,
        "warning",
    )
    g = parse_rule("negative>=0.7 for 10s cooldown 60s severity high")
    assert g.members == ("angry", "disgust", "fearful", "sad") and g.cooldown_s == 60 and g.severity == "high"
    assert parse_rule("angry+disgust>=0.5").members == ("angry", "disgust")
    a = parse_rule("caller:arousal>=0.7 for 10s")
    assert (a.emotion, a.members) == ("arousal", ("angry", "fearful", "happy", "surprised"))


def test_an_arousal_rule_sums_the_excited_emotions():
    engine = AlertEngine([parse_rule("caller:arousal>=0.7 for 1s")])
    events = []
    for t in (1.0, 1.5, 2.0):  # no single emotion reaches 0.7; the four together do (0.76)
        events += engine.evaluate(msg(t, angry=0.3, happy=0.2, fearful=0.16, surprised=0.1))
    (raised,) = events
    assert raised["emotion"] == "arousal" and raised["score"] == pytest.approx(0.76) and raised["at"] == 2.0
    (cleared,) = engine.evaluate(msg(2.5, neutral=0.5, calm=0.3))  # calm speech: arousal 0.13
    assert cleared["state"] == "cleared" and cleared["score"] == pytest.approx(4 * 0.2 / 6, abs=1e-4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("joy>=0.5", "unknown emotion or group 'joy'"),
        ("angry>0.5", "expected"),
        ("angry>=1.5", "threshold must be in"),
        ("angry>=0.5 severity meh", "severity must be one of"),
    ],
)
def test_invalid_rules_name_the_rule(text, message):
    with pytest.raises(RuleError, match=message) as info:
        parse_rule(text)
    assert f"'{text}'" in str(info.value)


def test_rules_from_toml(tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[groups]\nupset = ["angry", "disgust"]\n\n'
        '[[rule]]\nname = "upset caller"\nemotion = "upset"\nthreshold = 0.6\nfor_s = 10\nchannel = "caller"\n'
        'severity = "high"\ncooldown_s = 120\n\n'
        '[[rule]]\nname = "sad"\nemotion = "sad"\nthreshold = 0.5\n'
    )
    upset, sad = load_rules(path)
    assert (upset.name, upset.members, upset.hold_s, upset.channel, upset.cooldown_s) == (
        "upset caller",
        ("angry", "disgust"),
        10.0,
        "caller",
        120.0,
    )
    assert sad.channel is None
    path.write_text('[[rule]]\nname = "bad one"\nemotion = "rage"\nthreshold = 0.5\n')
    with pytest.raises(RuleError, match="rule 'bad one': unknown emotion"):
        load_rules(path)
    path.write_text('[[rule]]\nname = "typo"\nemotion = "sad"\nthreshold = 0.5\nfor = 3\n')
    with pytest.raises(RuleError, match="rule 'typo': unknown key for"):
        load_rules(path)
    path.write_text("[[rule]\n")
    with pytest.raises(RuleError, match="alert file"):
        load_rules(path)


def test_raise_after_hold_then_clear_with_hysteresis():
    engine = AlertEngine([parse_rule("caller:angry>=0.6 for 2s")])
    events = []
    for t, angry in [(1.0, 0.7), (2.0, 0.7), (2.5, 0.65), (3.0, 0.62), (3.5, 0.57), (4.0, 0.5)]:
        events += engine.evaluate(msg(t, angry=angry))
    raised, cleared = events
    assert raised == {
        "type": "alert",
        "rule": "caller:angry>=0.6 for 2s",
        "stream": "desk",
        "channel": "caller",
        "emotion": "angry",
        "score": 0.62,
        "since": 1.0,
        "at": 3.0,
        "severity": "warning",
        "state": "raised",
    }
    # 0.57 is within the 0.05 hysteresis: still raised; 0.5 clears.
    assert (cleared["state"], cleared["at"]) == ("cleared", 4.0)


def test_interrupted_condition_restarts_the_hold():
    engine = AlertEngine([parse_rule("angry>=0.6 for 2s")])
    seq = [(1.0, 0.7), (2.0, 0.3), (2.5, 0.7), (4.0, 0.7), (4.5, 0.7)]
    events = [e for t, a in seq for e in engine.evaluate(msg(t, angry=a))]
    assert [(e["state"], e["since"], e["at"]) for e in events] == [("raised", 2.5, 4.5)]


def test_cooldown_and_silence():
    engine = AlertEngine([parse_rule("angry>=0.6 cooldown 10s")])
    events = []
    for t, angry in [(1, 0.7), (2, None), (3, 0.7), (12, 0.7)]:
        events += engine.evaluate(msg(t) if angry is None else msg(t, angry=angry))
    # Raised at 1, cleared by silence at 2, cooling down at 3, raised again at 12.
    assert [(e["state"], e["at"]) for e in events] == [("raised", 1), ("cleared", 2), ("raised", 12)]


def test_channel_filter_groups_and_independent_streams():
    engine = AlertEngine([parse_rule("caller:negative>=0.8")])
    assert engine.evaluate(msg(1, channel="agent", angry=0.5, sad=0.4)) == []
    assert engine.evaluate(msg(1, channel="caller", stream="a", angry=0.5, sad=0.4))[0]["score"] == pytest.approx(
        0.9 + 2 * 0.1 / 6, abs=1e-4
    )
    assert len(engine.evaluate(msg(1, channel="caller", stream="b", angry=0.5, sad=0.4))) == 1
    assert engine.evaluate({"type": "status", "stream": "a"}) == []


def test_broker_urls():
    b = parse_broker_url("mqtts://user:p%40ss@broker.example:8884")
    assert (b.hostname, b.port, b.username, b.password, b.tls) == ("broker.example", 8884, "user", "p@ss", True)
    assert parse_broker_url("mqtt://localhost").port == 1883
    assert parse_broker_url("mqtts://localhost").port == 8883
    for bad in ("http://x", "mqtt://", "mqtt://h:notaport"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


def test_topics_and_validation():
    assert mqtt_topic("emotion", "sales", msg(1)) == "emotion/sales/desk/caller/scores"
    assert mqtt_topic("e", "q", {"type": "status", "stream": "desk"}) == "e/q/desk/status"
    assert mqtt_topic("e", "q", {"type": "alert", "stream": "s", "channel": "c"}) == "e/q/s/c/alert"
    assert validate_message(msg(1))["stream"] == "desk"
    for bad in ([], {"type": "x", "stream": "s"}, {"type": "scores", "stream": ""}, {"type": "alert", "stream": "s"}):
        with pytest.raises(ValueError):
            validate_message(bad)
