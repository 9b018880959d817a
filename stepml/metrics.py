"""Evaluation metrics for the Score step, in pure numpy, as plain JSON types.

One report per Amazon ML model type, each carrying Amazon ML's headline metric under its
Amazon ML name beside the usual ones, and a baseline to beat:

    MULTICLASS  ``classification_report``  MulticlassAvgFScore (macro F1), accuracy, per class,
                confusion matrix; log loss given the scores; most-frequent-class baseline
    BINARY      ``binary_report``          BinaryAUC, accuracy / precision / recall / F1 /
                false positive rate at a cut-off, log loss, confusion matrix; baseline
    REGRESSION  ``regression_report``      RegressionRMSE, MAE, R², residuals; mean baseline

Definitions follow the Amazon ML developer guide ("Evaluating ML Models": binary, multiclass
and regression model insights). Where we differ, the function's docstring says so.

No NaN ever reaches a report. Undefined ratios are 0.0: precision of a class that was never
predicted, recall of a class with no true rows, F1 when precision + recall = 0 (scikit-learn's
``zero_division=0``). An undefined AUC (only one class in ``y_true``) is ``None``. The macro
average runs over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's default
label set): a class absent from both has no F1 to speak of, and counting it as 0 would punish
a model for a class the evaluation data simply does not contain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "LOG_LOSS_EPS",
    "binary_report",
    "classification_report",
    "confusion_matrix",
    "regression_report",
]

#: Probabilities are clipped to [eps, 1 - eps] before taking logs, so a confident mistake
#: costs -log(1e-15) ~ 34.5 instead of infinity (scikit-learn's historical default).
LOG_LOSS_EPS = 1e-15


# ----------------------------------------------------------------------------- validation

def _check_labels(y: Any, name: str, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices; got shape {y.shape}")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or not (y == np.round(y)).all()):
        raise ValueError(f"{name} must hold integer class indices")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    return y


def _check_values(y: Any, name: str) -> np.ndarray:
    """A 1-D array of finite numbers, as float64 (sums over many float32 values lose digits)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {y.shape}")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers; got dtype {y.dtype}")
    y = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"{name} has {bad.size} non-finite value(s) (NaN or inf), the first at "
                         f"index {bad[0]}: {y[bad[0]]}")
    return y


def _check_same_length(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{a_name} has {a.shape[0]} values but {b_name} has {b.shape[0]}")
    if a.shape[0] == 0:
        raise ValueError("cannot score an empty set of predictions")


def _check_probabilities(p: np.ndarray, name: str) -> None:
    outside = np.flatnonzero(((p < 0) | (p > 1)).reshape(-1))
    if outside.size:
        raise ValueError(f"{name} must be probabilities in [0, 1]; {outside.size} value(s) are not, "
                         f"the first {p.reshape(-1)[outside[0]]}")


# ----------------------------------------------------------------------------- shared pieces

def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of rows with true class ``i`` predicted as ``j`` (int64, k x k)."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer; got {n_classes!r}")
    k = int(n_classes)
    t = _check_labels(y_true, "y_true", k)
    p = _check_labels(y_pred, "y_pred", k)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    # Each (true, predicted) pair becomes one cell index i*k + j; bincount counts them all at once.
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, with 0.0 where den == 0 (undefined -> 0, see module docstring)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def _log_loss(p_true: np.ndarray) -> float:
    """Mean of -log p over the probability each row gave its true class, clipped."""
    return float(-np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)).mean())


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)                      # rank of the last member of each tie group
    return (last - (counts - 1) / 2.0)[inverse]


def _binary_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney statistic: the chance that a random
    positive scores above a random negative, ties counting one half. ``None`` if a class is
    missing (the curve is undefined)."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = float(_average_ranks(score)[y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


# ----------------------------------------------------------------------------- MULTICLASS

def _macro_scores(cm: np.ndarray) -> dict:
    true_positives = np.diag(cm)
    support = cm.sum(axis=1)            # rows with this true class
    predicted = cm.sum(axis=0)          # rows predicted as this class
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)   # classes over which the macro average runs
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "accuracy": float(true_positives.sum() / cm.sum()),
            "macro_precision": float(precision[present].mean()),
            "macro_recall": float(recall[present].mean()),
            "macro_f1": float(f1[present].mean())}


def classification_report(y_true: Any, y_pred: Any, n_classes: int, *, scores: Any = None,
                          baseline_class: int | None = None) -> dict:
    """Accuracy, macro F1 (= Amazon ML's ``MulticlassAvgFScore``), per-class scores, confusion matrix.

    Returns ``{"n_samples", "n_classes", "accuracy", "macro_precision", "macro_recall",
    "macro_f1", "MulticlassAvgFScore", "per_class": [{"class", "precision", "recall", "f1",
    "support"}, ...], "confusion_matrix": [[...], ...]}`` (rows = true class, columns =
    predicted class), plus

    * ``"log_loss"`` when ``scores`` (n, k) class probabilities are given: the mean of
      ``-log p[i, y_true[i]]``, p clipped to ``[1e-15, 1 - 1e-15]``; rows are not
      renormalised (they come from a softmax, possibly rounded in a CSV).
    * ``"baseline"`` when ``baseline_class`` (the most frequent class of the *training*
      data) is given: ``{"class", "accuracy", "macro_f1"}`` of always predicting it. This is
      Amazon ML's "baseline macro average F1 score".

    Amazon ML defines ``MulticlassAvgFScore`` as the unweighted mean of the per-class F1 over
    "the K classes in the evaluation datasource". We average over the classes that occur in
    ``y_true`` *or* ``y_pred``; the two differ only when the model predicts a class the
    evaluation data does not contain, which we count (as F1 = 0) and Amazon ML's wording
    would not.

    Raises ``ValueError`` for mismatched lengths, labels outside ``0..n_classes-1``, empty
    input, scores of the wrong shape or outside [0, 1], or a bad ``baseline_class``.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("cannot score an empty set of predictions")
    k = int(n_classes)
    m = _macro_scores(cm)
    report = {
        "n_samples": n,
        "n_classes": k,
        "accuracy": m["accuracy"],
        "macro_precision": m["macro_precision"],
        "macro_recall": m["macro_recall"],
        "macro_f1": m["macro_f1"],
        "MulticlassAvgFScore": m["macro_f1"],
        "per_class": [
            {"class": c, "precision": float(m["precision"][c]), "recall": float(m["recall"][c]),
             "f1": float(m["f1"][c]), "support": int(m["support"][c])}
            for c in range(k)
        ],
        "confusion_matrix": cm.tolist(),
    }
    truth = _check_labels(y_true, "y_true", k)
    if scores is not None:
        p = np.asarray(scores)
        if p.shape != (n, k):
            raise ValueError(f"scores must have shape ({n}, {k}) (rows x classes); got {p.shape}")
        p = p.astype(np.float64)
        if not np.isfinite(p).all():
            raise ValueError("scores has non-finite values (NaN or inf)")
        _check_probabilities(p, "scores")
        report["log_loss"] = _log_loss(p[np.arange(n), truth])
    if baseline_class is not None:
        if (isinstance(baseline_class, bool) or not isinstance(baseline_class, (int, np.integer))
                or not 0 <= baseline_class < k):
            raise ValueError(f"baseline_class must be a class index in 0..{k - 1}; got {baseline_class!r}")
        base = _macro_scores(confusion_matrix(truth, np.full(n, int(baseline_class)), k))
        report["baseline"] = {"class": int(baseline_class), "accuracy": base["accuracy"],
                              "macro_f1": base["macro_f1"]}
    return report


# ----------------------------------------------------------------------------- BINARY

def binary_report(y_true: Any, score: Any, threshold: float = 0.5,
                  baseline_positive_rate: float | None = None) -> dict:
    """``BinaryAUC`` and the cut-off metrics of a binary model whose ``score`` is P(class 1).

    Returns ``{"n_samples", "n_positive", "n_negative", "threshold", "BinaryAUC",
    "accuracy", "precision", "recall", "f1", "false_positive_rate", "log_loss",
    "confusion_matrix": [[tn, fp], [fn, tp]], "baseline": {"class", "positive_rate",
    "accuracy", "BinaryAUC"}}``.

    * ``BinaryAUC`` is the area under the ROC curve, computed from ranks (Mann-Whitney):
      the probability that a random positive scores higher than a random negative, tied
      scores counting one half. It is ``None`` when ``y_true`` holds only one class.
    * A row is predicted positive when ``score >= threshold`` (Amazon ML's ``ScoreThreshold``:
      "output values greater than or equal to the ScoreThreshold receive a positive result").
    * Precision = tp / (tp + fp), recall = tp / (tp + fn), false positive rate =
      fp / (fp + tn), each 0.0 when its denominator is 0.
    * Log loss: mean of ``-[y log s + (1 - y) log(1 - s)]``, s clipped to ``[1e-15, 1 - 1e-15]``.
    * Baseline: always predicting the most frequent class of the training data (positive
      when ``baseline_positive_rate`` > 0.5; ``y_true``'s rate when not given; a tie goes to
      0). Amazon ML's own binary baseline is only "AUC 0.5" (a model guessing at random);
      we report that too, beside the constant model's accuracy.

    Raises ``ValueError`` for labels other than 0/1, scores outside [0, 1] or not finite,
    mismatched lengths, empty input, or a bad threshold / rate.
    """
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be a 1-D array of 0/1 labels; got shape {y.shape}")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y_true must hold 0/1 labels; got dtype {y.dtype}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only the labels 0 and 1")
    y = y.astype(np.int64)
    s = _check_values(score, "score")
    _check_same_length(y, s, "y_true", "score")
    _check_probabilities(s, "score")
    threshold = _check_fraction(threshold, "threshold")

    n = y.size
    predicted = (s >= threshold).astype(np.int64)
    tp = int(((predicted == 1) & (y == 1)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    tn = n - tp - fp - fn
    precision = float(_ratio(tp, tp + fp))
    recall = float(_ratio(tp, tp + fn))
    f1 = float(_ratio(2 * precision * recall, precision + recall))

    if baseline_positive_rate is None:
        rate = float(y.mean())
    else:
        rate = _check_fraction(baseline_positive_rate, "baseline_positive_rate")
    base_class = 1 if rate > 0.5 else 0
    return {
        "n_samples": n,
        "n_positive": int(y.sum()),
        "n_negative": int(n - y.sum()),
        "threshold": threshold,
        "BinaryAUC": _binary_auc(y, s),
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": float(_ratio(fp, fp + tn)),
        "log_loss": _log_loss(np.where(y == 1, s, 1.0 - s)),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "baseline": {"class": base_class, "positive_rate": rate,
                     "accuracy": float((y == base_class).mean()), "BinaryAUC": 0.5},
    }


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:      # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return value


# ----------------------------------------------------------------------------- REGRESSION

def regression_report(y_true: Any, y_pred: Any, baseline_value: float | None = None) -> dict:
    """``RegressionRMSE`` and the usual companions for a regression model.

    Returns ``{"n_samples", "RegressionRMSE", "mae", "r2", "mean_residual",
    "residual_quantiles": {"p5", "p50", "p95"}, "baseline": {"value", "RegressionRMSE",
    "mae"}}``.

    * Residual = true - predicted, as in Amazon ML's residual histogram (positive: the model
      underestimates). Quantiles interpolate linearly (numpy's default).
    * R² = 1 - SS_res / SS_tot. When ``y_true`` is constant (SS_tot = 0) R² is undefined; we
      report 1.0 for a perfect fit and 0.0 otherwise (scikit-learn's ``force_finite``).
    * Baseline: Amazon ML's "baseline RMSE", the RMSE of always predicting the mean of the
      target *in the training data*; pass that mean as ``baseline_value``. Without it we use
      ``y_true``'s mean, which makes the baseline RMSE the population standard deviation.

    Everything is computed in float64. Raises ``ValueError`` for NaN / inf, arrays that are
    not 1-D, mismatched lengths or empty input.
    """
    t = _check_values(y_true, "y_true")
    p = _check_values(y_pred, "y_pred")
    _check_same_length(t, p, "y_true", "y_pred")
    residual = t - p
    ss_res = float(np.square(residual).sum())
    ss_tot = float(np.square(t - t.mean()).sum())
    if ss_tot > 0:
        r2 = 1.0 - ss_res / ss_tot
    else:
        r2 = 1.0 if ss_res == 0 else 0.0
    if baseline_value is None:
        base = float(t.mean())
    else:
        if isinstance(baseline_value, bool) or not isinstance(baseline_value, (int, float, np.integer, np.floating)):
            raise ValueError(f"baseline_value must be a number; got {baseline_value!r}")
        base = float(baseline_value)
        if not np.isfinite(base):
            raise ValueError(f"baseline_value must be finite; got {base}")
    p5, p50, p95 = (float(q) for q in np.quantile(residual, [0.05, 0.5, 0.95]))
    return {
        "n_samples": int(t.size),
        "RegressionRMSE": float(np.sqrt(ss_res / t.size)),
        "mae": float(np.abs(residual).mean()),
        "r2": float(r2),
        "mean_residual": float(residual.mean()),
        "residual_quantiles": {"p5": p5, "p50": p50, "p95": p95},
        "baseline": {"value": base,
                     "RegressionRMSE": float(np.sqrt(np.square(t - base).mean())),
                     "mae": float(np.abs(t - base).mean())},
    }
