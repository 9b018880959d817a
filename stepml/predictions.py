"""The batch-prediction file every engine writes and Score reads.

    row,predicted_label,score_0,...,score_<k-1>     (BINARY, MULTICLASS: class probabilities)
    row,predicted_value                             (REGRESSION)

One line per input row, in input order. Labels are class indices into the datasource's
``class_labels``.
"""

from __future__ import annotations

import io

import numpy as np

from stepml.errors import DataError


def to_csv(scores: np.ndarray) -> bytes:
    n_classes = scores.shape[1]
    header = "row,predicted_label," + ",".join(f"score_{c}" for c in range(n_classes))
    table = np.column_stack([np.arange(len(scores)), scores.argmax(axis=1), scores])
    out = io.StringIO()
    np.savetxt(out, table, fmt=["%d", "%d"] + ["%.6f"] * n_classes, delimiter=",", header=header, comments="")
    return out.getvalue().encode()


def read_csv(raw: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, class scores), checked: one row each, in order, labels in range."""
    try:
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise DataError(f"predictions file is not a numeric CSV: {err}") from None
    if table.shape[1] != 2 + n_classes:
        raise DataError(f"predictions have {table.shape[1]} columns; expected {2 + n_classes}")
    if not np.isfinite(table).all():
        raise DataError("predictions contain NaN or infinite values")
    if not np.array_equal(table[:, 0], np.arange(len(table))):
        raise DataError("prediction rows are missing or out of order")
    labels = table[:, 1].astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"predicted labels outside 0..{n_classes - 1}")
    return labels, table[:, 2:].astype(np.float32)


def values_to_csv(values: np.ndarray) -> bytes:
    """A regression model's predictions."""
    table = np.column_stack([np.arange(len(values)), np.asarray(values, dtype=np.float64)])
    out = io.StringIO()
    np.savetxt(out, table, fmt=["%d", "%.9g"], delimiter=",", header="row,predicted_value", comments="")
    return out.getvalue().encode()


def read_values_csv(raw: bytes) -> np.ndarray:
    """Predicted values, checked: one finite value per row, in order."""
    try:
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise DataError(f"predictions file is not a numeric CSV: {err}") from None
    if table.shape[1] != 2:
        raise DataError(f"regression predictions have {table.shape[1]} columns; expected 2")
    if not np.isfinite(table).all():
        raise DataError("predictions contain NaN or infinite values")
    if not np.array_equal(table[:, 0], np.arange(len(table))):
        raise DataError("prediction rows are missing or out of order")
    return table[:, 1].astype(np.float32)
