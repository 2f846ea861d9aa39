"""The first run on a server without a sound card: ``./run.sh`` with no options serves calls.

PortAudio is shown no input device at all: ALSA gets a configuration whose
only devices name a card that does not exist (so neither the machine's
cards nor any plugin device can be opened), and PulseAudio a server
address where nothing listens (so no client autospawns one).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, wait_until, write_audio

NO_CARD_ALSA = "pcm.!default { type hw card 99 }\nctl.!default { type hw card 99 }\n"
NO_DEVICE_LINE = "no input device here: serving calls only"


@pytest.fixture
def no_device_env(tmp_path: Path) -> dict:
    """An environment in which PortAudio lists no input device; skips if this machine's still shows one."""
    conf = tmp_path / "alsa-no-cards.conf"
    conf.write_text(NO_CARD_ALSA)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf), "PULSE_SERVER": f"unix:{tmp_path / 'no-pulse'}"}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sounddevice as sd; print(sum(d['max_input_channels'] > 0 for d in sd.query_devices()))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "0":
        pytest.skip(f"cannot hide this machine's input devices from PortAudio: {probe.stdout}{probe.stderr}")
    return env


def user_lines(output: str) -> list[str]:
    """The analyzer's own lines: without LiteRT's one INFO line per process that loads the model."""
    return [line for line in output.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]


def test_without_an_input_device_it_says_so_once_serves_calls_and_prints_how_to_feed_it(
    no_device_env, start_analyzer, tmp_path
):
    analyzer = start_analyzer([], env=no_device_env)  # waits until /api/status answers
    port = analyzer.port
    page = urllib.request.urlopen(analyzer.url + "/", timeout=10)
    assert page.status == 200 and "<html" in page.read().decode().lower()

    lines = user_lines(analyzer.output())
    said = [line for line in lines if "input device" in line and "--device" not in line]
    assert len(said) == 1 and said[0].startswith(NO_DEVICE_LINE), lines
    assert f"dashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)" in lines
    assert any(line.startswith("analysis: processes") for line in lines), lines  # as --serve: calls need them
    text = "\n".join(lines)
    assert "./run.sh --input FILE.wav" in text and "./run.sh --device NAME" in text and "--list-devices" in text
    assert not any(line.startswith("error:") for line in lines) and "Traceback" not in text
    assert "INFO: Created TensorFlow Lite" not in text  # native libraries' notices are not for users

    # The printed load generator command works against the printed port, as printed (shorter calls).
    loadgen = next(line for line in lines if "-m tools.loadgen" in line)
    args = shlex.split(loadgen[loadgen.index("-m tools.loadgen") :])
    assert f"ws://127.0.0.1:{port}/twilio" in args, loadgen
    speech = write_audio(tmp_path / "tone.wav", 0.3 * np.sin(np.arange(16000 * 2) * 0.11), 16000)
    args = [str(speech) if a == "FILE.wav" else a for a in args]
    run = subprocess.run(
        [sys.executable, *args, "--calls", "2", "--seconds", "2", "--ramp", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["calls"] == 2 and summary["failed"] == 0, summary

    # Each Twilio call became a stream (named by its callSid) that finished with its hang-up.
    def calls() -> dict[str, str]:
        status = json.loads(urllib.request.urlopen(analyzer.url + "/api/status", timeout=10).read())
        return {s["stream"]: s["state"] for s in status["streams"] if s["stream"].startswith("CA")}

    wait_until(lambda: list(calls().values()) == ["finished", "finished"], timeout=20)
    assert analyzer.stop() == 0
    assert "Traceback" not in analyzer.output()


@pytest.mark.parametrize(
    "capture", [["--device", "0"], ["--channels", "agent,caller"]], ids=["explicit-device", "channels"]
)
def test_asking_for_a_device_that_cannot_be_opened_still_exits_2_with_one_line(no_device_env, capture):
    """Only a run that asked nothing of a device turns into a server of calls."""
    proc = subprocess.run(
        [sys.executable, "run_stream.py", *capture, "--port", "0"],
        cwd=ROOT,
        env=no_device_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = user_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: cannot open input device"), lines  # no empty device list
