"""Specification of stepml.tabular.csvdata and .table: streaming CSV -> typed Table, invalid rows."""

import io

import numpy as np
import pytest

from stepml.errors import DataError
from stepml.tabular import csvdata
from stepml.tabular.csvdata import MAX_CLASSES, encode_target, read_table
from stepml.tabular.schema import SchemaError, parse_schema
from stepml.tabular.table import Table
from tests.tabular_data import census_schema

CENSUS_SCHEMA = parse_schema(census_schema())

CENSUS = (
    b"id,age,country,married,notes,zip,income\r\n"          # line 1: header
    b"a1, 39 ,United-States,Yes,\"likes tea, and cake\",10001,1\r\n"   # line 2
    b"a2,,Canada,n,\"first line\nsecond \"\"quoted\"\" line\",not-checked,0\n"  # lines 3-4
    b"a3,51.5,,TRUE,plain words here,,t\n"                  # line 5
    b"a4,-7e1,Mexico,,,,False\n"                            # line 6
)


def one(data: bytes, name: str = "data.csv", chunk: int | None = None):
    """A single-object source, in chunks of ``chunk`` bytes (whole when None)."""
    size = chunk or max(len(data), 1)
    return [(name, (data[i:i + size] for i in range(0, len(data), size)))]


def test_census_like_csv_becomes_typed_columns():
    table, report = read_table(one(CENSUS), CENSUS_SCHEMA, model_type="BINARY")
    assert report == {"rows_read": 4, "rows_valid": 4, "rows_invalid": 0, "invalid_examples": [],
                      "invalid_by_reason": {}}
    assert set(table.columns) == {"id", "age", "country", "married", "notes", "income"}   # zip excluded
    np.testing.assert_array_equal(table.columns["age"], np.array([39, np.nan, 51.5, -70], dtype=np.float32))
    assert table.columns["age"].dtype == np.float32
    assert table.columns["country"].tolist() == ["United-States", "Canada", "", "Mexico"]
    np.testing.assert_array_equal(table.columns["married"], [1, 0, 1, np.nan])
    assert table.columns["notes"].tolist() == ["likes tea, and cake", 'first line\nsecond "quoted" line',
                                               "plain words here", ""]
    assert table.columns["notes"].dtype.kind == "U"
    assert table.columns["income"].tolist() == [1, 0, 1, 0]
    assert table.columns["id"].tolist() == ["a1", "a2", "a3", "a4"]
    assert table.line_numbers.tolist() == [2, 3, 5, 6]
    assert table.source_index.tolist() == [0, 0, 0, 0] and table.sources == ["data.csv"]


@pytest.mark.parametrize("block", [1, 7, 64])
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunk_and_block_boundaries_anywhere_give_the_same_table(monkeypatch, block, chunk):
    # tiny blocks cut lines, quoted fields and the CRLF pair at every possible place
    monkeypatch.setattr(csvdata, "BLOCK_BYTES", block)
    whole, _ = read_table(one(CENSUS), CENSUS_SCHEMA)
    table, report = read_table(one(b"\xef\xbb\xbf" + CENSUS, chunk=chunk), CENSUS_SCHEMA)
    assert report["rows_valid"] == 4
    for name, column in whole.columns.items():
        np.testing.assert_array_equal(table.columns[name], column)
    assert table.line_numbers.tolist() == [2, 3, 5, 6]


def test_header_is_skipped_in_each_object_and_lines_count_per_object():
    sources = one(CENSUS, "part-0.csv") + one(b"\xef\xbb\xbfID, Age ,COUNTRY,married,notes,zip,income\n"
                                              b"b1,20,Peru,no,x,,1\n", "part-1.csv") + one(b"", "empty.csv")
    table, _ = read_table(sources, CENSUS_SCHEMA)
    assert table.sources == ["part-0.csv", "part-1.csv", "empty.csv"]
    assert table.source_index.tolist() == [0, 0, 0, 0, 1]
    assert table.line_numbers.tolist() == [2, 3, 5, 6, 2]


def test_header_mismatch_names_the_first_differing_column():
    data = b"id,age,nation,married,notes,zip,income\n" + CENSUS.split(b"\n", 1)[1]
    with pytest.raises(SchemaError, match="data.csv line 1: the header does not match the schema .*column 3 "
                                          "is 'nation' but the schema's attribute 3 is 'country'"):
        read_table(one(data), CENSUS_SCHEMA)
    with pytest.raises(SchemaError, match="the header has 2 columns; column 3 should be 'country'"):
        read_table(one(b"id,age\n"), CENSUS_SCHEMA)


SMALL = parse_schema({"targetAttributeName": "label", "attributes": [
    {"attributeName": "x", "attributeType": "NUMERIC"},
    {"attributeName": "flag", "attributeType": "BINARY"},
    {"attributeName": "label", "attributeType": "CATEGORICAL"}]})

BAD_ROWS = (
    b"1.5,yes,a\n"            # 1 ok
    b"abc,no,b\n"             # 2 not a number
    b"nan,no,b\n"             # 3 not finite
    b"1e39,no,b\n"            # 4 outside float32
    b"2,maybe,b\n"            # 5 not binary
    b"2,y,  \n"               # 6 missing target
    b"2,y\n"                  # 7 wrong width
    b"\n"                     # 8 blank line in the middle
    b"3,n,c\n"                # 9 ok
    b"\xff4,n,c\n"            # 10 not UTF-8
    b"7,n," + b"z" * 100_001 + b"\n"   # 11 field too long
)

EXPECTED_EXAMPLES = [
    (2, 1, "x", "abc", "not_a_number"),
    (3, 1, "x", "nan", "not_finite"),
    (4, 1, "x", "1e39", "out_of_range"),
    (5, 2, "flag", "maybe", "not_binary"),
    (6, 3, "label", "", "missing_target"),
    (7, None, None, "2,y", "columns"),
    (8, None, None, "", "blank_line"),
    (10, None, None, "\ufffd4,n,c", "invalid_utf8"),
    (11, 3, "label", "z" * 39 + "…", "field_too_long"),
]


@pytest.mark.parametrize("quoted", [False, True], ids=["plain-path", "quoted-path"])
def test_every_invalid_row_reason_with_its_place(quoted):
    # a quoted field anywhere sends the block through the csv-module path; both paths agree
    data = BAD_ROWS + (b'5,n,"c, d"\n' if quoted else b"") + b"\n\n"   # trailing blank lines are fine
    table, report = read_table(one(data, "s3://b/d.csv"), SMALL, max_invalid_share=1.0)
    assert table.line_numbers.tolist() == ([1, 9, 12] if quoted else [1, 9])
    assert report["rows_read"] == (12 if quoted else 11)
    assert report["rows_invalid"] == 9 and report["rows_valid"] == len(table)
    got = [(e["line"], e["column"], e["attribute"], e["value"]) for e in report["invalid_examples"]]
    assert got == [row[:4] for row in EXPECTED_EXAMPLES]
    assert all(e["source"] == "s3://b/d.csv" for e in report["invalid_examples"])
    assert report["invalid_by_reason"] == {code: 1 for *_, code in EXPECTED_EXAMPLES}
    reasons = [e["reason"] for e in report["invalid_examples"]]
    assert reasons[5] == "2 columns, the schema has 3"
    assert "float32" in reasons[2] and "BINARY" in reasons[3] and "missing" in reasons[4]


def test_missing_inputs_are_stored_as_missing_not_invalid():
    table, report = read_table(one(b" ,,a\n1, ,b\n"), SMALL)
    assert report["rows_invalid"] == 0
    assert np.isnan(table.columns["x"][0]) and np.isnan(table.columns["flag"]).all()


def test_binary_tokens_are_case_insensitive_and_trimmed():
    values = [b"0", b"1", b"Y", b"n", b" YES", b"No ", b"t", b"F", b"True", b"FALSE"]
    data = b"".join(b"1," + v + b",a\n" for v in values)
    table, _ = read_table(one(data), SMALL)
    assert table.columns["flag"].tolist() == [0, 1, 1, 0, 1, 0, 1, 0, 1, 0]


def test_too_many_invalid_rows_fail_with_share_limit_and_places():
    data = b"1,y,a\n" * 8 + b"abc,y,a\n" + b"1,y\n"
    with pytest.raises(DataError) as info:
        read_table(one(data, "d.csv"), SMALL)
    msg = str(info.value)
    assert "2 of 10 rows (20.0%) are invalid, more than the limit of 10.0% (max_invalid_share)" in msg
    assert "d.csv line 9, column 1 (x): 'abc' not a number" in msg
    assert "d.csv line 10: '1,y' 2 columns, the schema has 3" in msg
    _, report = read_table(one(data), SMALL, max_invalid_share=0.2)    # 20% is not above 20%
    assert report["rows_invalid"] == 2


def test_an_unclosed_quote_makes_every_line_it_swallows_invalid():
    data = b'1,y,a\n2,y,"b\n3,y,c\n' + b"4,y,d\n" * 20
    _, report = read_table(one(data), SMALL, max_invalid_share=1.0)
    assert (report["rows_read"], report["rows_valid"], report["rows_invalid"]) == (23, 1, 22)
    assert report["invalid_by_reason"] == {"quotes": 22}
    assert report["invalid_examples"][0]["line"] == 2 and "never closed" in report["invalid_examples"][0]["reason"]
    with pytest.raises(DataError, match="line 2: .* a quoted field is never closed; the 22 lines"):
        read_table(one(data), SMALL)      # not one invalid row among 2: 22 of 23 rows lost
    _, report = read_table(one(b'1,y,a\n2,y,"b\n'), SMALL, max_invalid_share=0.5)   # on the last line: one row
    assert (report["rows_read"], report["rows_invalid"]) == (2, 1)


def test_no_valid_rows():
    with pytest.raises(DataError, match="no valid rows in a.csv, b.csv: the data is empty"):
        read_table(one(b"", "a.csv") + one(b"\n\n", "b.csv"), SMALL)
    with pytest.raises(DataError, match="no valid rows in x.csv; all 1 rows are invalid"):
        read_table(one(b"q,y,a\n", "x.csv"), SMALL, max_invalid_share=1.0)


def test_model_type_is_checked_first():
    with pytest.raises(SchemaError, match="is CATEGORICAL, but a REGRESSION model needs a NUMERIC target"):
        read_table(one(b"1,y,a\n"), SMALL, model_type="REGRESSION")


def test_more_than_100_classes_fails_early_and_in_encode_target():
    data = b"".join(b"1,y,c%d\n" % i for i in range(MAX_CLASSES + 1))
    with pytest.raises(DataError, match="more than 100 distinct values .*MAX_CLASSES = 100"):
        read_table(one(data), SMALL, model_type="MULTICLASS")
    table, _ = read_table(one(data), SMALL)     # without a model type it reads fine
    with pytest.raises(DataError, match="has 101 distinct values"):
        encode_target(table, "MULTICLASS")


def test_progress_is_reported_while_reading(monkeypatch):
    monkeypatch.setattr(csvdata, "PROGRESS_BYTES", 8)
    monkeypatch.setattr(csvdata, "BLOCK_BYTES", 8)
    messages = []
    read_table(one(b"1,y,a\n" * 10, chunk=6), SMALL, progress=messages.append)
    assert messages and messages[0].startswith("read 0 MB, ") and messages[-1].endswith(" rows")


def test_encode_target_multiclass_sorts_numeric_labels_numerically():
    data = b"".join(b"1,y,%s\n" % label for label in [b"10", b"9", b"2", b"10", b"1.5"])
    table, _ = read_table(one(data), SMALL)
    y, labels = encode_target(table, "MULTICLASS")
    assert labels == ["1.5", "2", "9", "10"] and y.tolist() == [3, 2, 1, 3, 0] and y.dtype == np.int64
    table, _ = read_table(one(b"1,y,b\n1,y,a\n1,y,B\n"), SMALL)
    y, labels = encode_target(table, "MULTICLASS")
    assert labels == ["B", "a", "b"] and y.tolist() == [2, 1, 0]
    table, _ = read_table(one(b"1,y,a\n"), SMALL)
    with pytest.raises(DataError, match="at least 2 classes; the data has only 'a'"):
        encode_target(table, "MULTICLASS")


def test_encode_target_binary_and_regression():
    table, _ = read_table(one(CENSUS), CENSUS_SCHEMA)
    y, labels = encode_target(table, "BINARY")
    assert labels == ["0", "1"] and y.tolist() == [1, 0, 1, 0] and y.dtype == np.int64
    schema = parse_schema({"targetAttributeName": "x", "attributes": [
        {"attributeName": "x", "attributeType": "NUMERIC"}, {"attributeName": "c", "attributeType": "TEXT"}]})
    table, _ = read_table(one(b"1.25,a\n-3,b\n"), schema)
    y, labels = encode_target(table, "REGRESSION")
    assert labels is None and y.dtype == np.float32 and y.tolist() == [1.25, -3.0]


# -- Table ---------------------------------------------------------------------------------

def test_npz_round_trip_and_select():
    table, _ = read_table(one(CENSUS), CENSUS_SCHEMA)
    back = Table.from_npz_bytes(table.to_npz_bytes())
    assert back.schema == table.schema and back.sources == table.sources
    for name, column in table.columns.items():
        np.testing.assert_array_equal(back.columns[name], column)
        assert back.columns[name].dtype.kind == column.dtype.kind
    np.testing.assert_array_equal(back.line_numbers, table.line_numbers)
    part = back.select(np.array([False, True, False, True]))
    assert part.columns["id"].tolist() == ["a2", "a4"] and part.line_numbers.tolist() == [3, 6]
    assert back.select([3, 0]).columns["id"].tolist() == ["a4", "a1"]


def _rewrite(raw: bytes, **changes) -> bytes:
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def test_npz_loading_checks_every_column():
    raw, _ = read_table(one(CENSUS), CENSUS_SCHEMA)
    raw = raw.to_npz_bytes()
    with pytest.raises(DataError, match="no column for attribute 'age'"):
        Table.from_npz_bytes(_rewrite(raw, c1=None))
    with pytest.raises(DataError, match="column 'age': expected float32 of shape \\(4,\\), got float64"):
        Table.from_npz_bytes(_rewrite(raw, c1=np.zeros(4)))
    with pytest.raises(DataError, match="column 'notes': expected unicode strings of shape \\(4,\\)"):
        Table.from_npz_bytes(_rewrite(raw, c4=np.array(["a", "b"])))
    with pytest.raises(DataError, match="not a stepml table npz"):
        Table.from_npz_bytes(b"not a zip")


def test_numbers_parse_like_python_float_on_the_fast_path():
    texts = ["0", "-12.5", "+3", ".25", "1.", "007", "123456789012345", "1234567890123456", "1e5",
             " 1 ", "-0.001", "3.4028234e38", "0.1", "255"]
    schema = parse_schema({"attributes": [{"attributeName": "v", "attributeType": "NUMERIC"}]})
    table, report = read_table(one("\n".join(texts).encode() + b"\n"), schema)
    assert report["rows_invalid"] == 0
    assert table.columns["v"].tolist() == [float(np.float32(float(t))) for t in texts]
