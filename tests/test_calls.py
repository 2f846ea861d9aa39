"""Calls over real sockets into run_stream.py: Twilio Media Streams, FreeSWITCH fork, Asterisk AudioSocket.

Each protocol is spoken by the load generator's clients, replaying a RAVDESS
clip (an angry actor) in real time, μ-law or L16 at 8/16 kHz as the phone
system would send it; a dashboard client watches what comes out.
"""

import asyncio
import json
import os
import re
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import Analyzer, MqttRecorder, read_messages, twilio_start_closes
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamer.analysis.decode import load_audio
from tools import loadgen
from tools.harness import process_tree

TOKEN = "calls-test-token-0123456789"


@pytest.fixture(scope="module")
def analyzer():
    """One analyzer for the module: calls at /twilio and /fork, AudioSocket on a port the OS picks."""
    blocks_before = set(Path("/dev/shm").glob("psm_*"))
    analyzer = Analyzer(["--serve", "--audiosocket", "127.0.0.1:0", "--call-resume", "3"])
    analyzer.wait_ready()
    yield analyzer
    assert analyzer.stop() == 0
    assert "leaked shared_memory" not in analyzer.output()
    analyzer.log.close()
    assert set(Path("/dev/shm").glob("psm_*")) <= blocks_before  # every call's shared ring was freed


@pytest.fixture(scope="module")
def speech(speech_file):
    audio = load_audio(speech_file, 8000)
    return np.tile(audio, 3)[: 8000 * 8]  # 8 s of the clip, repeated


def audiosocket_target(analyzer) -> str:
    found = re.search(r"audiosocket: ([\d.]+:\d+)", analyzer.output())
    assert found, analyzer.output()
    return found.group(1)


async def watch(ws_url: str, until, timeout: float = 30.0) -> list[dict]:
    """What a dashboard receives until ``until(messages)`` (conftest's reader, off the test's event loop)."""
    return await asyncio.to_thread(read_messages, ws_url, until, timeout)


def of(messages, stream, kind):
    return [m for m in messages if m["stream"] == stream and m["type"] == kind]


def finished(stream):
    return lambda messages: any(m["state"] == "finished" for m in of(messages, stream, "status"))


async def call_and_watch(analyzer, protocol, target, calls, seconds, **kw):
    watching = asyncio.create_task(
        watch(analyzer.ws_url, lambda ms: all(finished(c.call_id)(ms) for c in calls), timeout=seconds + 20)
    )
    await asyncio.sleep(0.3)  # the dashboard is connected before the calls start
    await loadgen.run_calls(protocol, target, calls, seconds, ramp_s=0.2, **kw)
    return await watching


def test_twilio_calls_are_scored_on_the_callers_voice_and_finish_on_stop(analyzer, speech):
    target = analyzer.url.replace("http", "ws") + "/twilio"
    both = loadgen.Call(f"CA{uuid.uuid4().hex}", speech, speech[::-1].copy(), agent_name="Ana", queue="billing")
    inbound = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)
    messages = asyncio.run(call_and_watch(analyzer, "twilio", target, [both, inbound], 6.0))
    assert analysis_processes(analyzer.proc.pid) == os.cpu_count()  # --serve: one worker process per core
    for call in (both, inbound):
        scores = of(messages, call.call_id, "scores")
        assert {m["channel"] for m in scores} == {"caller"}  # the agent's track is received and discarded
        assert [m["t"] for m in scores] == [2.0 + 0.5 * i for i in range(9)]  # time from the audio: 6 s
        assert sum(m["speech"] for m in scores) >= len(scores) // 2
        last = of(messages, call.call_id, "status")[-1]
        assert (last["state"], last["source"], last["gaps"], last["overruns"]) == ("finished", "twilio", 0, 0)
    assert of(messages, both.call_id, "status")[-1]["agent"] == "Ana"
    assert of(messages, both.call_id, "status")[-1]["queue"] == "billing"


def test_calls_are_analysed_by_worker_threads_too(start_analyzer, speech):
    """``--analysis threads`` (a softphone's analyzer that also takes calls): the same results."""
    analyzer = start_analyzer(["--serve", "--analysis", "threads"])
    call = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)
    messages = asyncio.run(
        call_and_watch(analyzer, "twilio", analyzer.url.replace("http", "ws") + "/twilio", [call], 3.0)
    )
    assert [m["t"] for m in of(messages, call.call_id, "scores")] == [2.0, 2.5, 3.0]
    assert of(messages, call.call_id, "status")[-1]["state"] == "finished"
    assert analysis_processes(analyzer.proc.pid) == 0


def analysis_processes(pid: int) -> int:
    """Worker processes of the analyzer ``pid`` (Python children running the worker's entry point)."""
    return sum(b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes() for p in process_tree(pid)[1:])


def test_calls_publish_to_mqtt_and_their_publisher_goes_when_they_end(mosquitto, start_analyzer, speech):
    """``--serve --mqtt``: calls publish scores, alerts and status like device streams; a finished call's
    connection closes and its retained status is cleared; its messages coming back are not shown twice."""
    recorder = MqttRecorder(mosquitto.port)
    try:
        analyzer = start_analyzer(["--serve", "--mqtt", mosquitto.url, "--alert", "caller:angry>=0.01 for 1s"])
        call = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)
        target = analyzer.url.replace("http", "ws") + "/twilio"
        messages = asyncio.run(call_and_watch(analyzer, "twilio", target, [call], 4.0))
        topic = f"emotion/default/{call.call_id}"  # the call names no queue
        recorder.wait_for(lambda m: m[0] == f"{topic}/caller/scores")
        recorder.wait_for(lambda m: m[0] == f"{topic}/caller/alert" and m[1]["state"] == "raised")
        recorder.wait_for(lambda m: m[0] == f"{topic}/caller/alert" and m[1]["state"] == "cleared")
        recorder.wait_for(lambda m: m[0] == f"{topic}/status" and m[1] and m[1]["state"] == "finished")
        recorder.wait_for(lambda m: m[0] == f"{topic}/status" and m[1] is None)  # the retained status cleared
        late = MqttRecorder(mosquitto.port, topic=f"{topic}/status")
        try:
            time.sleep(1.0)
            assert late.messages == []  # the broker keeps nothing of the ended call
        finally:
            late.close()
        times = [m["t"] for m in of(messages, call.call_id, "scores")]
        assert times == [2.0, 2.5, 3.0, 3.5, 4.0]  # each once: the broker's copies are not shown again
        status = json.loads(urllib.request.urlopen(analyzer.url + "/api/status", timeout=10).read())["hub"]
        assert status["mqtt_streams"] == 0 and status["mqtt_published"] > 0 and status["mqtt_invalid"] == 0
    finally:
        recorder.close()


def test_twilio_dtmf_and_marks_are_ignored_and_lost_media_is_counted(analyzer, speech):
    target = analyzer.url.replace("http", "ws") + "/twilio"
    call = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)
    frames = loadgen.TwilioCall(call, loadgen.twilio_payloads(speech), None, offset=0)

    async def run():
        watching = asyncio.create_task(watch(analyzer.ws_url, finished(call.call_id)))
        async with connect(target) as ws:
            for text in frames.opening:
                await ws.send(text)
            for k in range(150):  # 3 s, real time; ticks 50-59 are lost on the way
                if not 50 <= k < 60:
                    for text in frames.media(k):
                        await ws.send(text)
                if k == 20:
                    await ws.send(json.dumps({"event": "dtmf", "streamSid": frames.sid, "dtmf": {"digit": "5"}}))
                    await ws.send(json.dumps({"event": "mark", "streamSid": frames.sid, "mark": {"name": "m"}}))
                await asyncio.sleep(0.02)
            for text in frames.closing():
                await ws.send(text)
        return await watching

    messages = asyncio.run(run())
    last = of(messages, call.call_id, "status")[-1]
    assert (last["state"], last["gaps"], last["lost_s"], last["error"]) == ("finished", 1, 0.2, None)
    assert [m["t"] for m in of(messages, call.call_id, "scores")] == [2.0, 2.5, 3.0]  # the gap kept its time


def test_a_dropped_twilio_call_resumes_on_reconnect_with_its_time_going_on(analyzer, speech):
    target = analyzer.url.replace("http", "ws") + "/twilio"
    call = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)
    payloads = loadgen.twilio_payloads(speech)

    async def run():
        watching = asyncio.create_task(watch(analyzer.ws_url, finished(call.call_id)))
        for part in range(2):  # the first connection just drops; the second (a new stream) ends with stop
            frames = loadgen.TwilioCall(call, payloads, None, offset=part * 150)
            async with connect(target) as ws:
                for text in frames.opening:
                    await ws.send(text)
                for k in range(150):
                    for text in frames.media(k):
                        await ws.send(text)
                    await asyncio.sleep(0.02)
                if part == 1:
                    for text in frames.closing():
                        await ws.send(text)
            await asyncio.sleep(1.2)  # the dashboard sees it reconnecting
        return await watching

    messages = asyncio.run(run())
    states = [m["state"] for m in of(messages, call.call_id, "status")]
    assert "reconnecting" in states and states[-1] == "finished"
    last = of(messages, call.call_id, "status")[-1]
    assert last["reconnects"] == 1 and last["error"] is None
    assert of(messages, call.call_id, "scores")[-1]["t"] == 6.0  # 3 s + 3 s, one stream


def test_bad_frames_close_only_their_own_connection(analyzer, speech):
    target = analyzer.url.replace("http", "ws") + "/twilio"
    good = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)

    async def bad(opening: list[str], garbage: str | bytes) -> tuple[int, str]:
        async with connect(target) as ws:
            for text in opening:
                await ws.send(text)
            await ws.send(garbage)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed as closed:
                return closed.rcvd.code, closed.rcvd.reason
        return 0, ""

    async def run():
        calling = asyncio.create_task(call_and_watch(analyzer, "twilio", target, [good], 4.0))
        await asyncio.sleep(1.5)
        frames = loadgen.TwilioCall(loadgen.Call(f"CA{uuid.uuid4().hex}", speech), ["AAAA"], None, 0)
        closes = [
            await bad([], "[" * 100_000),
            await bad([], '{"event":"teleport"}'),
            await bad(frames.opening, '{"event":"media","media":{"track":"inbound","timestamp":"0","payload":"%%"}}'),
            await bad([], b"\x00\xff binary"),
        ]
        return closes, await calling

    closes, messages = asyncio.run(run())
    assert [code for code, _ in closes] == [1008] * 4
    assert "not JSON" in closes[0][1] and "unknown event" in closes[1][1] and "payload" in closes[2][1]
    assert of(messages, good.call_id, "status")[-1]["state"] == "finished"
    assert len(of(messages, good.call_id, "scores")) == 5
    status = json.loads(urllib.request.urlopen(analyzer.url + "/api/status", timeout=5).read())
    assert status["hub"]["call_errors"] >= 4
    assert "twilio: unknown event 'teleport'; connection closed" in analyzer.output()


def test_freeswitch_fork_stereo_16k_is_scored_on_the_caller(analyzer, speech_file):
    audio = load_audio(speech_file, 16000)
    audio = np.tile(audio, 2)[: 16000 * 4]
    call_id = f"fs-{uuid.uuid4().hex[:8]}"
    target = analyzer.url.replace("http", "ws") + "/fork?rate=16000"

    async def run():
        watching = asyncio.create_task(watch(analyzer.ws_url, finished(call_id)))
        async with connect(target, subprotocols=["audio.drachtio.org"]) as ws:
            assert ws.subprotocol == "audio.drachtio.org"
            await ws.send(json.dumps({"callId": call_id, "mixType": "stereo", "queue": "sales"}))
            stereo = np.stack([audio, np.zeros_like(audio)], axis=1)
            for i in range(0, len(audio), 320):  # 20 ms frames
                await ws.send(loadgen.l16_encode(stereo[i : i + 320]))
                await asyncio.sleep(0.02)
        return await watching  # closing the socket is the hangup

    messages = asyncio.run(run())
    scores = of(messages, call_id, "scores")
    assert [m["t"] for m in scores] == [2.0, 2.5, 3.0, 3.5, 4.0] and {m["channel"] for m in scores} == {"caller"}
    assert sum(m["top"] == "angry" for m in scores) >= 3
    last = of(messages, call_id, "status")[-1]
    assert (last["state"], last["source"], last["queue"]) == ("finished", "fork", "sales")


def test_asterisk_audiosocket_call_with_dtmf_and_hangup(analyzer, speech):
    call = loadgen.Call(str(uuid.uuid4()), speech)
    messages = asyncio.run(call_and_watch(analyzer, "audiosocket", audiosocket_target(analyzer), [call], 4.0))
    scores = of(messages, call.call_id, "scores")
    assert [m["t"] for m in scores] == [2.0, 2.5, 3.0, 3.5, 4.0]
    assert of(messages, call.call_id, "status")[-1]["state"] == "finished"

    async def bad_kind() -> bytes:  # a higher-rate audio kind: refused, the connection closed
        host, port = audiosocket_target(analyzer).split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(loadgen.audiosocket_frame(0x01, uuid.uuid4().bytes) + loadgen.audiosocket_frame(0x12, b"\0" * 640))
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return rest

    assert asyncio.run(bad_kind()) == b""  # closed by the analyzer
    assert "audio kind 0x12 is not supported" in analyzer.output()


def test_audiosocket_refuses_addresses_off_its_allow_list(start_analyzer):
    analyzer = start_analyzer(["--serve", "--audiosocket", "127.0.0.1:0", "--audiosocket-allow", "10.0.0.0/8"])

    async def connect_once() -> bytes:
        host, port = audiosocket_target(analyzer).split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return await asyncio.wait_for(reader.read(), 5)  # closed at once, before any frame

    assert asyncio.run(connect_once()) == b""
    assert "audiosocket: refused a connection from 127.0.0.1" in analyzer.output()


def test_audiosocket_off_loopback_needs_an_allow_list(start_analyzer):
    analyzer = start_analyzer(["--serve", "--audiosocket", "0.0.0.0:0"], ready=False)
    assert analyzer.proc.wait(60) == 2
    assert "--audiosocket-allow" in analyzer.output() and "Traceback" not in analyzer.output()


def test_with_a_token_twilio_must_carry_it_as_a_custom_parameter(start_analyzer):
    analyzer = start_analyzer(["--serve"], env={**os.environ, "EMOTION_TOKEN": TOKEN})
    target = analyzer.url.replace("http", "ws") + "/twilio"
    assert twilio_start_closes(target, None) == 1008
    assert twilio_start_closes(target, TOKEN) is None
    assert "no valid token" in analyzer.output()
