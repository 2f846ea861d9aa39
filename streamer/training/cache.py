"""Feature cache: every clip's frames, clean and under augmented conditions.

Training crops random windows out of these frame sequences; because features
are computed without centring, a hop-aligned crop equals the features of the
cropped audio (see ``streamer.core.features``). The cache lives outside the
repository (``$EMOTION_CACHE_DIR``, default ``.cache/`` in the checkout):
it is derived from the corpora and must never be committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from streamer.analysis.decode import AudioError, load_audio
from streamer.core.features import (
    F0_MAX,
    F0_MIN,
    OCTAVE_COST,
    SILENT_LEVEL_DB,
    VOICING_THRESHOLD,
    FeatureConfig,
    frame_features,
)
from streamer.training.augment import random_augment, telephone_channel
from streamer.training.cleaning import TARGET_RMS_DBFS, clean_clip, normalize_level, rms_dbfs, trim_silence
from streamer.training.corpora import CORPORA, Clip, find_clips

log = logging.getLogger(__name__)
CACHE_VERSION = 4  # bump when cleaning or augmentation changes
N_AUGMENTED = 4
CLEAN, TELEPHONE = 0, 1  # variant indices; 2.. are random augmentations
N_VARIANTS = 2 + N_AUGMENTED
BABBLE_CLIPS = 48


@dataclass
class FeatureCache:
    """Frames of ``clips[i]`` variant ``v`` are ``frames[offsets[i, v]:offsets[i, v + 1]]``."""

    clips: list[Clip]
    frames: np.ndarray  # (total_frames, n_features) float16
    offsets: np.ndarray  # (n_clips, N_VARIANTS + 1) int64
    skipped: list[tuple[str, str]]

    def get(self, clip_index: int, variant: int) -> np.ndarray:
        a, b = self.offsets[clip_index, variant], self.offsets[clip_index, variant + 1]
        return self.frames[a:b]


def default_cache_dir() -> Path:
    return Path(os.environ.get("EMOTION_CACHE_DIR", Path(__file__).resolve().parents[2] / ".cache"))


def _pad_short(audio: np.ndarray, config: FeatureConfig, rng: np.random.Generator) -> np.ndarray:
    """Pad clips shorter than a window with faint noise, at a random position.

    A live window often holds a short utterance and a pause; the model sees
    the same during training.
    """
    need = config.window_samples + config.sample_rate // 4 - audio.size
    if need <= 0:
        return audio
    before = int(rng.integers(need + 1))
    quiet = (rng.standard_normal(need) * 10 ** (-70 / 20)).astype(np.float32)
    return np.concatenate([quiet[:before], audio, quiet[before:]])


_BABBLE: list[np.ndarray] = []


def _init_worker(babble_paths: list[str], config: FeatureConfig) -> None:
    for path in babble_paths:
        with contextlib.suppress(AudioError):
            _BABBLE.append(clean_clip(load_audio(path, config.sample_rate), config.sample_rate))


def _clip_variants(job: tuple[int, str, FeatureConfig]) -> tuple[int, tuple[list[np.ndarray], float] | str]:
    index, path, config = job
    try:
        audio = trim_silence(load_audio(path, config.sample_rate), config.sample_rate)
    except AudioError as exc:
        return index, str(exc)
    level = rms_dbfs(audio)
    if not np.isfinite(level):
        return index, "digital silence"
    audio = normalize_level(audio)
    rng = np.random.default_rng([CACHE_VERSION, index])
    audio = _pad_short(audio, config, rng)
    variants = [audio, telephone_channel(audio, config.sample_rate)]
    for _ in range(N_AUGMENTED):
        variants.append(random_augment(audio, config.sample_rate, rng, _BABBLE))
    return index, ([frame_features(v, config).astype(np.float16) for v in variants], level)


def cache_key(config: FeatureConfig, clips: list[Clip]) -> str:
    # Normalisation is applied per window after caching; it does not change frames.
    settings = {k: v for k, v in config.to_dict().items() if k != "normalization"}
    if config.prosody:
        settings["pitch"] = [F0_MIN, F0_MAX, VOICING_THRESHOLD, OCTAVE_COST, SILENT_LEVEL_DB]
    blob = json.dumps([CACHE_VERSION, N_AUGMENTED, settings, [str(c.path) for c in clips]]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_cache(
    data_dir: Path, config: FeatureConfig, workers: int | None = None, corpora: tuple[str, ...] = CORPORA
) -> FeatureCache:
    """Load the cache for this data folder and feature config, building what is missing.

    One file per corpus, so adding a corpus does not recompute the others.
    Frames are always cached with the prosody channels; a config without
    them gets the mel bands only (the same numbers).
    """
    inventory = find_clips(data_dir, corpora)
    babble = [str(c.path) for c in inventory.clips if c.corpus == "tess"][:: max(1, 2800 // BABBLE_CLIPS)]
    parts = []
    for corpus in corpora:
        clips = [c for c in inventory.clips if c.corpus == corpus]
        if clips:
            part = _corpus_cache(clips, replace(config, prosody=True), babble, workers)
            if not config.prosody:
                part.frames = np.ascontiguousarray(part.frames[:, : config.n_mels])
            parts.append(part)
    skipped = [(str(p), why) for p, why in inventory.skipped]
    if not parts:
        return FeatureCache(
            [], np.zeros((0, config.n_features), np.float16), np.zeros((0, N_VARIANTS + 1), np.int64), skipped
        )
    shift = np.cumsum([0] + [p.frames.shape[0] for p in parts[:-1]])
    return FeatureCache(
        [c for p in parts for c in p.clips],
        np.concatenate([p.frames for p in parts]),
        np.concatenate([p.offsets + s for p, s in zip(parts, shift)]),
        skipped + [s for p in parts for s in p.skipped],
    )


def _corpus_cache(clips: list[Clip], config: FeatureConfig, babble: list[str], workers: int | None) -> FeatureCache:
    path = default_cache_dir() / f"features-{clips[0].corpus}-{cache_key(config, clips)}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        kept_paths = set(data["paths"].tolist())
        keep = [c for c in clips if str(c.path) in kept_paths]
        skipped = [tuple(s.split("\t", 1)) for s in data["skipped"].tolist()]
        part = FeatureCache(keep, data["frames"], data["offsets"], skipped)  # type: ignore[arg-type]
        return recorded_levels(part, data["levels"], config)

    jobs = [(i, str(c.path), config) for i, c in enumerate(clips)]
    results: dict[int, tuple[list[np.ndarray], float]] = {}
    skipped: list[tuple[str, str]] = []
    started = time.monotonic()
    with mp.get_context("fork").Pool(workers or os.cpu_count(), _init_worker, (babble, config)) as pool:
        for done, (index, out) in enumerate(pool.imap_unordered(_clip_variants, jobs, chunksize=8), 1):
            if isinstance(out, str):
                skipped.append((jobs[index][1], out))
                log.warning("skipping %s: %s", jobs[index][1], out)
            else:
                results[index] = out
            if done % 250 == 0 or done == len(jobs):
                rate = done / (time.monotonic() - started)
                print(
                    f"features {clips[0].corpus}: {done}/{len(jobs)} clips ({rate:.1f}/s)", file=sys.stderr, flush=True
                )

    kept = sorted(results)
    lengths = np.array([[v.shape[0] for v in results[i][0]] for i in kept], dtype=np.int64)
    offsets = np.zeros((len(kept), N_VARIANTS + 1), np.int64)
    offsets[:, 1:] = np.cumsum(lengths, axis=1)
    offsets += np.concatenate([[0], np.cumsum(lengths.sum(axis=1))[:-1]])[:, None]
    frames = np.concatenate([v for i in kept for v in results[i][0]])
    levels = np.array([results[i][1] for i in kept])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        frames=frames,
        offsets=offsets,
        levels=levels,
        paths=np.array([str(clips[i].path) for i in kept]),
        skipped=np.array([f"{p}\t{w}" for p, w in skipped] or [""])[: len(skipped)],
    )
    tmp.replace(path)
    return recorded_levels(FeatureCache([clips[i] for i in kept], frames, offsets, skipped), levels, config)


def recorded_levels(cache: FeatureCache, levels: np.ndarray, config: FeatureConfig) -> FeatureCache:
    """Give each clip's level channel back the loudness it was recorded at.

    Clips are levelled to one RMS before features (so augmentation works at
    known levels), but the level channel must carry what a live call's
    does: "louder than this talker's normal", the first cue of arousal, on
    top of a channel gain nobody knows (trait adaptation removes the
    talker's own level). Every variant of a clip is shifted by its recorded
    RMS minus the levelled one, in place.
    """
    if not config.prosody or not len(cache.clips):
        return cache
    channel = config.channel("level")
    for i in range(len(cache.clips)):
        a, b = cache.offsets[i, 0], cache.offsets[i, -1]
        cache.frames[a:b, channel] += np.float16(levels[i] - TARGET_RMS_DBFS)
    return cache
