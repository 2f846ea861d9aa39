"""Decoding and cleaning, including bad input."""

import numpy as np
import pytest
from conftest import write_audio

from streamer.analysis.decode import AudioError, load_audio
from streamer.training.cleaning import normalize_level, rms_dbfs, trim_silence


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled(tmp_path, rate):
    path = write_audio(tmp_path / "a.wav", tone(1.0, rate), rate)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32
    assert abs(audio.size - 16000) <= 2


def test_stereo_is_downmixed(tmp_path):
    left = tone(0.5, 16000)
    stereo = np.stack([left, -left], axis=1)  # cancels when averaged
    path = write_audio(tmp_path / "s.flac", stereo, 16000)
    assert np.max(np.abs(load_audio(path, 16000))) < 1e-3
    six = np.repeat(left[:, None], 6, axis=1)
    path = write_audio(tmp_path / "six.wav", six, 16000)
    np.testing.assert_allclose(load_audio(path, 16000), left, atol=1e-4)


def test_ogg_is_read(tmp_path):
    path = write_audio(tmp_path / "a.ogg", tone(1.0, 24000), 24000, format="OGG", subtype="VORBIS")
    assert abs(load_audio(path, 16000).size - 16000) < 400


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "file is empty"),
        (lambda p: (p.write_text("hello, this is not audio\n" * 20), p)[1], "not a readable audio file"),
    ],
)
def test_bad_files_raise_one_readable_error(tmp_path, make, message):
    path = make(tmp_path / "x.wav")
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path, 16000)
    assert "\n" not in str(info.value)


def test_truncated_file(tmp_path):
    path = write_audio(tmp_path / "t.flac", tone(2.0, 16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    try:
        audio = load_audio(path, 16000)
    except AudioError:
        return  # refusing is fine
    assert audio.size < 32000  # or it decodes what is there, never garbage length


def test_header_only_wav_has_no_samples(tmp_path):
    path = write_audio(tmp_path / "h.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(path, 16000)


def test_trim_and_level():
    rate = 16000
    audio = np.concatenate([np.zeros(8000), tone(1.0, rate), np.zeros(8000)]).astype(np.float32)
    trimmed = trim_silence(audio, rate)
    assert 15000 < trimmed.size < 17500
    assert rms_dbfs(normalize_level(trimmed, -23.0)) == pytest.approx(-23.0, abs=0.1)
    silent = np.zeros(100, np.float32)
    assert np.array_equal(normalize_level(silent), silent)
    assert trim_silence(silent, rate).size == 100
