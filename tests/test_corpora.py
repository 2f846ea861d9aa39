"""Corpus discovery and labels."""

from pathlib import Path

import pytest

from streamer.core.labels import EMOTIONS
from streamer.training.corpora import find_clips, parse_ravdess_name, parse_tess_path


def test_label_order_is_fixed():
    assert EMOTIONS == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def test_ravdess_names():
    clip = parse_ravdess_name(Path("Actor_07/03-01-06-02-01-02-07.flac"))
    assert (clip.emotion, clip.speaker, clip.actor, clip.label) == ("fearful", "ravdess-07", 7, 5)
    assert parse_ravdess_name(Path("01-01-06-02-01-02-07.flac")) is None  # video, not audio
    assert parse_ravdess_name(Path("03-02-06-02-01-02-07.flac")) is None  # song
    assert parse_ravdess_name(Path("03-01-09-02-01-02-07.flac")) is None  # no such emotion
    assert parse_ravdess_name(Path("notes.flac")) is None


def test_tess_folder_decides_label_and_speaker():
    clip = parse_tess_path(Path("tess/OAF_neutral/OA_bite_neutral.flac"))  # upstream typo in the name
    assert (clip.emotion, clip.speaker, clip.actor) == ("neutral", "tess-OAF", None)
    assert parse_tess_path(Path("tess/YAF_pleasant_surprise/YAF_dog_ps.flac")).emotion == "surprised"
    assert parse_tess_path(Path("tess/YAF_fear/YAF_dog_fear.flac")).emotion == "fearful"
    assert parse_tess_path(Path("tess/XYZ_fear/XYZ_dog_fear.flac")) is None


def test_odd_files_are_skipped_and_counted(tmp_path):
    (tmp_path / "ravdess" / "Actor_01").mkdir(parents=True)
    (tmp_path / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.flac").write_bytes(b"x")
    (tmp_path / "ravdess" / "Actor_01" / "readme-copy.flac").write_bytes(b"x")
    (tmp_path / "ravdess" / "Actor_01" / "notes.txt").write_text("ignored, not audio")
    inventory = find_clips(tmp_path)
    assert [c.emotion for c in inventory.clips] == ["angry"]
    assert len(inventory.skipped) == 1


@pytest.mark.data
def test_real_corpora(data_dir):
    inventory = find_clips(data_dir)
    by_corpus = {}
    for clip in inventory.clips:
        by_corpus.setdefault(clip.corpus, []).append(clip)
    assert len(by_corpus["ravdess"]) == 1440
    assert len(by_corpus["emospeech"]) == 2025
    assert len({c.speaker for c in by_corpus["emospeech"]}) == 107
    assert {c.emotion for c in by_corpus["emospeech"]} == {"neutral", "angry", "fearful", "happy"}  # calm: neutral
    assert len(by_corpus["tess"]) == 2799  # one upstream file is missing
    assert inventory.skipped == []
    assert {c.speaker for c in by_corpus["tess"]} == {"tess-OAF", "tess-YAF"}
    assert len({c.actor for c in by_corpus["ravdess"]}) == 24
    assert "calm" not in {c.emotion for c in by_corpus["tess"]}
    assert {c.emotion for c in by_corpus["ravdess"]} == set(EMOTIONS)


@pytest.mark.data
def test_odd_real_files_load_cleanly(data_dir):
    """Stereo RAVDESS files and off-rate TESS files come out as 16 kHz mono."""
    import soundfile as sf

    from streamer.analysis.decode import load_audio
    from streamer.training.cleaning import clean_clip

    stereo = data_dir / "ravdess" / "Actor_01" / "03-01-02-01-01-02-01.flac"
    assert sf.info(stereo).channels == 2
    odd_rates = [p for p in sorted((data_dir / "tess").rglob("*.flac")) if sf.info(p).samplerate != 24414]
    assert odd_rates, "the README says two TESS files have other rates"
    for path in [stereo, *odd_rates]:
        audio = clean_clip(load_audio(path, 16000), 16000)
        assert audio.ndim == 1 and 0.5 < audio.size / 16000 < 6
