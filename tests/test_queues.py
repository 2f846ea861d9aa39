"""Per-queue supervision: the queue as a topic level, both topic layouts read, a supervisor of some queues only.

Topics are ``<prefix>/<queue>/<stream>/<channel>/scores|alert`` and
``<prefix>/<queue>/<stream>/status``; supervisors without ``--queue`` also
read the layout before queues (``<prefix>/<stream>/…``) during an upgrade.
"""

import asyncio
import json
import logging
import time
import urllib.request
import uuid
from types import SimpleNamespace

import numpy as np
import paho.mqtt.client as paho
import pytest
from conftest import MqttRecorder, read_messages, write_audio

from streamer.analysis.decode import load_audio
from streamer.app import cli
from streamer.app.application import Application
from streamer.calls.desk import CallDesk
from streamer.calls.sessions.fork import ForkSession
from streamer.core.messages import status_message, valid_queue, validate_message
from streamer.outputs.mqtt.broker import parse_broker_url
from streamer.outputs.mqtt.publisher import StreamPublisher
from streamer.outputs.mqtt.subscriber import SubscriberStats, subscribe, topic_filters, topic_parts
from tools import loadgen

# -- topics, filters and names, without a broker --


def test_topics_of_both_layouts_are_told_apart_by_their_depth():
    assert topic_parts("emotion", "emotion/sales/desk-1/caller/scores") == ("sales", "desk-1", "caller", "scores")
    assert topic_parts("emotion", "emotion/sales/desk-1/caller/alert") == ("sales", "desk-1", "caller", "alert")
    assert topic_parts("emotion", "emotion/sales/desk-1/status") == ("sales", "desk-1", None, "status")
    # the layout before queues: no queue
    assert topic_parts("emotion", "emotion/desk-1/caller/scores") == (None, "desk-1", "caller", "scores")
    assert topic_parts("emotion", "emotion/desk-1/caller/alert") == (None, "desk-1", "caller", "alert")
    assert topic_parts("emotion", "emotion/desk-1/status") == (None, "desk-1", None, "status")
    # a prefix of several levels; a stream or channel named like a kind
    assert topic_parts("site/emotion", "site/emotion/q/status/status") == ("q", "status", None, "status")
    assert topic_parts("e", "e/q/s/status/scores") == ("q", "s", "status", "scores")
    for bad in (
        "emotion/status",
        "emotion/a/b/c/status",
        "emotion/q/s/c/x/scores",
        "emotion/s/scores",
        "emotion/q/s/c/other",
        "other/q/s/status",
        "emotion",
    ):
        with pytest.raises(ValueError):
            topic_parts("emotion", bad)


def test_the_filters_of_both_layouts_are_disjoint_and_the_old_layout_is_subscribed_first():
    topics = {
        "e/q/s/c/scores": "new",
        "e/q/s/c/alert": "new",
        "e/q/s/status": "new",
        "e/s/c/scores": "old",
        "e/s/c/alert": "old",
        "e/s/status": "old",
    }
    every = topic_filters("e")
    assert [f for f, _ in every[:3]] == ["e/+/+/scores", "e/+/+/alert", "e/+/status"]  # old first (retained order)
    for topic in topics:  # each topic matches exactly one filter: no message arrives twice
        assert sum(paho.topic_matches_sub(f, topic) for f, _ in every) == 1, topic
    assert dict(every) == {
        "e/+/+/scores": 0,
        "e/+/+/alert": 1,
        "e/+/status": 1,
        "e/+/+/+/scores": 0,
        "e/+/+/+/alert": 1,
        "e/+/+/status": 1,
    }
    some = topic_filters("e", ["sales", "billing", "sales"])
    assert [f for f, _ in some] == [
        "e/sales/+/+/scores",
        "e/sales/+/+/alert",
        "e/sales/+/status",
        "e/billing/+/+/scores",
        "e/billing/+/+/alert",
        "e/billing/+/status",
    ]
    assert not any(paho.topic_matches_sub(f, t) for f, _ in some for t, layout in topics.items() if layout == "old")
    assert not any(paho.topic_matches_sub(f, "e/support/s/c/scores") for f, _ in some)


def test_queue_names_are_single_topic_levels(capsys):
    assert all(map(valid_queue, ["sales", "Sales-EU", "billing_2", "ventes-é", "q" * 128]))
    assert not any(map(valid_queue, ["", "a/b", "a+", "#", "Sales EU", "tab\t", "nul\0", "q" * 129, None, 3]))
    mqtt = ["--mqtt", "mqtt://127.0.0.1:1883"]
    settings = cli.parse_args(["--serve", *mqtt, "--queue", "sales", "--queue", "billing"])
    assert (settings.queues, settings.default_queue) == (("sales", "billing"), "default")
    assert cli.parse_args(["--default-queue", "support"]).default_queue == "support"
    for argv, option in [
        (["--queue", "sales"], "--queue"),  # no --serve --mqtt: nothing to choose from
        (["--serve", "--queue", "sales"], "--queue"),
        (["--serve", *mqtt, "--queue", "a/b"], "--queue"),
        (["--serve", *mqtt, "--queue", ""], "--queue"),
        (["--default-queue", "x+y"], "--default-queue"),
        (["--default-queue", "two words"], "--default-queue"),
    ]:
        with pytest.raises(SystemExit):
            cli.parse_args(argv)
        err = capsys.readouterr().err
        assert option in err and len(err.strip().splitlines()) == 1, err


def test_a_status_may_not_claim_another_queue_than_its_topic():
    status = {**status_message("desk-1", "device", "running", 0, 0), "queue": "billing"}
    with pytest.raises(ValueError, match="queue"):
        validate_message(json.dumps(status), "desk-1", None, "status", "sales")
    assert validate_message(json.dumps(status), "desk-1", None, "status", "billing")["queue"] == "billing"
    # without a queue field (an older analyzer's free text, or none) it is the topic's business
    plain = status_message("desk-1", "device", "running", 0, 0)
    assert "queue" not in validate_message(json.dumps(plain), "desk-1", None, "status", "sales")
    legacy = {**plain, "queue": "Sales EU"}  # free text from before queues were topic levels: still valid
    assert validate_message(json.dumps(legacy), "desk-1", None, "status")["queue"] == "Sales EU"


def test_a_fork_call_takes_its_queue_from_the_metadata_or_else_the_url():
    session = ForkSession(CallDesk(lambda call: None), query="queue=sales")
    session.receive_text(json.dumps({"callId": "fs-1"}))
    assert session.source.queue == "sales"
    session = ForkSession(CallDesk(lambda call: None), query="queue=sales")
    session.receive_text(json.dumps({"callId": "fs-2", "queue": "billing"}))
    assert session.source.queue == "billing"  # the call's own metadata wins over the dialplan's URL
    session = ForkSession(CallDesk(lambda call: None))
    session.receive_text(json.dumps({"callId": "fs-3"}))
    assert session.source.queue is None  # the analyzer's --default-queue then


def test_a_calls_queue_that_is_no_topic_level_goes_to_the_default_queue_logged_once(caplog):
    calls = {f"CA{i}": SimpleNamespace(queue="Sales EU") for i in range(3)}
    calls["CA-sales"] = SimpleNamespace(queue="sales")
    calls["CA-none"] = SimpleNamespace(queue=None)
    app = SimpleNamespace(desk=SimpleNamespace(calls=calls), settings=SimpleNamespace(default_queue="floor"))
    app.queues_invalid = 0
    with caplog.at_level(logging.WARNING, logger="streamer.app.application"):
        assert [Application.queue_of(app, f"CA{i}") for i in range(3)] == ["floor"] * 3
        assert Application.queue_of(app, "CA-sales") == "sales"
        assert Application.queue_of(app, "CA-none") == "floor"
        assert Application.queue_of(app, "desk-17") == "floor"  # a device: not a call
    assert app.queues_invalid == 3
    assert len(caplog.records) == 1 and "'Sales EU'" in caplog.records[0].getMessage()


# -- against a real Mosquitto broker --


def publish(port: int, messages: list[tuple[str, str | bytes, bool]]) -> None:
    """(topic, payload, retain) each, QoS 1, by a plain client: an analyzer of either layout, by hand."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def status_json(stream: str, state: str = "running", **extra) -> str:
    return json.dumps({**status_message(stream, "device", state, 0, 3), "online": True, **extra})


def scores_json(stream: str) -> str:
    return json.dumps({"type": "scores", "stream": stream, "channel": "mono", "t": 1.0, "speech": False})


async def subscribed(url: str, queues: tuple[str, ...] = ()):
    """A running subscriber: (what it delivered, its stats, its stop event, its task)."""
    got: list[dict] = []
    stats, stop = SubscriberStats(), asyncio.Event()
    task = asyncio.create_task(subscribe(parse_broker_url(url), "emotion", got.append, stop, stats, queues))
    await asyncio.sleep(1.0)  # subscribed (and retained messages in)
    return got, stats, stop, task


async def unsubscribe(*subscribers) -> None:
    for _, _, stop, task in subscribers:
        stop.set()
        task.cancel()
    await asyncio.gather(*(task for *_, task in subscribers), return_exceptions=True)


def test_the_old_layout_reaches_supervisors_of_every_queue_but_not_of_some(mosquitto):
    """During an upgrade, analyzers not yet upgraded publish without a queue: every-queue supervisors show them."""

    async def main():
        every = await subscribed(mosquitto.url)
        sales = await subscribed(mosquitto.url, ("sales",))
        await asyncio.to_thread(
            publish,
            mosquitto.port,
            [
                ("emotion/old-desk/status", status_json("old-desk"), True),
                ("emotion/old-desk/mono/scores", scores_json("old-desk"), False),
                ("emotion/sales/new-desk/status", status_json("new-desk"), True),
                ("emotion/sales/new-desk/mono/scores", scores_json("new-desk"), False),
                ("emotion/billing/other-desk/status", status_json("other-desk"), True),
                ("emotion/billing/other-desk/mono/scores", scores_json("other-desk"), False),
            ],
        )
        await asyncio.sleep(1.0)
        await unsubscribe(every, sales)
        return every, sales

    (every, every_stats, *_), (sales, sales_stats, *_) = asyncio.run(main())
    seen = {(m["type"], m["stream"]) for m in every}
    assert seen == {(kind, s) for kind in ("status", "scores") for s in ("old-desk", "new-desk", "other-desk")}
    queue_of = {m["stream"]: m.get("queue") for m in every if m["type"] == "status"}
    assert queue_of == {"old-desk": None, "new-desk": "sales", "other-desk": "billing"}  # from the topic
    # --queue sales: the broker sent it the sales stream alone (nothing dropped: nothing else arrived)
    assert {(m["type"], m["stream"]) for m in sales} == {("status", "new-desk"), ("scores", "new-desk")}
    assert (every_stats.invalid, sales_stats.invalid) == (0, 0)


def test_a_new_retained_status_wins_over_a_stale_copy_in_the_old_layout(mosquitto):
    """The old layout's filters are subscribed first, so its retained copies arrive before the new ones."""
    publish(
        mosquitto.port,
        [
            ("emotion/desk-9/status", status_json("desk-9", "stopped"), True),  # before its upgrade
            ("emotion/sales/desk-9/status", status_json("desk-9", "running"), True),
        ],
    )

    async def main():
        subscriber = await subscribed(mosquitto.url)
        await unsubscribe(subscriber)
        return subscriber[0]

    assert [(m["state"], m.get("queue")) for m in asyncio.run(main())] == [("stopped", None), ("running", "sales")]


def test_an_upgraded_device_publisher_clears_its_stale_status_in_the_old_layout(mosquitto):
    publish(mosquitto.port, [("emotion/desk-9/status", status_json("desk-9", "offline"), True)])
    recorder = MqttRecorder(mosquitto.port, topic="emotion/#")
    try:

        async def main():
            publisher = StreamPublisher(
                parse_broker_url(mosquitto.url), "emotion", "desk-9", queue="sales", clear_legacy_status=True
            )
            publisher.offer(status_message("desk-9", "device", "running", 0, 0))
            task = asyncio.create_task(publisher.run())
            await asyncio.to_thread(recorder.wait_for, lambda m: m[0] == "emotion/sales/desk-9/status")
            await publisher.close(task)

        asyncio.run(main())
        recorder.wait_for(lambda m: m[0] == "emotion/desk-9/status" and m[1] is None)  # cleared
        new = recorder.wait_for(lambda m: m[0] == "emotion/sales/desk-9/status")[0][1]
        assert (new["state"], new["queue"]) == ("running", "sales")
    finally:
        recorder.close()
    late = MqttRecorder(mosquitto.port, topic="emotion/+/status")  # the old layout's retained statuses
    try:
        time.sleep(1.0)
        assert late.messages == []
    finally:
        late.close()


@pytest.fixture
def desks(tmp_path, speech_audio):
    """Two desks (a minute of the angry clip each), named by their files: one per queue."""
    audio = np.tile(speech_audio, 15)
    return [write_audio(tmp_path / f"{name}.wav", audio, 16000) for name in ("sales-desk", "billing-desk")]


def test_a_supervisor_of_one_queue_gets_its_streams_and_nothing_of_the_others(mosquitto, start_analyzer, desks):
    sales_desk, billing_desk = desks
    recorder = MqttRecorder(mosquitto.port)  # proves the other queue's traffic is on the broker
    try:
        supervisor = start_analyzer(
            ["--serve", "--mqtt", mosquitto.url, "--queue", "sales", "--analysis", "threads", "--workers", "1"]
        )
        for desk, queue in ((sales_desk, "sales"), (billing_desk, "billing")):
            start_analyzer(["--input", str(desk), "--mqtt", mosquitto.url, "--default-queue", queue])
        recorder.wait_for(lambda m: m[0] == "emotion/billing/billing-desk/mono/scores", timeout=60)
        billing_status = recorder.wait_for(lambda m: m[0] == "emotion/billing/billing-desk/status")[0][1]
        assert billing_status["queue"] == "billing"

        def sales_scored(ms):
            return any(m["type"] == "scores" and m["stream"] == "sales-desk" for m in ms)

        messages = read_messages(supervisor.ws_url, sales_scored, timeout=60)
        assert sales_scored(messages)
        assert {m["stream"] for m in messages} == {"sales-desk"}
        assert [m["queue"] for m in messages if m["type"] == "status"][-1] == "sales"
        # Its MQTT subscription received nothing else: a billing message would have been shown
        # (valid) or counted (invalid); billing was published all along (the recorder has it).
        time.sleep(2.0)
        status = json.loads(urllib.request.urlopen(supervisor.url + "/api/status", timeout=10).read())
        assert {s["stream"] for s in status["streams"]} == {"sales-desk"}
        assert status["hub"]["mqtt_invalid"] == 0
        assert len([m for m in recorder.messages if m[0].startswith("emotion/billing/")]) > 2
        assert "subscribed to queues sales of emotion/" in supervisor.output()
        assert supervisor.stop() == 0
    finally:
        recorder.close()


def test_a_twilio_call_publishes_under_its_queue_and_a_bad_queue_under_the_default(
    mosquitto, start_analyzer, speech_file
):
    speech = load_audio(speech_file, 8000)[: 8000 * 3]
    analyzer = start_analyzer(
        ["--serve", "--mqtt", mosquitto.url, "--analysis", "threads", "--workers", "1", "--default-queue", "floor"]
    )
    recorder = MqttRecorder(mosquitto.port)
    try:
        sales = loadgen.Call(f"CA{uuid.uuid4().hex}", speech, queue="sales")
        spaced = loadgen.Call(f"CA{uuid.uuid4().hex}", speech, queue="Sales EU")  # no topic level
        target = analyzer.url.replace("http", "ws") + "/twilio"
        asyncio.run(loadgen.run_calls("twilio", target, [sales, spaced], 3.0, ramp_s=0.2))
        recorder.wait_for(lambda m: m[0] == f"emotion/sales/{sales.call_id}/caller/scores")
        status = recorder.wait_for(lambda m: m[0] == f"emotion/sales/{sales.call_id}/status" and m[1])[0][1]
        assert status["queue"] == "sales"
        recorder.wait_for(lambda m: m[0] == f"emotion/floor/{spaced.call_id}/caller/scores")
        status = recorder.wait_for(lambda m: m[0] == f"emotion/floor/{spaced.call_id}/status" and m[1])[0][1]
        assert status["queue"] == "floor"  # what the topic says, not the phone system's text
        assert not [m for m in recorder.messages if spaced.call_id in m[0] and "/floor/" not in m[0]]
        assert analyzer.output().count("cannot be an MQTT topic level") == 1
        assert analyzer.stop() == 0
        assert "Traceback" not in analyzer.output()
    finally:
        recorder.close()
