"""The reference baseline: openSMILE's eGeMAPS functionals and a linear model.

eGeMAPS (88 prosody and voice-quality functionals per clip: F0, loudness,
jitter, shimmer, HNR, formants, spectral balance) is the field's reference
feature set for emotion; with a linear model it shows how far knowledge-based
features carry to an unseen corpus, beside the network. Training-only
(``pip install .[train]``); functionals are cached per corpus beside the
feature cache, never in the repository.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import sys
import time

import numpy as np

from streamer.analysis.decode import AudioError, load_audio
from streamer.training.cache import default_cache_dir
from streamer.training.cleaning import trim_silence
from streamer.training.corpora import Clip

RATE = 16000
# The talker's traits among the functionals: pitch level, vocal-tract length (formant means) and
# spectral tilt. Centring only these per talker, not everything, keeps a one-emotion talker's
# emotion (../shared/notes/transfer-probes.md, section 7).
TRAIT_PATTERN = re.compile(
    r"^(F0semitoneFrom27\.5Hz_sma3nz_(amean|percentile(20|50|80)\.0)"
    r"|F[123]frequency_sma3nz_amean"
    r"|(alphaRatio|hammarbergIndex|slope)(V|UV)[0-9-]*_sma3nz_amean)$"
)

_SMILE = None


def _smile():
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )


def _functionals(path: str) -> np.ndarray | None:
    global _SMILE
    if _SMILE is None:
        _SMILE = _smile()
    try:
        audio = trim_silence(load_audio(path, RATE), RATE)
    except AudioError:
        return None
    if not np.any(audio):
        return None
    return _SMILE.process_signal(audio, RATE).to_numpy(np.float64)[0]


def feature_names() -> list[str]:
    import opensmile

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )
    return list(smile.feature_names)


def egemaps_features(clips: list[Clip], workers: int | None = None) -> np.ndarray:
    """``(len(clips), 88)`` functionals (NaN rows for clips that do not decode), cached per corpus."""
    out = np.full((len(clips), 88), np.nan)
    for corpus in sorted({c.corpus for c in clips}):
        rows = [i for i, c in enumerate(clips) if c.corpus == corpus]
        paths = [str(clips[i].path) for i in rows]
        key = hashlib.sha256(json.dumps(["eGeMAPSv02", 1, paths]).encode()).hexdigest()[:16]
        path = default_cache_dir() / f"egemaps-{corpus}-{key}.npy"
        if not path.exists():
            started = time.monotonic()
            with mp.get_context("spawn").Pool(workers or os.cpu_count()) as pool:  # TensorFlow may be loaded: no fork
                values = []
                for done, row in enumerate(pool.imap(_functionals, paths, chunksize=8), 1):
                    values.append(np.full(88, np.nan) if row is None else row)
                    if done % 500 == 0 or done == len(paths):
                        rate = done / (time.monotonic() - started)
                        print(
                            f"eGeMAPS {corpus}: {done}/{len(paths)} clips ({rate:.1f}/s)", file=sys.stderr, flush=True
                        )
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.asarray(values))
        out[rows] = np.load(path)
    return out


def trait_columns(names: list[str]) -> np.ndarray:
    """Indices of the trait functionals (:data:`TRAIT_PATTERN`)."""
    return np.array([i for i, name in enumerate(names) if TRAIT_PATTERN.match(name)])
