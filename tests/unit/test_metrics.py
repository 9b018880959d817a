"""Specification of stepml.metrics, checked against small hand-computed examples."""

import json

import numpy as np
import pytest

from stepml.metrics import (
    binary_report,
    classification_report,
    confusion_matrix,
    regression_report,
)

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


# ----------------------------------------------------------------------------- new report options


CLASSIFICATION_KEYS = {"n_samples", "n_classes", "accuracy", "macro_precision", "macro_recall",
                       "macro_f1", "MulticlassAvgFScore", "per_class", "confusion_matrix"}


def strict_json(report):
    """Round-trips through JSON that refuses NaN / inf, as the Score step's report must."""
    return json.loads(json.dumps(report, allow_nan=False))


def test_existing_report_keys_are_unchanged_without_the_new_arguments():
    assert set(classification_report(Y_TRUE, Y_PRED, 3)) == CLASSIFICATION_KEYS


def test_log_loss_is_the_mean_negative_log_of_the_true_class_probability():
    scores = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.2, 0.8, 0.0],
                       [0.1, 0.6, 0.3], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]])
    r = classification_report(Y_TRUE, Y_PRED, 3, scores=scores)
    expected = -np.mean(np.log([0.7, 0.5, 0.2, 0.6, 0.1, 0.5]))
    assert r["log_loss"] == pytest.approx(expected)
    assert set(r) == CLASSIFICATION_KEYS | {"log_loss"}


def test_log_loss_clips_a_zero_probability_instead_of_going_infinite():
    r = classification_report([0, 1], [1, 1], 2, scores=[[0.0, 1.0], [0.0, 1.0]])
    assert r["log_loss"] == pytest.approx(-np.log(1e-15) / 2)
    strict_json(r)


def test_multiclass_log_loss_matches_scikit_learn():
    import sklearn.metrics as sk  # a dev dependency: the reference implementation
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, size=200)
    r = classification_report(y, p.argmax(axis=1), 4, scores=p)
    assert r["log_loss"] == pytest.approx(sk.log_loss(y, p, labels=range(4)))
    assert r["macro_f1"] == pytest.approx(sk.f1_score(y, p.argmax(axis=1), average="macro"))


def test_baseline_is_always_predicting_the_training_majority_class():
    # Always class 0 on Y_TRUE = 0 0 0 1 1 2: accuracy 3/6; class 0 has p = 1/2, r = 1,
    # F1 = 2/3; classes 1 and 2 score 0; the macro average runs over the 3 true classes.
    r = classification_report(Y_TRUE, Y_PRED, 3, baseline_class=0)
    assert r["baseline"] == {"class": 0, "accuracy": pytest.approx(0.5), "macro_f1": pytest.approx(2 / 9)}
    # The baseline class is the *training* majority, which need not be the evaluation's.
    r = classification_report(Y_TRUE, Y_PRED, 3, baseline_class=2)
    assert r["baseline"]["accuracy"] == pytest.approx(1 / 6)
    assert r["baseline"]["macro_f1"] == pytest.approx((2 * (1 / 6) / (1 / 6 + 1)) / 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"scores": [[0.5, 0.5]] * 6}, "shape"),
    ({"scores": [[1.5, -0.5, 0.0]] * 6}, r"\[0, 1\]"),
    ({"scores": [[np.nan, 0.5, 0.5]] * 6}, "non-finite"),
    ({"baseline_class": 3}, "baseline_class"),
    ({"baseline_class": True}, "baseline_class"),
])
def test_bad_scores_or_baseline_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        classification_report(Y_TRUE, Y_PRED, 3, **kwargs)


# ----------------------------------------------------------------------------- binary

# Four rows: negatives score 0.1 and 0.4, positives 0.35 and 0.8. Of the 4 (positive,
# negative) pairs, 3 are ordered right (0.35 < 0.4 is the miss): AUC = 3/4.
B_TRUE = [0, 0, 1, 1]
B_SCORE = [0.1, 0.4, 0.35, 0.8]


def test_binary_report_matches_hand_computation():
    r = binary_report(B_TRUE, B_SCORE)
    assert r["BinaryAUC"] == pytest.approx(0.75)
    # cut-off 0.5: predictions 0 0 0 1 -> tn 2, fp 0, fn 1, tp 1
    assert r["confusion_matrix"] == [[2, 0], [1, 1]]
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["precision"] == 1.0
    assert r["recall"] == 0.5
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["false_positive_rate"] == 0.0
    assert r["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert (r["n_samples"], r["n_positive"], r["n_negative"], r["threshold"]) == (4, 2, 2, 0.5)
    assert strict_json(r) == r


def test_binary_threshold_is_inclusive_like_amazon_ml_score_threshold():
    r = binary_report(B_TRUE, B_SCORE, threshold=0.35)
    # 0.35 >= 0.35 is positive: predictions 0 1 1 1
    assert r["confusion_matrix"] == [[1, 1], [0, 2]]
    assert r["false_positive_rate"] == 0.5
    assert r["threshold"] == 0.35


def test_auc_gives_tied_scores_half_credit():
    # positives {0.5, 0.9}, negatives {0.5, 0.2}: pairs 0.5/0.5 tie (1/2), the rest right.
    assert binary_report([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])["BinaryAUC"] == pytest.approx(3.5 / 4)
    assert binary_report([0, 1, 0, 1], [0.3] * 4)["BinaryAUC"] == 0.5
    assert binary_report([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])["BinaryAUC"] == 0.0


def test_binary_report_matches_scikit_learn_with_many_ties():
    import sklearn.metrics as sk  # a dev dependency: the reference implementation
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=500)
    s = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, size=500), 0, 1), 2).astype(np.float32)
    r = binary_report(y, s, threshold=0.4)
    predicted = (s >= 0.4).astype(int)
    assert r["BinaryAUC"] == pytest.approx(sk.roc_auc_score(y, s))
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted))
    assert r["precision"] == pytest.approx(sk.precision_score(y, predicted))
    assert r["recall"] == pytest.approx(sk.recall_score(y, predicted))
    assert r["f1"] == pytest.approx(sk.f1_score(y, predicted))
    assert r["log_loss"] == pytest.approx(sk.log_loss(y, s.astype(np.float64)), rel=1e-6)
    tn, fp, fn, tp = sk.confusion_matrix(y, predicted).ravel().tolist()
    assert r["confusion_matrix"] == [[tn, fp], [fn, tp]]


def test_auc_is_none_and_ratios_are_zero_when_only_one_class_is_present():
    r = binary_report([0, 0, 0], [0.1, 0.2, 0.3])
    assert r["BinaryAUC"] is None
    assert r["precision"] == r["recall"] == r["f1"] == 0.0
    assert r["accuracy"] == 1.0
    strict_json(r)
    r = binary_report([1, 1], [0.9, 0.2])
    assert r["BinaryAUC"] is None and r["false_positive_rate"] == 0.0 and r["recall"] == 0.5


def test_binary_log_loss_clips_certain_mistakes():
    r = binary_report([1, 0], [0.0, 1.0])
    assert r["log_loss"] == pytest.approx(-np.log(1e-15))
    strict_json(r)


def test_binary_baseline_predicts_the_training_majority_class():
    y = [1, 1, 0, 0, 0]
    r = binary_report(y, [0.5] * 5, baseline_positive_rate=0.7)
    assert r["baseline"] == {"class": 1, "positive_rate": 0.7, "accuracy": pytest.approx(0.4), "BinaryAUC": 0.5}
    r = binary_report(y, [0.5] * 5)          # no training rate: y_true's own
    assert r["baseline"]["class"] == 0 and r["baseline"]["positive_rate"] == pytest.approx(0.4)
    assert r["baseline"]["accuracy"] == pytest.approx(0.6)
    assert binary_report([0, 1], [0.5, 0.5])["baseline"]["class"] == 0   # a tie goes to 0


def test_binary_accepts_bool_and_integral_float_labels():
    assert binary_report(np.array([False, True]), [0.2, 0.7])["accuracy"] == 1.0
    assert binary_report([0.0, 1.0], [0.2, 0.7])["BinaryAUC"] == 1.0


@pytest.mark.parametrize("y, s, kwargs, message", [
    ([0, 2], [0.1, 0.2], {}, "0 and 1"),
    ([0, 1], [0.1, 1.5], {}, r"\[0, 1\]"),
    ([0, 1], [0.1, np.nan], {}, "non-finite"),
    ([0, 1], [0.1, np.inf], {}, "non-finite"),
    ([0, 1, 1], [0.1, 0.2], {}, "3 values"),
    ([], [], {}, "empty"),
    ([[0, 1]], [[0.1, 0.2]], {}, "1-D"),
    ([0, 1], [0.1, 0.2], {"threshold": 1.5}, "threshold"),
    ([0, 1], [0.1, 0.2], {"threshold": float("nan")}, "threshold"),
    ([0, 1], [0.1, 0.2], {"baseline_positive_rate": -0.1}, "baseline_positive_rate"),
    (["0", "1"], [0.1, 0.2], {}, "dtype"),
])
def test_binary_bad_inputs_are_rejected(y, s, kwargs, message):
    with pytest.raises(ValueError, match=message):
        binary_report(y, s, **kwargs)


# ----------------------------------------------------------------------------- regression

def test_regression_report_matches_hand_computation():
    # residuals (true - predicted) 0 0 0 -1
    r = regression_report([1, 2, 3, 4], [1, 2, 3, 5])
    assert r["n_samples"] == 4
    assert r["RegressionRMSE"] == pytest.approx(0.5)
    assert r["mae"] == pytest.approx(0.25)
    assert r["r2"] == pytest.approx(1 - 1 / 5)         # SS_tot = 2.25 + 0.25 + 0.25 + 2.25
    assert r["mean_residual"] == pytest.approx(-0.25)  # negative: the model overestimates
    # sorted residuals -1 0 0 0; p5 sits 0.15 of the way from -1 to 0
    assert r["residual_quantiles"] == {"p5": pytest.approx(-0.85), "p50": 0.0, "p95": 0.0}
    # no training mean given: predict y_true's mean 2.5
    assert r["baseline"] == {"value": 2.5, "RegressionRMSE": pytest.approx(np.sqrt(1.25)),
                             "mae": pytest.approx(1.0)}
    assert strict_json(r) == r


def test_regression_baseline_uses_the_training_mean_when_given():
    r = regression_report([1, 2, 3, 4], [1, 2, 3, 5], baseline_value=0)
    assert r["baseline"] == {"value": 0.0, "RegressionRMSE": pytest.approx(np.sqrt(30 / 4)),
                             "mae": pytest.approx(2.5)}


def test_regression_report_matches_scikit_learn():
    import sklearn.metrics as sk  # a dev dependency: the reference implementation
    rng = np.random.default_rng(2)
    y = rng.normal(100, 20, size=300).astype(np.float32)
    p = (y + rng.normal(0, 5, size=300)).astype(np.float32)
    r = regression_report(y, p, baseline_value=float(y[:100].mean()))
    assert r["RegressionRMSE"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)), rel=1e-5)
    assert r["mae"] == pytest.approx(sk.mean_absolute_error(y, p), rel=1e-5)
    assert r["r2"] == pytest.approx(sk.r2_score(y, p), rel=1e-5)
    base = np.full(300, y[:100].mean())
    assert r["baseline"]["RegressionRMSE"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, base)), rel=1e-5)


def test_r2_of_a_constant_target_is_finite():
    assert regression_report([3, 3, 3], [3, 3, 3])["r2"] == 1.0
    r = regression_report([3, 3, 3], [3, 4, 3])
    assert r["r2"] == 0.0
    strict_json(r)


@pytest.mark.parametrize("y, p, kwargs, message", [
    ([1, np.nan], [1, 2], {}, "y_true has 1 non-finite"),
    ([1, 2], [1, np.inf], {}, "y_pred has 1 non-finite"),
    ([1, 2, 3], [1, 2], {}, "3 values"),
    ([[1, 2]], [[1, 2]], {}, "1-D"),
    ([], [], {}, "empty"),
    ([1, 2], [1, 2], {"baseline_value": float("nan")}, "finite"),
    ([1, 2], [1, 2], {"baseline_value": "2"}, "number"),
])
def test_regression_bad_inputs_are_rejected(y, p, kwargs, message):
    with pytest.raises(ValueError, match=message):
        regression_report(y, p, **kwargs)


# -- the quality gate ------------------------------------------------------------------------
@pytest.mark.parametrize("evaluated, missing, gate, fails", [
    (10_000, 0, 1.0, False),            # every row scored: passes even the strictest gate
    (9_000, 1_000, 0.9, False),         # exactly at the gate
    (8_999, 1_001, 0.9, True),
    (400, 100, 0.95, True),             # one shard of five failed within a 20% tolerance
])
def test_the_coverage_gate_counts_the_rows_without_a_prediction(evaluated, missing, gate, fails):
    from stepml.evaluation import gate_failures

    metrics = {"accuracy": 0.99, "rows_evaluated": evaluated, "rows_without_prediction": missing}
    failures = gate_failures({"min_coverage": gate, "min_accuracy": 0.5}, metrics)
    assert bool(failures) is fails
    if fails:
        assert failures == [f"coverage {evaluated / (evaluated + missing):.4f} ({evaluated:,} of "
                            f"{evaluated + missing:,} evaluation rows have a prediction) is below the gate {gate}"]
