"""Bounded uploads: a duration limit enforced while decoding, implausible headers refused."""

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, write_audio

from streamer.analysis.decode import AudioError, AudioTooLong, AudioUnsupported, load_audio


class CountingFile(io.BytesIO):
    """An in-memory file that counts the bytes the decoder reads from it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.bytes_read += n
        return n


def noise_flac(path: Path, seconds: float, rate: int = 8000) -> Path:
    """Incompressible audio: the FLAC's size grows with its length, so bytes read show how far it was decoded."""
    rng = np.random.default_rng(1)
    return write_audio(
        path, (rng.standard_normal(int(seconds * rate)) * 0.2).astype(np.float32), rate, subtype="PCM_16"
    )


def forget_flac_length(path: Path) -> Path:
    """Zero STREAMINFO's total-samples field (36 bits): FLAC's "length unknown", as streamed encoders write."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    info = 8  # "fLaC" + block header
    data[info + 13] &= 0xF0  # the top 4 bits of the count share a byte with bits-per-sample
    data[info + 14 : info + 18] = bytes(4)
    path.write_bytes(bytes(data))
    return path


def wav_bytes(rate: int, channels: int, frames: int) -> bytes:
    """A plain 16-bit PCM WAV, header written by hand (any rate or channel count)."""
    data = bytes(frames * channels * 2)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def test_long_file_is_refused_from_its_header_without_decoding(tmp_path):
    path = noise_flac(tmp_path / "long.flac", 120)
    data = path.read_bytes()
    source = CountingFile(data)
    with pytest.raises(AudioTooLong, match=r"^the recording is longer than the 5 s limit$"):
        load_audio(source, 16000, max_seconds=5)
    assert source.bytes_read < len(data) // 10
    assert isinstance(AudioTooLong("x"), AudioError)  # callers that catch AudioError still do


def test_long_file_without_a_known_length_is_refused_while_decoding(tmp_path):
    path = forget_flac_length(noise_flac(tmp_path / "unknown.flac", 120))
    frames = sf.info(str(path)).frames
    assert frames >= 1 << 62  # libsndfile: length unknown (SF_COUNT_MAX)
    data = path.read_bytes()
    source = CountingFile(data)
    with pytest.raises(AudioTooLong, match="longer than the 5 s limit"):
        load_audio(source, 16000, max_seconds=5)
    assert source.bytes_read < len(data) // 4  # stopped after the first block, not at the end


def test_files_within_the_limit_decode_whole(tmp_path):
    rng = np.random.default_rng(2)
    audio = (rng.standard_normal(5 * 8000) * 0.1).astype(np.float32)
    path = write_audio(tmp_path / "five.flac", audio, 8000)
    assert load_audio(path, 8000, max_seconds=5).size == audio.size  # exactly at the limit is fine
    assert load_audio(path, 16000, max_seconds=6).size == pytest.approx(2 * audio.size, abs=2)


@pytest.mark.parametrize(
    ("rate", "channels", "message"),
    [(500, 1, "unsupported sample rate 500 Hz"), (400_000, 1, "sample rate"), (16000, 33, "channel count 33")],
)
def test_implausible_headers_are_refused(rate, channels, message):
    with pytest.raises(AudioUnsupported, match=message) as info:
        load_audio(io.BytesIO(wav_bytes(rate, channels, 100)), 16000)
    assert "\n" not in str(info.value)


def test_upload_duration_and_format_limits(start_analyzer, tmp_path):
    analyzer = start_analyzer(["--serve", "--max-upload-seconds", "5"])
    url = analyzer.url + "/api/analyze"
    # Ten minutes of 8 kHz digital silence: a few kB of FLAC, 38 MB as float32 at 16 kHz.
    silence = write_audio(tmp_path / "silence.flac", np.zeros(600 * 8000, np.int16), 8000)
    assert silence.stat().st_size < 100_000
    raw = httpx.post(url, content=silence.read_bytes(), headers={"Content-Type": "audio/flac"}, timeout=60)
    assert raw.status_code == 413
    assert raw.json() == {"error": "the recording is longer than the 5 s limit."}
    with silence.open("rb") as f:
        form = httpx.post(url, files={"file": ("silence.flac", f)}, timeout=60)
    assert form.status_code == 413 and "5 s limit" in form.json()["error"]
    unknown = forget_flac_length(write_audio(tmp_path / "unknown.flac", np.zeros(600 * 8000, np.int16), 8000))
    counted = httpx.post(url, content=unknown.read_bytes(), headers={"Content-Type": "audio/flac"}, timeout=60)
    assert counted.status_code == 413 and "5 s limit" in counted.json()["error"]

    # Within the limit it is analysed as before.
    short = write_audio(tmp_path / "short.wav", np.zeros(3 * 16000, np.int16), 16000)
    with short.open("rb") as f:
        ok = httpx.post(url, files={"file": ("short.wav", f)}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["duration_s"] == pytest.approx(3.0, abs=0.01) and ok.json()["overall"] is None

    # Decodable but implausible: 422; not decodable: 415 as before.
    odd = httpx.post(url, content=wav_bytes(500, 1, 1000), headers={"Content-Type": "audio/wav"}, timeout=60)
    assert odd.status_code == 422 and "sample rate 500 Hz" in odd.json()["error"]
    text = httpx.post(url, content=b"not audio at all\n" * 10, headers={"Content-Type": "audio/wav"}, timeout=60)
    assert text.status_code == 415 and "not a readable audio file" in text.json()["error"]
    assert httpx.get(analyzer.url + "/api/status", timeout=10).status_code == 200
    assert analyzer.stop() == 0
    assert "Traceback" not in analyzer.output()


@pytest.mark.parametrize("value", ["0", "-3", "nan"])
def test_max_upload_seconds_must_be_positive(value):
    proc = subprocess.run(
        [sys.executable, "run_stream.py", "--serve", f"--max-upload-seconds={value}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: argument --max-upload-seconds: must be a number > 0, got '{value}' (see --help)"
    )


def test_cli_accepts_a_duration_limit(tmp_path):
    path = write_audio(tmp_path / "silence.flac", np.zeros(60 * 8000, np.int16), 8000)
    proc = subprocess.run(
        [sys.executable, "-m", "streamer.analysis.files", str(path), "--jsonl", "--max-seconds", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout) == {"file": str(path), "error": "the recording is longer than the 5 s limit."}
