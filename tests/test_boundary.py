"""The core imports and runs with the edge libraries unavailable."""

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

BLOCKED = ("sounddevice", "websockets", "aiomqtt", "tensorflow", "keras", "fastapi", "uvicorn", "librosa", "numba")

PRELUDE = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"{{name}} is blocked in this test")
    sys.meta_path.insert(0, Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_core_modules_import_without_edge_libraries():
    proc = run_blocked(
        """
        import streamer.audio, streamer.features, streamer.labels, streamer.vad, streamer.alerts
        import streamer.ringbuffer, streamer.windowing, streamer.scoring, streamer.messages, streamer.pipeline
        import streamer.adaptation, streamer.calibration, streamer.worker, streamer.supervision, streamer.metrics
        import streamer.backoff, streamer.telephony
        import streamer.training.augment, streamer.training.metrics, streamer.training.corpora
        import sys
        assert not any(m.split(".")[0] in ("tensorflow", "keras", "sounddevice") for m in sys.modules)
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_file_analysis_runs_on_litert_without_tensorflow_or_librosa():
    proc = run_blocked(
        """
        import numpy as np
        from streamer.analyze import analyze_audio
        from streamer.runtime import EmotionModel
        model = EmotionModel()
        assert model.backend == "litert"
        t = np.arange(48000) / 16000
        result = analyze_audio((0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), model)
        assert len(result["windows"]) == 3
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_blocker_really_blocks():
    proc = run_blocked("import tensorflow")
    assert proc.returncode != 0 and "blocked in this test" in proc.stderr
