"""Honest evaluation: writes ``models/metrics.json`` and ``models/MODEL_CARD.md``.

Usage: ``python -m streamer.training.evaluate --data ../shared/data``
(or ``make evaluate``). Every protocol trains fresh models with the shipped
recipe; nothing is tuned on a test fold (fixed epochs, no early stopping).

Protocols
---------
ravdess_cv
    Speaker-independent 6-fold CV on RAVDESS: fold k tests actors
    4k-3 .. 4k and trains on the other 20 actors plus all of TESS.
ravdess_cv_telephone
    The same models, test audio through the telephone channel.
tess_holdout
    Stratified 25 % of TESS; only two speakers, both also in training, so
    it does not measure generalisation to new speakers.
random_split
    The earlier project's protocol (random 25 % of pooled clips, speakers
    shared between train and test), to show how much it overstates.
cross_corpus
    Train on RAVDESS only, test on all of TESS (7 shared emotions).
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

from streamer.features import FeatureConfig
from streamer.training.cache import CLEAN, TELEPHONE, FeatureCache, build_cache
from streamer.training.corpora import resolve_data_dir
from streamer.training.metrics import mean_over_folds, summarize
from streamer.training.model_card import write_model_card
from streamer.training.train import MODELS_DIR
from streamer.training.trainer import TrainSettings, predict_clips, train_model

PROTOCOLS = ("ravdess_cv", "tess_holdout", "random_split", "cross_corpus")


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask selecting ``fraction`` of each label's items."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.size, bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        mask[rng.choice(members, int(round(fraction * members.size)), replace=False)] = True
    return mask


def _score(model, stats, cache, test, variant, config) -> dict:
    probs = predict_clips(model, cache, test, variant, config, stats)
    truth = np.array([cache.clips[i].label for i in test])
    return summarize(truth, probs.argmax(axis=1))


def run_protocols(
    cache: FeatureCache, config: FeatureConfig, settings: TrainSettings, protocols: tuple[str, ...], out: Path
) -> dict:
    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    corpus = np.array([c.corpus for c in cache.clips])
    actor = np.array([c.actor or 0 for c in cache.clips])
    labels = np.array([c.label for c in cache.clips])
    everything = np.arange(len(cache.clips))

    def save() -> None:
        metrics["feature_config"] = config.to_dict()
        metrics["train_settings"] = asdict(settings)
        metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")

    if "ravdess_cv" in protocols:
        wide, phone = [], []
        for k in range(1, 7):
            held = np.arange(4 * k - 3, 4 * k + 1)
            test = everything[(corpus == "ravdess") & np.isin(actor, held)]
            train = np.setdiff1d(everything, test)
            model, stats = train_model(cache, train, config, settings, label=f"fold {k}/6")
            fold = {"fold": k, "test_actors": held.tolist(), "n_train_clips": int(train.size)}
            wide.append({**fold, **_score(model, stats, cache, test, CLEAN, config)})
            phone.append({**fold, **_score(model, stats, cache, test, TELEPHONE, config)})
            print(f"fold {k}: UA {wide[-1]['ua']:.3f}, telephone UA {phone[-1]['ua']:.3f}", file=sys.stderr)
        metrics["ravdess_cv"] = mean_over_folds(wide)
        metrics["ravdess_cv_telephone"] = mean_over_folds(phone)
        save()

    def single_split(key: str, label: str, train: np.ndarray, test: np.ndarray, note: str) -> None:
        model, stats = train_model(cache, train, config, settings, label=label)
        metrics[key] = {**_score(model, stats, cache, test, CLEAN, config), "note": note}
        save()

    if "tess_holdout" in protocols:
        tess = everything[corpus == "tess"]
        speakers = np.array([cache.clips[i].speaker for i in tess])
        strata = labels[tess] * 2 + (speakers == "tess-YAF")  # by emotion and speaker
        test = tess[stratified_holdout(strata, 0.25, seed=1)]
        note = "2 speakers, both in training: does not measure generalisation"
        single_split("tess_holdout", "tess holdout", np.setdiff1d(everything, test), test, note)

    if "random_split" in protocols:
        test = everything[stratified_holdout(labels, 0.25, seed=2)]
        note = "old protocol: same speakers in train and test; overstates accuracy"
        single_split("random_split", "random split", np.setdiff1d(everything, test), test, note)

    if "cross_corpus" in protocols:
        note = "trained on RAVDESS only, tested on TESS's 7 emotions; calm predictions count as errors"
        train, test = everything[corpus == "ravdess"], everything[corpus == "tess"]
        single_split("cross_corpus_ravdess_to_tess", "RAVDESS->TESS", train, test, note)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder (default: $EMOTION_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--only", nargs="+", choices=PROTOCOLS, default=PROTOCOLS)
    parser.add_argument("--card-only", action="store_true", help="re-render MODEL_CARD.md from metrics.json")
    args = parser.parse_args(argv)
    if args.card_only:
        write_model_card(json.loads((args.out / "metrics.json").read_text()), args.out)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    started = time.monotonic()
    config = FeatureConfig()
    cache = build_cache(resolve_data_dir(args.data), config)
    settings = TrainSettings(epochs=args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = run_protocols(cache, config, settings, tuple(args.only), args.out)
    write_model_card(metrics, args.out)
    print(f"evaluation took {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
