"""The benchmark runs and reports its keys (speed itself is measured by the benchmark, not asserted)."""

import json
import subprocess
import sys

from tests.conftest import ROOT

KEYS = {
    "speedup_vs_baseline",
    "max_streams",
    "p95_latency_ms_1_stream",
    "p95_latency_ms_max_streams",
    "start_to_first_score_s",
    "rss_mb_100_streams",
    "per_window_ms",
    "baseline_per_window_ms",
    "throughput",
    "capacity_runs",
    "p95_latency_ms_max_streams_all_calls_at_once",
}


def test_benchmark_runs_and_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--quick",
            "--max-streams",
            "100",
            "--capacity-seconds",
            "3",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result) >= KEYS
    runs = {r["streams"]: r for r in result["capacity_runs"]}
    assert {1, 100} <= set(runs)
    # A failed measurement ends the benchmark with an error (exit 1) instead of writing a number,
    # so every figure here was measured; these ranges catch a broken one (speed is not asserted).
    assert 1 < result["speedup_vs_baseline"] < 10_000
    assert 0 < result["start_to_first_score_s"] < 60
    assert (
        0 < result["per_window_ms"]["inference_ms"]["median"] < result["baseline_per_window_ms"]["total_ms"]["median"]
    )
    one = runs[1]
    assert one["windows_received"] > 0 and 0 < one["p50_latency_ms"] <= one["p95_latency_ms"] < 10_000
    assert one["lossless"] and one["overruns"] == 0 and one["missing_windows"] == 0  # one stream loses nothing
    assert 0 < result["rss_mb_1_stream"] < result["rss_mb_100_streams"] < 4000
    assert "max real-time streams" in proc.stdout


def test_the_telephony_capacity_run_works_end_to_end(tmp_path):
    """``python -m streamer.bench calls``: a few real calls through run_stream.py --serve."""
    out = tmp_path / "calls.json"
    args = ["calls", "--calls", "4", "--seconds", "5", "--ramp", "1", "--loop-seconds", "3", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    per_message = result["per_message"]
    assert 0 < per_message["twilio_media_message_us"] < 1000 and per_message["loop_us_per_media_message"] >= 0
    (run,) = result["runs"]
    assert run["calls"] == 4 and run["lossless"] and run["missing_windows"] == 0 and run["scores_received"] >= 4 * 7
    assert 0 < run["p50_latency_ms"] <= run["p95_latency_ms"] < 10_000
    assert 0 < run["pss_mb"] <= run["rss_mb"]  # the analyzer and its worker processes
    assert result["max_calls_sustained"] in (0, 4) and "most calls sustained" in proc.stdout
