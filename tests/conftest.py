"""Shared fixtures: the data folder, the shipped model, audio files to analyse."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("EMOTION_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    path = Path(value)
    if not (path / "ravdess").is_dir():
        pytest.skip(f"corpora not found at {path} (set EMOTION_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def speech_file(data_dir: Path) -> Path:
    """An angry RAVDESS clip (actor 1, strong intensity)."""
    return data_dir / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="session")
def speech_audio(speech_file: Path) -> np.ndarray:
    from streamer.analysis.decode import load_audio

    return load_audio(speech_file, 16000)


@pytest.fixture(scope="session")
def model():
    from streamer.analysis.model import EmotionModel

    return EmotionModel()


@pytest.fixture(scope="session", autouse=True)
def warm_librosa() -> None:
    """librosa compiles numba code on first use; pay it once per session."""
    from streamer.core.features import FeatureConfig, frame_features

    frame_features(np.zeros(16000, np.float32), FeatureConfig())


def write_audio(path: Path, audio: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(path, audio, rate, **kwargs)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_pulse(runtime: Path) -> dict:
    """Start a private PulseAudio server with a null sink 'softphone' (the softphone's output)."""
    import shutil
    import subprocess

    if not shutil.which("pulseaudio") or not shutil.which("paplay"):
        pytest.fail("pulseaudio and paplay are needed (the test command installs them)")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
    env.pop("PULSE_SERVER", None)
    subprocess.run(
        [
            "pulseaudio",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "-n",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=softphone",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return env


def stop_pulse(env: dict) -> None:
    import subprocess

    subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def pulse_env(tmp_path_factory):
    env = start_pulse(tmp_path_factory.mktemp("pulse-runtime"))
    yield env
    stop_pulse(env)


class Analyzer:
    """A run_stream.py process on a port the OS picks (``--port 0``), stopped with SIGTERM at the end.

    The bound port is read from the line the analyzer prints when it listens.
    """

    def __init__(self, args: list[str], env: dict | None = None):
        import subprocess
        import sys
        import tempfile

        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the fixture
            "w+", prefix="run_stream-", suffix=".log", dir=ROOT / ".pytest_cache", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, "run_stream.py", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._address: tuple[str, int] | None = None  # (scheme, port) once it listens

    @property
    def port(self) -> int:
        """The port it listens on, once it says so (waits up to a minute)."""
        return self._listening()[1]

    def _listening(self) -> tuple[str, int]:
        import time

        from streamer.app.application import DASHBOARD_LINE

        deadline = time.monotonic() + 60
        while self._address is None:
            found = DASHBOARD_LINE.search(self.output())
            if found:
                self._address = (found.group(1), int(found.group(2)))
            elif self.proc.poll() is not None:
                raise AssertionError(f"analyzer exited with {self.proc.returncode}:\n{self.output()}")
            elif time.monotonic() > deadline:
                raise AssertionError(f"analyzer did not start listening:\n{self.output()}")
            else:
                time.sleep(0.05)
        return self._address

    @property
    def url(self) -> str:
        scheme, port = self._listening()
        return f"{scheme}://127.0.0.1:{port}"

    @property
    def ws_url(self) -> str:
        scheme, port = self._listening()
        return f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{port}/ws"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the server answers HTTP (any status: a token may be required)."""
        import ssl
        import time
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        url = self.url + "/api/status"
        unverified = ssl._create_unverified_context()  # the tests' self-signed certificates
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"analyzer exited with {self.proc.returncode}:\n{self.output()}")
            try:
                urllib.request.urlopen(url, timeout=1, context=unverified).read()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"analyzer not ready:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout: float = 20.0) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def start_analyzer():
    started: list[Analyzer] = []

    def start(args: list[str], env: dict | None = None, ready: bool = True) -> Analyzer:
        (ROOT / ".pytest_cache").mkdir(exist_ok=True)
        analyzer = Analyzer(args, env)
        started.append(analyzer)
        if ready:
            analyzer.wait_ready()
        return analyzer

    yield start
    for analyzer in started:
        if analyzer.proc.poll() is None:
            analyzer.proc.kill()
            analyzer.proc.wait(10)
        analyzer.log.close()


def read_messages(ws_url: str, until, timeout: float = 30.0) -> list[dict]:
    """Collect websocket messages (frames are arrays of them) until ``until(messages)`` or time runs out."""
    import json
    import time

    from websockets.sync.client import connect

    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    with connect(ws_url, open_timeout=10) as ws:
        while time.monotonic() < deadline and not until(messages):
            try:
                messages.extend(json.loads(ws.recv(timeout=max(0.05, deadline - time.monotonic()))))
            except TimeoutError:
                break
    return messages


def twilio_start_closes(url: str, token: str | None, **connect_kw) -> int | None:
    """Open a Twilio media stream (``connected``, ``start``) with ``token`` as its custom parameter:
    the close code the analyzer answers with, or None if it keeps the call for 1.5 s."""
    import uuid

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tools.loadgen import Call, TwilioCall

    frames = TwilioCall(Call(f"CA{uuid.uuid4().hex}", np.zeros(160, np.float32)), ["AAAA"], None, 0, token=token)
    with connect(url, open_timeout=5, **connect_kw) as ws:
        for text in frames.opening:
            ws.send(text)
        try:
            ws.recv(timeout=1.5)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            return closed.rcvd.code
    return None


class Mosquitto:
    """A real Mosquitto broker on a free loopback port, restartable (with persistence)."""

    def __init__(self, workdir: Path, extra: str = "allow_anonymous true\n"):
        import shutil

        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.extra = extra  # authentication lines of the config
        if not Path(binary).exists():
            pytest.fail("mosquitto is needed (the test command installs it)")
        self.binary = binary
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self._configure(free_port())
        self.proc = None
        self.start()

    def _configure(self, port: int) -> None:
        self.port = port
        self.url = f"mqtt://127.0.0.1:{port}"
        self.config.write_text(
            f"listener {port} 127.0.0.1\n{self.extra}"
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\nuser root\n"
        )

    def start(self) -> None:
        """Start on its port; on a fresh broker whose free port was taken meanwhile, try another.

        (Mosquitto cannot listen on port 0 and report the port, so the port is picked first.)
        """
        import socket
        import subprocess
        import time

        for _ in range(5):
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            self.stop()
            self._configure(free_port())
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(tmp_path)
    yield broker
    broker.stop()


class MessageCollector:
    """An ``emit`` callback that keeps every message (from any thread) for a test to look at."""

    def __init__(self):
        import threading

        self.messages: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, message: dict) -> None:
        with self.lock:
            self.messages.append(message)

    def of(self, kind: str, stream: str | None = None) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["type"] == kind and stream in (None, m.get("stream"))]


def wait_until(predicate, timeout: float) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class MqttRecorder:
    """Subscribes to a topic filter and records (topic, payload, qos, retain)."""

    def __init__(self, port: int, topic: str = "emotion/#", client_id: str | None = None, clean: bool = True):
        import threading

        import paho.mqtt.client as paho

        self.messages: list[tuple[str, dict, int, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=clean)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        import json

        payload = json.loads(msg.payload) if msg.payload else None  # empty: a retained message cleared
        with self._lock:
            self.messages.append((msg.topic, payload, msg.qos, bool(msg.retain)))

    def wait_for(self, predicate, timeout: float = 30.0) -> list:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        with self._lock:
            raise AssertionError(
                f"no matching MQTT message; got {[(t, (p or {}).get('state')) for t, p, _, _ in self.messages]}"
            )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class AppServer:
    """An ASGI app served by uvicorn in a thread on a port the OS picks (bound here, port 0)."""

    def __init__(self, app, **config):
        import socket
        import threading
        import time

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the app server did not start"
            time.sleep(0.01)
        scheme = "https" if config.get("ssl_certfile") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve_app():
    """``serve_app(app, **uvicorn_config)`` -> a running AppServer, stopped after the test."""
    servers: list[AppServer] = []

    def start(app, **config) -> AppServer:
        servers.append(AppServer(app, **config))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
