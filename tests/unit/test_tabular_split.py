"""Specification of stepml.tabular.split: Amazon ML's DataRearrangement ("splitting")."""

import json

import numpy as np
import pytest

from stepml.errors import DataError
from stepml.tabular.schema import parse_schema
from stepml.tabular.split import check_rearrangement, random_percent, split_mask
from stepml.tabular.table import Table


def splitting(**fields) -> dict:
    return {"splitting": fields}


def test_defaults_are_filled_and_the_json_string_form_is_accepted():
    expected = {"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "sequential",
                              "randomSeed": "", "complement": False}}
    assert check_rearrangement(splitting(percentEnd=70)) == expected
    assert check_rearrangement(json.dumps(splitting(percentEnd=70))) == expected
    assert check_rearrangement(None) is None and check_rearrangement("") is None and check_rearrangement({}) is None


@pytest.mark.parametrize("value, expected", [
    (splitting(percentBegin=-1), "DataRearrangement.splitting.percentBegin: must be a number from 0 to 100, not -1"),
    (splitting(percentEnd=101), "DataRearrangement.splitting.percentEnd: must be a number from 0 to 100, not 101"),
    (splitting(percentEnd="70"), "DataRearrangement.splitting.percentEnd: must be a number from 0 to 100, not '70'"),
    (splitting(percentBegin=True), "DataRearrangement.splitting.percentBegin: must be a number"),
    (splitting(percentBegin=50, percentEnd=50), "DataRearrangement.splitting: percentBegin (50) must be less than percentEnd (50)"),
    (splitting(strategy="shuffled"), "DataRearrangement.splitting.strategy: 'shuffled' is not one of sequential, random"),
    (splitting(randomSeed=7), "DataRearrangement.splitting.randomSeed: must be a string, not 7"),
    (splitting(complement="yes"), "DataRearrangement.splitting.complement: must be true or false, not 'yes'"),
    (splitting(percentbegin=0), "DataRearrangement.splitting.percentbegin: unknown key"),
    ({"split": {}}, "DataRearrangement.split: unknown key"),
    ({"splitting": [0, 70]}, "DataRearrangement.splitting: must be an object"),
    ("{percentEnd: 70}", "DataRearrangement: not JSON"),
    ([1], "DataRearrangement: must be an object"),
])
def test_bad_values_name_the_field(value, expected):
    with pytest.raises(DataError) as info:
        check_rearrangement(value)
    assert str(info.value).startswith(expected)


def test_the_name_prefixes_messages():
    with pytest.raises(DataError, match="^dataset/training/rearrangement.splitting.strategy"):
        check_rearrangement(splitting(strategy="x"), name="dataset/training/rearrangement")


def test_sequential_takes_the_percent_range_in_input_order():
    assert np.flatnonzero(split_mask(10, splitting(percentBegin=20, percentEnd=50))).tolist() == [2, 3, 4]
    assert np.flatnonzero(split_mask(10, splitting(percentEnd=70, complement=True))).tolist() == [7, 8, 9]
    # 100 * r / n in [0, 33): rows 0..3 of 10 (r = 3 is 30%, r = 4 is 40%)
    assert split_mask(10, splitting(percentEnd=33)).sum() == 4
    assert split_mask(7, None).all() and split_mask(0, splitting(percentEnd=50)).shape == (0,)


@pytest.mark.parametrize("strategy", ["sequential", "random"])
@pytest.mark.parametrize("begin, end", [(0, 70), (25, 60), (0, 100), (99, 100)])
def test_complement_partitions_the_rows_exactly(strategy, begin, end):
    s = {"percentBegin": begin, "percentEnd": end, "strategy": strategy, "randomSeed": "s3://b/data.csv"}
    inside = split_mask(1001, {"splitting": s})
    outside = split_mask(1001, {"splitting": {**s, "complement": True}})
    assert not (inside & outside).any() and (inside | outside).all()


def test_random_is_deterministic_for_a_seed_and_roughly_proportional():
    r = splitting(percentEnd=70, strategy="random", randomSeed="seed-1")
    a, b = split_mask(20_000, r), split_mask(20_000, r)
    np.testing.assert_array_equal(a, b)
    assert 0.68 < a.mean() < 0.72
    other = split_mask(20_000, splitting(percentEnd=70, strategy="random", randomSeed="seed-2"))
    assert (a != other).mean() > 0.3
    # not a contiguous block: the selected rows are spread over the whole input
    assert a[:1000].mean() > 0.6 and a[-1000:].mean() > 0.6


def test_random_percent_is_uniform_on_0_100():
    u = random_percent("x", np.zeros(100_000, dtype=np.int32), np.arange(1, 100_001))
    assert u.min() >= 0 and u.max() < 100
    counts = np.histogram(u, bins=10, range=(0, 100))[0]
    assert (np.abs(counts - 10_000) < 500).all()


def test_random_split_of_a_table_depends_on_row_position_not_on_other_rows():
    schema = parse_schema({"attributes": [{"attributeName": "x", "attributeType": "NUMERIC"}]})
    n = 2000
    table = Table(schema, {"x": np.arange(n, dtype=np.float32)}, np.arange(1, n + 1) * 2,
                  np.repeat([0, 1], n // 2).astype(np.int32), ["a.csv", "b.csv"])
    r = splitting(percentBegin=10, percentEnd=60, strategy="random", randomSeed="k")
    full = split_mask(table, r)
    part = table.select(np.arange(0, n, 3))         # as if two thirds of the rows were invalid
    np.testing.assert_array_equal(split_mask(part, r), full[::3])
    expected = random_percent("k", table.source_index, table.line_numbers)
    np.testing.assert_array_equal(full, (expected >= 10) & (expected < 60))
