"""Datasource statistics in the spirit of Amazon ML's data insights, as plain JSON.

Per attribute (schema order): its role and missing count, then by type

* NUMERIC: min, max, mean, median, std (population, ddof=0) and a 10-bin equal-width
  histogram over [min, max] (``np.histogram``'s binning: the last bin includes max);
* BINARY: counts of 0 and 1;
* CATEGORICAL: number of distinct values and the 10 most frequent;
* TEXT: whitespace tokens in total, distinct tokens, mean tokens per row (over all rows) and the
  10 most frequent tokens.

Missing values are left out of every figure but ``missing``; a figure that does not exist (the
mean of no values) is null, never NaN. Sums, means, deviations and histogram edges are float64. Numeric columns are
summarised in groups of ``_GROUP`` at once (one (group, n) array), which is what keeps MNIST's
784 columns well under a second.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from stepml.tabular.csvdata import class_labels
from stepml.tabular.table import Table

__all__ = ["table_statistics", "HISTOGRAM_BINS", "TOP_VALUES"]

HISTOGRAM_BINS = 10
TOP_VALUES = 10
_GROUP = 64


def table_statistics(table: Table, *, model_type: str | None = None, validation: dict | None = None) -> dict:
    schema = table.schema
    n = len(table)
    out: dict = {"rows": n}
    if model_type is not None:
        out["model_type"] = model_type
    if validation is not None:
        out["invalid_rows"] = int(validation.get("rows_invalid", 0))
        out["invalid_examples"] = list(validation.get("invalid_examples", []))
        if "invalid_by_reason" in validation:
            out["invalid_by_reason"] = dict(validation["invalid_by_reason"])
    stored = schema.stored
    numeric = [a for a in stored if schema.stored_type(a) == "NUMERIC"]
    summaries = {}
    for g in range(0, len(numeric), _GROUP):
        group = numeric[g:g + _GROUP]
        block = np.stack([table.columns[a.name] for a in group])
        for a, summary in zip(group, _numeric_block(block)):
            summaries[a.name] = summary
    attributes = []
    for a in stored:
        column = table.columns[a.name]
        entry = {"name": a.name, "type": a.type, "role": schema.role(a.name)}
        if a.name == schema.row_id:           # an identifier, kept as text: no distribution
            entry["missing"] = int((column == "").sum())
            entry["distinct"] = len(np.unique(column[column != ""]))
        elif a.type == "NUMERIC":
            entry.update(summaries[a.name])
        elif a.type == "BINARY":
            entry["missing"] = int(np.isnan(column).sum())
            entry["counts"] = {"0": int((column == 0).sum()), "1": int((column == 1).sum())}
        elif a.type == "CATEGORICAL":
            entry["missing"] = int((column == "").sum())
            values, counts = np.unique(column[column != ""], return_counts=True)
            entry["distinct"] = len(values)
            entry["top"] = _top(values.tolist(), counts.tolist())
        else:
            entry.update(_text(column, n))
        attributes.append(entry)
    out["attributes"] = attributes
    out["target"] = _target(table, summaries)
    return out


def _top(values: list, counts: list) -> list[dict]:
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))[:TOP_VALUES]
    return [{"value": values[i], "count": int(counts[i])} for i in order]


def _none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _float32_at_least(edges: np.ndarray) -> np.ndarray:
    """The smallest float32 >= each float64 edge, so ``x >= edge`` can be tested in float32."""
    t = edges.astype(np.float32)
    below = t.astype(np.float64) < edges
    t[below] = np.nextafter(t[below], np.float32(np.inf))
    return t


def _numeric_block(block: np.ndarray) -> list[dict]:
    """Summaries of each row of ``block`` (k columns x n rows, float32, NaN = missing)."""
    k, n = block.shape
    missing = np.isnan(block)
    complete = not missing.any()
    count = np.full(k, n) if complete else n - missing.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if complete:
            lo, hi = block.min(axis=1, initial=np.inf), block.max(axis=1, initial=-np.inf)
            mean = block.sum(axis=1, dtype=np.float64) / n
        else:
            lo = np.where(missing, np.inf, block).min(axis=1, initial=np.inf)
            hi = np.where(missing, -np.inf, block).max(axis=1, initial=-np.inf)
            mean = np.where(missing, 0, block).sum(axis=1, dtype=np.float64) / count
        deviation = block.astype(np.float64)
        deviation -= mean[:, None]
        if not complete:
            deviation[missing] = 0.0
        deviation *= deviation
        var = deviation.sum(axis=1) / count
        del deviation
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    median = np.full(k, np.nan)
    if complete and n:
        middle = np.partition(block, [(n - 1) // 2, n // 2], axis=1)
        median = (middle[:, (n - 1) // 2].astype(np.float64) + middle[:, n // 2]) / 2
    elif not complete:
        for i in np.flatnonzero(count > 0).tolist():
            median[i] = np.median(block[i][~missing[i]].astype(np.float64))

    # np.histogram's bins: edges as np.linspace(min, max, 11) (min -/+ 0.5 when min == max),
    # bins [e_j, e_j+1) and the last one closed. Counting x >= e_j for each inner edge gives
    # every bin exactly, with no rounding to fix up; NaN compares false, so it is never counted.
    ok = count > 0
    first, last = np.where(ok, lo, 0.0), np.where(ok, hi, 1.0)
    same = first == last
    first[same] -= 0.5
    last[same] += 0.5
    edges = np.arange(HISTOGRAM_BINS + 1) * ((last - first) / HISTOGRAM_BINS)[:, None] + first[:, None]
    edges[:, -1] = last
    thresholds = _float32_at_least(edges)
    at_least = np.empty((k, HISTOGRAM_BINS + 1), dtype=np.int64)
    at_least[:, 0] = count
    for j in range(1, HISTOGRAM_BINS):
        at_least[:, j] = np.count_nonzero(block >= thresholds[:, j:j + 1], axis=1)
    at_least[:, HISTOGRAM_BINS] = 0
    counts = at_least[:, :-1] - at_least[:, 1:]
    out = []
    for i in range(k):
        summary = {"missing": int(n - count[i])}
        if count[i]:
            summary.update(min=float(lo[i]), max=float(hi[i]), mean=_none(mean[i]), median=_none(median[i]),
                           std=_none(np.sqrt(var[i])),
                           histogram={"edges": edges[i].tolist(), "counts": counts[i].tolist()})
        else:
            summary.update(min=None, max=None, mean=None, median=None, std=None,
                           histogram={"edges": [], "counts": []})
        out.append(summary)
    return out


def _text(column: np.ndarray, n: int) -> dict:
    token_counts: Counter = Counter()
    for value in column.tolist():
        if value:
            token_counts.update(value.split())
    total = sum(token_counts.values())
    values = list(token_counts)
    return {"missing": int((column == "").sum()), "tokens": total, "distinct_tokens": len(token_counts),
            "mean_tokens_per_row": total / n if n else None,
            "top_tokens": _top(values, [token_counts[v] for v in values])}


def _target(table: Table, summaries: dict) -> dict | None:
    schema = table.schema
    if schema.target is None:
        return None
    a = schema.attribute(schema.target)
    column = table.columns[a.name]
    out = {"name": a.name, "type": a.type}
    if a.type == "NUMERIC":
        out.update(summaries[a.name])
    elif a.type == "BINARY":
        out["classes"] = [{"value": "0", "count": int((column == 0).sum())},
                          {"value": "1", "count": int((column == 1).sum())}]
    elif a.type == "CATEGORICAL":
        values, counts = np.unique(column[column != ""], return_counts=True)
        by_value = dict(zip(values.tolist(), counts.tolist()))
        out["classes"] = [{"value": v, "count": int(by_value[v])} for v in class_labels(by_value)]
    else:
        out.update(_text(column, len(table)))
    return out
