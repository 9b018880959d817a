"""Specification of stepml.metrics, checked against small hand-computed examples."""

import json

import numpy as np
import pytest

from stepml.metrics import classification_report, confusion_matrix

# Three classes, six rows:
#   true 0 0 0 1 1 2
#   pred 0 0 1 1 2 2
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_are_true_columns_are_predicted():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[2, 1, 0],
                           [0, 1, 1],
                           [0, 0, 1]]


def test_report_matches_hand_computation():
    r = classification_report(Y_TRUE, Y_PRED, 3)
    assert r["n_samples"] == 6 and r["n_classes"] == 3
    assert r["accuracy"] == pytest.approx(4 / 6)
    # precision = diag / column sums; recall = diag / row sums; f1 = 2pr / (p + r)
    expected = [  # (precision, recall, f1, support)
        (2 / 2, 2 / 3, 0.8, 3),
        (1 / 2, 1 / 2, 0.5, 2),
        (1 / 2, 1 / 1, 2 / 3, 1),
    ]
    for c, (p, rec, f1, support) in enumerate(expected):
        row = r["per_class"][c]
        assert row["class"] == c
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(rec)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support
    macro_f1 = (0.8 + 0.5 + 2 / 3) / 3
    assert r["macro_f1"] == pytest.approx(macro_f1)
    assert r["MulticlassAvgFScore"] == r["macro_f1"]
    assert r["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert r["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_report_is_plain_json():
    r = classification_report(np.array(Y_TRUE), np.array(Y_PRED), 3)
    assert json.loads(json.dumps(r)) == r


def test_class_absent_from_both_sides_is_zero_and_left_out_of_the_macro_average():
    r = classification_report(Y_TRUE, Y_PRED, 4)
    assert r["per_class"][3] == {"class": 3, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert len(r["confusion_matrix"]) == 4 and r["confusion_matrix"][3] == [0, 0, 0, 0]


def test_predicted_but_never_true_class_scores_zero_without_nan():
    # Class 2 is predicted once but never occurs: precision 0/1, recall 0/0 -> 0, f1 0.
    r = classification_report([0, 0, 1], [0, 2, 1], 3)
    assert r["per_class"][2] == {"class": 2, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["per_class"][0]["f1"] == pytest.approx(2 / 3)   # p = 1, r = 1/2
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert not any(np.isnan(v) for row in r["per_class"] for v in row.values())


def test_never_predicted_class_has_zero_precision():
    r = classification_report([0, 1, 1], [0, 0, 0], 2)
    assert r["per_class"][1]["precision"] == 0.0
    assert r["per_class"][1]["f1"] == 0.0
    assert r["accuracy"] == pytest.approx(1 / 3)


def test_perfect_predictions():
    y = np.arange(10) % 5
    r = classification_report(y, y, 5)
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0
    assert np.array_equal(np.array(r["confusion_matrix"]), np.diag([2] * 5))


def test_integral_float_labels_are_accepted():
    assert classification_report([0.0, 1.0], [0, 1], 2)["accuracy"] == 1.0


@pytest.mark.parametrize("y_true, y_pred, k, message", [
    ([0, 1, 2], [0, 1], 3, "3 labels"),
    ([0, 1, 3], [0, 1, 2], 3, "outside 0..2"),
    ([0, -1], [0, 0], 3, "outside"),
    ([[0, 1]], [[0, 1]], 3, "1-D"),
    ([0.5, 1], [0, 1], 3, "integer"),
    ([], [], 3, "empty"),
    ([0, 1], [0, 1], 0, "n_classes"),
])
def test_bad_inputs_are_rejected(y_true, y_pred, k, message):
    with pytest.raises(ValueError, match=message):
        classification_report(y_true, y_pred, k)
