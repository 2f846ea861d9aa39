"""Do many ``--input`` files keep real time? ``python scripts/measure_file_pacing.py --files 300 --seconds 60``.

Starts ``run_stream.py --input`` with N copies of a speech file as real-time
streams, reads every message at a websocket client, and reports per stream
the windows received against those due, and the lag of each score behind
real time two ways: its arrival minus (the moment the analyzer said it
serves + the window's end ``t``), and as an independent client sees it
(arrival minus ``t`` per stream, zeroed at that stream's first score, the
first 5 s left out). Not in CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamer.app.application import DASHBOARD_LINE  # noqa: E402
from tools.harness import HOP_S, SPEECH_RATE, expected_windows, speech_like  # noqa: E402

SETTLE_S = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    from websockets.sync.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        audio = speech_like(args.seconds, seed=3)
        paths = []
        for i in range(args.files):
            paths.append(Path(tmp) / f"f{i:04d}.wav")
            sf.write(paths[-1], np.roll(audio, i * 7919), SPEECH_RATE)
        log = open(Path(tmp) / "log", "w+")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "run_stream.py", "--input", *map(str, paths), "--port", "0", "--client-queue", "100000"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while True:  # the streams start as it starts listening
                log.seek(0)
                found = DASHBOARD_LINE.search(log.read())
                if found:
                    started = time.time()
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"the analyzer exited: {log.read()}")
                time.sleep(0.01)
            lags: list[float] = []
            relative: list[float] = []
            settled: list[float] = []
            first: dict[str, float] = {}
            counts: dict[str, int] = {}
            with connect(f"ws://127.0.0.1:{found.group(2)}/ws", max_size=None) as ws:
                deadline = started + args.seconds + 2
                while time.time() < deadline:
                    try:
                        frame = ws.recv(timeout=1)
                    except TimeoutError:
                        continue
                    now = time.time()
                    for message in json.loads(frame):
                        if message["type"] == "scores":
                            stream, t = message["stream"], message["t"]
                            lags.append((now - started - t) * 1000)
                            counts[stream] = counts.get(stream, 0) + 1
                            # As an independent client sees it: arrival minus audio time, per stream,
                            # zeroed at that stream's first score; the first 5 s of each stream left out.
                            first.setdefault(stream, now - t)
                            if t > SETTLE_S:
                                settled.append(lags[-1])
                                relative.append((now - t - first[stream]) * 1000)
        finally:
            proc.terminate()
            proc.wait(30)
    due = expected_windows(len(audio) / SPEECH_RATE, hop_s=HOP_S, ends=True)  # a file ends: its last part is scored
    per_stream = [counts.get(p.stem, 0) for p in paths]
    result = {
        "files": args.files,
        "seconds": args.seconds,
        "windows_due_per_stream": due,
        "windows_per_stream_min_median": [min(per_stream), float(np.median(per_stream))],
        "lag_ms_p50_p95_max": [round(float(np.percentile(lags, q)), 1) for q in (50, 95, 100)] if lags else None,
        "lag_after_5s_ms_p50_p95_max": (
            [round(float(np.percentile(settled, q)), 1) for q in (50, 95, 100)] if settled else None
        ),
        "client_lag_after_5s_ms_p50_p95_max": (
            [round(float(np.percentile(relative, q)), 1) for q in (50, 95, 100)] if relative else None
        ),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
