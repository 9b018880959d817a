"""``Table``: the validated, typed rows of a datasource, and their npz form.

One column per stored attribute (every attribute but the excluded ones), keyed by name:

    NUMERIC     float32, NaN = missing
    BINARY      float32, 0.0 / 1.0, NaN = missing
    CATEGORICAL numpy 'U' strings, stripped, "" = missing
    TEXT        numpy 'U' strings, stripped, "" = missing
    the rowId   numpy 'U' strings as in TEXT, whatever its type (its exact text is written back)

Each row remembers where it came from (``source_index`` into ``sources``, and the 1-based
``line_numbers`` of its first line in that object), so later steps can point back at the data
(Amazon ML-style batch prediction output, random splits keyed by position).

The npz form holds plain arrays only (loaded with ``allow_pickle=False``): a column ``c<i>``
per stored attribute (``i`` = its CSV column; names may contain anything), ``line_numbers``,
``source_index`` and ``meta``, a uint8 array of UTF-8 JSON with the schema and the sources.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np

from stepml.errors import DataError
from stepml.tabular.schema import DataSchema, SchemaError, parse_schema

__all__ = ["Table", "FORMAT"]

FORMAT = "stepml.table/1"
_NUMBER_TYPES = ("NUMERIC", "BINARY")


@dataclass
class Table:
    schema: DataSchema
    columns: dict[str, np.ndarray]
    line_numbers: np.ndarray | None = None      # int64 (n,), 1-based; default 1..n
    source_index: np.ndarray | None = None      # int32 (n,); default all 0
    sources: list[str] | None = field(default=None)   # default ["<memory>"]

    def __post_init__(self) -> None:
        # Build-time checks are cheap (dtype, shape) and catch a wrong column before a model
        # trains on it; numbers are cast to float32 and lists of strings to 'U' arrays.
        expected = self.schema.stored
        names = {a.name for a in expected}
        extra = sorted(set(self.columns) - names)
        if extra:
            raise DataError(f"table column {extra[0]!r} is not a stored attribute of the schema")
        n = None
        columns = {}
        for attribute in expected:
            if attribute.name not in self.columns:
                raise DataError(f"table has no column for attribute {attribute.name!r}")
            column = _coerce(attribute.name, self.schema.stored_type(attribute), self.columns[attribute.name])
            if n is None:
                n = len(column)
            elif len(column) != n:
                raise DataError(f"table column {attribute.name!r} has {len(column)} rows, "
                                f"the others {n}")
            columns[attribute.name] = column
        self.columns = columns
        n = n or 0
        if self.line_numbers is None:
            self.line_numbers = np.arange(1, n + 1, dtype=np.int64)
        if self.source_index is None:
            self.source_index = np.zeros(n, dtype=np.int32)
        if self.sources is None:
            self.sources = ["<memory>"]
        self.line_numbers = np.asarray(self.line_numbers, dtype=np.int64)
        self.source_index = np.asarray(self.source_index, dtype=np.int32)
        self.sources = list(self.sources)
        for label, array in (("line_numbers", self.line_numbers), ("source_index", self.source_index)):
            if array.shape != (n,):
                raise DataError(f"table {label} has shape {array.shape}, expected ({n},)")
        if n and (self.source_index.min() < 0 or self.source_index.max() >= len(self.sources)):
            raise DataError(f"table source_index outside 0..{len(self.sources) - 1}")

    def __len__(self) -> int:
        return len(self.line_numbers)

    def select(self, rows) -> Table:
        """The rows ``rows`` (an index array or a boolean mask of length n), in their order."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (len(self),):
            raise ValueError(f"a row mask must have shape ({len(self)},), not {rows.shape}")
        if rows.dtype != bool and rows.dtype.kind not in "iu":
            raise ValueError(f"rows must be a boolean mask or an integer index array, not {rows.dtype}")
        return Table(self.schema, {name: column[rows] for name, column in self.columns.items()},
                     self.line_numbers[rows], self.source_index[rows], list(self.sources))

    def to_npz_bytes(self) -> bytes:
        meta = {"format": FORMAT, "schema": self.schema.to_json(), "sources": self.sources}
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                  "line_numbers": self.line_numbers, "source_index": self.source_index}
        for attribute in self.schema.stored:
            arrays[f"c{attribute.index}"] = self.columns[attribute.name]
        out = io.BytesIO()
        np.savez(out, **arrays)
        return out.getvalue()

    @classmethod
    def from_npz_bytes(cls, raw: bytes) -> Table:
        """Load what :meth:`to_npz_bytes` wrote; anything else raises DataError (never unpickles)."""
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"table: not a stepml table npz ({err})") from None
        for key in ("meta", "line_numbers", "source_index"):
            if key not in arrays:
                raise DataError(f"table: the npz has no {key!r} array")
        try:
            meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"table meta: not JSON ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"table meta: format is not {FORMAT!r}")
        try:
            schema = parse_schema(meta.get("schema"), name="table schema")
        except SchemaError as err:
            raise DataError(str(err)) from None
        sources = meta.get("sources")
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise DataError("table meta: sources must be a list of names")
        line_numbers, source_index = arrays["line_numbers"], arrays["source_index"]
        if line_numbers.dtype != np.int64 or line_numbers.ndim != 1:
            raise DataError(f"table line_numbers: expected int64 (n,), got {line_numbers.dtype} {line_numbers.shape}")
        if source_index.dtype != np.int32 or source_index.shape != line_numbers.shape:
            raise DataError(f"table source_index: expected int32 {line_numbers.shape}, "
                            f"got {source_index.dtype} {source_index.shape}")
        n = len(line_numbers)
        columns = {}
        for attribute in schema.stored:
            key = f"c{attribute.index}"
            if key not in arrays:
                raise DataError(f"table: no column for attribute {attribute.name!r} (array {key!r})")
            column = arrays[key]
            kind = schema.stored_type(attribute)
            want = "float32" if kind in _NUMBER_TYPES else "unicode strings"
            ok = column.dtype == np.float32 if kind in _NUMBER_TYPES else column.dtype.kind == "U"
            if not ok or column.shape != (n,):
                raise DataError(f"table column {attribute.name!r}: expected {want} of shape ({n},), "
                                f"got {column.dtype} {column.shape}")
            columns[attribute.name] = column
        return cls(schema, columns, line_numbers, source_index, sources)


def _coerce(name: str, kind: str, values) -> np.ndarray:
    column = np.asarray(values)
    if column.ndim != 1:
        raise DataError(f"table column {name!r} must be 1-D, not shape {column.shape}")
    if kind in _NUMBER_TYPES:
        if column.dtype.kind not in "fiub" and column.size:
            raise DataError(f"table column {name!r} ({kind}) must hold numbers, not {column.dtype}")
        column = column.astype(np.float32, copy=False)
        if kind == "BINARY":
            bad = ~(np.isnan(column) | (column == 0) | (column == 1))
            if bad.any():
                raise DataError(f"table column {name!r} (BINARY) holds {column[bad][0]}; only 0, 1 or NaN")
        return column
    if column.size == 0:
        return column.astype("U1") if column.dtype.kind != "U" else column
    if column.dtype.kind != "U":
        raise DataError(f"table column {name!r} ({kind}) must hold strings, not {column.dtype}")
    return column
