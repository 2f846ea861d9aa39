"""Finding and labelling the RAVDESS, TESS, nEMO and EmoSpeech clips in a data folder.

The folder layout is described in the data folder's README.md. Files whose
names do not follow the corpus convention are skipped with a warning and
counted, never a crash.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from streamer.core.labels import EMOTION_INDEX, EMOTIONS

DATA_ENV = "EMOTION_DATA_DIR"
log = logging.getLogger(__name__)

RAVDESS_EMOTIONS = {f"{i + 1:02d}": name for i, name in enumerate(EMOTIONS)}
TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "pleasant_surprise": "surprised",
    "ps": "surprised",
    "sad": "sad",
}
NEMO_EMOTIONS = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprised",
}
EMOSPEECH_EMOTIONS = {"calm": "neutral", "angry": "angry", "fearful": "fearful", "happy": "happy"}
AUDIO_SUFFIXES = {".flac", ".wav", ".opus", ".ogg"}
CORPORA = ("ravdess", "tess", "nemo", "emospeech")
# Corpora whose labels and speakers come from a data.tsv: (emotion column, speaker column, emotion map).
TSV_CORPORA = {
    "nemo": ("emotion", "speaker_id", NEMO_EMOTIONS),
    "emospeech": ("emotion", "speaker", EMOSPEECH_EMOTIONS),
}


@dataclass(frozen=True)
class Clip:
    """One labelled recording."""

    path: Path
    corpus: str  # "ravdess" | "tess" | "nemo" | "emospeech"
    speaker: str  # "ravdess-01" ... "ravdess-24", "tess-OAF", "tess-YAF", "nemo-EB0", "emospeech-S001" ...
    emotion: str

    @property
    def label(self) -> int:
        return EMOTION_INDEX[self.emotion]

    @property
    def actor(self) -> int | None:
        """RAVDESS actor number, None for TESS."""
        return int(self.speaker.split("-")[1]) if self.corpus == "ravdess" else None


@dataclass
class Inventory:
    clips: list[Clip]
    skipped: list[tuple[Path, str]]


def resolve_data_dir(arg: str | None) -> Path:
    """The data folder from an argument, else ``$EMOTION_DATA_DIR``."""
    value = arg or os.environ.get(DATA_ENV)
    if not value:
        raise SystemExit(f"error: give the data folder with --data or set {DATA_ENV}")
    path = Path(value).expanduser().resolve()
    if not any((path / corpus).is_dir() for corpus in CORPORA):
        raise SystemExit(f"error: {path} holds none of {', '.join(c + '/' for c in CORPORA)}")
    return path


def parse_ravdess_name(path: Path) -> Clip | None:
    """``03-01-EE-II-SS-RR-AA`` (audio-only speech); None if it does not fit."""
    parts = path.stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() and len(p) == 2 for p in parts):
        return None
    modality, channel, emotion, *_rest, actor = parts
    if modality != "03" or channel != "01" or emotion not in RAVDESS_EMOTIONS:
        return None
    if not 1 <= int(actor) <= 24:
        return None
    return Clip(path, "ravdess", f"ravdess-{actor}", RAVDESS_EMOTIONS[emotion])


def parse_tess_path(path: Path) -> Clip | None:
    """``<SPEAKER>_<emotion>/<SPEAKER>_<word>_<suffix>``; the folder decides.

    The folder, not the file name, gives speaker and emotion: one upstream
    file carries the typo ``OA_bite_neutral``.
    """
    speaker, _, emotion = path.parent.name.partition("_")
    if speaker not in ("OAF", "YAF") or emotion not in TESS_EMOTIONS:
        return None
    return Clip(path, "tess", f"tess-{speaker}", TESS_EMOTIONS[emotion])


def read_tsv_labels(tsv: Path, corpus: str = "nemo") -> dict[str, tuple[str, str]]:
    """``file -> (speaker, emotion)`` from a corpus's ``data.tsv``; rows it cannot map are left out.

    nEMO names files in ``file_id``, EmoSpeech in ``file``; EmoSpeech's
    ``calm`` counts as neutral (its README says so).
    """
    emotion_column, speaker_column, emotions = TSV_CORPORA[corpus]
    labels: dict[str, tuple[str, str]] = {}
    with tsv.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            emotion = emotions.get((row.get(emotion_column) or "").strip())
            speaker = (row.get(speaker_column) or "").strip()
            name = (row.get("file_id") or row.get("file") or "").strip()
            if emotion and speaker and name:
                labels[name] = (speaker, emotion)
    return labels


def read_nemo_labels(tsv: Path) -> dict[str, tuple[str, str]]:
    """``file_id -> (speaker, emotion)`` from nEMO's ``data.tsv``."""
    return read_tsv_labels(tsv, "nemo")


def parse_tsv_path(path: Path, labels: dict[str, tuple[str, str]], corpus: str = "nemo") -> Clip | None:
    """nEMO, EmoSpeech: ``data.tsv`` decides speaker and emotion (not the file name)."""
    entry = labels.get(path.name)
    if entry is None:
        return None
    speaker, emotion = entry
    return Clip(path, corpus, f"{corpus}-{speaker}", emotion)


parse_nemo_path = parse_tsv_path


def find_clips(data_dir: Path, corpora: tuple[str, ...] = CORPORA) -> Inventory:
    """All labelled clips of ``corpora`` under ``data_dir``, sorted by corpus, then path."""
    clips: list[Clip] = []
    skipped: list[tuple[Path, str]] = []
    for corpus in corpora:
        root = data_dir / corpus
        if not root.is_dir():
            log.warning("no %s folder under %s", corpus, data_dir)
            continue
        if corpus in TSV_CORPORA:
            tsv = root / "data.tsv"
            if not tsv.is_file():
                log.warning("skipping %s: no data.tsv in %s", corpus, root)
                continue
            parse = functools.partial(parse_tsv_path, labels=read_tsv_labels(tsv, corpus), corpus=corpus)
            reason = "not listed in data.tsv"
        else:
            parse = parse_ravdess_name if corpus == "ravdess" else parse_tess_path
            reason = "name does not follow the corpus convention"
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            clip = parse(path)
            if clip is None:
                skipped.append((path, reason))
                log.warning("skipping %s: %s", path, reason)
            else:
                clips.append(clip)
    return Inventory(clips, skipped)
