"""What a load balancer and an operations team rely on, over real sockets into run_stream.py --serve:
health checks, draining for a rolling upgrade, and connections that hold resources without using them."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
from conftest import Analyzer, read_messages
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as sync_connect

from streamer.analysis.decode import load_audio
from tools import loadgen

TOKEN = "operations-test-token-0123456789"


@pytest.fixture(scope="module")
def speech(speech_file):
    return np.tile(load_audio(speech_file, 8000), 3)[: 8000 * 8]


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, method="POST", data=b"", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def status(analyzer) -> dict:
    return get(analyzer.url + "/api/status", TOKEN)[1]["hub"]


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the analyzer closes ``sock`` (FIN or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_health_checks_and_a_drain_that_lets_the_running_call_finish(start_analyzer, speech):
    env = {**os.environ, "EMOTION_TOKEN": TOKEN}
    analyzer = start_analyzer(["--serve"], env=env)
    assert get(analyzer.url + "/healthz") == (200, {"alive": True})  # no token: a load balancer's check
    assert get(analyzer.url + "/readyz") == (200, {"ready": True})
    assert get(analyzer.url + "/api/status")[0] == 401  # everything else still needs it
    target = analyzer.url.replace("http", "ws") + "/twilio"
    call = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)

    async def run():
        finished = lambda ms: any(m["type"] == "status" and m["state"] == "finished" for m in ms)  # noqa: E731
        watching = asyncio.create_task(asyncio.to_thread(read_messages, analyzer.ws_url + f"?token={TOKEN}", finished))
        await asyncio.sleep(0.3)
        calling = asyncio.create_task(loadgen.run_calls("twilio", target, [call], 6.0, ramp_s=0.1, token=TOKEN))
        await asyncio.sleep(2.0)
        drained = await asyncio.to_thread(post, analyzer.url + "/api/drain", TOKEN)
        ready = await asyncio.to_thread(get, analyzer.url + "/readyz")
        with pytest.raises(InvalidStatus) as refused:  # a new call: the PBX retries another analyzer
            async with connect(target, additional_headers={"Authorization": f"Bearer {TOKEN}"}):
                pass
        await calling
        return drained, ready, refused.value.response, await watching

    drained, ready, refused, messages = asyncio.run(run())
    assert drained == (202, {"draining": True, "calls": 1})
    assert ready[0] == 503 and ready[1]["reason"].startswith("draining")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    scores = [m for m in messages if m["type"] == "scores" and m["stream"] == call.call_id]
    assert [m["t"] for m in scores] == [2.0 + 0.5 * i for i in range(9)]  # nothing of the running call lost
    assert analyzer.proc.wait(15) == 0  # and once it ended, the analyzer exited by itself
    assert "drained: every call has ended; exiting" in analyzer.output()


def test_sigusr1_drains_an_idle_analyzer_at_once(start_analyzer):
    analyzer = start_analyzer(["--serve"])
    analyzer.proc.send_signal(signal.SIGUSR1)
    assert analyzer.proc.wait(15) == 0
    assert "draining: 0 calls to finish" in analyzer.output()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    env = {**os.environ, "EMOTION_TOKEN": TOKEN}
    args = ["--serve", "--handshake-timeout", "2", "--max-per-address", "6", "--call-idle-timeout", "2"]
    args += ["--max-calls", "1"]
    analyzer = Analyzer(args, env=env)
    analyzer.wait_ready()
    yield analyzer
    assert analyzer.stop() == 0
    analyzer.log.close()


def test_half_sent_requests_are_closed_and_one_address_is_capped(guarded):
    address = ("127.0.0.1", guarded.port)
    half_open = []
    for _ in range(6):
        sock = socket.create_connection(address)
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        half_open.append(sock)
    time.sleep(0.2)
    extra = socket.create_connection(address)  # the seventh from this address
    assert closed_within(extra, 1.0)
    assert not any(closed_within(sock, 0.05) for sock in half_open)  # the six are held until their deadline...
    started = time.monotonic()
    assert all(closed_within(sock, 5.0) for sock in half_open)  # ...and closed at it
    assert time.monotonic() - started < 3.0
    for sock in [*half_open, extra]:
        sock.close()
    counters = status(guarded)
    assert counters["slow_requests_closed"] >= 6 and counters["connections_over_address_cap"] >= 1
    assert get(guarded.url + "/healthz")[0] == 200  # the port serves again


def test_a_call_that_brings_no_audio_is_ended_with_its_reason(guarded, speech):
    target = guarded.url.replace("http", "ws") + "/twilio"
    frames = loadgen.TwilioCall(loadgen.Call(f"CA{uuid.uuid4().hex}", speech), ["AAAA"], None, 0, token=TOKEN)

    async def silent(opening: list[str]) -> tuple[int, str, float]:
        async with connect(target) as ws:
            started = time.monotonic()
            for text in opening:
                await ws.send(text)
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                return closed.rcvd.code, closed.rcvd.reason, time.monotonic() - started
        return 0, "", 0.0

    async def run():
        return await asyncio.gather(silent(frames.opening), silent([]))  # started and silent; never started

    for code, reason, after in asyncio.run(run()):
        assert code == 1008 and "no audio for 2 s" in reason
        assert 1.5 < after < 5.0
    assert status(guarded)["idle_calls_ended"] >= 2
    assert "no audio for 2 s (--call-idle-timeout); connection closed" in guarded.output()


def test_an_oversized_frame_is_refused_and_logged_once(guarded):
    target = guarded.url.replace("http", "ws") + "/twilio"
    before = guarded.output().count("connection closed")

    # The analyzer closes it while the frame is still going out.
    with sync_connect(target, max_size=None) as ws, contextlib.suppress(ConnectionClosed, OSError):
        ws.send("x" * 20_000_000)
        ws.recv(timeout=10)
    time.sleep(0.5)
    assert guarded.output().count("connection closed") - before == 1


def test_an_analyzer_at_max_calls_is_not_ready_until_a_call_ends(guarded, speech):
    target = guarded.url.replace("http", "ws") + "/twilio"
    call = loadgen.Call(f"CA{uuid.uuid4().hex}", speech)

    async def run():
        calling = asyncio.create_task(loadgen.run_calls("twilio", target, [call], 3.0, ramp_s=0.1, token=TOKEN))
        await asyncio.sleep(1.5)
        during = await asyncio.to_thread(get, guarded.url + "/readyz")
        await calling
        return during

    during = asyncio.run(run())
    assert during == (503, {"ready": False, "reason": "at --max-calls (1)"})
    deadline = time.monotonic() + 10
    while get(guarded.url + "/readyz")[0] != 200:  # the call's input has ended: ready again
        assert time.monotonic() < deadline
        time.sleep(0.2)
