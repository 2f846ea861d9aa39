"""The local cluster (deploy/local-cluster.sh): real Mosquitto, two analyzers, real HAProxy, a supervisor.

One analyzer is killed (SIGKILL) while calls run through HAProxy: the load
balancer stops sending it calls within seconds, its calls show ``offline`` on
the supervisor (their MQTT Last Will) with the alerts they had raised
cleared there, and the other analyzer's calls lose nothing.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamer.analysis.decode import load_audio
from tools import loadgen
from tools.bench_calls import free_port_block


class Watcher(threading.Thread):
    """A dashboard client collecting every message of ``url`` until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.messages, self.stopping = url, [], threading.Event()
        self.start()

    def run(self) -> None:
        with connect(self.url, open_timeout=10, max_size=None) as ws:
            while not self.stopping.is_set():
                try:
                    self.messages.extend(json.loads(ws.recv(timeout=0.2)))
                except TimeoutError:
                    continue
                except ConnectionClosed:  # the cluster is stopping: what was seen is kept
                    return

    def of(self, stream: str, kind: str) -> list[dict]:
        return [m for m in list(self.messages) if m["stream"] == stream and m["type"] == kind]

    def wait_for(self, check, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return check()


@pytest.fixture
def cluster(tmp_path):
    base = free_port_block(8)  # calls, AudioSocket, supervisor, broker; 2 analyzers; their 2 AudioSockets
    ports = {
        "CALLS_PORT": base,
        "AUDIOSOCKET_PORT": base + 1,
        "DASHBOARD_PORT": base + 2,
        "MQTT_PORT": base + 3,
        "FIRST_ANALYZER_PORT": base + 4,
        "FIRST_AUDIOSOCKET_PORT": base + 6,
    }
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "CLUSTER_DIR": str(tmp_path)}
    log = (tmp_path / "cluster.log").open("w+")
    # Every call raises an alert once it has been scored for a second: the killed analyzer's must be cleared.
    args = ["deploy/local-cluster.sh", "2", "--workers", "1", "--alert", "caller:arousal>=0.01 for 1s"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while "cluster ready" not in (tmp_path / "cluster.log").read_text():
        assert proc.poll() is None, (tmp_path / "cluster.log").read_text()
        assert time.monotonic() < deadline, (tmp_path / "cluster.log").read_text()
        time.sleep(0.2)
    yield {**ports, "dir": tmp_path, "proc": proc}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def haproxy_status(cluster_dir: Path, server: str) -> str:
    """The state HAProxy gives ``server`` in the calls backend (UP, DOWN, ...), from its stats socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(cluster_dir / "haproxy.sock"))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, *rows = data.decode().splitlines()
    names = header.lstrip("# ").split(",")
    for row in rows:
        fields = dict(zip(names, row.split(",")))
        if fields.get("pxname") == "analyzers" and fields.get("svname") == server:
            return fields["status"]
    raise AssertionError(f"{server} not in HAProxy's stats")


def own_calls(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as response:
        return {s["stream"] for s in json.loads(response.read())["streams"] if s["state"] == "running"}


def test_a_killed_analyzer_goes_offline_on_the_supervisor_and_the_other_loses_nothing(cluster, speech_file):
    speech = np.tile(load_audio(speech_file, 8000), 6)[: 8000 * 16]
    target = f"ws://127.0.0.1:{cluster['CALLS_PORT']}/twilio"
    analyzer_1, analyzer_2 = cluster["FIRST_ANALYZER_PORT"], cluster["FIRST_ANALYZER_PORT"] + 1
    supervisor = Watcher(f"ws://127.0.0.1:{cluster['DASHBOARD_PORT']}/ws")
    survivor = Watcher(f"ws://127.0.0.1:{analyzer_2}/ws")
    calls = [loadgen.Call(f"CA{uuid.uuid4().hex}", speech) for _ in range(6)]
    calling = threading.Thread(
        target=lambda: asyncio.run(loadgen.run_calls("twilio", target, calls, 14.0, ramp_s=0.5)), daemon=True
    )
    calling.start()
    time.sleep(5.0)
    on_1, on_2 = own_calls(analyzer_1), own_calls(analyzer_2)
    assert len(on_1) == len(on_2) == 3 and on_1 | on_2 == {c.call_id for c in calls}  # spread by HAProxy
    assert supervisor.wait_for(lambda: all(supervisor.of(c, "alert") for c in on_1), 10)

    killed_at = time.monotonic()
    os.kill(int((cluster["dir"] / "analyzer-1.pid").read_text()), signal.SIGKILL)
    assert supervisor.wait_for(lambda: haproxy_status(cluster["dir"], "analyzer-1").startswith("DOWN"), 10)
    down_after = time.monotonic() - killed_at
    print(f"HAProxy marked the killed analyzer down after {down_after:.2f} s")
    assert down_after < 5.0, f"HAProxy took {down_after:.1f} s"
    assert supervisor.wait_for(lambda: all(supervisor.of(c, "status")[-1]["state"] == "offline" for c in on_1), 10)
    for call in on_1:
        alerts = supervisor.of(call, "alert")
        assert alerts[-1]["state"] == "cleared" and alerts[-1]["note"] == "its analyzer went offline"

    later = [loadgen.Call(f"CA{uuid.uuid4().hex}", speech) for _ in range(2)]  # new calls: all to analyzer 2
    tcp = [loadgen.Call(str(uuid.uuid4()), speech)]  # and Asterisk's AudioSocket, through HAProxy's TCP mode

    async def new_calls():
        audiosocket = f"127.0.0.1:{cluster['AUDIOSOCKET_PORT']}"
        await asyncio.gather(
            loadgen.run_calls("twilio", target, later, 3.0, ramp_s=0.2),
            loadgen.run_calls("audiosocket", audiosocket, tcp, 3.0, ramp_s=0.2),
        )

    asyncio.run(new_calls())
    assert all(call.error is None for call in [*later, *tcp])
    later += tcp
    calling.join(30)
    assert all(call.error is None for call in calls if call.call_id in on_2)
    finished = lambda c: any(m["state"] == "finished" for m in supervisor.of(c, "status"))  # noqa: E731
    assert supervisor.wait_for(lambda: all(finished(c) for c in [*on_2, *(c.call_id for c in later)]), 20)
    for call in on_2:  # every window of the survivor's calls scored, and on the supervisor without a hole
        assert [m["t"] for m in survivor.of(call, "scores")] == [2.0 + 0.5 * i for i in range(25)]
        seen = [m["t"] for m in supervisor.of(call, "scores")]
        # The latest score goes out once a second per channel: two windows scored late together leave
        # two seconds between published ones; a broken connection would leave a hole of several.
        assert seen[-1] == 14.0 and max(np.diff(seen)) <= 2.0
    with urllib.request.urlopen(f"http://127.0.0.1:{analyzer_2}/api/status", timeout=5) as response:
        counters = json.loads(response.read())["hub"]
    assert counters["mqtt_alerts_dropped"] == 0 and counters["bridge_dropped"] == 0
    supervisor.stopping.set()
    survivor.stopping.set()
