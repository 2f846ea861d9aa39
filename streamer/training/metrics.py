"""Classification metrics: UA, WA, macro-F1, per-class recall, confusion matrix."""

from __future__ import annotations

import numpy as np

from streamer.core.labels import EMOTIONS


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
