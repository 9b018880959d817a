"""Classification metrics for the Score step, in pure numpy.

``classification_report`` returns what Amazon ML's evaluation reported for a multiclass model
(its headline metric ``MulticlassAvgFScore`` is the macro-averaged F1) plus accuracy,
per-class precision / recall / F1 and the confusion matrix, all as plain JSON types.

Undefined ratios are reported as 0.0, never NaN: precision of a class that was never
predicted, recall of a class with no true rows, F1 when precision + recall = 0. (This is
scikit-learn's ``zero_division=0``.) The macro average runs over the classes that occur in
``y_true`` or ``y_pred`` (scikit-learn's default label set): a class absent from both has
no F1 to speak of, and counting it as 0 would punish a model for a class the evaluation
data simply does not contain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_report", "confusion_matrix"]


def _check_labels(y: Any, name: str, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices; got shape {y.shape}")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or not (y == np.round(y)).all()):
        raise ValueError(f"{name} must hold integer class indices")
    if y.dtype.kind not in "iubf":
        raise ValueError(f"{name} must hold integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    return y


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
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def classification_report(y_true: Any, y_pred: Any, n_classes: int) -> dict:
    """Accuracy, macro F1 (= Amazon ML's ``MulticlassAvgFScore``), per-class scores, confusion matrix.

    Returns ``{"n_samples", "n_classes", "accuracy", "macro_precision", "macro_recall",
    "macro_f1", "MulticlassAvgFScore", "per_class": [{"class", "precision", "recall", "f1",
    "support"}, ...], "confusion_matrix": [[...], ...]}`` (rows = true class, columns =
    predicted class). Raises ``ValueError`` for mismatched lengths, labels outside
    ``0..n_classes-1`` or empty input.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("cannot score an empty set of predictions")

    true_positives = np.diag(cm)
    support = cm.sum(axis=1)            # rows with this true class
    predicted = cm.sum(axis=0)          # rows predicted as this class
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)

    present = (support > 0) | (predicted > 0)   # classes over which the macro average runs
    macro_f1 = float(f1[present].mean())
    return {
        "n_samples": n,
        "n_classes": int(n_classes),
        "accuracy": float(true_positives.sum() / n),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": macro_f1,
        "MulticlassAvgFScore": macro_f1,
        "per_class": [
            {"class": c, "precision": float(precision[c]), "recall": float(recall[c]),
             "f1": float(f1[c]), "support": int(support[c])}
            for c in range(int(n_classes))
        ],
        "confusion_matrix": cm.tolist(),
    }
