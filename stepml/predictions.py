"""The batch-prediction file every engine writes and Score reads.

    row,predicted_label,score_0,...,score_<k-1>     (BINARY, MULTICLASS: class probabilities)
    row,predicted_value                             (REGRESSION)

One line per input row, in input order; ``row`` is the row's position in the evaluation data.
Only rows that batch prediction could not score are missing (a failed shard of the builtin
engine's fan-out: Score counts them as invalid). Labels are class indices into the
datasource's ``class_labels``. For CSV datasources every engine also writes the same predictions in Amazon
ML's batch-prediction layout (:func:`write_amazon_ml_layout`).
"""

from __future__ import annotations

import io

import numpy as np

from stepml import amlformat
from stepml.errors import DataError
from stepml.runs import RunPaths
from stepml.storage import Storage


def to_csv(scores: np.ndarray, rows: np.ndarray | None = None) -> bytes:
    """Class probabilities; ``rows`` names the input row of each (default: all rows, in order)."""
    n_classes = scores.shape[1]
    header = "row,predicted_label," + ",".join(f"score_{c}" for c in range(n_classes))
    table = np.column_stack([_rows(rows, len(scores)), scores.argmax(axis=1), scores])
    out = io.StringIO()
    np.savetxt(out, table, fmt=["%d", "%d"] + ["%.6f"] * n_classes, delimiter=",", header=header, comments="")
    return out.getvalue().encode()


def values_to_csv(values: np.ndarray, rows: np.ndarray | None = None) -> bytes:
    """A regression model's predictions."""
    table = np.column_stack([_rows(rows, len(values)), np.asarray(values, dtype=np.float64)])
    out = io.StringIO()
    np.savetxt(out, table, fmt=["%d", "%.9g"], delimiter=",", header="row,predicted_value", comments="")
    return out.getvalue().encode()


def _rows(rows: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)


def read_csv(raw: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, class scores) of a file with every row, in order."""
    rows, labels, scores = read_scored_rows(raw, n_classes)
    _require_every_row(rows)
    return labels, scores


def read_values_csv(raw: bytes) -> np.ndarray:
    """Predicted values of a file with every row, in order."""
    rows, values = read_value_rows(raw)
    _require_every_row(rows)
    return values


def read_scored_rows(raw: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input rows, predicted labels, class scores), checked: rows strictly increasing (rows of
    a failed prediction shard may be missing), labels in range, every score finite."""
    table = _numeric_table(raw, 2 + n_classes, "predictions")
    labels = table[:, 1].astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"predicted labels outside 0..{n_classes - 1}")
    return _checked_rows(table[:, 0]), labels, table[:, 2:].astype(np.float32)


def read_value_rows(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(input rows, predicted values) of a regression model, checked like read_scored_rows."""
    table = _numeric_table(raw, 2, "regression predictions")
    return _checked_rows(table[:, 0]), table[:, 1].astype(np.float32)


def _numeric_table(raw: bytes, columns: int, what: str) -> np.ndarray:
    try:
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise DataError(f"predictions file is not a numeric CSV: {err}") from None
    if table.size == 0:
        table = table.reshape(0, columns)
    if table.shape[1] != columns:
        raise DataError(f"{what} have {table.shape[1]} columns; expected {columns}")
    if not np.isfinite(table).all():
        raise DataError("predictions contain NaN or infinite values")
    return table


def _checked_rows(column: np.ndarray) -> np.ndarray:
    rows = column.astype(np.int64)
    if not np.array_equal(rows, column) or (rows.size and (rows[0] < 0 or (np.diff(rows) <= 0).any())):
        raise DataError("prediction rows are not distinct input rows in increasing order")
    return rows


def _require_every_row(rows: np.ndarray) -> None:
    if not np.array_equal(rows, np.arange(len(rows))):
        raise DataError("prediction rows are missing or out of order")


def write_amazon_ml_layout(storage: Storage, run_id: str, descriptor: dict, table, scores: np.ndarray) -> dict:
    """The predictions again, as Amazon ML wrote them: one gzipped CSV per input object under
    ``batch-prediction/result/`` and a ``.manifest`` mapping each input to its result."""
    prefix = RunPaths(run_id).predictions
    bp_id = f"bp-{run_id}"[-64:].lstrip("-_.") or "bp"
    schema = descriptor["schema"]
    target, row_id = schema.get("targetAttributeName"), schema.get("rowId")
    truth = table.columns.get(target)
    if truth is not None and descriptor["model_type"] == "BINARY":
        truth = truth.astype(np.int64)                  # 0/1, as Amazon ML wrote them
    mapping, results = {}, []
    for source, name in enumerate(table.sources):
        rows = table.source_index == source
        if not rows.any():
            continue
        body = amlformat.write_result(
            descriptor["model_type"], scores=scores[rows], class_labels=descriptor["class_labels"],
            true_labels=None if truth is None else truth[rows],
            row_ids=table.columns[row_id][rows] if row_id else None, row_id_name=row_id)
        key = amlformat.result_key(prefix, bp_id, name)
        storage.put_bytes(key, body, "application/gzip")
        mapping[storage.uri(name)] = storage.uri(key)
        results.append(key)
    manifest = amlformat.manifest_key(prefix, bp_id)
    storage.put_bytes(manifest, amlformat.manifest_json(mapping), "application/json")
    return {"amazon_ml_manifest": manifest, "amazon_ml_results": results}
