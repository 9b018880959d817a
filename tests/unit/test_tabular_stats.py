"""Specification of stepml.tabular.stats: Amazon ML-style datasource statistics, checked against numpy."""

import json

import numpy as np
import pytest

from stepml.tabular.csvdata import read_table
from stepml.tabular.schema import parse_schema
from stepml.tabular.stats import table_statistics
from stepml.tabular.table import Table
from tests.tabular_data import schema

SCHEMA = parse_schema(schema(
    [("id", "CATEGORICAL"), ("age", "NUMERIC"), ("const", "NUMERIC"), ("empty", "NUMERIC"),
     ("married", "BINARY"), ("country", "CATEGORICAL"), ("notes", "TEXT"), ("dropped", "TEXT"),
     ("y", "CATEGORICAL")],
    "y", row_id="id", excluded=["dropped"]))


def make_table() -> Table:
    rng = np.random.default_rng(3)
    n = 503
    age = rng.normal(40, 12, n).astype(np.float32)
    age[::10] = np.nan
    married = rng.integers(0, 2, n).astype(np.float32)
    married[:3] = np.nan
    country = np.array(["US", "CA", "MX", ""])[rng.choice(4, n, p=[0.5, 0.25, 0.15, 0.1])]
    notes = np.array(["red fox", "the fox  jumps", "", "red red red"])[np.arange(n) % 4]
    y = np.array(["10", "9", "2"])[np.arange(n) % 3]
    return Table(SCHEMA, {"id": np.array([f"r{i}" for i in range(n)]), "age": age,
                          "const": np.full(n, 2.5, dtype=np.float32),
                          "empty": np.full(n, np.nan, dtype=np.float32), "married": married,
                          "country": country, "notes": notes, "y": y})


def attribute(stats: dict, name: str) -> dict:
    return next(a for a in stats["attributes"] if a["name"] == name)


def test_numeric_summary_and_histogram_match_numpy():
    table = make_table()
    stats = table_statistics(table, model_type="MULTICLASS")
    age = attribute(stats, "age")
    x = table.columns["age"][~np.isnan(table.columns["age"])].astype(np.float64)
    assert age["role"] == "input" and age["type"] == "NUMERIC" and age["missing"] == 51
    assert age["min"] == x.min() and age["max"] == x.max()
    assert age["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert age["median"] == pytest.approx(np.median(x), rel=1e-12)
    assert age["std"] == pytest.approx(x.std(), rel=1e-12)
    counts, edges = np.histogram(x, bins=10)
    assert age["histogram"]["counts"] == counts.tolist()
    np.testing.assert_allclose(age["histogram"]["edges"], edges, rtol=1e-12)


def test_histogram_counts_values_on_the_edges_like_numpy():
    schema = parse_schema({"attributes": [{"attributeName": "v", "attributeType": "NUMERIC"}]})
    v = np.array([0, 25.5, 51, 51, 127.5, 229.5, 255, 255, 3, 0], dtype=np.float32)
    stats = table_statistics(Table(schema, {"v": v}))
    counts, _ = np.histogram(v.astype(np.float64), bins=10)
    assert stats["attributes"][0]["histogram"]["counts"] == counts.tolist()
    assert stats["attributes"][0]["median"] == np.median(v)


def test_constant_and_all_missing_columns():
    stats = table_statistics(make_table())
    const, empty = attribute(stats, "const"), attribute(stats, "empty")
    assert (const["min"], const["max"], const["std"], const["median"]) == (2.5, 2.5, 0.0, 2.5)
    assert const["histogram"]["counts"] == np.histogram(np.full(503, 2.5), bins=10)[0].tolist()
    assert empty["missing"] == 503 and empty["mean"] is None and empty["histogram"] == {"edges": [], "counts": []}


def test_binary_categorical_and_text():
    table = make_table()
    stats = table_statistics(table)
    married = attribute(stats, "married")
    m = table.columns["married"]
    assert married["missing"] == 3 and married["counts"] == {"0": int((m == 0).sum()), "1": int((m == 1).sum())}
    country = attribute(stats, "country")
    values, counts = np.unique(table.columns["country"], return_counts=True)
    by_value = dict(zip(values.tolist(), counts.tolist()))
    assert country["missing"] == by_value.pop("") and country["distinct"] == 3
    assert country["top"] == [{"value": v, "count": c} for v, c in sorted(by_value.items(), key=lambda i: -i[1])]
    notes = attribute(stats, "notes")
    # per 4 rows: "red fox" (2) "the fox  jumps" (3) "" (0) "red red red" (3); 503 rows = 125 cycles
    # + "red fox", "the fox  jumps", ""
    assert notes["missing"] == 126
    assert notes["tokens"] == 125 * 8 + 5 and notes["distinct_tokens"] == 4
    assert notes["mean_tokens_per_row"] == pytest.approx(1005 / 503)
    assert notes["top_tokens"][0] == {"value": "red", "count": 126 + 375}
    assert "dropped" not in [a["name"] for a in stats["attributes"]]      # excluded: not stored
    assert attribute(stats, "id")["role"] == "rowId" and attribute(stats, "y")["role"] == "target"


def test_target_distribution_in_class_order_and_json_ready():
    stats = table_statistics(make_table(), model_type="MULTICLASS")
    assert stats["rows"] == 503
    assert stats["target"]["classes"] == [{"value": "2", "count": 167}, {"value": "9", "count": 168},
                                          {"value": "10", "count": 168}]
    json.dumps(stats, allow_nan=False)        # no NaN anywhere


def test_numeric_target_summary_and_validation_report():
    schema = parse_schema({"targetAttributeName": "price", "attributes": [
        {"attributeName": "rooms", "attributeType": "NUMERIC"},
        {"attributeName": "price", "attributeType": "NUMERIC"}]})
    table, report = read_table([("h.csv", [b"3,100\n4,250.5\nx,1\n2,80\n"])], schema, max_invalid_share=0.5)
    stats = table_statistics(table, model_type="REGRESSION", validation=report)
    assert stats["invalid_rows"] == 1 and stats["invalid_examples"][0]["line"] == 3
    assert stats["target"]["name"] == "price" and stats["target"]["mean"] == pytest.approx((100 + 250.5 + 80) / 3)
    assert sum(stats["target"]["histogram"]["counts"]) == 3
