"""Emotion analysis of recorded files.

Usage::

    python -m streamer.analysis.files FILE... [--jsonl] [--max-seconds S]

Each file is decoded (any libsndfile format, rate or channel count), cut
into sliding windows covering the whole recording, speech-gated, and every
speech window classified. The windows are standardised with the
recording's own speech statistics blended with the training population's
(speaker adaptation, a file is known whole; ``adapted`` is the weight of its
own). ``overall`` is the mean of the speech windows' probabilities and ``arousal``
its high-arousal share (happy, angry, fearful, surprised; 0-1); a file
without speech gets ``overall``, ``top``, ``arousal`` and ``adapted`` null.
A file that cannot be analysed gets ``{"file", "error"}``; the others go on
and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from streamer.analysis.decode import AudioError, load_audio
from streamer.analysis.model import DEFAULT_MODEL_DIR, EmotionModel, ModelError
from streamer.analysis.scoring import overall, score_recording
from streamer.analysis.vad import CHUNK, VAD_RATE, SpeechTracker, default_vad
from streamer.core.features import frame_features, pad_to, window_starts
from streamer.core.labels import arousal

log = logging.getLogger(__name__)
PREDICT_CHUNK = 256  # windows per model call, bounds memory on long calls


def probs_dict(labels: tuple[str, ...], probs: np.ndarray) -> dict[str, float]:
    return {name: round(float(p), 6) for name, p in zip(labels, probs)}


def analyze_audio(audio: np.ndarray, model: EmotionModel, hop_s: float | None = None, predict=None) -> dict:
    """Analyse mono audio at the model's rate.

    ``predict(frames, stats)`` classifies feature windows with the given
    standardisation (default ``model.predict``); the server passes the live
    worker's, so uploads share its batches.

    Returns
    -------
    dict
        ``duration_s``, ``overall`` (label -> probability or None), ``top``,
        ``adapted`` (the recording's own statistics' weight, 0-1; None
        without speech), ``windows`` (``start``, ``end``, ``speech``, ``probs``).
    """
    config = model.config
    if config.sample_rate != VAD_RATE:
        raise ModelError(f"model rate {config.sample_rate} Hz differs from the VAD's {VAD_RATE} Hz")
    hop = int(round((hop_s or model.hop_s) * config.sample_rate))
    hop -= hop % config.hop_length  # window starts stay on feature frames
    if hop <= 0:
        raise ValueError("hop is shorter than one feature frame")
    length = config.window_samples
    padded = pad_to(audio, length)
    frames = frame_features(padded, config)
    tracker = SpeechTracker(history_chunks=padded.size // CHUNK + 2)
    tracker.feed(padded)
    default_vad().score([tracker])

    # Windows are cut on feature frames, exactly as training crops cached clips.
    n_frames = config.window_frames
    step = config.hop_length
    starts = [f * step for f in window_starts(frames.shape[0], n_frames, hop // step)]
    speech_starts = [s for s in starts if tracker.is_speech(s, s + length)]
    chunks = range(0, len(speech_starts), PREDICT_CHUNK)

    def speech_windows():  # chunk by chunk: a long call is never stacked whole
        for i in chunks:
            yield np.stack([frames[s // step : s // step + n_frames] for s in speech_starts[i : i + PREDICT_CHUNK]])

    # Speaker adaptation: the recording's whole speech is known, so every window gets its statistics.
    adapter = model.new_adapter() if model.adaptation.max_weight > 0 else None
    probs, adapted = score_recording(
        speech_windows, len(speech_starts), len(model.labels), predict or model.predict, adapter
    )

    duration = audio.size / config.sample_rate
    windows = []
    by_start = dict(zip(speech_starts, probs))
    for start in starts:
        p = by_start.get(start)
        windows.append(
            {
                "start": round(start / config.sample_rate, 3),
                "end": round(min(start + length, audio.size) / config.sample_rate, 3),
                "speech": p is not None,
                "probs": None if p is None else probs_dict(model.labels, p),
                "arousal": None if p is None else round(arousal(p), 4),
            }
        )
    mean = overall(probs)
    return {
        "duration_s": round(duration, 3),
        "overall": None if mean is None else probs_dict(model.labels, mean),
        "top": None if mean is None else model.labels[int(mean.argmax())],
        "arousal": None if mean is None else round(arousal(mean), 4),
        "adapted": round(float(adapted), 3) if speech_starts else None,
        "windows": windows,
    }


def analyze_source(
    source: str | os.PathLike | BinaryIO,
    model: EmotionModel,
    hop_s: float | None = None,
    predict=None,
    max_seconds: float | None = None,
) -> dict:
    """Decode and analyse one file; raises :class:`AudioError` on bad input.

    ``max_seconds`` refuses longer recordings (:class:`AudioTooLong`) before decoding them whole.
    """
    return analyze_audio(load_audio(source, model.config.sample_rate, max_seconds), model, hop_s, predict)


def analyze_file(path: str, model: EmotionModel, hop_s: float | None = None, max_seconds: float | None = None) -> dict:
    """Result object for one path: the analysis, or ``{"file", "error"}``."""
    try:
        return {"file": path, **analyze_source(path, model, hop_s, max_seconds=max_seconds)}
    except AudioError as exc:
        return {"file": path, "error": f"{exc}."}
    except MemoryError:
        return {"file": path, "error": "the recording is too long to analyse in the available memory."}
    except Exception as exc:  # one bad file must not stop the batch
        log.debug("analysis of %s failed", path, exc_info=True)
        return {"file": path, "error": f"analysis failed ({type(exc).__name__}: {exc})."}


def _summary_line(result: dict) -> str:
    if "error" in result:
        return f"{result['file']}: error: {result['error']}"
    speech = sum(w["speech"] for w in result["windows"])
    head = f"{result['file']}: {result['duration_s']:.1f} s, {speech}/{len(result['windows'])} speech windows"
    if result["overall"] is None:
        return head + ", no speech"
    ranked = sorted(result["overall"].items(), key=lambda kv: -kv[1])
    return head + ", " + " ".join(f"{k} {v:.0%}" for k, v in ranked[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer.analysis.files", description="Emotion analysis of recorded audio files."
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--jsonl", action="store_true", help="one JSON object per line per file")
    parser.add_argument("--hop", type=float, default=None, help="window hop in seconds (default 0.5)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="refuse recordings longer than this (default: no limit)"
    )
    args = parser.parse_args(argv)
    if args.max_seconds is not None and not 0 < args.max_seconds < float("inf"):  # also rejects nan
        parser.error("--max-seconds must be a positive number of seconds")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        model = EmotionModel(args.model_dir)  # loaded once for all files
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = False
    for path in args.files:
        result = analyze_file(path, model, args.hop, args.max_seconds)
        failed |= "error" in result
        print(json.dumps(result) if args.jsonl else _summary_line(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
