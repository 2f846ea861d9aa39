"""MQTT against a real Mosquitto broker: topic contract, outage, Last Will, aggregation."""

import json
import signal
import time
import urllib.request

import numpy as np
import pytest
from conftest import MqttRecorder, read_messages, write_audio

RULE = "angry>=0.15 for 1s severity high"  # the clip is angry: its rolling angry share passes this


@pytest.fixture
def long_call(tmp_path, speech_audio):
    """A minute of the angry clip, so an analyzer stays busy while the test works."""
    return write_audio(tmp_path / "long-call.wav", np.tile(speech_audio, 15), 16000)


def test_topic_qos_and_retain_contract(mosquitto, start_analyzer, speech_file):
    recorder = MqttRecorder(mosquitto.port)
    stream = speech_file.stem
    try:
        analyzer = start_analyzer(["--input", str(speech_file), "--mqtt", mosquitto.url, "--alert", RULE])
        alert = recorder.wait_for(lambda m: m[0].endswith("/alert"))[0]
        assert alert[0] == f"emotion/default/{stream}/mono/alert"  # <prefix>/<queue>/<stream>/<channel>/<kind>
        assert (alert[2], alert[3]) == (1, False)  # QoS 1, not retained
        assert {"rule", "stream", "channel", "emotion", "score", "since", "at", "severity", "state"} <= set(alert[1])
        assert (alert[1]["rule"], alert[1]["state"], alert[1]["severity"]) == (RULE, "raised", "high")

        scores = recorder.wait_for(lambda m: m[0].endswith("/scores"))
        assert scores[0][0] == f"emotion/default/{stream}/mono/scores" and scores[0][2:] == (0, False)
        assert scores[0][1]["type"] == "scores"
        status = recorder.wait_for(lambda m: m[0] == f"emotion/default/{stream}/status")
        assert status[0][1]["online"] is True and status[0][2] == 1 and status[0][1]["queue"] == "default"

        recorder.wait_for(lambda m: m[0] == f"emotion/default/{stream}/status" and m[1]["state"] == "finished")
        # Rate limit: at most about one scores message per second per channel.
        n_scores = len([m for m in recorder.messages if m[0].endswith("/scores")])
        assert 1 <= n_scores <= 4 + 1
        # A latecomer gets the status as a retained message.
        late = MqttRecorder(mosquitto.port, topic="emotion/+/+/status")
        try:
            retained = late.wait_for(lambda m: True)[0]
            assert retained[3] is True and retained[1]["stream"] == stream
        finally:
            late.close()
        assert analyzer.stop() == 0
        final = recorder.wait_for(lambda m: m[0].endswith("/status") and m[1] and m[1]["online"] is False)[-1]
        assert final[1]["state"] == "finished"  # a clean exit says what happened, not "offline"
    finally:
        recorder.close()


def test_alert_raised_while_broker_is_down_arrives_after_restart(mosquitto, start_analyzer, speech_file):
    recorder = MqttRecorder(mosquitto.port, topic="emotion/+/+/+/alert", client_id="supervisor-pager", clean=False)
    time.sleep(0.5)  # the persistent subscription is in place
    mosquitto.stop()
    try:
        analyzer = start_analyzer(["--input", str(speech_file), "--mqtt", mosquitto.url, "--alert", RULE])
        # The alert is raised (the dashboard shows it) while no broker is listening.
        seen = read_messages(analyzer.ws_url, lambda ms: any(m["type"] == "alert" for m in ms), timeout=30)
        assert any(m["type"] == "alert" for m in seen)
        assert not recorder.messages
        assert analyzer.proc.poll() is None  # the analysis went on
        mosquitto.start()
        alert = recorder.wait_for(lambda m: m[0].endswith("/alert"), timeout=60)[0]
        assert alert[1]["rule"] == RULE and alert[1]["state"] == "raised"
        assert "unreachable" in analyzer.output() and "Traceback" not in analyzer.output()
    finally:
        recorder.close()


def test_last_will_marks_a_killed_analyzer_offline(mosquitto, start_analyzer, long_call):
    recorder = MqttRecorder(mosquitto.port, topic="emotion/+/+/status")
    try:
        analyzer = start_analyzer(["--input", str(long_call), "--mqtt", mosquitto.url])
        recorder.wait_for(lambda m: m[1]["online"] is True)
        analyzer.proc.send_signal(signal.SIGKILL)
        analyzer.proc.wait(10)
        will = recorder.wait_for(lambda m: m[1]["online"] is False, timeout=30)[0]
        assert will[0] == "emotion/default/long-call/status"
        assert (will[1]["state"], will[1]["queue"]) == ("offline", "default")
    finally:
        recorder.close()


def test_supervisor_dashboard_aggregates_two_analyzers(mosquitto, start_analyzer, long_call, data_dir):
    dashboard = start_analyzer(["--serve", "--mqtt", mosquitto.url])
    other = data_dir / "ravdess" / "Actor_02" / "03-01-04-02-01-01-02.flac"
    start_analyzer(["--input", str(long_call), "--mqtt", mosquitto.url, "--alert", RULE])
    start_analyzer(["--input", str(other), "--mqtt", mosquitto.url])
    streams = {"long-call", other.stem}

    def seen(ms):
        return {m["stream"] for m in ms if m["type"] == "scores" and m["speech"]} >= streams and any(
            m["type"] == "alert" for m in ms
        )

    messages = read_messages(dashboard.ws_url, seen, timeout=60)
    assert seen(messages), {(m["type"], m["stream"]) for m in messages}
    speech = [m for m in messages if m["type"] == "scores" and m["speech"] and m["rolling"]]
    high = ("angry", "fearful", "happy", "surprised")
    assert all(m["arousal"] == pytest.approx(sum(m["rolling"][e] for e in high), abs=1e-3) for m in speech)
    status = json.loads(urllib.request.urlopen(dashboard.url + "/api/status").read())
    assert {s["stream"] for s in status["streams"]} >= streams
    assert dashboard.stop() == 0


def test_supervisor_drops_poison_payloads_and_keeps_going(mosquitto, start_analyzer):
    import paho.mqtt.client as paho

    dashboard = start_analyzer(["--serve", "--mqtt", mosquitto.url])
    deadline = time.monotonic() + 30
    while "subscribed to" not in dashboard.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "subscribed to" in dashboard.output()

    def status(stream: str, windows: str = "3") -> str:
        return (
            f'{{"type":"status","stream":"{stream}","source":"x","state":"running",'
            f'"overruns":0,"windows":{windows},"online":true}}'
        )

    poison = [
        ("emotion/deep/status", "[" * 100_000),
        ("emotion/nan-stream/status", status("nan-stream", "NaN")),
        ("emotion/forger/status", status("victim")),  # a publisher speaking for another stream
    ]
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    try:
        for topic, payload in [*poison, ("emotion/good-stream/status", status("good-stream"))]:
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()

    messages = read_messages(dashboard.ws_url, lambda ms: any(m["stream"] == "good-stream" for m in ms), timeout=30)
    assert any(m["stream"] == "good-stream" for m in messages)
    assert not {m["stream"] for m in messages} & {"deep", "nan-stream", "victim", "forger"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status_json = json.loads(urllib.request.urlopen(dashboard.url + "/api/status").read())
        if status_json["hub"]["mqtt_invalid"] >= len(poison):
            break
        time.sleep(0.05)
    assert status_json["hub"]["mqtt_invalid"] == len(poison)
    assert {s["stream"] for s in status_json["streams"]} == {"good-stream"}
    assert "dropped an invalid message" in dashboard.output() and "Traceback" not in dashboard.output()
    assert dashboard.stop() == 0


def test_password_from_a_file_connects_and_is_never_printed(tmp_path, start_analyzer, speech_file):
    """A broker that requires a login: the password comes from a file, and no output ever shows it."""
    import subprocess

    from conftest import Mosquitto

    secret = "pa55-word-never-printed"
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "analyzer", secret], check=True, timeout=30)
    broker = Mosquitto(tmp_path, extra=f"allow_anonymous false\npassword_file {passwords}\n")
    try:
        secret_file = tmp_path / "mqtt-password"
        secret_file.write_text(secret + "\n")
        url = f"mqtt://analyzer@127.0.0.1:{broker.port}"
        good = start_analyzer(["--input", str(speech_file), "--mqtt", url, "--mqtt-password-file", str(secret_file)])
        deadline = time.monotonic() + 20
        while "connected to MQTT broker" not in good.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "connected to MQTT broker" in good.output()
        # A wrong password in the URL: refused by the broker, warned about, and still never printed.
        wrong = start_analyzer(
            ["--input", str(speech_file), "--mqtt", f"mqtt://analyzer:{secret}x@127.0.0.1:{broker.port}"]
        )
        deadline = time.monotonic() + 20
        while "unreachable" not in wrong.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "unreachable" in wrong.output() and "visible to every user" in wrong.output()
        for analyzer in (good, wrong):
            assert analyzer.stop() == 0
            assert secret not in analyzer.output()
    finally:
        broker.stop()


def test_two_dashboards_on_one_broker_do_not_evict_each_other(mosquitto):
    """Each connection has its own client id (pid alone is 1 in every container)."""
    import asyncio

    import paho.mqtt.client as paho

    from streamer.outputs.mqtt.broker import parse_broker_url
    from streamer.outputs.mqtt.subscriber import subscribe

    async def main():
        stop = asyncio.Event()
        got: list[list[dict]] = [[], []]
        tasks = [
            asyncio.create_task(subscribe(parse_broker_url(mosquitto.url), "emotion", got[i].append, stop))
            for i in range(2)
        ]
        await asyncio.sleep(1.0)
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        for n in range(5):
            status = {"type": "status", "stream": "desk-1", "state": "running", "windows": n}
            publisher.publish("emotion/desk-1/status", json.dumps(status), qos=1).wait_for_publish(5)
            await asyncio.sleep(0.2)
        publisher.loop_stop()
        publisher.disconnect()
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return got

    got = asyncio.run(main())
    assert [[m["windows"] for m in g] for g in got] == [[0, 1, 2, 3, 4]] * 2
