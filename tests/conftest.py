"""Shared fixtures: the data folder, the shipped model, audio files to analyse."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("EMOTION_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    path = Path(value)
    if not (path / "ravdess").is_dir():
        pytest.skip(f"corpora not found at {path} (set EMOTION_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def speech_file(data_dir: Path) -> Path:
    """An angry RAVDESS clip (actor 1, strong intensity)."""
    return data_dir / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="session")
def speech_audio(speech_file: Path) -> np.ndarray:
    from streamer.audio import load_audio

    return load_audio(speech_file, 16000)


@pytest.fixture(scope="session")
def model():
    from streamer.runtime import EmotionModel

    return EmotionModel()


@pytest.fixture(scope="session", autouse=True)
def warm_librosa() -> None:
    """librosa compiles numba code on first use; pay it once per session."""
    from streamer.features import FeatureConfig, frame_features

    frame_features(np.zeros(16000, np.float32), FeatureConfig())


def write_audio(path: Path, audio: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(path, audio, rate, **kwargs)
    return path
