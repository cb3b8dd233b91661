"""The metrics against hand computations on a made-up accuracy matrix and made-up predictions."""

import numpy as np
import pytest

from luminary.activity.layout import CLASSES
from luminary.activity.metrics import (accuracy_matrix, average_incremental_accuracy, class_band, confusion_matrix,
                                       forgetting, head_medium_tail, macro_accuracy, per_class_accuracy,
                                       performance_drop, summarize)

# a_{t,j}: rows the session after which we test, columns the group
MATRIX = np.array([[0.9, np.nan, np.nan],
                   [0.6, 0.8, np.nan],
                   [0.5, 0.4, 0.7]])


def test_forgetting_is_chaudhry():
    # group 0: best of 0.9, 0.6 is 0.9, final 0.5 -> 0.4; group 1: best 0.8, final 0.4 -> 0.4
    assert forgetting(MATRIX) == pytest.approx((0.4 + 0.4) / 2)
    # a group that improves later counts its best earlier value (here 0.6 after session 1)
    m = np.array([[0.5, np.nan, np.nan], [0.6, 0.8, np.nan], [0.55, 0.8, 0.7]])
    assert forgetting(m) == pytest.approx(((0.6 - 0.55) + 0.0) / 2)
    assert forgetting(MATRIX[:1, :1]) == 0.0


def test_average_incremental_last_and_drop():
    steps = [0.9, 0.7, 0.55]
    assert average_incremental_accuracy(steps) == pytest.approx((0.9 + 0.7 + 0.55) / 3)
    assert performance_drop(steps) == pytest.approx(0.35)


def test_accuracy_matrix_from_predictions():
    groups = [(0, 1), (2,)]
    trues = [np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 2])]
    preds = [np.array([0, 1, 1, 1]), np.array([2, 0, 1, 2, 2, 2])]
    m = accuracy_matrix(groups, preds, trues)
    assert m[0, 0] == pytest.approx(3 / 4)
    assert np.isnan(m[0, 1])
    assert m[1, 0] == pytest.approx(2 / 4) and m[1, 1] == pytest.approx(1.0)
    s = summarize(groups, preds, trues)
    assert s["step_accuracy"] == pytest.approx([3 / 4, 4 / 6])
    assert s["forgetting"] == pytest.approx(3 / 4 - 2 / 4)
    # per class after the last session: class 0 1/2, class 1 1/2, class 2 2/2
    assert s["macro_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_per_class_macro_and_bands():
    true = np.array([0, 0, 0, 0, 31, 31, 20])
    pred = np.array([0, 0, 0, 1, 31, 0, 20])
    per = per_class_accuracy(pred, true)
    assert per == {0: 0.75, 20: 1.0, 31: 0.5}
    assert macro_accuracy(per) == pytest.approx((0.75 + 1.0 + 0.5) / 3)
    assert [class_band(CLASSES.index(n)) for n in ("listening", "sleeping", "handsup")] == ["head", "medium", "tail"]
    assert sum(class_band(c) == "head" for c in range(32)) == 9
    assert sum(class_band(c) == "tail" for c in range(32)) == 10
    bands = head_medium_tail(per)
    assert bands["head"] == 0.75 and bands["medium"] == 1.0 and bands["tail"] == 0.5  # 20 = taking_bottle


def test_confusion_counts():
    m = confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
