"""File analysis: the CLI contract, bad input, and agreement with the feature function."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_audio

from streamer.analysis.files import analyze_audio
from streamer.core.features import frame_features
from streamer.core.labels import EMOTIONS


def run_cli(*args: str, module: str = "streamer.analysis.files") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_distribution(probs: dict) -> None:
    assert list(probs) == list(EMOTIONS)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.fixture(scope="module")
def files(tmp_path_factory, speech_file: Path, speech_audio: np.ndarray) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    # A 9.2 s "call": speech, a pause, speech again, as 44.1 kHz stereo OGG.
    import soxr

    call = np.concatenate([speech_audio, np.zeros(16000, np.float32), speech_audio])
    call44 = soxr.resample(call, 16000, 44100)
    stereo = np.stack([call44, call44 * 0.5], axis=1)
    truncated = d / "truncated.flac"
    write_audio(truncated, speech_audio, 16000)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    (d / "empty.wav").write_bytes(b"")
    (d / "notes.wav").write_text("this is a text file, not audio\n")
    return {
        "speech": speech_file,
        "call": write_audio(d / "call.ogg", stereo, 44100, format="OGG", subtype="VORBIS"),
        "silence": write_audio(d / "silence.wav", np.zeros(48000, np.int16), 16000),
        "hiss": write_audio(d / "hiss.wav", (rng.standard_normal(48000) * 0.003).astype(np.float32), 16000),
        "short": write_audio(d / "short.wav", speech_audio[16000:32000], 16000),
        "empty": d / "empty.wav",
        "text": d / "notes.wav",
        "truncated": truncated,
        "missing": d / "missing.wav",
    }


def test_cli_jsonl_contract_and_bad_input(files):
    order = ["speech", "empty", "call", "text", "silence", "missing", "short", "hiss", "truncated"]
    proc = run_cli(*[str(files[k]) for k in order], "--jsonl")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in lines] == [str(files[k]) for k in order]
    results = dict(zip(order, lines))

    for bad in ("empty", "text", "missing"):
        error = results[bad]["error"]
        assert isinstance(error, str) and error and "\n" not in error
        assert set(results[bad]) == {"file", "error"}
    assert "empty" in results["empty"]["error"]
    assert "not found" in results["missing"]["error"]
    # A truncated FLAC either fails cleanly or yields what could be decoded.
    assert "error" in results["truncated"] or results["truncated"]["duration_s"] < 4

    for good in ("speech", "call", "short"):
        r = results[good]
        assert set(r) == {"file", "duration_s", "overall", "top", "arousal", "adapted", "windows"}
        assert 0.0 <= r["adapted"] <= 1.0
        assert_distribution(r["overall"])
        assert r["top"] == max(r["overall"], key=r["overall"].get)
        high = ("angry", "fearful", "happy", "surprised")
        assert r["arousal"] == pytest.approx(sum(r["overall"][e] for e in high), abs=1e-4)
        for w in r["windows"]:
            assert 0 <= w["start"] < w["end"] <= r["duration_s"] + 1e-6
            if w["speech"]:
                assert_distribution(w["probs"])
                assert w["arousal"] == pytest.approx(sum(w["probs"][e] for e in high), abs=1e-4)
            else:
                assert w["probs"] is None and w["arousal"] is None

    for quiet in ("silence", "hiss"):
        r = results[quiet]
        assert r["overall"] is None and r["top"] is None and r["adapted"] is None and r["arousal"] is None
        assert r["windows"] and not any(w["speech"] for w in r["windows"])


def test_whole_recording_is_covered(files):
    """Unlike the old API (first 10 s only), windows run to the end of the file."""
    proc = run_cli(str(files["call"]), "--jsonl")
    r = json.loads(proc.stdout)
    assert r["duration_s"] == pytest.approx(2 * 4.104 + 1, abs=0.05)
    windows = r["windows"]
    assert windows[0]["start"] == 0.0
    assert windows[-1]["end"] == pytest.approx(r["duration_s"], abs=0.03)
    assert all(b["start"] - a["start"] <= 0.5 + 1e-6 for a, b in zip(windows, windows[1:]))
    speech = [w["speech"] for w in windows]
    assert any(speech[:4]) and any(speech[-4:]) and not all(speech)  # speech in both halves, a pause between


def test_human_readable_output(files):
    proc = run_cli(str(files["speech"]), str(files["silence"]))
    assert proc.returncode == 0
    first, second = proc.stdout.splitlines()
    assert "speech windows" in first and "%" in first
    assert second.endswith("no speech")


def test_first_name_still_works(files):
    """``python -m streamer.analyze`` (the command's first name) is the same analyzer."""
    old = run_cli(str(files["speech"]), "--jsonl", module="streamer.analyze")
    new = run_cli(str(files["speech"]), "--jsonl")
    assert old.returncode == 0 and old.stderr == new.stderr
    assert json.loads(old.stdout)["overall"] == json.loads(new.stdout)["overall"]


def test_missing_model_is_one_line(tmp_path, files):
    proc = run_cli(str(files["speech"]), "--model-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "make train" in proc.stderr


def test_analyzer_feeds_the_model_what_the_feature_function_gives(model, speech_audio):
    """Each window's probabilities equal the model on frame_features(window audio).

    With the recording's speaker adaptation: the statistics of all its speech windows.
    """
    result = analyze_audio(speech_audio, model)
    config = model.config
    speech = [w for w in result["windows"] if w["speech"]]
    starts = [int(round(w["start"] * config.sample_rate)) for w in speech]
    frames = np.stack([frame_features(speech_audio[s : s + config.window_samples], config) for s in starts])
    stats, adapted = model.new_adapter().stats_for_whole(frames)
    assert result["adapted"] == round(adapted, 3)
    direct = model.predict(frames, stats)
    np.testing.assert_allclose([list(w["probs"].values()) for w in speech], direct, atol=2e-3)
    assert len(speech) >= 2


def speech_windows(result: dict, audio: np.ndarray, config) -> np.ndarray:
    """The raw feature windows of a result's speech windows, from frame_features of their audio."""
    starts = [int(round(w["start"] * config.sample_rate)) for w in result["windows"] if w["speech"]]
    return np.stack([frame_features(audio[s : s + config.window_samples], config) for s in starts])


def result_probs(result: dict) -> np.ndarray:
    return np.array([list(w["probs"].values()) for w in result["windows"] if w["speech"]])


def test_file_is_scored_with_its_own_speech_statistics(model, speech_audio, monkeypatch):
    """With adaptation on, every window uses stats_for_whole of all the file's speech windows."""
    from streamer.core.adaptation import AdaptationConfig

    monkeypatch.setattr(model, "adaptation", AdaptationConfig(max_weight=0.5))
    result = analyze_audio(speech_audio, model)
    windows = speech_windows(result, speech_audio, model.config)
    stats, weight = model.new_adapter().stats_for_whole(windows)
    assert len(windows) >= 2 and 0 < weight < 0.5
    assert result["adapted"] == round(weight, 3)
    expected = model.predict(windows, stats)
    np.testing.assert_allclose(result_probs(result), expected, atol=2e-3)
    assert not np.allclose(expected, model.predict(windows), atol=1e-3)  # adaptation changed the scores
    # Uploads give the live worker the stats with their windows: the same result.
    from streamer.workers.thread import AnalysisWorker

    worker = AnalysisWorker(model, lambda m: None)
    worker.start()
    try:
        assert analyze_audio(speech_audio, model, predict=worker.predict) == result
    finally:
        worker.stop()


def test_without_adaptation_files_use_the_population_statistics(model, speech_audio, monkeypatch):
    from streamer.core.adaptation import AdaptationConfig

    monkeypatch.setattr(model, "adaptation", AdaptationConfig(max_weight=0.0))
    seen = []

    def predict(frames, stats):
        seen.append(stats)
        return model.predict(frames, stats)

    result = analyze_audio(speech_audio, model, predict=predict)
    assert result["adapted"] == 0.0 and seen and all(s is None for s in seen)
    windows = speech_windows(result, speech_audio, model.config)
    np.testing.assert_allclose(result_probs(result), model.predict(windows), atol=2e-3)
    quiet = analyze_audio(np.zeros(48000, np.float32), model)
    assert quiet["adapted"] is None and quiet["overall"] is None
