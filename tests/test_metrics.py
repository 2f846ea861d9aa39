import numpy as np
import pytest

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
