"""Train the shipped model on all of RAVDESS, TESS and nEMO and write ``models/``.

Usage: ``python -m streamer.training.train --data ../shared/data``
(or ``make train``). Writes the Keras model, one LiteRT file per batch size
and ``config.json`` (labels, feature settings, population statistics,
speaker adaptation settings and the temperature that ``make evaluate`` fitted,
read from ``models/metrics.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from streamer.analysis.model import CONFIG_NAME, KERAS_NAME, LITERT_BATCH_SIZES, MEL_BASIS_NAME, litert_name
from streamer.core.adaptation import AdaptationConfig
from streamer.core.features import FeatureConfig, mel_basis
from streamer.core.labels import EMOTIONS
from streamer.training.cache import build_cache
from streamer.training.corpora import CORPORA, resolve_data_dir
from streamer.training.trainer import TrainSettings, train_model

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
# Serving's adaptation: the talker's statistics weigh up to max_weight, half of it after
# prior_windows speech windows (10 s of speech). max_weight from the leave-one-corpus-out
# sweep in the model card: beyond 0.25, single-emotion talkers lose more than mixed sessions gain.
ADAPTATION = AdaptationConfig(prior_windows=20.0, max_weight=0.25)
FEATURES = FeatureConfig(prosody=True)  # the shipped recipe's features
# The shipped model's corpora. EmoSpeech is tested, not trained on: with it in training every
# acted corpus left out scored lower (model card, "Recipes tried").
TRAINING_CORPORA = ("ravdess", "tess", "nemo")


def save_model(
    model,
    stats,
    config: FeatureConfig,
    settings: TrainSettings,
    out: Path,
    trained_on: dict,
    temperature: float,
    confident_top: float | None = None,
) -> None:
    """Write the Keras file, the LiteRT files and config.json into ``out``."""
    from streamer.training.model import export_litert

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / KERAS_NAME)
    for batch in LITERT_BATCH_SIZES:
        (out / litert_name(batch)).write_bytes(export_litert(model, batch))
    np.save(out / MEL_BASIS_NAME, mel_basis(config))
    meta = {
        "labels": list(EMOTIONS),
        "features": config.to_dict(),
        "normalization": stats.to_dict(),
        "hop_s": 0.5,
        "adaptation": (ADAPTATION if settings.adapt else AdaptationConfig(max_weight=0.0)).to_dict(),
        "temperature": round(float(temperature), 4),
        "confident_top": confident_top,
        "parameters": int(model.count_params()),
        "train_settings": asdict(settings),
        "trained_on": trained_on,
    }
    (out / CONFIG_NAME).write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder (default: $EMOTION_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=TRAINING_CORPORA)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    started = time.monotonic()
    config = FEATURES
    cache = build_cache(resolve_data_dir(args.data), config, corpora=tuple(args.corpora))
    print(f"{len(cache.clips)} clips, {len(cache.skipped)} skipped", file=sys.stderr)
    settings = TrainSettings(epochs=args.epochs)
    everything = np.arange(len(cache.clips))
    model, stats = train_model(cache, everything, config, settings, label="final")
    counts: dict[str, int] = {}
    for clip in cache.clips:
        counts[clip.corpus] = counts.get(clip.corpus, 0) + 1
    metrics_path = args.out / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    calibration = metrics.get("calibration", {})
    if "temperature" not in calibration:
        print("no fitted temperature in metrics.json (run 'make evaluate'): using 1.0", file=sys.stderr)
    temperature = calibration.get("temperature", 1.0)
    confident_top = metrics.get("confidence", {}).get("threshold")
    trained_on = {"clips": counts, "skipped": len(cache.skipped)}
    save_model(model, stats, config, settings, args.out, trained_on, temperature, confident_top)
    print(f"wrote {args.out} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
