"""End to end through real components: a PulseAudio loopback device, files, websockets."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import ROOT, read_messages, write_audio

from streamer.core.labels import EMOTIONS


def speech_scores(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "scores" and m["speech"]]


def all_finished(streams):
    """A predicate on messages: every one of ``streams`` has sent its finished status."""
    wanted = set(streams)
    return lambda ms: {m["stream"] for m in ms if m["type"] == "status" and m["state"] == "finished"} == wanted


def assert_distribution(probs: dict) -> None:
    assert list(probs) == list(EMOTIONS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(0 <= v <= 1 for v in probs.values())


def test_softphone_loopback_device_end_to_end(pulse_env, start_analyzer, speech_file):
    """A null sink stands in for the softphone; the analyzer captures its monitor."""
    analyzer = start_analyzer(["--device", "softphone.monitor", "--stream-id", "desk-1"], env=pulse_env)
    player = subprocess.Popen(
        f"paplay -d softphone '{speech_file}' && paplay -d softphone '{speech_file}'",
        shell=True,
        env=pulse_env,
    )
    try:
        messages = read_messages(analyzer.ws_url, lambda ms: len(speech_scores(ms)) >= 6, timeout=40)
    finally:
        player.wait(30)
    speech = speech_scores(messages)
    assert len(speech) >= 6, analyzer.output()
    for m in speech:
        assert (m["stream"], m["channel"]) == ("desk-1", "mono")
        assert_distribution(m["probs"])
        assert_distribution(m["rolling"])
        assert m["top"] == max(m["rolling"], key=m["rolling"].get)
        assert m["latency_ms"] > 0
    times = [m["t"] for m in messages if m["type"] == "scores"]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(round(t * 2) == t * 2 for t in times)  # every hop of 0.5 s, from the sample counter
    statuses = [m for m in messages if m["type"] == "status"]
    assert statuses and statuses[-1]["source"] == "softphone.monitor" and statuses[-1]["state"] == "running"

    # What came through the loopback is what was played: the live scores match the file analyzer's.
    from streamer.analysis.files import analyze_file
    from streamer.analysis.model import EmotionModel

    expected = analyze_file(str(speech_file), EmotionModel())["top"]
    assert speech[-1]["top"] == expected
    assert analyzer.stop() == 0


def test_missing_device_is_one_clear_line_and_exit_2(pulse_env):
    proc = subprocess.run(
        [sys.executable, "run_stream.py", "--device", "no-such-device", "--port", "0"],
        cwd=ROOT,
        env=pulse_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: no input device or PulseAudio source matches 'no-such-device'"]
    assert "softphone.monitor" in proc.stderr  # the device list follows


def test_input_files_stream_concurrently_and_page_is_served(start_analyzer, data_dir):
    files = [
        data_dir / "ravdess" / "Actor_03" / "03-01-04-02-01-01-03.flac",
        data_dir / "tess" / "YAF_happy" / "YAF_back_happy.flac",
    ]
    analyzer = start_analyzer(["--input", *map(str, files)])

    done = all_finished(f.stem for f in files)

    messages = read_messages(analyzer.ws_url, done, timeout=30)
    assert done(messages), messages
    by_stream = {f.stem: speech_scores([m for m in messages if m["stream"] == f.stem]) for f in files}
    assert all(by_stream.values()), by_stream
    # The shipped model adapts: each stream's weight grows from its first speech window, per stream.
    limit = json.loads((ROOT / "models" / "config.json").read_text())["adaptation"]["max_weight"]
    for scores in by_stream.values():
        adapted = [m["adapted"] for m in scores]
        assert adapted[0] > 0 and adapted[-1] < limit and adapted == sorted(set(adapted)), adapted
    assert len(by_stream[files[0].stem]) >= 3  # the RAVDESS clip: several windows, so it grew
    assert {m["adaptation"] for m in messages if m["type"] == "status"} == {limit}

    page = urllib.request.urlopen(analyzer.url + "/").read().decode()
    assert "uPlot.iife.min.js" in page and "app.js" in page
    for path in ("/static/app.js", "/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/LICENSE"):
        assert urllib.request.urlopen(analyzer.url + path).status == 200
    status = json.loads(urllib.request.urlopen(analyzer.url + "/api/status").read())
    assert {s["stream"] for s in status["streams"]} == {f.stem for f in files}
    assert "analysis: threads" in analyzer.output()  # two files: no worker processes needed
    assert analyzer.stop() == 0


def test_many_input_files_get_worker_processes_and_all_finish(start_analyzer, speech_audio, tmp_path):
    """Beyond a handful of sources the analysis runs in worker processes (files' rings in shared memory)."""
    files = [write_audio(tmp_path / f"f{i:02d}.wav", speech_audio, 16000) for i in range(10)]
    analyzer = start_analyzer(["--input", *map(str, files), "--fast"])

    done = all_finished(f.stem for f in files)

    messages = read_messages(analyzer.ws_url, done, timeout=60)
    assert done(messages)
    windows = int((len(speech_audio) / 16000 - 2.0) / 0.5) + 1 + (len(speech_audio) % 8000 != 0)
    for f in files:  # every window of every file, the final partial one included
        assert len([m for m in messages if m["type"] == "scores" and m["stream"] == f.stem]) == windows
    assert "analysis: processes" in analyzer.output()
    assert analyzer.stop() == 0
    assert "leaked shared_memory" not in analyzer.output()


def stalled_client(port: int) -> socket.socket:
    """A websocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return sock


def test_stalled_dashboard_does_not_stall_another(start_analyzer, speech_audio, tmp_path):
    rng = np.random.default_rng(0)
    pieces = []
    while sum(p.size for p in pieces) < 16000 * 300:  # 5 minutes of speech and pauses
        pieces += [speech_audio, np.zeros(int(rng.uniform(0.2, 2.0) * 16000), np.float32)]
    call = np.concatenate(pieces)
    files = [write_audio(tmp_path / f"call{i}.wav", call, 16000) for i in range(3)]
    analyzer = start_analyzer(
        ["--input", *map(str, files), "--fast", "--client-queue", "300", "--send-buffer-kb", "16"]
    )
    stuck = stalled_client(analyzer.port)
    try:
        done = all_finished(f.stem for f in files)
        messages = read_messages(analyzer.ws_url, done, timeout=120)
        assert done(messages)
        windows = int((call.size / 16000 - 2.0) / 0.5) + 1
        for f in files:
            times = [m["t"] for m in messages if m["type"] == "scores" and m["stream"] == f.stem]
            assert len(times) == len(set(times)) >= windows - 1  # all of them: nothing lost for the reader
        time.sleep(0.5)
        hub = json.loads(urllib.request.urlopen(analyzer.url + "/api/status").read())["hub"]
        assert hub["clients"] == 1  # the reader has left; the stalled one is still connected
        assert hub["dropped"] > 0  # the stalled client lost its oldest messages instead of blocking
    finally:
        stuck.close()
    assert analyzer.stop() == 0


def test_lost_device_is_reported_and_recaptured(tmp_path, start_analyzer):
    """The sound server dies mid-call and comes back: status says so, the process stays up."""
    from conftest import start_pulse, stop_pulse

    env = start_pulse(tmp_path)
    try:
        analyzer = start_analyzer(["--device", "softphone.monitor", "--stream-id", "desk-2"], env=env)

        def states() -> list[str]:
            return [
                s["state"] for s in json.loads(urllib.request.urlopen(analyzer.url + "/api/status").read())["streams"]
            ]

        def wait_for(state: str, timeout: float = 30.0) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if states() == [state]:
                    return
                time.sleep(0.2)
            raise AssertionError(f"never {state}: {states()}\n{analyzer.output()}")

        wait_for("running")
        stop_pulse(env)
        wait_for("reconnecting")
        start_pulse(tmp_path)
        wait_for("running")
        assert analyzer.proc.poll() is None
        assert "Traceback" not in analyzer.output()
        assert analyzer.stop() == 0
    finally:
        stop_pulse(env)


def test_named_channels_are_scored_separately(start_analyzer, speech_audio, tmp_path):
    """A stereo recording with the agent on the left and a silent caller on the right."""
    call = np.concatenate([speech_audio, speech_audio])
    stereo = np.stack([call, np.zeros_like(call)], axis=1)
    path = write_audio(tmp_path / "pbx-tap.wav", stereo, 16000)
    analyzer = start_analyzer(["--input", str(path), "--fast", "--channels", "agent,caller"])

    def done(ms):
        return any(m["type"] == "status" and m["state"] == "finished" for m in ms)

    messages = read_messages(analyzer.ws_url, done, timeout=30)
    scores = [m for m in messages if m["type"] == "scores"]
    agent = [m for m in scores if m["channel"] == "agent"]
    caller = [m for m in scores if m["channel"] == "caller"]
    assert {m["channel"] for m in scores} == {"agent", "caller"}
    assert len(agent) == len(caller) > 5
    assert sum(m["speech"] for m in agent) >= len(agent) // 2
    assert not any(m["speech"] for m in caller)
    assert [s for s in messages if s["type"] == "status"][-1]["channels"] == ["agent", "caller"]
