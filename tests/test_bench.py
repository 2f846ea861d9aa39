"""The benchmarks run the product's assembly end to end and report what they measured, consistently.

Speed is measured by the benchmarks, not asserted, except where this
machine has room to spare: one simulated stream, and four real calls, are
far below its capacity, so those runs must lose nothing and stay within the
latency target.
"""

import json
import subprocess
import sys

from streamer.workers.pool import choose_kind
from tests.conftest import ROOT
from tools.harness import P95_TARGET_MS, expected_windows, model_window_s

# The keys the README's performance section quotes.
BENCH_KEYS = {
    "per_window_ms",
    "baseline_per_window_ms",
    "speedup_vs_baseline",
    "speedup_vs_baseline_incl_vad",
    "speedup_vs_baseline_batched",
    "throughput",
    "max_streams",
    "max_streams_lossless_any_latency",
    "p95_latency_ms_1_stream",
    "p95_latency_ms_max_streams",
    "p95_latency_ms_max_streams_all_calls_at_once",
    "start_to_first_score_s",
    "rss_mb_1_stream",
    "rss_mb_100_streams",
    "rss_mb_max_streams",
    "analysis_requested",
    "analysis_1_stream",
    "analysis_100_streams",
    "analysis_max_streams",
    "capacity_runs",
    "capacity_run_all_calls_at_once",
}
RUN_KEYS = {
    "streams",
    "analysis",
    "workers",
    "sustained",
    "lossless",
    "windows_expected_per_stream",
    "windows_per_stream_min_max",
    "windows_received",
    "windows_scored",
    "missing_windows",
    "overruns",
    "dropped",
    "errors",
    "p50_latency_ms",
    "p95_latency_ms",
    "rss_mb",
    "pss_mb",
}
CALL_RUN_KEYS = {
    "calls",
    "tracks",
    "analysis",
    "sustained",
    "lossless",
    "windows_expected_per_call",
    "windows_per_call_min_max",
    "scores_received",
    "missing_windows",
    "p50_latency_ms",
    "p95_latency_ms",
    "first_score_s_p50_max",
    "rss_mb",
    "pss_mb",
    "analyzer_cpu_s",
    "analyzer_cpu_cores",
}
PER_MESSAGE_KEYS = {"twilio_media_message_us", "loop_us_per_media_message", "generator_us_per_media_message"}


def run_tool(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_benchmark_runs_the_products_application_and_reports_what_it_measured(tmp_path):
    out = tmp_path / "bench.json"
    seconds = 3.0
    args = ["--quick", "--max-streams", "100", "--capacity-seconds", str(seconds), "--json", str(out)]
    proc = run_tool(args, timeout=600)
    result = json.loads(out.read_text())
    assert set(result) >= BENCH_KEYS
    # A failed measurement ends the benchmark with an error (exit 1) instead of writing a number.
    assert 1 < result["speedup_vs_baseline"] < 10_000
    assert 0 < result["start_to_first_score_s"] < 60
    assert (
        0 < result["per_window_ms"]["inference_ms"]["median"] < result["baseline_per_window_ms"]["total_ms"]["median"]
    )

    runs = {r["streams"]: r for r in result["capacity_runs"]}
    assert {1, 100} <= set(runs)
    due = expected_windows(seconds)  # each simulated card delivers exactly `seconds` of audio
    for n, run in runs.items():
        assert set(run) >= RUN_KEYS
        # The product's own choice of threads or processes (no --analysis given), and it says which.
        assert run["analysis"] == choose_kind(None, False, n) and run["workers"] >= 1
        assert run["windows_expected_per_stream"] == due
        assert 0 < run["p50_latency_ms"] <= run["p95_latency_ms"]
        assert 0 < run["pss_mb"] <= run["rss_mb"]
        if run["lossless"]:  # every stream got every window, and the analyzer's own count agrees
            assert run["windows_per_stream_min_max"] == [due, due]
            assert run["windows_received"] == run["windows_scored"] == n * due
    assert result["analysis_1_stream"] == "threads" and result["analysis_100_streams"] == "processes"

    one = runs[1]  # far below capacity: nothing lost, within the target
    assert one["lossless"] and one["sustained"] and one["p95_latency_ms"] <= P95_TARGET_MS
    assert one["overruns"] == one["dropped"] == one["errors"] == one["missing_windows"] == 0
    assert runs[100]["lossless"]
    # Worker processes hold a model each: 100 streams (processes) take more memory than one (a thread).
    assert 0 < result["rss_mb_1_stream"] < result["rss_mb_100_streams"] < 4000

    # The reported capacity is the largest sustained run, and the worst case re-ran that count.
    assert result["max_streams"] == max((n for n, r in runs.items() if r["sustained"]), default=0)
    assert result["capacity_run_all_calls_at_once"]["streams"] == result["max_streams"]
    assert result["capacity_run_all_calls_at_once"]["call_starts_over_s"] == 0
    assert "max real-time streams" in proc.stdout and "threads / processes" in proc.stdout


def test_the_telephony_capacity_run_works_end_to_end(tmp_path):
    """``python -m tools.bench calls``: four real Twilio calls through ``run_stream.py --serve``."""
    out = tmp_path / "calls.json"
    seconds = 8.0  # first windows wait for the worker's first use of its VAD: not most of the run's windows
    args = ["calls", "--calls", "4", "--seconds", str(seconds), "--ramp", "1", "--loop-seconds", "6"]
    proc = run_tool([*args, "--json", str(out)], timeout=300)
    result = json.loads(out.read_text())

    per_message = result["per_message"]
    assert set(per_message) >= PER_MESSAGE_KEYS
    assert 0 < per_message["twilio_media_message_us"] < 1000
    assert per_message["loop_us_per_media_message"] > 0 and per_message["generator_us_per_media_message"] > 0

    (run,) = result["runs"]
    assert set(run) >= CALL_RUN_KEYS
    assert run["analysis"] == choose_kind(None, True, 0)  # --serve: the product's choice, as it printed
    # Each call sends `seconds` of audio and hangs up: every window, and no more, reaches the dashboard.
    due = expected_windows(seconds, ends=True)
    assert run["windows_expected_per_call"] == due
    assert run["windows_per_call_min_max"] == [due, due] and run["scores_received"] == 4 * due
    # Four calls are far below this machine's capacity.
    assert run["lossless"] and run["sustained"] and run["p95_latency_ms"] <= P95_TARGET_MS
    assert run["missing_windows"] == run["media_gaps"] == run["overruns"] == run["dropped_messages"] == 0
    assert 0 < run["p50_latency_ms"] <= run["p95_latency_ms"]
    first_p50, first_max = run["first_score_s_p50_max"]
    assert model_window_s() <= first_p50 <= first_max  # a first score needs a whole window of audio
    assert run["analyzer_cpu_s"] > 0 and run["analyzer_cpu_cores"] > 0
    assert 0 < run["pss_mb"] <= run["rss_mb"]  # the analyzer and its worker processes
    assert result["max_calls_sustained"] == 4 and "most calls sustained" in proc.stdout
