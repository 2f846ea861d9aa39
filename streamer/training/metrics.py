"""Classification metrics: UA, WA, macro-F1, per-class recall, confusion matrix; the supervisor's signals
(ROC AUC of the angry probability, high vs low arousal UA)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from streamer.core.labels import EMOTION_INDEX, EMOTIONS, HIGH_AROUSAL

LOW_AROUSAL = ("neutral", "calm", "sad")  # disgust belongs to neither side


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def summarize(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Metrics over the classes present in ``y_true`` (TESS has no calm).

    UA (unweighted accuracy) is the mean per-class recall; WA the plain
    accuracy; macro-F1 the mean F1 over present classes. Predictions of an
    absent class still count as errors.
    """
    matrix = confusion_matrix(y_true, y_pred)
    support = matrix.sum(axis=1)
    present = support > 0
    predicted = matrix.sum(axis=0)
    tp = np.diag(matrix).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    return {
        "n": int(support.sum()),
        "ua": float(recall[present].mean()),
        "wa": float(tp.sum() / support.sum()),
        "macro_f1": float(f1[present].mean()),
        "per_class_recall": {EMOTIONS[i]: float(recall[i]) for i in np.flatnonzero(present)},
        "confusion": matrix.tolist(),
    }


def mean_over_folds(folds: list[dict]) -> dict:
    """Mean of each fold's UA/WA/macro-F1 and per-class recall, summed confusion."""
    classes = folds[0]["per_class_recall"].keys()
    return {
        "folds": len(folds),
        "ua": float(np.mean([f["ua"] for f in folds])),
        "ua_std": float(np.std([f["ua"] for f in folds])),
        "wa": float(np.mean([f["wa"] for f in folds])),
        "macro_f1": float(np.mean([f["macro_f1"] for f in folds])),
        "per_class_recall": {c: float(np.mean([f["per_class_recall"][c] for f in folds])) for c in classes},
        "confusion": np.sum([f["confusion"] for f in folds], axis=0).tolist(),
        "per_fold": folds,
    }


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the ``positive`` items (ties count half); None
    when either side is empty. The Mann-Whitney form: the chance a positive outscores a negative."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(scores)  # ties share their average rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def arousal_ua(probs: np.ndarray, truth: np.ndarray) -> float | None:
    """UA of high (angry, fearful, happy, surprised) against low (neutral, calm, sad) arousal.

    A clip counts as high when its high-arousal probabilities outweigh its
    low-arousal ones; clips of other classes (disgust) are left out. None
    unless both sides are present.
    """
    high_idx = [EMOTION_INDEX[e] for e in HIGH_AROUSAL]
    low_idx = [EMOTION_INDEX[e] for e in LOW_AROUSAL]
    truth = np.asarray(truth)
    is_high, is_low = np.isin(truth, high_idx), np.isin(truth, low_idx)
    if not is_high.any() or not is_low.any():
        return None
    said_high = probs[:, high_idx].sum(axis=1) > probs[:, low_idx].sum(axis=1)
    return float((said_high[is_high].mean() + (~said_high[is_low]).mean()) / 2)


CONFIDENCE_GRID = tuple(round(t, 2) for t in np.arange(0.20, 0.96, 0.05))


def confidence_curve(probs: np.ndarray, truth: np.ndarray) -> list[dict]:
    """How often the top emotion is right when its probability is at least ``t``, and how often it is.

    Per threshold of :data:`CONFIDENCE_GRID`: ``precision`` (top-1 right,
    calm counted as neutral) and ``coverage`` (share of items at or above).
    """
    top = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    neutral, calm = EMOTION_INDEX["neutral"], EMOTION_INDEX["calm"]
    correct = (top == truth) | ((top == calm) & (truth == neutral)) | ((top == neutral) & (truth == calm))
    rows = []
    for t in CONFIDENCE_GRID:
        shown = confidence >= t
        rows.append(
            {
                "threshold": t,
                "precision": float(correct[shown].mean()) if shown.any() else None,
                "coverage": float(shown.mean()),
            }
        )
    return rows


def confident_threshold(curve: list[dict], precision: float, min_coverage: float = 0.02) -> float | None:
    """The lowest threshold whose shown tops are right at least ``precision`` of the time (None: none is)."""
    for row in curve:
        if row["precision"] is not None and row["precision"] >= precision and row["coverage"] >= min_coverage:
            return row["threshold"]
    return None
