"""Honest evaluation: writes ``models/metrics.json`` and ``models/MODEL_CARD.md``.

Usage: ``python -m streamer.training.evaluate --data ../shared/data``
(or ``make evaluate``). Every protocol trains fresh models with the shipped
recipe; nothing is tuned on a test fold (fixed epochs, no early stopping).

Two ways of scoring a test clip, both as the product scores audio:

cold
    each clip alone, as ``python -m streamer.analysis.files`` scores a short file
    (adapted to its own few seconds of speech, so barely at all);
adapted
    all of one test speaker's clips streamed, in a random order, as one
    session through a live channel's speaker adaptation; each clip scored by
    its windows. ``single_emotion`` does the same with one session per
    speaker and emotion: a talker who is one emotion all along.

Protocols
---------
leave_one_corpus_out
    For each corpus: train on the others, test on it over the classes it
    shares with them (calm counts as neutral), for each training seed.
    ``calibration``: the temperature and the ECE before and after it, from
    the left-out corpora's clips (see :func:`calibrate`): the model is
    calibrated on voices it never heard, as real callers are.
    ``confidence``: from which probability the top emotion is named.
ravdess_cv
    Speaker-independent CV on RAVDESS in :data:`RAVDESS_FOLDS` folds of
    consecutive actors (3: actors 1-8, 9-16, 17-24); each fold trains on the
    other actors plus the other corpora.
    ``ravdess_cv_telephone``: the same models, test audio through the
    telephone channel.
tess_holdout
    Stratified 25 % of TESS; only two speakers, both also in training, so
    it does not measure generalisation to new speakers. Not in the default
    run (``--only tess_holdout``).
random_split
    The earlier project's protocol (random 25 % of pooled clips, speakers
    shared between train and test), to show how much it overstates.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from streamer.core.adaptation import AdaptationConfig
from streamer.core.calibration import expected_calibration_error, fit_temperature
from streamer.core.features import FeatureConfig
from streamer.core.labels import EMOTION_INDEX, EMOTIONS
from streamer.training.baseline import (
    fit_softmax_regression,
    normalize_per_speaker,
    pooled_features,
    predict_softmax_regression,
)
from streamer.training.cache import CLEAN, TELEPHONE, FeatureCache, build_cache
from streamer.training.corpora import CORPORA, resolve_data_dir
from streamer.training.metrics import (
    arousal_ua,
    confidence_curve,
    confident_threshold,
    mean_over_folds,
    roc_auc,
    summarize,
)
from streamer.training.model_card import write_model_card
from streamer.training.train import ADAPTATION, FEATURES, MODELS_DIR, TRAINING_CORPORA
from streamer.training.trainer import (
    ClipMoments,
    TrainSettings,
    clip_moments,
    predict_clips,
    sampling_weights,
    train_model,
)

PROTOCOLS = ("leave_one_corpus_out", "ravdess_cv", "tess_holdout", "random_split")
DEFAULT_PROTOCOLS = ("leave_one_corpus_out", "ravdess_cv", "random_split")
# Three folds of 8 actors rather than six of 4 keep `make evaluate` under two hours on 2 cores.
RAVDESS_FOLDS = 3
CALM, NEUTRAL = EMOTION_INDEX["calm"], EMOTION_INDEX["neutral"]
SWEEP_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask selecting ``fraction`` of each label's items."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.size, bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        mask[rng.choice(members, int(round(fraction * members.size)), replace=False)] = True
    return mask


def restricted_predictions(probs: np.ndarray, classes: list[int]) -> np.ndarray:
    """Argmax over ``classes`` only, calm's probability added to neutral's."""
    p = probs.copy()
    p[:, NEUTRAL] += p[:, CALM]
    return np.asarray(classes)[p[:, classes].argmax(axis=1)]


def max_class_share(predicted: np.ndarray) -> float:
    """The share of the most frequent predicted class: the collapse measure."""
    return float(np.bincount(predicted).max() / predicted.size)


class Evaluation:
    """The cache, its speaker statistics and the metrics file being filled."""

    def __init__(
        self,
        cache: FeatureCache,
        config: FeatureConfig,
        settings: TrainSettings,
        out: Path,
        experiment: str | None = None,
    ) -> None:
        self.cache, self.config, self.settings = cache, config, settings
        self.path = out / "metrics.json"
        self.experiment = experiment  # results go to metrics["experiments"][experiment], the shipped ones untouched
        self.metrics: dict = {}
        if experiment is None and self.path.exists():
            self.metrics = json.loads(self.path.read_text())
        self.corpus = np.array([c.corpus for c in cache.clips])
        self.actor = np.array([c.actor or 0 for c in cache.clips])
        self.labels = np.array([c.label for c in cache.clips])
        self.speaker = np.array([c.speaker for c in cache.clips])
        self.everything = np.arange(len(cache.clips))
        self.trainable = self.everything  # clips of the corpora models train on (the rest are tested only)
        self.moments: ClipMoments | None = clip_moments(cache, config) if settings.adapt else None
        self.pooled: np.ndarray | None = None  # clip-pooled features for the linear baseline
        self.egemaps: tuple[np.ndarray, np.ndarray] | None = None  # eGeMAPS functionals, trait columns
        self.sweep = True  # leave-one-corpus-out also sweeps the adaptation limit
        self.unseen: list = []  # (window predictions, truth) of each left-out corpus, streamed as sessions
        # How "adapted" scores are computed: as served, or not at all for a model trained without it.
        self.adaptation = ADAPTATION if settings.adapt else AdaptationConfig(max_weight=0.0)

    def save(self) -> None:
        self.metrics["feature_config"] = self.config.to_dict()
        self.metrics["train_settings"] = asdict(self.settings)
        self.metrics["adaptation"] = self.adaptation.to_dict()
        everything = self.metrics
        if self.experiment is not None:  # re-read: the shipped evaluation may have written meanwhile
            everything = json.loads(self.path.read_text()) if self.path.exists() else {}
            everything.setdefault("experiments", {})[self.experiment] = self.metrics
        elif self.path.exists():  # keep the experiments recorded so far
            previous = json.loads(self.path.read_text()).get("experiments")
            if previous:
                everything["experiments"] = {**previous, **everything.get("experiments", {})}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(everything, indent=1) + "\n")
        tmp.replace(self.path)

    def train(self, train: np.ndarray, label: str):
        return train_model(self.cache, train, self.config, self.settings, label=label, moments=self.moments)

    def predict(self, model, stats, test, variant: int, sessions=None, adaptation: AdaptationConfig | None = None):
        adaptation = adaptation or self.adaptation
        return predict_clips(model, self.cache, test, variant, self.config, stats, adaptation, sessions)

    def session_ids(self, test: np.ndarray, by_emotion: bool = False) -> np.ndarray:
        speakers = self.speaker[test]
        return np.char.add(speakers, self.labels[test].astype(str)) if by_emotion else speakers


def truth_of(ev: Evaluation, test: np.ndarray, classes: list[int] | None) -> np.ndarray:
    """True labels of ``test``; over a corpus's shared ``classes``, calm counts as neutral."""
    truth = ev.labels[test].copy()
    if classes is not None:
        truth[truth == CALM] = NEUTRAL
    return truth


MODES = ("cold", "adapted", "single_emotion")


def evaluate_clips(
    ev: Evaluation,
    model,
    stats,
    test: np.ndarray,
    variant: int = CLEAN,
    classes: list[int] | None = None,
    modes: tuple[str, ...] = MODES,
    adaptation: AdaptationConfig | None = None,
) -> dict:
    """Scores of ``test`` clips per mode: cold, adapted sessions, single-emotion sessions."""
    truth = truth_of(ev, test, classes)
    sessions = {"cold": None, "adapted": ev.session_ids(test), "single_emotion": ev.session_ids(test, True)}
    out = {}
    for mode in modes:
        windows = ev.predict(model, stats, test, variant, sessions[mode], adaptation)
        probs = windows.clip_probs()
        predicted = probs.argmax(axis=1) if classes is None else restricted_predictions(probs, classes)
        out[mode] = {
            **summarize(truth, predicted),
            "max_class_share": max_class_share(predicted),
            "mean_adapted": float(windows.weights.mean()),
            # The supervisor's signals: is an angry caller ranked above the rest, is excited speech told from calm.
            "angry_auc": roc_auc(probs[:, EMOTION_INDEX["angry"]], truth == EMOTION_INDEX["angry"]),
            "arousal_ua": arousal_ua(probs, truth),
            "_windows": windows,
        }
    return out


def _public(block: dict) -> dict:
    return {k: v for k, v in block.items() if not k.startswith("_")}


HEADLINE = {  # per mode: what the seeds summary keeps
    "ua": ("cold", "adapted", "single_emotion"),
    "angry_auc": ("cold", "adapted", "single_emotion"),
    "arousal_ua": ("cold", "adapted", "single_emotion"),
    "max_class_share": ("cold", "adapted", "single_emotion"),
}


def seed_summary(runs: list[dict]) -> dict:
    """Mean, sd and values over seeds of each headline number (``<metric>_<mode>``)."""
    out = {}
    for metric, modes in HEADLINE.items():
        for mode in modes:
            values = [run[mode][metric] for run in runs]
            out[f"{metric}_{mode}"] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "values": values,
            }
    return out


def leave_one_corpus_out(ev: Evaluation, seeds: tuple[int, ...] = (0,)) -> None:
    """Train without each corpus, test on it; the first seed in full, every seed's headline numbers."""
    results: dict = {}
    runs: dict[str, list[dict]] = {}
    base = ev.settings
    for n, seed in enumerate(seeds):
        ev.settings = replace(base, seed=seed)
        for held in CORPORA:
            test = ev.everything[ev.corpus == held]
            train = ev.trainable[ev.corpus[ev.trainable] != held]  # a corpus outside training: tested only
            if not test.size or not train.size:
                continue
            trained = set(ev.labels[train].tolist())
            classes = sorted({NEUTRAL if c == CALM else c for c in ev.labels[test].tolist()} & (trained | {NEUTRAL}))
            model, stats = ev.train(train, f"without {held}, seed {seed}")
            scored = evaluate_clips(ev, model, stats, test, classes=classes)
            runs.setdefault(held, []).append({mode: _public(block) for mode, block in scored.items()})
            print(
                f"without {held}, seed {seed}: UA cold {scored['cold']['ua']:.3f} adapted "
                f"{scored['adapted']['ua']:.3f} single-emotion {scored['single_emotion']['ua']:.3f}; angry AUC "
                f"{scored['cold']['angry_auc']:.3f}; arousal UA {scored['cold']['arousal_ua']:.3f}",
                file=sys.stderr,
            )
            if n == 0:
                results[held] = loco_details(ev, model, stats, train, test, classes, scored)
                ev.unseen.append((scored["adapted"]["_windows"], truth_of(ev, test, classes)))
            results[held]["seeds"] = {"seeds": list(seeds[: n + 1]), **seed_summary(runs[held])}
            ev.metrics["leave_one_corpus_out"] = results
            ev.save()
    ev.settings = base


def loco_details(ev: Evaluation, model, stats, train, test, classes, scored: dict) -> dict:
    """One left-out corpus in full: every mode, the adaptation sweep and the linear baselines."""
    sweep = {}
    for weight in SWEEP_WEIGHTS if ev.sweep else ():  # how far adaptation may go: mixed against single-emotion sessions
        adaptation = replace(ADAPTATION, max_weight=weight)
        row = evaluate_clips(ev, model, stats, test, CLEAN, classes, ("adapted", "single_emotion"), adaptation)
        sweep[str(weight)] = {
            "ua_adapted": row["adapted"]["ua"],
            "max_class_share_adapted": row["adapted"]["max_class_share"],
            "ua_single_emotion": row["single_emotion"]["ua"],
            "max_class_share_single_emotion": row["single_emotion"]["max_class_share"],
        }
    return {
        "classes": [EMOTIONS[c] for c in classes],
        "train_corpora": sorted(set(ev.corpus[train].tolist())),
        "ua_cold": scored["cold"]["ua"],
        "ua_adapted": scored["adapted"]["ua"],
        "ua_single_emotion_sessions": scored["single_emotion"]["ua"],
        "max_class_share_cold": scored["cold"]["max_class_share"],
        "max_class_share_adapted": scored["adapted"]["max_class_share"],
        "max_class_share_single_emotion_sessions": scored["single_emotion"]["max_class_share"],
        "cold": _public(scored["cold"]),
        "adapted": _public(scored["adapted"]),
        "single_emotion_sessions": _public(scored["single_emotion"]),
        "max_weight_sweep": sweep,
        "linear_baseline": linear_baseline(ev, train, test, classes),
    }


def linear_baseline(ev: Evaluation, train: np.ndarray, test: np.ndarray, classes: list[int]) -> dict:
    """Softmax regression on clip-level features, per normalisation: UA, collapse, the two signals.

    Log-mel statistics (raw; standardised per speaker) and, with the
    ``train`` extra installed, eGeMAPS functionals (global statistics; every
    feature standardised per talker; only the talker's traits centred). Per
    talker means by all of the talker's clips, as one session would give.
    """
    if ev.pooled is None:
        ev.pooled = pooled_features(ev.cache, ev.everything, ev.config)
        ev.egemaps = egemaps_or_none(ev.cache.clips)
    truth = truth_of(ev, test, classes)
    weights = sampling_weights(ev.cache, train, dict(ev.settings.corpus_share))
    variants = {
        "ua_raw": ev.pooled,
        "ua_speaker_normalised": normalize_per_speaker(ev.pooled, ev.speaker),
    }
    if ev.egemaps is not None:
        x, traits = ev.egemaps
        variants["ua_egemaps_global"] = x
        variants["ua_egemaps_per_talker"] = normalize_per_speaker(x, ev.speaker)
        variants["ua_egemaps_traits_centred"] = normalize_per_speaker(x, ev.speaker, traits)
    out = {}
    for name, x in variants.items():
        model = fit_softmax_regression(x[train], ev.labels[train], weights)
        probs = predict_softmax_regression(model, x[test])
        predicted = restricted_predictions(probs, classes)
        out[name] = summarize(truth, predicted)["ua"]
        out[name.replace("ua_", "max_class_share_")] = max_class_share(predicted)
        out[name.replace("ua_", "angry_auc_")] = roc_auc(
            probs[:, EMOTION_INDEX["angry"]], truth == EMOTION_INDEX["angry"]
        )
        out[name.replace("ua_", "arousal_ua_")] = arousal_ua(probs, truth)
    return out


def egemaps_or_none(clips) -> tuple[np.ndarray, np.ndarray] | None:
    """eGeMAPS functionals of every clip (missing ones filled with the mean) and the trait columns."""
    try:
        from streamer.training.egemaps import egemaps_features, feature_names, trait_columns
    except ImportError:
        print("eGeMAPS baseline skipped: install the train extra (pip install -e .[train])", file=sys.stderr)
        return None
    x = egemaps_features(clips)
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    return x, trait_columns(feature_names())


def calibrate(fold_windows: list, fold_truth: list[np.ndarray], note: str) -> dict:
    """Temperature from out-of-fold predictions only, and ECE (15 bins) before and after.

    Each fold's test clips were unseen by that fold's model. The temperature
    applied to fold k is fitted on the other folds' clips (cross-fitting), so
    no clip is scored with a temperature fitted on itself; the shipped
    temperature is fitted on all folds (clips the shipped model trained
    on, so fitting it touches training data only).
    """
    clip_probs = [w.clip_probs() for w in fold_windows]
    before, after = [], []
    for k in range(len(fold_windows)):
        others = [i for i in range(len(fold_windows)) if i != k]
        t_k = fit_temperature(
            np.concatenate([clip_probs[i] for i in others]), np.concatenate([fold_truth[i] for i in others])
        )
        before.append(clip_probs[k])
        after.append(fold_windows[k].clip_probs(t_k))
    truth = np.concatenate(fold_truth)
    temperature = fit_temperature(np.concatenate(clip_probs), truth)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(np.concatenate(before), truth),
        "ece_after": expected_calibration_error(np.concatenate(after), truth),
        "note": note,
    }


def ravdess_cv(ev: Evaluation) -> None:
    folds = {"cold": [], "adapted": [], "single_emotion": [], "telephone": [], "telephone_adapted": []}
    per_fold = 24 // RAVDESS_FOLDS
    for k in range(1, RAVDESS_FOLDS + 1):
        held = np.arange(per_fold * (k - 1) + 1, per_fold * k + 1)
        test = ev.everything[(ev.corpus == "ravdess") & np.isin(ev.actor, held)]
        train = np.setdiff1d(ev.trainable, test)
        model, stats = ev.train(train, f"fold {k}/{RAVDESS_FOLDS}")
        info = {"fold": k, "test_actors": held.tolist(), "n_train_clips": int(train.size)}
        wide = evaluate_clips(ev, model, stats, test, CLEAN)
        phone = evaluate_clips(ev, model, stats, test, TELEPHONE)
        for key, block in (
            ("cold", wide["cold"]),
            ("adapted", wide["adapted"]),
            ("single_emotion", wide["single_emotion"]),
            ("telephone", phone["cold"]),
            ("telephone_adapted", phone["adapted"]),
        ):
            folds[key].append({**info, **_public(block)})
        print(
            f"fold {k}: UA {wide['cold']['ua']:.3f}, adapted {wide['adapted']['ua']:.3f}, "
            f"telephone {phone['cold']['ua']:.3f}",
            file=sys.stderr,
        )
    cv = mean_over_folds(folds["cold"])
    cv["ua_adapted"] = mean_over_folds(folds["adapted"])["ua"]
    cv["ua_single_emotion_sessions"] = mean_over_folds(folds["single_emotion"])["ua"]
    cv["adapted"] = mean_over_folds(folds["adapted"])
    telephone = mean_over_folds(folds["telephone"])
    telephone["ua_adapted"] = mean_over_folds(folds["telephone_adapted"])["ua"]
    ev.metrics["ravdess_cv"] = cv
    ev.metrics["ravdess_cv_telephone"] = telephone
    ev.save()


def single_split(ev: Evaluation, key: str, label: str, train: np.ndarray, test: np.ndarray, note: str) -> None:
    model, stats = ev.train(train, label)
    probs = ev.predict(model, stats, test, CLEAN).clip_probs()
    ev.metrics[key] = {**summarize(ev.labels[test], probs.argmax(axis=1)), "note": note}
    ev.save()


def run_protocols(ev: Evaluation, protocols: tuple[str, ...], seeds: tuple[int, ...] = (0,)) -> None:
    if "leave_one_corpus_out" in protocols:
        leave_one_corpus_out(ev, seeds)
    if "ravdess_cv" in protocols:
        ravdess_cv(ev)
    if "tess_holdout" in protocols:
        tess = ev.everything[ev.corpus == "tess"]
        strata = ev.labels[tess] * 2 + (ev.speaker[tess] == "tess-YAF")  # by emotion and speaker
        test = tess[stratified_holdout(strata, 0.25, seed=1)]
        note = "2 speakers, both in training: does not measure generalisation"
        single_split(ev, "tess_holdout", "tess holdout", np.setdiff1d(ev.trainable, test), test, note)
    if "random_split" in protocols:
        test = ev.trainable[stratified_holdout(ev.labels[ev.trainable], 0.25, seed=2)]
        note = "old protocol: same speakers in train and test; overstates accuracy"
        single_split(ev, "random_split", "random split", np.setdiff1d(ev.trainable, test), test, note)
    if ev.unseen:
        windows, truth = zip(*ev.unseen)
        note = "left-out corpora's clips, streamed as one session per speaker; corpus k scaled by a temperature "
        ev.metrics["calibration"] = calibrate(list(windows), list(truth), note + "fitted on the other corpora")
        ev.metrics["confidence"] = confidence(ev)
    ev.metrics.pop("cross_corpus_ravdess_to_tess", None)  # superseded by leave_one_corpus_out
    ev.save()


# A top emotion the floor view names is right at least a third of the time on voices never heard
# (chance: a seventh to a quarter). Half was the first aim; no threshold reaches it (metrics.json's curve).
CONFIDENT_PRECISION = 1 / 3


def confidence(ev: Evaluation) -> dict:
    """When may the floor view name the top emotion rather than "uncertain"?

    Measured on voices no model had heard: the left-out corpora's clips
    scored as sessions (the adapted mode: a clip's windows averaged, as the
    rolling scores average a call's last seconds), with the fitted
    temperature, as served. The threshold is the lowest probability at
    which the top emotion is right at least :data:`CONFIDENT_PRECISION` of
    the time over all left-out corpora.
    """
    temperature = ev.metrics["calibration"]["temperature"]
    probs = np.concatenate([windows.clip_probs(temperature) for windows, _ in ev.unseen])
    truth = np.concatenate([t for _, t in ev.unseen])
    curve = confidence_curve(probs, truth)
    return {
        "threshold": confident_threshold(curve, CONFIDENT_PRECISION),
        "precision_target": CONFIDENT_PRECISION,
        "temperature": temperature,
        "curve": curve,
        "note": "left-out corpora, clips streamed as one session per speaker; top-1 right with calm as neutral",
    }


def ship_temperature(metrics: dict, out: Path) -> None:
    """Put the fitted temperature and confidence threshold into the shipped model's config.json, if there is one."""
    config_path = out / "config.json"
    temperature = metrics.get("calibration", {}).get("temperature")
    if temperature is None or not config_path.exists():
        return
    config = json.loads(config_path.read_text())
    config["temperature"] = round(float(temperature), 4)
    if "confidence" in metrics:
        config["confident_top"] = metrics["confidence"]["threshold"]
    config_path.write_text(json.dumps(config, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder (default: $EMOTION_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--only", nargs="+", choices=PROTOCOLS, default=DEFAULT_PROTOCOLS)
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], help="leave-one-corpus-out training seeds (mean ± sd)"
    )
    parser.add_argument("--no-adapt", action="store_true", help="train and score without speaker adaptation")
    parser.add_argument("--band-warp", type=float, default=TrainSettings.band_warp)
    parser.add_argument("--adversarial", type=float, default=TrainSettings.adversarial)
    parser.add_argument("--mixup", type=float, default=TrainSettings.mixup)
    parser.add_argument(
        "--experiment", metavar="NAME", help="record results under metrics.json's experiments.NAME (tried recipes)"
    )
    parser.add_argument("--corpus-share", nargs=4, type=float, metavar=("RAVDESS", "TESS", "NEMO", "EMOSPEECH"))
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=CORPORA, help="use these corpora only")
    parser.add_argument(
        "--train-corpora", nargs="+", choices=CORPORA, default=TRAINING_CORPORA, help="train on these (test on all)"
    )
    parser.add_argument("--no-prosody", action="store_true", help="log-mel bands only (the earlier recipe)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the adaptation-limit sweep (faster)")
    parser.add_argument("--card-only", action="store_true", help="re-render MODEL_CARD.md from metrics.json")
    args = parser.parse_args(argv)
    if args.card_only:
        write_model_card(json.loads((args.out / "metrics.json").read_text()), args.out)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    started = time.monotonic()
    config = replace(FEATURES, prosody=not args.no_prosody)
    cache = build_cache(resolve_data_dir(args.data), config, corpora=tuple(args.corpora))
    settings = replace(
        TrainSettings(),
        epochs=args.epochs,
        adapt=not args.no_adapt,
        band_warp=args.band_warp,
        adversarial=args.adversarial,
        mixup=args.mixup,
    )
    if args.corpus_share:
        settings = replace(settings, corpus_share=tuple(zip(CORPORA, args.corpus_share)))
    args.out.mkdir(parents=True, exist_ok=True)
    evaluation = Evaluation(cache, config, settings, args.out, args.experiment)
    evaluation.sweep = not args.no_sweep
    evaluation.trainable = evaluation.everything[np.isin(evaluation.corpus, args.train_corpora)]
    evaluation.metrics["train_corpora"] = sorted(set(args.train_corpora) & set(args.corpora))
    run_protocols(evaluation, tuple(args.only), tuple(args.seeds))
    if args.experiment is None:
        ship_temperature(evaluation.metrics, args.out)
    write_model_card(json.loads((args.out / "metrics.json").read_text()), args.out)
    print(f"evaluation took {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
