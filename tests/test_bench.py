"""The benchmarks run the product's assembly end to end and report what they measured, consistently.

Speed is measured by the benchmarks, not asserted, except where this
machine has room to spare: one simulated stream, and four real calls, are
far below its capacity, so those runs must lose nothing and stay within the
latency target.
"""

import json
import subprocess
import sys

import numpy as np
from conftest import ROOT

from streamer.workers.pool import choose_kind
from tools.bench_calls import call_lags, merge_recordings
from tools.harness import P95_TARGET_MS, SETTLE_S, expected_windows, model_window_s

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
    "p95_within_target",
    "client_streams",
    "client_messages",
    "client_cpu_cores",
    "first_score_s_p50_max",
    "rss_mb",
    "pss_mb",
    "analyzer_cpu_s",
    "analyzer_cpu_cores",
}
# The calls bench's lag figures: the independent client's (the headline), from the generator's send, from its tick.
CALL_LAG_KEYS = [
    "client_lag_ms",
    "client_lag_ms_incl_first_5s",
    "client_lag_ms_stream_max",
    "send_to_client_ms",
    "send_to_client_ms_incl_first_5s",
    "tick_to_client_ms",
    "tick_to_client_ms_incl_first_5s",
]
CALL_RUN_KEYS |= set(CALL_LAG_KEYS)
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
    # Four calls are far below this machine's capacity: sustained (the client's and the send figure).
    assert run["lossless"] and run["sustained"] and run["client_lag_ms"]["p95"] <= P95_TARGET_MS
    assert run["p95_within_target"] == {"client": True, "send": True}
    assert run["missing_windows"] == run["media_gaps"] == run["overruns"] == run["dropped_messages"] == 0
    # The independent client (its own process) saw every call and counted every message it got.
    assert run["client_streams"] == 4 and run["client_messages"] >= run["scores_received"]
    assert 0 <= run["client_cpu_cores"] < 1
    for key in CALL_LAG_KEYS:  # each a p50 <= p95 <= p99 <= max, measured (the calls run past 5 s)
        assert list(run[key]) == ["p50", "p95", "p99", "max"], key
        assert sorted(run[key].values()) == list(run[key].values()), key
    # A score arrives after its audio was sent (one wall clock for generator and client).
    assert run["send_to_client_ms_incl_first_5s"]["p50"] > 0 and run["tick_to_client_ms_incl_first_5s"]["p50"] > 0
    # Zeroed at each stream's first score, which itself counts 0 (so the whole run's max is not negative).
    assert run["client_lag_ms_incl_first_5s"]["max"] >= 0
    assert "CLIENT LAG" in proc.stdout
    first_p50, first_max = run["first_score_s_p50_max"]
    assert model_window_s() <= first_p50 <= first_max  # a first score needs a whole window of audio
    assert run["analyzer_cpu_s"] > 0 and run["analyzer_cpu_cores"] > 0
    assert 0 < run["pss_mb"] <= run["rss_mb"]  # the analyzer and its worker processes
    assert result["max_calls_sustained"] == 4 and "most calls sustained" in proc.stdout


def test_call_lags_zero_each_stream_at_its_first_score_and_leave_out_its_first_seconds():
    """The calls bench's figures from a client's arrivals, the generator's clock and its send times."""
    tick_s, phases = 0.005, 4  # the generator's clock: 4 phases of each 20 ms
    ticks = [1000.0 + tick_s * i for i in range(phases * 1000)]
    gen = {"ticks": ticks, "phases": phases, "starts": {"A": 0, "B": 1}}
    # Each message went out 1 ms after its tick was due.
    sends = {c: np.array([ticks[s + phases * k] + 0.001 for k in range(900)]) for c, s in gen["starts"].items()}
    scores = []
    for call, start in gen["starts"].items():
        for i in range(13):  # windows end at 2.0, 2.5 ... 8.0 s
            t = 2.0 + 0.5 * i
            behind = 0.1 if call == "B" and t > 6 else 0.0  # B falls 100 ms behind after 6 s,
            behind += 0.2 if call == "A" and t == 3.0 else 0.0  # A is 200 ms late once in its first 5 s
            last_message = start + phases * (round(t / 0.02) - 1)  # holds the window's last sample
            scores.append([call, "caller", t, ticks[last_message] + 0.05 + behind, 3.0])
    scores.sort(key=lambda row: row[3])  # arrival order
    scores.append(["not-a-call", "caller", 3.0, 2000.0, 3.0])  # not started by the generator: ignored
    lags = call_lags(scores, gen, sends)

    assert lags["counts"] == {"A": 13, "B": 13}
    # Client: 0 for A and for B until 6 s, +100 ms after; A's late score is in its first 5 s (t <= 5), left out.
    after = [t for t in (2.0 + 0.5 * i for i in range(13)) if t > SETTLE_S]
    assert lags["client_lag_ms"]["p50"] == 0.0 and lags["client_lag_ms"]["max"] == 100.0
    assert lags["client_lag_ms_incl_first_5s"]["max"] == 200.0
    assert lags["client_lag_ms_stream_max"]["max"] == 100.0 and lags["client_lag_ms_stream_max"]["p50"] == 50.0
    assert np.isclose(
        lags["client_lag_ms"]["p95"], np.percentile([0.0] * len(after) + [100.0 * (t > 6) for t in after], 95)
    )
    # From the send: 50 ms less the 1 ms the generator ran late; from its clock's tick: 50 ms.
    assert lags["send_to_client_ms"]["p50"] == 49.0 and lags["send_to_client_ms"]["max"] == 149.0
    assert lags["send_to_client_ms_incl_first_5s"]["max"] == 249.0
    assert lags["tick_to_client_ms"]["p50"] == 50.0 and lags["tick_to_client_ms"]["max"] == 150.0
    assert lags["tick_to_client_ms_incl_first_5s"]["max"] == 250.0
    # A call's first score: its first message's tick to the arrival of the window ending at 2.0 s.
    assert np.allclose(list(lags["first_scores_s"].values()), 2.0 - 0.02 + 0.05)


def test_a_clusters_dashboard_recordings_merge_into_one_in_arrival_order():
    """``calls --cluster N``: one client per analyzer (each sees only its own calls), measured as one client."""

    def recording(rows, cpu_s, seconds):
        statuses = {row[0]: {"stream": row[0]} for row in rows}
        return {"scores": rows, "statuses": statuses, "frames": len(rows), "messages": len(rows) + 1,
                "parse_s": 0.01, "cpu_s": cpu_s, "seconds": seconds, "extensions": ["permessage-deflate"]}  # fmt: skip

    a = recording([["A", "caller", 2.0, 10.0, 3.0], ["A", "caller", 3.0, 11.0, 3.0]], 0.5, 20.0)
    b = recording([["B", "caller", 2.0, 10.5, 3.0], ["B", "caller", 3.0, 11.5, 3.0]], 0.3, 19.0)
    merged = merge_recordings([a, b])
    assert [row[3] for row in merged["scores"]] == [10.0, 10.5, 11.0, 11.5]
    assert set(merged["statuses"]) == {"A", "B"} and merged["frames"] == 4 and merged["messages"] == 6
    assert merged["cpu_s"] == 0.8 and merged["seconds"] == 20.0 and merged["extensions"] == ["permessage-deflate"]
    # The figures are those of one client that saw both analyzers' calls.
    gen = {"ticks": [0.0] * 1000, "phases": 1, "starts": {"A": 0, "B": 0}}
    sends = {c: np.zeros(200) for c in "AB"}
    assert call_lags(merged["scores"], gen, sends)["counts"] == {"A": 2, "B": 2}
    assert merge_recordings([a]) == a
