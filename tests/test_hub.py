"""The websocket hub: history first, bounded per-client queues, no head-of-line blocking."""

import asyncio
import json

from streamer.core.messages import scores_message, status_message
from streamer.outputs.hub import ClientQueue, Hub


def scores(t: float, stream: str = "s") -> dict:
    return scores_message(stream, "mono", t, None, None, 1.0)


def test_client_queue_drops_oldest_and_counts():
    async def main():
        q = ClientQueue(3)
        for i in range(5):
            q.put(str(i))
        assert q.dropped == 2
        assert await q.get_all() == ["2", "3", "4"]

    asyncio.run(main())


def test_frames_are_json_arrays_of_bounded_size():
    from streamer.outputs.hub import FRAME_MESSAGES, frames

    texts = [json.dumps(scores(i / 2)) for i in range(FRAME_MESSAGES + 3)]
    out = [json.loads(f) for f in frames(texts)]
    assert [len(f) for f in out] == [FRAME_MESSAGES, 3]
    assert [m["t"] for f in out for m in f] == [i / 2 for i in range(FRAME_MESSAGES + 3)]
    assert frames([]) == []


def test_history_is_bounded_and_sent_first():
    hub = Hub(history_s=2.0, hop_s=0.5)  # 4 windows per channel
    hub.offer(status_message("s", "dev", "running", 0, 0))
    for i in range(10):
        hub.offer(scores(i / 2))
    snap = [json.loads(s) for s in hub.snapshot()]
    assert snap[0]["type"] == "status"
    assert [m["t"] for m in snap[1:]] == [3.0, 3.5, 4.0, 4.5]


def test_stalled_client_does_not_delay_others():
    async def main():
        hub = Hub(client_queue=50)
        fast_got: list[str] = []
        stalled = asyncio.Event()
        never = asyncio.Event()

        async def fast_send(frame):
            fast_got.extend(json.loads(frame))

        async def stuck_send(text):
            stalled.set()
            await never.wait()  # a browser tab that stopped reading

        async def receive():
            await never.wait()

        clients = [
            asyncio.create_task(hub.serve(fast_send, receive)),
            asyncio.create_task(hub.serve(stuck_send, receive)),
        ]
        await asyncio.sleep(0)
        for i in range(1000):
            hub.offer(scores(i / 2))
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert stalled.is_set()
        assert [m["t"] for m in fast_got] == [i / 2 for i in range(1000)]  # every message, in order
        stats = hub.stats()
        assert stats["clients"] == 2 and stats["dropped"] >= 1000 - 50 - 1
        hub.end_serving()
        await asyncio.wait_for(asyncio.gather(*clients), 1.0)
        assert hub.stats()["clients"] == 0

    asyncio.run(main())


def test_loop_bridge_is_bounded_and_ordered():
    import threading

    from streamer.outputs.bridge import LoopBridge

    async def main():
        got = []
        bridge = LoopBridge(asyncio.get_running_loop(), got.append, maxlen=5)
        thread = threading.Thread(target=lambda: [bridge.put({"i": i}) for i in range(100)])
        thread.start()
        thread.join()  # the loop is busy here (not yielding): at most 5 wait, the rest are counted
        await asyncio.sleep(0.05)
        assert [m["i"] for m in got] == list(range(95, 100))
        assert bridge.dropped == 95
        bridge.put({"i": 100})
        await asyncio.sleep(0.05)
        assert got[-1] == {"i": 100}

    asyncio.run(main())


def test_messages_with_nan_are_dropped_and_counted_not_sent():
    hub = Hub()
    hub.offer(status_message("s", "dev", "running", 0, 0, lost_s=float("nan")))
    hub.offer(scores(0.5) | {"latency_ms": float("inf")})
    hub.offer(status_message("s", "dev", "running", 0, 1))
    assert hub.stats()["invalid"] == 2 and hub.published == 1
    assert [json.loads(s)["windows"] for s in hub.snapshot()] == [1]


def test_streams_are_bounded_and_ended_ones_expire():
    now = [0.0]
    hub = Hub(max_streams=2, stream_ttl_s=600, clock=lambda: now[0])
    for stream in ("a", "b"):
        hub.offer(status_message(stream, "mqtt", "running", 0, 0))
        hub.offer(scores(1.0, stream))
    hub.offer(status_message("forged-1", "mqtt", "running", 0, 0))
    hub.offer(scores(1.0, "forged-2"))
    assert hub.stats()["streams"] == ["a", "b"] and hub.stats()["streams_refused"] == 2
    hub.offer(status_message("a", "mqtt", "offline", 0, 0))  # a's analyzer died
    now[0] = 599.0
    assert hub.expire() == []
    now[0] = 600.0
    assert hub.expire() == ["a"]  # ended 10 minutes ago: forgotten, history too
    assert hub.stats()["streams"] == ["b"] and hub.stats()["streams_expired"] == 1
    assert all(json.loads(text)["stream"] == "b" for text in hub.snapshot())
    now[0] = 10_000.0
    assert hub.expire() == []  # b is still running, however old
    hub.offer(status_message("c", "mqtt", "running", 0, 0))  # room again
    assert hub.stats()["streams"] == ["b", "c"]


def test_bad_hub_settings_are_refused():
    import pytest

    for kwargs in ({"client_queue": 0}, {"max_streams": 0}, {"stream_ttl_s": 0}, {"stream_ttl_s": float("inf")}):
        with pytest.raises(ValueError):
            Hub(**kwargs)


def test_alerts_of_a_stream_whose_analyzer_went_offline_are_cleared():
    def alert(stream: str, rule: str, state: str) -> dict:
        return {"type": "alert", "rule": rule, "stream": stream, "channel": "caller", "emotion": "angry",
                "score": 0.7, "since": 1.0, "at": 3.0, "severity": "warning", "state": state}  # fmt: skip

    hub = Hub()
    hub.offer(alert("dead", "angry", "raised"))
    hub.offer(alert("dead", "sad", "raised"))
    hub.offer(alert("dead", "sad", "cleared"))  # cleared by its analyzer: not again
    hub.offer(alert("alive", "angry", "raised"))
    hub.offer({**status_message("dead", "twilio", "offline", 0, 0)})
    hub.offer({**status_message("dead", "twilio", "offline", 0, 0)})  # retained will seen again: nothing more
    alerts = [json.loads(s) for s in hub.snapshot() if '"alert"' in s]
    cleared = [(a["stream"], a["rule"]) for a in alerts if a["state"] == "cleared"]
    assert cleared == [("dead", "sad"), ("dead", "angry")]
    assert alerts[-1]["note"] == "its analyzer went offline" and alerts[-1]["score"] == 0.0
