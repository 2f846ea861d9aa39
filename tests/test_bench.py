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
            "streamer.bench",
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
