"""runner.core.maths' per-class numbers against counts by hand: the confusion matrix (rows true,
columns predicted), each class's precision, recall and F1 with sklearn's zero_division=0, and macro F1
as their mean."""

from __future__ import annotations

import numpy as np
import pytest

from runner.core.maths import confusion, f1_macro, per_class


def test_confusion_rows_are_true_columns_predicted():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 0, 2, 1])
    m = confusion(pred, labels, 4)
    assert m.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert m.sum() == len(labels) and m.dtype == np.int64


def test_per_class_by_hand_with_a_class_never_predicted_and_one_never_present():
    labels = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 0, 1, 1])  # class 2 never predicted; class 3 neither present nor predicted
    st = per_class(confusion(pred, labels, 4))
    # class 0: tp 2, predicted 3, support 2; class 1: tp 1, predicted 3, support 2; class 2: tp 0, support 2
    assert st["precision"] == pytest.approx([2 / 3, 1 / 3, 0.0, 0.0])
    assert st["recall"] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert st["f1"] == pytest.approx([0.8, 0.4, 0.0, 0.0])
    assert st["support"].tolist() == [2, 2, 2, 0] and st["predicted"].tolist() == [3, 3, 0, 0]
    probs = np.eye(4)[pred]
    assert f1_macro(probs, labels) == pytest.approx(np.mean(st["f1"]))


def test_per_class_matches_a_loop_over_random_predictions():
    rng = np.random.default_rng(0)
    labels, pred = rng.integers(0, 5, 400), rng.integers(0, 5, 400)
    st = per_class(confusion(pred, labels, 5))
    for c in range(5):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        assert st["precision"][c] == pytest.approx(tp / (tp + fp))
        assert st["recall"][c] == pytest.approx(tp / (tp + fn))
        assert st["f1"][c] == pytest.approx(2 * tp / (2 * tp + fp + fn))
