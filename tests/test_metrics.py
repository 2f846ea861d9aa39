import numpy as np
import pytest

from streamer.core.labels import EMOTIONS
from streamer.training.metrics import confusion_matrix, mean_over_folds, summarize


def test_ua_wa_f1_by_hand():
    truth = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0])
    s = summarize(truth, pred)
    assert s["wa"] == pytest.approx(4 / 6)
    assert s["ua"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    f1_0 = 2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4)
    f1_1 = 2 * (1 / 2) * (1 / 2) / 1
    assert s["macro_f1"] == pytest.approx((f1_0 + f1_1) / 2)
    assert set(s["per_class_recall"]) == {"neutral", "calm"}
    assert confusion_matrix(truth, pred)[0].tolist()[:2] == [3, 1]


def test_absent_class_predictions_are_errors():
    s = summarize(np.array([0, 0]), np.array([1, 0]))
    assert s["ua"] == 0.5 and s["wa"] == 0.5


def test_mean_over_folds():
    a = summarize(np.array([0, 1]), np.array([0, 1]))
    b = summarize(np.array([0, 1]), np.array([1, 1]))
    m = mean_over_folds([a, b])
    assert m["folds"] == 2 and m["ua"] == pytest.approx(0.75)
    assert np.sum(m["confusion"]) == 4


def test_confidence_curve_counts_right_tops_at_or_above_each_threshold():
    from streamer.training.metrics import confidence_curve, confident_threshold

    idx = {e: i for i, e in enumerate(EMOTIONS)}
    probs = np.full((4, 8), 0.02)
    probs[0, idx["angry"]] = 0.86  # right, confident
    probs[1, idx["sad"]] = 0.86  # wrong, confident
    probs[2, idx["calm"]] = 0.5  # calm for neutral counts as right
    probs[3, idx["happy"]] = 0.3  # wrong, unsure
    truth = np.array([idx["angry"], idx["angry"], idx["neutral"], idx["sad"]])
    curve = {row["threshold"]: row for row in confidence_curve(probs, truth)}
    assert curve[0.3] == {"threshold": 0.3, "precision": 2 / 4, "coverage": 1.0}
    assert curve[0.5] == {"threshold": 0.5, "precision": 2 / 3, "coverage": 0.75}
    assert curve[0.85] == {"threshold": 0.85, "precision": 1 / 2, "coverage": 0.5}
    assert curve[0.9]["precision"] is None and curve[0.9]["coverage"] == 0.0
    rows = list(curve.values())
    assert confident_threshold(rows, 0.6) == 0.35  # the lowest threshold with 2 of 3 right
    assert confident_threshold(rows, 0.9) is None
