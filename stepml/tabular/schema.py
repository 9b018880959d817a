"""Amazon ML data schemas: parse and validate the developer guide's JSON form.

    {"version": "1.0", "rowId": null, "rowWeight": null, "targetAttributeName": "y",
     "dataFormat": "CSV", "dataFileContainsHeader": false,
     "attributes": [{"attributeName": "age", "attributeType": "NUMERIC"}, ...],
     "excludedAttributeNames": []}

The schema is checked before a byte of data is read, so every message names the exact place
(``schema attributes[3].attributeType: ...``): a typo should cost seconds, not a long read.
Attributes keep their CSV column order; ``index`` is the 0-based CSV column.

Differences from Amazon ML: ``rowWeight`` is not supported (a non-null value is an error, not
silently ignored), and a ``rowId`` may not also be excluded (it would not be stored). The rowId's
values are kept as text whatever its type (see :meth:`DataSchema.stored_type`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stepml.errors import DataError
from stepml.tabular.jsondoc import json_type, load_object

__all__ = ["ATTRIBUTE_TYPES", "MAX_ATTRIBUTES", "MAX_NAME_CHARS", "MAX_SCHEMA_BYTES", "MODEL_TARGET_TYPES",
           "Attribute", "DataSchema", "SchemaError", "check_model_type", "parse_schema"]

ATTRIBUTE_TYPES = ("NUMERIC", "CATEGORICAL", "BINARY", "TEXT")
MAX_ATTRIBUTES = 10_000
MAX_NAME_CHARS = 256
MAX_SCHEMA_BYTES = 1024 * 1024
#: Amazon ML's rule: the model type fixes the target's attribute type.
MODEL_TARGET_TYPES = {"MULTICLASS": "CATEGORICAL", "BINARY": "BINARY", "REGRESSION": "NUMERIC"}

_TOP_KEYS = ("version", "rowId", "rowWeight", "targetAttributeName", "dataFormat",
             "dataFileContainsHeader", "attributes", "excludedAttributeNames")
_ATTRIBUTE_KEYS = ("attributeName", "attributeType")


class SchemaError(DataError):
    """The data schema (or a data file's header against it) is invalid; the message names the place."""


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str       # one of ATTRIBUTE_TYPES
    index: int      # 0-based CSV column


@dataclass(frozen=True)
class DataSchema:
    attributes: tuple[Attribute, ...]   # CSV column order
    target: str | None                  # targetAttributeName
    row_id: str | None                  # rowId
    has_header: bool                    # dataFileContainsHeader
    excluded: tuple[str, ...] = ()      # excludedAttributeNames

    def attribute(self, name: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise SchemaError(f"the schema has no attribute {name!r}")

    @property
    def inputs(self) -> tuple[Attribute, ...]:
        """The attributes a model may learn from: not the target, not the rowId, not excluded."""
        skip = {self.target, self.row_id, *self.excluded}
        return tuple(a for a in self.attributes if a.name not in skip)

    @property
    def stored(self) -> tuple[Attribute, ...]:
        """The attributes a :class:`~stepml.tabular.table.Table` keeps: all but the excluded ones."""
        skip = set(self.excluded)
        return tuple(a for a in self.attributes if a.name not in skip)

    def stored_type(self, attribute: Attribute) -> str:
        """How a Table holds ``attribute``: by its type, except the rowId, which is kept as its
        text (stripped) whatever its type: an identifier is written back as it came, and a
        NUMERIC one held as float32 would lose digits (16777217 -> 16777216)."""
        return "TEXT" if attribute.name == self.row_id else attribute.type

    def role(self, name: str) -> str:
        """'target', 'rowId', 'excluded' or 'input'."""
        if name == self.target:
            return "target"
        if name == self.row_id:
            return "rowId"
        return "excluded" if name in self.excluded else "input"

    def to_json(self) -> dict:
        """The canonical Amazon ML JSON form (``parse_schema(s.to_json()) == s``)."""
        return {
            "version": "1.0",
            "rowId": self.row_id,
            "rowWeight": None,
            "targetAttributeName": self.target,
            "dataFormat": "CSV",
            "dataFileContainsHeader": self.has_header,
            "attributes": [{"attributeName": a.name, "attributeType": a.type} for a in self.attributes],
            "excludedAttributeNames": list(self.excluded),
        }


def parse_schema(raw: bytes | str | dict, *, name: str = "schema") -> DataSchema:
    """Parse and validate a schema given as JSON bytes / text or an already-decoded dict.

    ``name`` (e.g. the S3 key) starts every error message. Raises :class:`SchemaError`.
    """
    raw = load_object(raw, name=name, error=SchemaError, max_bytes=MAX_SCHEMA_BYTES, what="a schema")
    return _Parser(name).schema(raw)


def check_model_type(schema: DataSchema, model_type: str) -> None:
    """Amazon ML's rule: MULTICLASS needs a CATEGORICAL target, BINARY a BINARY one, REGRESSION a NUMERIC one."""
    if model_type not in MODEL_TARGET_TYPES:
        raise SchemaError(f"model type {model_type!r} is not one of {', '.join(MODEL_TARGET_TYPES)}")
    needed = MODEL_TARGET_TYPES[model_type]
    if schema.target is None:
        raise SchemaError(f"schema targetAttributeName: a {model_type} model needs a target attribute "
                          f"(of type {needed}); the schema names none")
    actual = schema.attribute(schema.target).type
    if actual != needed:
        raise SchemaError(f"schema targetAttributeName: the target {schema.target!r} is {actual}, but a "
                          f"{model_type} model needs a {needed} target")


_json_type = json_type


class _Parser:
    def __init__(self, name: str):
        self.name = name

    def fail(self, where: str, message: str) -> SchemaError:
        return SchemaError(f"{self.name} {where}: {message}")

    def schema(self, d: dict) -> DataSchema:
        unknown = [k for k in d if k not in _TOP_KEYS]
        if unknown:
            raise self.fail(unknown[0], f"unknown key; a schema has {', '.join(_TOP_KEYS)}")
        version = d.get("version", "1.0")
        if version != "1.0":
            raise self.fail("version", f"{version!r} is not supported; use \"1.0\"")
        data_format = d.get("dataFormat", "CSV")
        if data_format != "CSV":
            raise self.fail("dataFormat", f"{data_format!r} is not supported; use \"CSV\"")
        header = d.get("dataFileContainsHeader", False)
        if not isinstance(header, bool):
            raise self.fail("dataFileContainsHeader", f"must be true or false, not {_json_type(header)}")
        if d.get("rowWeight") is not None:
            raise self.fail("rowWeight", "rowWeight is not supported; set it to null")

        attributes = self.attributes(d.get("attributes"))
        names = {a.name for a in attributes}
        target = self.optional_name(d, "targetAttributeName", names)
        row_id = self.optional_name(d, "rowId", names)
        if row_id is not None and row_id == target:
            raise self.fail("rowId", f"{row_id!r} is also the targetAttributeName")

        excluded_raw = d.get("excludedAttributeNames", [])
        if excluded_raw is None:
            excluded_raw = []
        if not isinstance(excluded_raw, list):
            raise self.fail("excludedAttributeNames", f"must be an array of names, not {_json_type(excluded_raw)}")
        excluded: list[str] = []
        for i, value in enumerate(excluded_raw):
            where = f"excludedAttributeNames[{i}]"
            if not isinstance(value, str):
                raise self.fail(where, f"must be an attribute name, not {_json_type(value)}")
            if value not in names:
                raise self.fail(where, f"{value!r} is not one of the attributes")
            if value in excluded:
                raise self.fail(where, f"{value!r} is listed twice")
            if value == target:
                raise self.fail(where, f"{value!r} is the targetAttributeName; the target cannot be excluded")
            if value == row_id:
                raise self.fail(where, f"{value!r} is the rowId; the rowId cannot be excluded")
            excluded.append(value)
        return DataSchema(attributes, target, row_id, header, tuple(excluded))

    def attributes(self, raw: Any) -> tuple[Attribute, ...]:
        if raw is None:
            raise self.fail("attributes", "missing; list the CSV columns as "
                            "{\"attributeName\": ..., \"attributeType\": ...} objects")
        if not isinstance(raw, list):
            raise self.fail("attributes", f"must be an array, not {_json_type(raw)}")
        if not raw:
            raise self.fail("attributes", "is empty; list at least one attribute")
        if len(raw) > MAX_ATTRIBUTES:
            raise self.fail("attributes", f"{len(raw):,} attributes; at most {MAX_ATTRIBUTES:,} are supported")
        seen: dict[str, int] = {}
        out = []
        for i, item in enumerate(raw):
            where = f"attributes[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, f"must be an object, not {_json_type(item)}")
            unknown = [k for k in item if k not in _ATTRIBUTE_KEYS]
            if unknown:
                raise self.fail(f"{where}.{unknown[0]}", "unknown key; an attribute has attributeName and attributeType")
            name = item.get("attributeName")
            if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
                got = _json_type(name) if not isinstance(name, str) else f"a string of {len(name)} characters"
                raise self.fail(f"{where}.attributeName", f"must be a string of 1 to {MAX_NAME_CHARS} characters, not {got}")
            if name in seen:
                raise self.fail(f"{where}.attributeName", f"{name!r} is already the name of attributes[{seen[name]}]")
            kind = item.get("attributeType")
            if kind not in ATTRIBUTE_TYPES:
                raise self.fail(f"{where}.attributeType", f"{kind!r} is not one of {', '.join(ATTRIBUTE_TYPES)}")
            seen[name] = i
            out.append(Attribute(name, kind, i))
        return tuple(out)

    def optional_name(self, d: dict, key: str, names: set[str]) -> str | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be an attribute name or null, not {_json_type(value)}")
        if value not in names:
            raise self.fail(key, f"{value!r} is not one of the attributes")
        return value
