"""Amazon ML's batch prediction output layout, so tools written for Amazon ML keep working.

Everything here is pure: keys and bytes in, keys and bytes out; the caller does the S3 I/O.
What Amazon ML wrote (developer guide, "Reading the Batch Prediction Output Files"):

* ``<output>/batch-prediction/<bp-id>.manifest``: a JSON map from each input data file's S3
  URI to the S3 URI of its result file, one mapping per input file.
* ``<output>/batch-prediction/result/<bp-id>-<input file name>.gz``: a gzipped CSV with a
  header line and exactly one line per input observation, in input order; an observation
  that failed to process leaves a blank line in its place.
* Columns, per model type: BINARY ``bestAnswer,score`` (``bestAnswer`` is 1 when ``score``
  >= the model's ``ScoreThreshold``, default 0.5); MULTICLASS one score column per class,
  the header naming the class; REGRESSION ``score``. When the datasource sets a ``rowId``
  the row id is written too; when the input carries the target, a ``trueLabel`` column.
  We write ``trueLabel`` first, then the row id, then the scores (the order of the issue;
  see ``write_result``).
* Scores are in scientific notation with up to 7 significant digits: ``8.7642E-3``,
  ``9.999157E-1``, ``-1.526385E1`` -- what Java's ``DecimalFormat("0.######E0")`` prints.

``read_result`` parses such a file the way the 2016 checking scripts did (header = column
names, ``trueLabel`` first when present, prediction = argmax of the score columns) and is
tolerant of what the real service may have done differently (CRLF line ends, a byte-order
mark, spaces after commas, quoted headers), because it will read real Amazon ML output too.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MODEL_TYPES",
    "TRUE_LABEL",
    "accuracy_like_2016",
    "format_score",
    "manifest_json",
    "manifest_key",
    "read_result",
    "result_key",
    "write_result",
]

MODEL_TYPES = ("BINARY", "MULTICLASS", "REGRESSION")
TRUE_LABEL = "trueLabel"
BEST_ANSWER = "bestAnswer"
SCORE = "score"
_BATCH_PREDICTION_ID = re.compile(r"[a-zA-Z0-9_.-]{1,64}")   # API reference: BatchPredictionId
_GZIP_MAGIC = b"\x1f\x8b"


# ----------------------------------------------------------------------------- keys

def _check_bp_id(bp_id: str) -> str:
    if not isinstance(bp_id, str) or not _BATCH_PREDICTION_ID.fullmatch(bp_id):
        raise ValueError(f"batch prediction id must be 1-64 characters from [a-zA-Z0-9_.-]; got {bp_id!r}")
    return bp_id


def _under(output_prefix: str, *parts: str) -> str:
    """``output_prefix`` joined with ``parts`` by single slashes ('' means the bucket root).

    Amazon ML appends "/batch-prediction/" to the output location, with or without the
    location's trailing slash (``s3://bucket/out`` and ``s3://bucket/out/`` are the same).
    """
    if not isinstance(output_prefix, str):
        raise ValueError(f"output prefix must be a string; got {output_prefix!r}")
    prefix = output_prefix.rstrip("/")
    return "/".join(([prefix] if prefix else []) + list(parts))


def manifest_key(output_prefix: str, bp_id: str) -> str:
    """``<output_prefix>/batch-prediction/<bp_id>.manifest`` (works for keys and s3:// URIs)."""
    return _under(output_prefix, "batch-prediction", f"{_check_bp_id(bp_id)}.manifest")


def result_key(output_prefix: str, bp_id: str, input_key: str) -> str:
    """``<output_prefix>/batch-prediction/result/<bp_id>-<input file name>.gz``.

    The input file name is the last component of ``input_key`` (``s3://b/in/data.csv`` ->
    ``bp-example-data.csv.gz``), as in the developer guide's example.
    """
    if not isinstance(input_key, str) or not input_key or input_key.endswith("/"):
        raise ValueError(f"input key must name a file, not a folder; got {input_key!r}")
    name = input_key.rsplit("/", 1)[-1]
    return _under(output_prefix, "batch-prediction", "result", f"{_check_bp_id(bp_id)}-{name}.gz")


def manifest_json(mapping: dict[str, str]) -> bytes:
    """The manifest: a JSON map input URI -> result URI, one pair per line, in the given order."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError("the manifest needs at least one input -> result mapping")
    for source, result in mapping.items():
        if not isinstance(source, str) or not isinstance(result, str):
            raise ValueError(f"manifest entries must map strings to strings; got {source!r}: {result!r}")
    pairs = [f"{json.dumps(s)}:{json.dumps(r)}" for s, r in mapping.items()]
    return ("{" + ",\n".join(pairs) + "}").encode("utf-8")


# ----------------------------------------------------------------------------- writing

def format_score(value: float) -> str:
    """Amazon ML's score notation: ``0.0087642`` -> ``8.7642E-3``, ``-15.26385`` -> ``-1.526385E1``.

    Seven significant digits, trailing zeros dropped, exponent without '+' or padding
    (Java ``DecimalFormat("0.######E0")``). Raises ``ValueError`` for NaN / inf.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite score: {value}")
    mantissa, exponent = f"{value:.6E}".split("E")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    if mantissa in ("0", "-0"):
        return "0E0"
    return f"{mantissa}E{int(exponent)}"


def _cell(value: Any) -> str:
    """A trueLabel / row id cell: strings verbatim, integers as integers, floats as scores."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_score(value)
    return str(value)


def _quote(field: str) -> str:
    """RFC 4180: a field holding a comma, a quote or a line break is quoted, quotes doubled."""
    if any(c in field for c in ',"\r\n'):
        return '"' + field.replace('"', '""') + '"'
    return field


def _column(values: Any, name: str, n: int) -> list[str]:
    seq = list(values.tolist() if isinstance(values, np.ndarray) else values)
    if len(seq) != n:
        raise ValueError(f"{name} has {len(seq)} values for {n} rows of scores")
    return [_cell(v) for v in seq]


def write_result(model_type: str, *, scores: Any, class_labels: Sequence[str] | None = None,
                 true_labels: Any = None, row_ids: Any = None, row_id_name: str | None = None,
                 threshold: float = 0.5, failed: Any = None) -> bytes:
    """One result file (gzipped CSV bytes, deterministic: gzip mtime 0), rows in input order.

    ``scores``: BINARY (n,) P(class 1) (or (n, 2), of which column 1 is used); MULTICLASS
    (n, k) with ``class_labels`` naming the k columns, in that order; REGRESSION (n,) values.
    ``true_labels`` (n,) adds the ``trueLabel`` column (first); ``row_ids`` (n,) with
    ``row_id_name`` adds the row id column (after ``trueLabel``, before the scores). Labels
    and row ids that are strings are written verbatim, integers as integers, floats in the
    score notation; fields holding a comma, quote or line break are quoted (RFC 4180).
    ``failed`` (n,) bool marks rows whose prediction failed: they become blank lines, as
    Amazon ML wrote them, and their scores are ignored.

    Amazon ML's documentation shows the row id column before ``bestAnswer,score`` but never
    shows it together with ``trueLabel``; the order trueLabel, row id, scores is the issue's.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model type must be one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    s = np.asarray(scores)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numbers; got dtype {s.dtype}")
    s = s.astype(np.float64)
    if model_type == "BINARY" and s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if model_type == "MULTICLASS":
        if s.ndim != 2:
            raise ValueError(f"MULTICLASS scores must be (rows, classes); got shape {s.shape}")
        if class_labels is None or len(class_labels) != s.shape[1]:
            raise ValueError(f"MULTICLASS needs one class label per score column ({s.shape[1]}); "
                             f"got {None if class_labels is None else len(class_labels)}")
        labels = [str(c) for c in class_labels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"class labels must be distinct; got {labels}")
        score_header = labels
    else:
        if s.ndim != 1:
            raise ValueError(f"{model_type} scores must be one value per row; got shape {s.shape}")
        score_header = [BEST_ANSWER, SCORE] if model_type == "BINARY" else [SCORE]
    n = s.shape[0]
    if model_type == "BINARY" and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating))
            or not 0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"threshold must be a number in [0, 1]; got {threshold!r}")

    skip = np.zeros(n, dtype=bool) if failed is None else np.asarray(failed, dtype=bool)
    if skip.shape != (n,):
        raise ValueError(f"failed must be one flag per row ({n}); got shape {skip.shape}")
    finite = np.isfinite(s).reshape(n, -1).all(axis=1)
    bad = np.flatnonzero(~finite & ~skip)
    if bad.size:
        raise ValueError(f"{bad.size} row(s) have non-finite scores, the first row {bad[0]}; "
                         f"mark failed rows with failed=... instead")

    header: list[str] = []
    lead: list[list[str]] = []
    if true_labels is not None:
        header.append(TRUE_LABEL)
        lead.append(_column(true_labels, "true_labels", n))
    if (row_ids is None) != (row_id_name is None):
        raise ValueError("row_ids and row_id_name go together: give both or neither")
    if row_ids is not None:
        if not isinstance(row_id_name, str) or not row_id_name:
            raise ValueError(f"row_id_name must be a non-empty string; got {row_id_name!r}")
        header.append(row_id_name)
        lead.append(_column(row_ids, "row_ids", n))
    header += score_header

    score_text = _score_lines(np.where(skip.reshape(n, *([1] * (s.ndim - 1))), 0.0, s))
    if model_type == "BINARY":
        answers = np.where(s >= float(threshold), "1,", "0,")
        score_text = [a + t for a, t in zip(answers.tolist(), score_text)]

    lines = [",".join(_quote(name) for name in header)]
    lead_text = [",".join(_quote(col[i]) for col in lead) + "," for i in range(n)] if lead else [""] * n
    for i in range(n):
        lines.append("" if skip[i] else lead_text[i] + score_text[i])   # failed: a blank line
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=6, mtime=0)


# "%.6E" gives 7 significant digits as d.ddddddE+XX; this drops the mantissa's trailing
# zeros (and its point when nothing is left after it) and the exponent's '+' and padding.
_SCORE_TIDY = re.compile(r"\.?0*E\+?(-?)0*(\d)")


def _score_lines(scores: np.ndarray) -> list[str]:
    """``format_score`` of every value, one comma-joined line per row, formatted in bulk.

    Same output as calling ``format_score`` per value (a test checks it) at a fraction of
    the cost: one C-level '%' per row and one regex pass over the whole block.
    """
    scores = scores.reshape(scores.shape[0], -1) + 0.0          # + 0.0 turns -0.0 into 0.0
    line = ",".join(["%.6E"] * scores.shape[1])
    block = "\n".join([line % tuple(row) for row in scores.tolist()])
    return _SCORE_TIDY.sub(r"E\1\2", block).split("\n") if block else []


# ----------------------------------------------------------------------------- reading

def _text(raw: bytes) -> str:
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError(f"a result file is bytes; got {type(raw).__name__}")
    data = gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else bytes(raw)
    return data.decode("utf-8-sig")          # drops a byte-order mark if there is one


def _records(text: str) -> list[list[str]]:
    """CSV records with fields stripped; a blank line is the empty record ``[]``.

    The csv module handles CRLF and LF, quoted fields (commas, quotes, line breaks inside)
    and a missing final newline. A file's final line break ends the last record; a line
    break after that is a blank line, which Amazon ML wrote for a failed observation.
    """
    rows = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    return [[field.strip() for field in row] for row in rows]


def _number(field: str) -> float | None:
    try:
        value = float(field)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_result(raw_gz: bytes, model_type: str, *, row_id_name: str | None = None) -> dict:
    """Parse one result file (gzipped or plain CSV bytes) into per-row lists, in file order.

    Columns are found by header name: ``trueLabel`` (the 2016 scripts' column 0),
    ``row_id_name`` if given (for BINARY / REGRESSION any one other non-score column is taken
    as the row id), then BINARY ``bestAnswer`` and ``score``; REGRESSION ``score``;
    MULTICLASS every remaining column, its header being the class label.

    Returns ``{"columns": header, "class_labels": MULTICLASS score columns (else None),
    "rows": records after the header, "invalid_records": blank or malformed records,
    "valid": bool (rows,), "true_labels": list[str | None] | None, "row_ids": list | None,
    "scores": float64 (rows,) or (rows, k) with NaN for invalid records, "predicted":
    list}`` where ``predicted`` holds, per record, the class label at the argmax of the
    scores (MULTICLASS, first maximum on ties), the ``bestAnswer`` as int (BINARY), the
    score (REGRESSION), or None for an invalid record. A record is malformed when its field
    count differs from the header's, a score is not a finite number, or ``bestAnswer`` is
    not 0/1. Raises ``ValueError`` when the header itself does not fit the model type.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model type must be one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    try:
        records = _records(_text(raw_gz))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"result file is not a readable gzipped CSV: {exc}") from exc
    if not records or not records[0]:
        raise ValueError("result file has no header line")
    header, body = records[0], records[1:]
    names = {name: i for i, name in enumerate(header)}
    if len(names) != len(header):
        raise ValueError(f"result header repeats a column name: {header}")

    true_col = names.get(TRUE_LABEL)
    taken = {true_col} - {None}
    row_col = None
    if row_id_name is not None:
        if row_id_name not in names:
            raise ValueError(f"result header {header} has no row id column {row_id_name!r}")
        row_col = names[row_id_name]
        taken.add(row_col)
    if model_type == "MULTICLASS":
        score_cols = [i for i in range(len(header)) if i not in taken]
        if len(score_cols) < 2:
            raise ValueError(f"a MULTICLASS result needs a score column per class; header {header}")
    else:
        wanted = [BEST_ANSWER, SCORE] if model_type == "BINARY" else [SCORE]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(f"a {model_type} result needs the column(s) {', '.join(wanted)}; "
                             f"header {header} lacks {', '.join(missing)}")
        score_cols = [names[w] for w in wanted]
        others = [i for i in range(len(header)) if i not in taken and i not in score_cols]
        if row_col is None and len(others) == 1:
            row_col, others = others[0], []
        if others:
            raise ValueError(f"result header {header} has columns a {model_type} result does not: "
                             f"{[header[i] for i in others]}")
    class_labels = [header[i] for i in score_cols] if model_type == "MULTICLASS" else None

    n = len(body)
    width = len(score_cols) if model_type == "MULTICLASS" else 1
    scores = np.full((n, width), np.nan)
    valid = np.zeros(n, dtype=bool)
    predicted: list[Any] = [None] * n
    true_labels: list[str | None] | None = [None] * n if true_col is not None else None
    row_ids: list[str | None] | None = [None] * n if row_col is not None else None
    for r, rec in enumerate(body):
        if len(rec) != len(header):
            continue                                   # blank line or wrong field count
        if model_type == "MULTICLASS":
            values = [_number(rec[i]) for i in score_cols]
            if any(v is None for v in values):
                continue
            scores[r] = values
            predicted[r] = class_labels[int(np.argmax(scores[r]))]
        else:
            value = _number(rec[names[SCORE]])
            if value is None:
                continue
            if model_type == "BINARY":
                answer = rec[names[BEST_ANSWER]]
                if answer not in ("0", "1"):
                    continue
                predicted[r] = int(answer)
            else:
                predicted[r] = value
            scores[r, 0] = value
        valid[r] = True
        if true_labels is not None:
            true_labels[r] = rec[true_col]
        if row_ids is not None:
            row_ids[r] = rec[row_col]
    return {
        "columns": header,
        "class_labels": class_labels,
        "rows": n,
        "invalid_records": int(n - valid.sum()),
        "valid": valid,
        "true_labels": true_labels,
        "row_ids": row_ids,
        "scores": scores if model_type == "MULTICLASS" else scores[:, 0],
        "predicted": predicted,
    }


def accuracy_like_2016(raw_gz: bytes) -> float:
    """Accuracy of a MULTICLASS result read exactly as the 2016 MNIST checking script did.

    Header row = column names, column 0 = the true label, the other columns = one score per
    class named by the header; the prediction is the header label at the argmax of the
    scores (first on ties), right when it equals the true label as a string. No header-name
    lookup, no whitespace tolerance: this is the independent check that our files score
    the same accuracy as ``read_result`` + ``classification_report``. A blank line (failed
    observation) counts as a wrong prediction -- a guess; the script predates failed rows.
    """
    text = gzip.decompress(raw_gz).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if len(rows) < 2:
        raise ValueError("result file has no prediction rows")
    header = rows[0]
    if header[0] != TRUE_LABEL:
        raise ValueError(f"the 2016 reading needs the true label in column 0; header starts {header[:3]}")
    correct = 0
    for row in rows[1:]:
        if not row:
            continue
        scores = [float(x) for x in row[1:]]
        best = max(range(len(scores)), key=scores.__getitem__)
        correct += header[1 + best] == row[0]
    return correct / (len(rows) - 1)
