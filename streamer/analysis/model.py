"""Loading the shipped model and classifying windows of features.

The fast path is LiteRT (``ai-edge-litert``) with one fixed-batch model per
batch size; it keeps TensorFlow (seconds and hundreds of MB to import) out
of the serving process. Without LiteRT, the Keras file is used through TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np

from streamer.core.adaptation import AdaptationConfig, SpeakerAdapter
from streamer.core.calibration import apply_temperature
from streamer.core.features import FeatureConfig, FeatureStats, frame_features, normalize_windows, use_mel_basis
from streamer.core.labels import EMOTIONS
from streamer.resources import models_dir

CONFIG_NAME = "config.json"
MEL_BASIS_NAME = "mel_basis.npy"  # librosa's filterbank for the model's config, so serving needs no librosa
KERAS_NAME = "emotion_lstm.keras"
LITERT_BATCH_SIZES = (1, 8, 32)
DEFAULT_MODEL_DIR = models_dir()


def litert_name(batch_size: int) -> str:
    return f"emotion_lstm_b{batch_size}.tflite"


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 to /dev/null for a moment: LiteRT's C++ prints an INFO line per interpreter
    ("Created TensorFlow Lite XNNPACK delegate") that no switch turns off; it is not for users.
    Python errors still raise."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class ModelError(RuntimeError):
    """The model folder is missing or inconsistent; the message is user-facing."""


class _LiteRTBackend:
    def __init__(self, model_dir: Path, batch_sizes: tuple[int, ...], num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.batch_sizes = batch_sizes
        self._runners = {}
        for size in batch_sizes:
            with native_stderr_silenced():
                interpreter = Interpreter(model_path=str(model_dir / litert_name(size)), num_threads=num_threads)
                interpreter.allocate_tensors()
            self._runners[size] = (
                interpreter,
                interpreter.get_input_details()[0]["index"],
                interpreter.get_output_details()[0]["index"],
            )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        interpreter, inp, out = self._runners[batch.shape[0]]
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        return interpreter.get_tensor(out).copy()


class _KerasBackend:
    def __init__(self, model_dir: Path) -> None:
        import keras

        self._model = keras.models.load_model(model_dir / KERAS_NAME, compile=False)
        self.batch_sizes = LITERT_BATCH_SIZES

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._model(batch, training=False))


class EmotionModel:
    """The emotion classifier with its feature settings.

    Parameters
    ----------
    model_dir : Path
        Folder with ``config.json`` and the model files.
    backend : {"auto", "litert", "keras"}
        ``auto`` prefers LiteRT when installed.
    num_threads : int
        Threads per LiteRT interpreter.

    Calls are serialised by a lock: interpreters are not thread-safe.
    """

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR, backend: str = "auto", num_threads: int = 1) -> None:
        model_dir = Path(model_dir)
        self.model_dir = model_dir
        try:
            meta = json.loads((model_dir / CONFIG_NAME).read_text())
        except FileNotFoundError:
            raise ModelError(f"no trained model in {model_dir} (missing {CONFIG_NAME}); run 'make train'") from None
        if tuple(meta["labels"]) != EMOTIONS:
            raise ModelError(f"model labels {meta['labels']} differ from {list(EMOTIONS)}")
        self.labels: tuple[str, ...] = EMOTIONS
        self.config = FeatureConfig.from_dict(meta["features"])
        self.stats = FeatureStats.from_dict(meta["normalization"])
        self.hop_s: float = float(meta.get("hop_s", 0.5))
        # Models trained before speaker adaptation have neither key: no adaptation, T = 1.
        self.adaptation = AdaptationConfig.from_dict(meta.get("adaptation"))
        self.temperature: float = float(meta.get("temperature", 1.0))
        # The calibrated probability from which the top emotion is named, not "uncertain" (measured).
        self.confident_at: float = float(meta.get("confident_top") or 0.0)
        if (model_dir / MEL_BASIS_NAME).exists():
            use_mel_basis(self.config, np.load(model_dir / MEL_BASIS_NAME))
        self.meta = meta
        if backend == "auto":
            try:
                import ai_edge_litert  # noqa: F401

                backend = "litert"
            except ImportError:
                backend = "keras"
        if backend == "litert":
            self._backend = _LiteRTBackend(model_dir, LITERT_BATCH_SIZES, num_threads)
        elif backend == "keras":
            self._backend = _KerasBackend(model_dir)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Pay first-call costs (FFT plans, interpreter allocation) before real audio."""
        frames = frame_features(np.zeros(self.config.window_samples, np.float32), self.config)
        for size in self._backend.batch_sizes:
            self.predict(np.repeat(frames[None], size, axis=0))

    def new_adapter(self) -> SpeakerAdapter:
        """Fresh adaptation state for one channel (one talker)."""
        return SpeakerAdapter(self.stats, self.config, self.adaptation)

    def predict(self, frames: np.ndarray, stats: FeatureStats | None = None) -> np.ndarray:
        """Calibrated class probabilities for raw feature windows.

        Parameters
        ----------
        frames : np.ndarray
            ``(n, window_frames, n_features)`` output of :func:`frame_features`
            sliced into windows (not yet normalised).
        stats : FeatureStats, optional
            Standardisation from a :class:`SpeakerAdapter`, ``(n_features,)`` or
            one row per window; default the training population's.

        Returns
        -------
        np.ndarray
            ``(n, 8)`` float32 rows summing to 1, temperature-scaled.
        """
        expected = (self.config.window_frames, self.config.n_features)
        if frames.ndim != 3 or frames.shape[1:] != expected:
            raise ValueError(f"expected windows of shape (n, {expected[0]}, {expected[1]}), got {frames.shape}")
        x = normalize_windows(frames, self.config, self.stats if stats is None else stats)
        out = np.empty((x.shape[0], len(self.labels)), np.float32)
        sizes = self._backend.batch_sizes
        with self._lock:
            done = 0
            while done < x.shape[0]:
                remaining = x.shape[0] - done
                # Largest batch that is full, else pad up to the smallest that fits.
                size = max((s for s in sizes if s <= remaining), default=sizes[0])
                if size < remaining < sizes[-1] and remaining - size > size:
                    size = min(s for s in sizes if s >= remaining)
                take = min(size, remaining)
                batch = x[done : done + take]
                if take < size:
                    batch = np.concatenate([batch, np.zeros((size - take, *expected), np.float32)])
                out[done : done + take] = self._backend(np.ascontiguousarray(batch))[:take]
                done += take
        return apply_temperature(out, self.temperature)
