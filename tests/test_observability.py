"""/metrics: Prometheus text of the counters the analyzer keeps, parsed by prometheus_client's own parser."""

from __future__ import annotations

import time
import urllib.request

import pytest
from conftest import write_audio
from prometheus_client.parser import text_string_to_metric_families

from streamer.core.histogram import LatencyHistogram
from streamer.outputs.prometheus import Snapshot, render


def parse(body: bytes) -> dict[str, dict]:
    """{sample name + labels: value}, per family name."""
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            out.setdefault(family.name, {})[key] = sample.value
    return out


def test_render_reports_each_counter_and_a_latency_histogram():
    a, b = LatencyHistogram(), LatencyHistogram()
    for seconds in (0.02, 0.03, 0.2):
        a.observe(seconds)
    b.observe(3.0)
    body, content_type = render(
        Snapshot(
            windows_scored=4,
            errors=1,
            restarts=2,
            overruns=3,
            dropped={"dropped": 5, "bridge_dropped": 0},
            clients=2,
            streams=7,
            mqtt_queue=9,
            latencies=[a, b],
        )
    )
    assert content_type.startswith("text/plain")
    metrics = parse(body)
    assert metrics["emotion_windows_scored"]["emotion_windows_scored_total"] == 4
    assert metrics["emotion_errors"]["emotion_errors_total"] == 1
    assert metrics["emotion_restarts"]["emotion_restarts_total"] == 2
    assert metrics["emotion_audio_overruns"]["emotion_audio_overruns_total"] == 3
    assert metrics["emotion_messages_dropped"]["emotion_messages_dropped_total|where=dropped"] == 5
    assert metrics["emotion_dashboard_clients"]["emotion_dashboard_clients"] == 2
    assert metrics["emotion_streams"]["emotion_streams"] == 7
    assert metrics["emotion_mqtt_queue"]["emotion_mqtt_queue"] == 9
    latency = metrics["emotion_window_latency_seconds"]
    assert latency["emotion_window_latency_seconds_bucket|le=0.025"] == 1
    assert latency["emotion_window_latency_seconds_bucket|le=0.25"] == 3
    assert latency["emotion_window_latency_seconds_bucket|le=5.0"] == 4
    assert latency["emotion_window_latency_seconds_count"] == 4
    assert latency["emotion_window_latency_seconds_sum"] == pytest.approx(3.25)


def test_histogram_rejects_unordered_buckets():
    with pytest.raises(ValueError):
        LatencyHistogram((0.5, 0.1))


def test_metrics_endpoint_counts_the_live_windows(start_analyzer, speech_audio, tmp_path):
    import json

    import numpy as np

    call = write_audio(tmp_path / "call.wav", np.tile(speech_audio, 3), 16000)
    analyzer = start_analyzer(["--input", str(call), "--fast"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # counters settle once the file is done
        streams = json.loads(urllib.request.urlopen(analyzer.url + "/api/status", timeout=5).read())["streams"]
        if [s["state"] for s in streams] == ["finished"]:
            break
        time.sleep(0.2)
    with urllib.request.urlopen(analyzer.url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        metrics = parse(response.read())
    scored = metrics["emotion_windows_scored"]["emotion_windows_scored_total"]
    assert scored == streams[0]["windows"] >= 10
    assert metrics["emotion_window_latency_seconds"]["emotion_window_latency_seconds_count"] == scored
    assert metrics["emotion_errors"]["emotion_errors_total"] == 0
    assert metrics["emotion_streams"]["emotion_streams"] == 1
    assert analyzer.stop() == 0
