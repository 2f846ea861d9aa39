"""The MQTT sending policy and the alert spool, without a broker (the real broker is in test_mqtt.py)."""

from __future__ import annotations

import json

import pytest

from streamer.outputs.mqtt.policy import SendingPolicy
from streamer.outputs.mqtt.spool import AlertSpool


def scores(channel="caller", t=1.0, **over):
    return {"type": "scores", "stream": "desk", "channel": channel, "t": t, "speech": True, **over}


def alert(n: int) -> dict:
    return {"type": "alert", "stream": "desk", "channel": "caller", "rule": f"r{n}", "state": "raised"}


def status(state="running"):
    return {"type": "status", "stream": "desk", "state": state, "source": "pulse"}


def test_scores_are_throttled_per_channel_and_the_latest_wins():
    policy = SendingPolicy("desk", interval_s=1.0)
    assert policy.offer(scores(t=1.0)) is False  # scores never wake the connection
    policy.offer(scores(t=1.5))
    policy.offer(scores("agent", t=1.5))
    assert [(m["channel"], m["t"]) for m in policy.scores_due(10.0)] == [("caller", 1.5), ("agent", 1.5)]
    policy.offer(scores(t=2.0))
    assert policy.scores_due(10.5) == []  # within the interval
    assert [m["t"] for m in policy.scores_due(11.0)] == [2.0]
    assert policy.scores_due(20.0) == []  # nothing new
    policy.offer(scores(t=2.5))
    assert [m["t"] for m in policy.scores_due(20.1, closing=True)] == [2.5]  # a call's last is not held back


def test_alerts_wait_for_the_broker_in_order_and_the_oldest_go_when_full():
    policy = SendingPolicy("desk", max_alerts=2)
    assert policy.offer(alert(1)) is True
    policy.offer(alert(2))
    policy.offer(alert(3))
    assert policy.alerts_dropped == 1
    assert policy.next_alert()["rule"] == "r2"
    assert policy.next_alert()["rule"] == "r2"  # not removed until acknowledged
    policy.alert_sent()
    assert policy.next_alert()["rule"] == "r3"
    policy.alert_sent()
    assert policy.next_alert() is None and policy.published == 2


def test_status_goes_out_on_connect_and_on_change_only():
    policy = SendingPolicy("desk")
    assert policy.status_due(closing=False)  # first connection
    assert not policy.status_due(closing=False)
    assert policy.offer(status("running")) is False  # same state: nothing to send
    assert not policy.status_due(closing=False)
    assert policy.offer(status("reconnecting")) is True
    assert policy.status_due(closing=False) and not policy.status_due(closing=False)
    policy.connected()
    assert policy.status_due(closing=False)  # a new connection republishes the retained status
    assert policy.status_due(closing=True)  # and closing always does
    assert json.loads(policy.status_payload(online=False, will=True))["state"] == "offline"


def test_messages_that_are_not_strict_json_are_dropped_and_counted():
    policy = SendingPolicy("desk")
    policy.offer(scores(latency_ms=float("nan")))
    policy.offer(scores(latency_ms=12.5))
    assert policy.invalid_dropped == 1 and policy.scores_due(5.0)[0]["latency_ms"] == 12.5


@pytest.mark.parametrize(("interval", "max_alerts"), [(0, 10), (float("nan"), 10), (-1, 10), (1, 0)])
def test_bad_settings_are_refused(interval, max_alerts):
    with pytest.raises(ValueError):
        SendingPolicy("desk", interval, max_alerts)


def test_spool_appends_and_a_restart_resends_only_the_undelivered(tmp_path):
    path = tmp_path / "desk.jsonl"
    policy = SendingPolicy("desk", spool=AlertSpool(path))
    for n in range(3):
        policy.offer(alert(n))
    policy.alert_sent()  # r0 delivered
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1]) == {"done": 1}  # appended, never rewritten
    restarted = SendingPolicy("desk", spool=AlertSpool(path))
    assert [a["rule"] for a in restarted.alerts] == ["r1", "r2"]


def test_a_corrupt_spool_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "desk.jsonl"
    path.write_text(
        json.dumps({"alert": alert(1)})
        + "\n"
        + '{"alert": {"type": "al'
        + "\n"
        + json.dumps({"alert": alert(2)})
        + "\n"
    )
    spool = AlertSpool(path)
    assert [a["rule"] for a in spool.pending] == ["r1", "r2"] and spool.skipped == 1
    assert "skipped 1 unreadable lines" in caplog.text
    assert len(path.read_text().splitlines()) == 2  # rewritten clean


def test_the_spool_is_compacted_and_keeps_what_is_pending(tmp_path):
    path = tmp_path / "desk.jsonl"
    policy = SendingPolicy("desk", max_alerts=3, spool=AlertSpool(path, compact_every=4))
    for n in range(6):  # r0-r2 dropped when full: three "done" records
        policy.offer(alert(n))
    policy.alert_sent()  # the fourth: compaction
    assert [json.loads(line)["alert"]["rule"] for line in path.read_text().splitlines()] == ["r4", "r5"]
    assert [a["rule"] for a in AlertSpool(path).pending] == ["r4", "r5"]


def test_overflow_of_the_subscriber_queue_is_counted_and_logged_once_a_minute(caplog):
    import logging

    from streamer.outputs.mqtt.subscriber import SubscriberStats, _QueueFullCounter

    stats = SubscriberStats()
    logger = logging.getLogger("test.aiomqtt.client")
    logger.addFilter(_QueueFullCounter(stats))
    try:
        with caplog.at_level(logging.WARNING, logger="test.aiomqtt.client"):
            for _ in range(50):
                logger.warning("Message queue is full. Discarding message.")
            logger.warning("something else")
    finally:
        logger.filters.clear()
    assert stats.queue_full == 50
    assert [r.getMessage() for r in caplog.records] == ["Message queue is full. Discarding message.", "something else"]
