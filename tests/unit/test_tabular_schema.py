"""Specification of stepml.tabular.schema: Amazon ML data schemas, parsed and checked."""

import json

import pytest

from stepml.errors import DataError
from stepml.tabular.schema import (MAX_ATTRIBUTES, Attribute, SchemaError, check_model_type,
                                   parse_schema)
from tests.tabular_data import census_schema


census = census_schema


def error(raw, name="schema") -> str:
    with pytest.raises(SchemaError) as info:
        parse_schema(raw, name=name)
    return str(info.value)


def test_parses_the_developer_guide_form():
    s = parse_schema(json.dumps(census()).encode())
    assert s.attributes[1] == Attribute("age", "NUMERIC", 1)
    assert (s.target, s.row_id, s.has_header, s.excluded) == ("income", "id", True, ("zip",))
    assert [a.name for a in s.inputs] == ["age", "country", "married", "notes"]
    assert [a.name for a in s.stored] == ["id", "age", "country", "married", "notes", "income"]
    assert s.attribute("notes").type == "TEXT"
    assert (s.role("id"), s.role("income"), s.role("zip"), s.role("age")) == ("rowId", "target", "excluded", "input")


def test_to_json_is_canonical_and_round_trips():
    s = parse_schema(census())
    assert s.to_json() == census()
    assert parse_schema(s.to_json()) == s


def test_optional_keys_default_like_amazon_ml():
    s = parse_schema({"attributes": [{"attributeName": "x", "attributeType": "NUMERIC"}]})
    assert (s.target, s.row_id, s.has_header, s.excluded) == (None, None, False, ())


def test_schema_error_is_a_data_error_and_unknown_attribute_is_named():
    s = parse_schema(census())
    with pytest.raises(DataError, match="no attribute 'salary'"):
        s.attribute("salary")


def test_not_json_gives_line_and_column():
    msg = error(b'{\n  "version": "1.0",\n  "attributes": [,]\n}', name="s3://b/schema.json")
    assert msg.startswith("s3://b/schema.json: not JSON") and "line 3, column 18" in msg


def test_not_an_object():
    assert "must be a JSON object, not an array" in error("[1, 2]")


def test_unknown_keys_are_named():
    assert error(census(targetAttribute="income")).startswith("schema targetAttribute: unknown key")
    bad = census()
    bad["attributes"][2]["type"] = "CATEGORICAL"
    assert error(bad).startswith("schema attributes[2].type: unknown key")


@pytest.mark.parametrize("changes, expected", [
    ({"version": "2.0"}, "schema version: '2.0' is not supported"),
    ({"dataFormat": "JSON"}, "schema dataFormat: 'JSON' is not supported"),
    ({"dataFileContainsHeader": "true"}, "schema dataFileContainsHeader: must be true or false, not a string"),
    ({"attributes": []}, "schema attributes: is empty"),
    ({"rowWeight": "age"}, "schema rowWeight: rowWeight is not supported"),
    ({"targetAttributeName": "salary"}, "schema targetAttributeName: 'salary' is not one of the attributes"),
    ({"rowId": "ident"}, "schema rowId: 'ident' is not one of the attributes"),
    ({"rowId": "income"}, "schema rowId: 'income' is also the targetAttributeName"),
    ({"excludedAttributeNames": ["zipcode"]}, "schema excludedAttributeNames[0]: 'zipcode' is not one of the attributes"),
    ({"excludedAttributeNames": ["zip", "income"]},
     "schema excludedAttributeNames[1]: 'income' is the targetAttributeName; the target cannot be excluded"),
])
def test_each_invalid_schema_names_the_place(changes, expected):
    assert error(census(**changes)).startswith(expected)


def test_unknown_attribute_type_lists_the_types():
    bad = census()
    bad["attributes"][3]["attributeType"] = "NUMBER"
    assert error(bad) == ("schema attributes[3].attributeType: 'NUMBER' is not one of "
                          "NUMERIC, CATEGORICAL, BINARY, TEXT")


def test_duplicate_names_name_both_positions():
    bad = census()
    bad["attributes"][4]["attributeName"] = "age"
    assert error(bad) == "schema attributes[4].attributeName: 'age' is already the name of attributes[1]"


@pytest.mark.parametrize("name", ["", "x" * 257, 7, None])
def test_attribute_names_are_1_to_256_character_strings(name):
    bad = census()
    bad["attributes"][0]["attributeName"] = name
    assert error(bad).startswith("schema attributes[0].attributeName: must be a string of 1 to 256 characters")


def test_too_many_attributes():
    attrs = [{"attributeName": f"v{i}", "attributeType": "NUMERIC"} for i in range(MAX_ATTRIBUTES + 1)]
    assert "10,001 attributes; at most 10,000" in error({"attributes": attrs})


def test_raw_size_limit():
    padding = " " * (1024 * 1024)
    assert "at most 1,048,576" in error((json.dumps(census()) + padding).encode())


@pytest.mark.parametrize("model_type, target_type", [
    ("MULTICLASS", "CATEGORICAL"), ("BINARY", "BINARY"), ("REGRESSION", "NUMERIC")])
def test_model_type_needs_amazon_mls_target_type(model_type, target_type):
    for attribute_type in ("NUMERIC", "CATEGORICAL", "BINARY", "TEXT"):
        schema = parse_schema({"targetAttributeName": "y", "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": attribute_type}]})
        if attribute_type == target_type:
            check_model_type(schema, model_type)
        else:
            with pytest.raises(SchemaError, match=f"is {attribute_type}, but a {model_type} model needs a {target_type} target"):
                check_model_type(schema, model_type)


def test_model_type_needs_a_target():
    schema = parse_schema({"attributes": [{"attributeName": "x", "attributeType": "NUMERIC"}]})
    with pytest.raises(SchemaError, match="a BINARY model needs a target attribute"):
        check_model_type(schema, "BINARY")
