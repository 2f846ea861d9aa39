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
    assert {1, 100} <= {r["streams"] for r in result["capacity_runs"]}
    assert result["speedup_vs_baseline"] > 0 and result["start_to_first_score_s"] > 0
    assert "max real-time streams" in proc.stdout
