"""Streaming CSV (RFC 4180) -> :class:`~stepml.tabular.table.Table`, with Amazon ML-style invalid rows.

Data objects arrive as iterators of byte chunks (S3 ``StreamingBody.iter_chunks()``); no
object is ever joined into one string. The reader frames the stream into blocks of about
``BLOCK_BYTES`` that end on a row boundary (carrying the unfinished row, or an open quoted
field, over to the next block) and converts each block at once:

* **plain blocks** (no double quote anywhere, the common case: MNIST, numeric exports) are
  parsed with numpy on the raw bytes: newline and comma positions give every field's start and
  end, and numbers made of digits, an optional sign and an optional decimal point are parsed
  digit by digit across the whole block. Only fields that do not fit that pattern (exponents,
  surrounding spaces, garbage) go through Python's ``float``, which also finds the exact bad
  value. No Python object is created per numeric field.
* **quoted blocks** go row by row through the :mod:`csv` module (``strict``), which handles
  commas, doubled quotes and newlines inside quoted fields.

A row is *invalid* -- counted, left out of the table, and among the first ``MAX_EXAMPLES``
reported with its place -- when it has the wrong number of columns, a NUMERIC value that is
not a finite float32 number, a BINARY value outside 0/1, y/n, yes/no, t/f, true/false, a
missing target, a field over ``MAX_FIELD_CHARS`` characters, bytes that are not UTF-8, a quote
that is never closed or is misplaced, or when it is a blank line in the middle of the data (blank
lines at the end of an object are ignored). A missing *input* value (empty after trimming) is
not an error: it is stored as missing (NaN or ""). More than ``max_invalid_share`` invalid rows
fail the datasource, as in Amazon ML.

Line numbers are physical 1-based lines in the object where the row starts (a header counts;
a quoted newline moves the next row's number on). Line endings are LF or CRLF. A quote inside
an unquoted field (``ab"c``) is not RFC 4180; it opens a quoted section for the framing and
makes the row invalid.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable

import numpy as np

from stepml.errors import DataError
from stepml.tabular.schema import DataSchema, SchemaError, check_model_type
from stepml.tabular.table import Table

__all__ = ["MAX_INVALID_SHARE", "MAX_FIELD_CHARS", "MAX_CLASSES", "MAX_EXAMPLES",
           "read_table", "encode_target", "class_labels"]

MAX_INVALID_SHARE = 0.10     # above this share of invalid rows the datasource fails
MAX_FIELD_CHARS = 100_000
MAX_CLASSES = 100            # Amazon ML's limit for MULTICLASS targets
MAX_EXAMPLES = 10            # invalid rows reported in detail
BLOCK_BYTES = 2 * 1024 * 1024
PROGRESS_BYTES = 16 * 1024 * 1024
#: A row still inside quotes after this many bytes means an unbalanced quote, not data.
MAX_OPEN_QUOTE_BYTES = 16 * 1024 * 1024
VALUE_CHARS = 40             # a reported value is cut to this many characters

BINARY_VALUES = {"0": 0.0, "1": 1.0, "n": 0.0, "y": 1.0, "no": 0.0, "yes": 1.0,
                 "f": 0.0, "t": 1.0, "false": 0.0, "true": 1.0}
# Any |x| at or above this rounds to infinity in float32 (halfway between the largest float32
# and 2**128; ties go to even, which is 2**128).
_F32_OVERFLOW = 2.0 ** 128 - 2.0 ** 103
_BOM = b"\xef\xbb\xbf"
_MAX_FAST_DIGITS = 15        # integers below 10**15 are exact in float64
_DIGIT = np.full(256, -1, dtype=np.int8)
_DIGIT[48:58] = np.arange(10)

REASONS = {
    "columns": "wrong number of columns",
    "not_a_number": "NUMERIC value is not a number",
    "not_finite": "NUMERIC value is not finite",
    "out_of_range": "NUMERIC value outside the float32 range",
    "not_binary": "BINARY value not recognised",
    "missing_target": "missing target",
    "field_too_long": "field too long",
    "blank_line": "blank line",
    "invalid_utf8": "not UTF-8",
    "quotes": "malformed quotes",
}


def read_table(sources: Iterable[tuple[str, Iterable[bytes]]], schema: DataSchema, *,
               model_type: str | None = None, max_invalid_share: float = MAX_INVALID_SHARE,
               progress: Callable[[str], None] | None = None) -> tuple[Table, dict]:
    """Read every object of ``sources`` (``(name, byte chunks)`` in order) into one Table.

    Returns ``(table, report)``, report = ``{"rows_read", "rows_valid", "rows_invalid",
    "invalid_examples": [{"source", "line", "column", "attribute", "value", "reason"}, ...]
    (the first 10, in data order), "invalid_by_reason": {code: count}}``. Raises
    :class:`SchemaError` for a schema/model-type mismatch or a header that does not match the
    schema, :class:`DataError` when too many rows are invalid, none is valid, or a MULTICLASS
    target has more than ``MAX_CLASSES`` labels.
    """
    if isinstance(max_invalid_share, bool) or not isinstance(max_invalid_share, (int, float)) \
            or not 0 <= max_invalid_share <= 1:
        raise ValueError(f"max_invalid_share must be a number in [0, 1]; got {max_invalid_share!r}")
    if model_type is not None:
        check_model_type(schema, model_type)
    reader = _Reader(schema, model_type, progress)
    for name, chunks in sources:
        reader.read_object(name, chunks)
    return reader.finish(max_invalid_share)


def class_labels(values: Iterable[str]) -> list[str]:
    """Distinct labels in class order: numerically when every label is a number, else as text."""
    labels = sorted(set(values))
    try:
        return sorted(labels, key=lambda label: (float(label), label))
    except ValueError:
        return labels


def encode_target(table: Table, model_type: str, *, min_classes: int = 2,
                  where: str = "the data") -> tuple[np.ndarray, list[str] | None]:
    """The target as model input.

    MULTICLASS: (int64 codes 0..k-1, labels in :func:`class_labels` order, so "10" follows "9");
    BINARY: (int64 0/1, ["0", "1"]); REGRESSION: (float32 values, None). A MULTICLASS target
    needs ``min_classes`` labels (2 to train on; an evaluation set may hold only one), and
    ``where`` names the rows in that message.
    """
    schema = table.schema
    check_model_type(schema, model_type)
    column = table.columns[schema.target]
    if model_type == "REGRESSION":
        if np.isnan(column).any():
            raise DataError(f"target {schema.target!r}: {int(np.isnan(column).sum())} rows have no value")
        return column.astype(np.float32, copy=False), None
    if model_type == "BINARY":
        if np.isnan(column).any():
            raise DataError(f"target {schema.target!r}: {int(np.isnan(column).sum())} rows have no value")
        return column.astype(np.int64), ["0", "1"]
    if (column == "").any():
        raise DataError(f"target {schema.target!r}: {int((column == '').sum())} rows have no value")
    unique, inverse = np.unique(column, return_inverse=True)
    if len(unique) > MAX_CLASSES:
        raise DataError(f"target {schema.target!r} has {len(unique):,} distinct values; a MULTICLASS "
                        f"model takes at most MAX_CLASSES = {MAX_CLASSES}")
    if len(unique) < min_classes:
        found = f"only {unique.tolist()[0]!r}" if len(unique) else "no rows"
        raise DataError(f"target {schema.target!r}: a MULTICLASS model needs at least {min_classes} classes; "
                        f"{where} has {found}")
    labels = class_labels(unique.tolist())
    position = {label: i for i, label in enumerate(labels)}
    remap = np.array([position[label] for label in unique.tolist()], dtype=np.int64)
    return remap[inverse.reshape(-1)], labels


# -- value conversion (the slow path and the fast path's leftovers) --------------------------

def _number(text: str) -> tuple[float, str | None, str | None]:
    """(value, problem code, message); NaN with no problem for a missing value."""
    s = text.strip()
    if not s:
        return math.nan, None, None
    if not s.isascii() or "_" in s:
        return math.nan, "not_a_number", "not a number"
    try:
        v = float(s)
    except ValueError:
        return math.nan, "not_a_number", "not a number"
    if not math.isfinite(v):
        return math.nan, "not_finite", "not a finite number (nan and inf are not allowed)"
    if abs(v) >= _F32_OVERFLOW:
        return math.nan, "out_of_range", "outside the float32 range (about ±3.4e38)"
    return v, None, None


def _binary(text: str) -> tuple[float, str | None, str | None]:
    s = text.strip().lower()
    if not s:
        return math.nan, None, None
    v = BINARY_VALUES.get(s)
    if v is None:
        return math.nan, "not_binary", "not a BINARY value (0/1, y/n, yes/no, t/f, true/false)"
    return v, None, None


def _parse_numbers(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse the fields buf[starts:ends] as plain decimals, all at once.

    Returns (float64 values, status) with status 0 = parsed, 1 = empty, 2 = not of the form
    ``[+-]digits[.digits]`` with 1..15 digits (left to :func:`_number`). The digits build an
    exact integer mantissa; one division by a power of ten gives the correctly rounded double.
    """
    shape = starts.shape
    starts, length = starts.ravel(), (ends - starts).ravel()
    mantissa = np.zeros(starts.shape, dtype=np.int64)
    digits = np.zeros(starts.shape, dtype=np.int8)
    decimals = np.zeros(starts.shape, dtype=np.int8)
    dot = np.zeros(starts.shape, dtype=bool)
    ok = length <= _MAX_FAST_DIGITS + 2
    negative = np.zeros(starts.shape, dtype=bool)
    width = int(min(length.max(), _MAX_FAST_DIGITS + 2)) if length.size else 0
    last = len(buf) - 1
    for k in range(width):
        active = length > k
        c = buf[np.minimum(starts + k, last)]
        d = _DIGIT[c]
        is_digit = active & (d >= 0)
        is_dot = active & (c == 46)
        allowed = ~active | is_digit | (is_dot & ~dot)
        if k == 0:
            negative = active & (c == 45)
            allowed |= negative | (active & (c == 43))
        ok &= allowed
        mantissa = np.where(is_digit, mantissa * 10 + d, mantissa)
        digits += is_digit
        decimals += is_digit & dot
        dot |= is_dot
    ok &= (digits > 0) & (digits <= _MAX_FAST_DIGITS)
    values = mantissa.astype(np.float64)
    scaled = decimals > 0
    if scaled.any():
        values[scaled] /= np.power(10.0, decimals[scaled])
    np.negative(values, out=values, where=negative)
    status = np.where(ok, 0, 2).astype(np.int8)
    status[length == 0] = 1
    return values.reshape(shape), status.reshape(shape)


def _cut(value: str | None) -> str | None:
    if value is None or len(value) <= VALUE_CHARS:
        return value
    return value[:VALUE_CHARS - 1] + "…"


class _Problems:
    """The first problem (leftmost column) of each bad row of one block."""

    def __init__(self):
        self.rows: dict[int, tuple[int, str, str, str | None]] = {}

    def add(self, row: int, column: int, code: str, message: str, value: str | None) -> None:
        # column -1 = the whole row (wrong width, encoding, quotes): that is the only problem
        current = self.rows.get(row)
        if current is None or column < current[0]:
            self.rows[row] = (column, code, message, value)


class _Reader:
    def __init__(self, schema: DataSchema, model_type: str | None, progress):
        self.schema = schema
        self.model_type = model_type
        self.progress = progress
        self.n_columns = len(schema.attributes)
        self.stored = schema.stored
        self.kind = {a.name: schema.stored_type(a) for a in self.stored}   # the rowId is kept as text
        self.numeric = [a for a in self.stored if self.kind[a.name] == "NUMERIC"]
        self.numeric_index = np.array([a.index for a in self.numeric], dtype=np.int64)
        self.others = [a for a in self.stored if self.kind[a.name] != "NUMERIC"]
        self.target = schema.attribute(schema.target) if schema.target is not None else None
        self.sources: list[str] = []
        self.numeric_blocks: list[np.ndarray] = []          # (n_numeric, rows) float32
        self.other_blocks: dict[str, list[np.ndarray]] = {a.name: [] for a in self.others}
        self.line_blocks: list[np.ndarray] = []
        self.source_blocks: list[np.ndarray] = []
        self.rows_read = 0
        self.rows_valid = 0
        self.invalid_by_reason: dict[str, int] = {}
        self.examples: list[tuple] = []
        self.labels: set[str] = set()
        self.bytes_read = 0
        self.next_progress = PROGRESS_BYTES

    # -- framing -------------------------------------------------------------------------

    def read_object(self, name: str, chunks: Iterable[bytes]) -> None:
        self.sources.append(name)
        self.source = len(self.sources) - 1
        self.name = name
        self.line = 1                  # physical line number of the next unprocessed byte
        self.first_block = True
        self.need_header = self.schema.has_header
        self.pending_blank: list[int] = []
        parts, size, carry = [], 0, b""
        for chunk in chunks:
            if not chunk:
                continue
            parts.append(bytes(chunk))
            size += len(chunk)
            self.bytes_read += len(chunk)
            if size >= BLOCK_BYTES:
                carry = self._block(carry + b"".join(parts), final=False)
                parts, size = [], len(carry)
            if self.progress is not None and self.bytes_read >= self.next_progress:
                self.progress(f"read {self.bytes_read // (1024 * 1024)} MB, {self.rows_read:,} rows")
                self.next_progress += PROGRESS_BYTES
        self._block(carry + b"".join(parts), final=True)

    def _block(self, buf: bytes, final: bool) -> bytes:
        """Process the complete rows of ``buf``; return the unfinished rest (empty when final)."""
        if self.first_block:
            if len(buf) < len(_BOM) and not final:
                return buf          # not enough bytes yet to tell whether a BOM starts the object
            if buf.startswith(_BOM):
                buf = buf[len(_BOM):]
            self.first_block = False
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        if final:
            part, tail = buf, b""
            if part and not part.endswith(b"\n"):
                part += b"\n"
        else:
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                return buf
            part, tail = buf[:cut], buf[cut:]
        if self.need_header and part:
            end = _record_end(part, 0)
            if end is None and not final:
                return buf
            header = part[:end] if end is not None else part
            self._check_header(header)
            self.need_header = False
            self.line += header.count(b"\n")
            part = part[len(header):]
        if not part:
            return tail
        if b'"' not in part:
            n_lines = part.count(b"\n")
            blank, last_data_line = self._plain(part, self.line)
            self._blank_lines(blank, last_data_line)
            self.line += n_lines
            return tail
        records, lines, rest = _quoted_records(part, self.line)
        if rest:
            if final:   # an open quote swallowed the rest of the object
                # Every line it swallowed is a row lost, not one: counted as one invalid row, a
                # stray quote could hide most of an object under max_invalid_share.
                lost = max(1, rest.count(b"\n"))
                self.rows_read += lost
                self._invalid(self.line + part[:len(part) - len(rest)].count(b"\n"), None, "quotes",
                              f"a quoted field is never closed; the {lost:,} lines to the end of the object "
                              "are lost", rest.decode("utf-8", "replace"))
                self.invalid_by_reason["quotes"] += lost - 1
                rest = b""
            elif len(rest) > MAX_OPEN_QUOTE_BYTES:
                start = self.line + part[:len(part) - len(rest)].count(b"\n")
                raise DataError(f"{self.name} line {start}: a quoted field is still open after "
                                f"{len(rest):,} bytes; a double quote is probably unbalanced")
            else:
                tail = rest + tail
        consumed = part[:len(part) - len(rest)].count(b"\n")
        blank = [line for record, line in zip(records, lines) if not record]
        data_lines = [line for record, line in zip(records, lines) if record]
        self._slow([r for r in records if r], data_lines)
        self._blank_lines(blank, data_lines[-1] if data_lines else None)
        self.line += consumed
        return tail

    def _blank_lines(self, blank, last_data_line: int | None) -> None:
        """Blank lines are invalid only when data follows them in the same object."""
        pending = self.pending_blank + [int(b) for b in blank]
        if last_data_line is None:
            self.pending_blank = pending
            return
        self.pending_blank = [b for b in pending if b > last_data_line]
        for line in (b for b in pending if b < last_data_line):
            self.rows_read += 1
            self._invalid(line, None, "blank_line", "a blank line in the middle of the data", "")

    def _check_header(self, header: bytes) -> None:
        try:
            text = header.decode("utf-8").rstrip("\n")
            names = next(csv.reader([text], strict=True, skipinitialspace=True), [])
        except (UnicodeDecodeError, csv.Error) as err:
            raise SchemaError(f"{self.name} line {self.line}: the header row cannot be read ({err})") from None
        names = [n.strip() for n in names]
        want = [a.name for a in self.schema.attributes]
        for j in range(max(len(names), len(want))):
            got = names[j] if j < len(names) else None
            expected = want[j] if j < len(want) else None
            if got is None or expected is None or got.lower() != expected.strip().lower():
                if got is None:
                    detail = f"the header has {len(names)} columns; column {j + 1} should be {expected!r}"
                elif expected is None:
                    detail = f"column {j + 1} is {got!r} but the schema has only {len(want)} attributes"
                else:
                    detail = f"column {j + 1} is {got!r} but the schema's attribute {j + 1} is {expected!r}"
                raise SchemaError(f"{self.name} line {self.line}: the header does not match the schema "
                                  f"(dataFileContainsHeader is true): {detail}")

    # -- conversion ----------------------------------------------------------------------

    def _plain(self, part: bytes, first_line: int) -> tuple[np.ndarray, int | None]:
        """Convert a block of complete, quote-free lines.

        Returns the line numbers of its blank lines and the number of its last non-blank line.
        """
        buf = np.frombuffer(part, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lines = first_line + np.arange(len(ends), dtype=np.int64)
        blank = starts == ends
        usable = ~blank
        problems = _Problems()
        if not part.isascii():
            try:
                part.decode("utf-8")
            except UnicodeDecodeError:
                for i in np.flatnonzero(usable).tolist():
                    try:
                        part[starts[i]:ends[i]].decode("utf-8")
                    except UnicodeDecodeError:
                        problems.add(i, -1, "invalid_utf8", "the row is not valid UTF-8",
                                     part[starts[i]:ends[i]].decode("utf-8", "replace"))
                        usable[i] = False
        commas = np.flatnonzero(buf == 44)
        counts = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        wrong = usable & (counts != self.n_columns)
        for i in np.flatnonzero(wrong).tolist():
            problems.add(i, -1, "columns", f"{counts[i]} columns, the schema has {self.n_columns}",
                         part[starts[i]:ends[i]].decode("utf-8", "replace"))
        usable &= ~wrong
        rows = np.flatnonzero(usable)
        if len(rows):
            separators = np.flatnonzero((buf == 44) | (buf == 10))
            first = np.searchsorted(separators, starts[rows])
            field_ends = separators[first[:, None] + np.arange(self.n_columns)]
            field_starts = np.empty_like(field_ends)
            field_starts[:, 0] = starts[rows]
            field_starts[:, 1:] = field_ends[:, :-1] + 1
            long_rows = np.flatnonzero(ends[rows] - starts[rows] > MAX_FIELD_CHARS)
            for r in long_rows.tolist():
                for j in range(self.n_columns):
                    field = part[field_starts[r, j]:field_ends[r, j]].decode("utf-8")
                    if len(field) > MAX_FIELD_CHARS:
                        problems.add(int(rows[r]), j, "field_too_long",
                                     f"{len(field):,} characters; a field has at most {MAX_FIELD_CHARS:,}", field)
                        break
            numeric, other = self._convert_plain(part, buf, rows, field_starts, field_ends, problems)
        else:
            numeric = np.zeros((len(self.numeric), 0), dtype=np.float32)
            other = {a.name: np.zeros(0, dtype="U1") for a in self.others}
        self._emit(problems, lines, rows, numeric, other,
                   lambda i: part[starts[i]:ends[i]].decode("utf-8", "replace"))
        data = np.flatnonzero(~blank)
        return lines[blank], (int(lines[data[-1]]) if len(data) else None)

    def _convert_plain(self, part, buf, rows, field_starts, field_ends, problems):
        numeric = np.zeros((len(self.numeric), len(rows)), dtype=np.float32)
        if len(self.numeric):
            s = field_starts[:, self.numeric_index]
            e = field_ends[:, self.numeric_index]
            values, status = _parse_numbers(buf, s, e)
            values[status == 1] = np.nan
            for r, k in zip(*(a.tolist() for a in np.nonzero(status == 2))):
                text = part[s[r, k]:e[r, k]].decode("utf-8")
                v, code, message = _number(text)
                values[r, k] = v
                if code is not None:
                    problems.add(int(rows[r]), self.numeric[k].index, code, message, text)
            numeric[...] = values.T
            if self.target is not None and self.target.type == "NUMERIC":
                k = self.numeric.index(self.target)
                for r in np.flatnonzero(np.isnan(values[:, k])).tolist():
                    problems.add(int(rows[r]), self.target.index, "missing_target", "the target is missing", "")
        other = {}
        for a in self.others:
            texts = [part[i:j].decode("utf-8").strip()
                     for i, j in zip(field_starts[:, a.index].tolist(), field_ends[:, a.index].tolist())]
            if self.kind[a.name] == "BINARY":
                column = np.empty(len(texts), dtype=np.float32)
                for r, text in enumerate(texts):
                    v, code, message = _binary(text)
                    column[r] = v
                    if code is not None:
                        problems.add(int(rows[r]), a.index, code, message, text)
            else:
                column = np.array(texts, dtype=str) if texts else np.zeros(0, dtype="U1")
            if a is self.target:
                for r in np.flatnonzero((column == "") if self.kind[a.name] != "BINARY" else np.isnan(column)).tolist():
                    problems.add(int(rows[r]), a.index, "missing_target", "the target is missing", "")
            other[a.name] = column
        return numeric, other

    def _slow(self, records: list[bytes], lines: list[int]) -> None:
        """Convert records one by one (blocks with quotes); records hold their quoted newlines."""
        problems = _Problems()
        kept: list[int] = []
        numeric_rows: list[list[float]] = []
        other_values: dict[str, list] = {a.name: [] for a in self.others}
        for i, record in enumerate(records):
            try:
                text = record.decode("utf-8")
            except UnicodeDecodeError:
                problems.add(i, -1, "invalid_utf8", "the row is not valid UTF-8", record.decode("utf-8", "replace"))
                continue
            if '"' in text:
                try:
                    fields = next(csv.reader([text], strict=True, skipinitialspace=True))
                except csv.Error as err:
                    problems.add(i, -1, "quotes", f"malformed quoted field ({err})", text)
                    continue
            else:
                fields = text.split(",")
            if len(fields) != self.n_columns:
                problems.add(i, -1, "columns", f"{len(fields)} columns, the schema has {self.n_columns}", text)
                continue
            row_numeric, row_other, bad = [], {}, False
            for j, field in enumerate(fields):
                if len(field) > MAX_FIELD_CHARS:
                    problems.add(i, j, "field_too_long",
                                 f"{len(field):,} characters; a field has at most {MAX_FIELD_CHARS:,}", field)
                    bad = True
                    break
            if bad:
                continue
            for a in self.stored:
                raw = fields[a.index].strip()
                kind = self.kind[a.name]
                if kind == "NUMERIC":
                    v, code, message = _number(raw)
                elif kind == "BINARY":
                    v, code, message = _binary(raw)
                else:
                    v, code, message = raw, None, None
                if code is None and a is self.target and (v == "" or (isinstance(v, float) and math.isnan(v))):
                    code, message = "missing_target", "the target is missing"
                if code is not None:
                    problems.add(i, a.index, code, message, raw)
                    bad = True
                    break
                if kind == "NUMERIC":
                    row_numeric.append(v)
                else:
                    row_other[a.name] = v
            if bad:
                continue
            kept.append(i)
            numeric_rows.append(row_numeric)
            for name, v in row_other.items():
                other_values[name].append(v)
        rows = np.array(kept, dtype=np.int64)
        numeric = np.array(numeric_rows, dtype=np.float32).reshape(len(kept), len(self.numeric)).T
        other = {}
        for a in self.others:
            values = other_values[a.name]
            if self.kind[a.name] == "BINARY":
                other[a.name] = np.array(values, dtype=np.float32)
            else:
                other[a.name] = np.array(values, dtype=str) if values else np.zeros(0, dtype="U1")
        # every kept row is already clean; _emit only reports the problems
        self._emit(problems, np.array(lines, dtype=np.int64), rows, numeric, other,
                   lambda i: records[i].decode("utf-8", "replace"), clean=True)

    def _emit(self, problems: _Problems, lines: np.ndarray, rows: np.ndarray, numeric: np.ndarray,
              other: dict, row_text, clean: bool = False) -> None:
        """Report the block's invalid rows and keep its valid ones (``rows`` index ``lines``)."""
        bad = problems.rows
        for i in sorted(bad):
            column, code, message, value = bad[i]
            self._invalid(int(lines[i]), column if column >= 0 else None, code, message,
                          value if value is not None else row_text(i))
        self.rows_read += len(bad) + (len(rows) if clean else len(rows) - sum(1 for i in rows.tolist() if i in bad))
        if not clean and bad:
            keep = np.array([i not in bad for i in rows.tolist()], dtype=bool)
            rows, numeric = rows[keep], numeric[:, keep]
            other = {name: column[keep] for name, column in other.items()}
        if not len(rows):
            return
        self.rows_valid += len(rows)
        self.numeric_blocks.append(np.ascontiguousarray(numeric, dtype=np.float32))
        for name, column in other.items():
            self.other_blocks[name].append(column)
        self.line_blocks.append(lines[rows])
        self.source_blocks.append(np.full(len(rows), self.source, dtype=np.int32))
        if self.model_type == "MULTICLASS":
            self.labels.update(np.unique(other[self.target.name]).tolist())
            if len(self.labels) > MAX_CLASSES:
                raise DataError(f"target {self.target.name!r} has more than {MAX_CLASSES} distinct values "
                                f"(at least {len(self.labels)} by {self.name} line {int(lines[rows[-1]])}); "
                                f"a MULTICLASS model takes at most MAX_CLASSES = {MAX_CLASSES}")

    def _invalid(self, line: int, column: int | None, code: str, message: str, value: str | None) -> None:
        self.invalid_by_reason[code] = self.invalid_by_reason.get(code, 0) + 1
        key = (self.source, line)
        if len(self.examples) >= MAX_EXAMPLES and key >= self.examples[-1][0]:
            return
        attribute = self.schema.attributes[column].name if column is not None else None
        example = {"source": self.name, "line": line, "column": None if column is None else column + 1,
                   "attribute": attribute, "value": _cut(value), "reason": message}
        self.examples.append((key, example))
        self.examples.sort(key=lambda item: item[0])
        del self.examples[MAX_EXAMPLES:]

    # -- result --------------------------------------------------------------------------

    def finish(self, max_invalid_share: float) -> tuple[Table, dict]:
        invalid = sum(self.invalid_by_reason.values())
        examples = [example for _, example in self.examples]
        report = {"rows_read": self.rows_read, "rows_valid": self.rows_valid, "rows_invalid": invalid,
                  "invalid_examples": examples, "invalid_by_reason": dict(sorted(self.invalid_by_reason.items()))}
        where = ", ".join(self.sources) if self.sources else "(no data objects)"
        if self.rows_read == 0:
            raise DataError(f"no valid rows in {where}: the data is empty")
        share = invalid / self.rows_read
        if invalid and share > max_invalid_share:
            raise DataError(f"{invalid:,} of {self.rows_read:,} rows ({share:.1%}) are invalid, more than the "
                            f"limit of {max_invalid_share:.1%} (max_invalid_share); first: {_describe(examples)}")
        if self.rows_valid == 0:
            raise DataError(f"no valid rows in {where}; all {self.rows_read:,} rows are invalid, "
                            f"first: {_describe(examples)}")
        return self._table(), report

    def _table(self) -> Table:
        n = self.rows_valid
        columns = {}
        if self.numeric:
            # One (n_numeric, n) buffer: each column is a contiguous row of it.
            block = np.empty((len(self.numeric), n), dtype=np.float32)
            at = 0
            while self.numeric_blocks:
                part = self.numeric_blocks.pop(0)
                block[:, at:at + part.shape[1]] = part
                at += part.shape[1]
            for k, a in enumerate(self.numeric):
                columns[a.name] = block[k]
        for a in self.others:
            columns[a.name] = np.concatenate(self.other_blocks[a.name])
        return Table(self.schema, {a.name: columns[a.name] for a in self.stored},
                     np.concatenate(self.line_blocks), np.concatenate(self.source_blocks), list(self.sources))


def _describe(examples: list[dict], limit: int = 3) -> str:
    parts = []
    for e in examples[:limit]:
        place = f"{e['source']} line {e['line']}"
        if e["column"] is not None:
            place += f", column {e['column']} ({e['attribute']})"
        value = f" {e['value']!r}" if e["value"] else ""
        parts.append(f"{place}:{value} {e['reason']}")
    return "; ".join(parts)


def _record_end(part: bytes, start: int) -> int | None:
    """End (after its newline) of the record starting at ``start``, honouring quoted newlines."""
    quotes, pos = 0, start
    while True:
        newline = part.find(b"\n", pos)
        if newline < 0:
            return None
        quotes += part.count(b'"', pos, newline)
        pos = newline + 1
        if quotes % 2 == 0:
            return pos


def _quoted_records(part: bytes, first_line: int) -> tuple[list[bytes], list[int], bytes]:
    """Split complete lines into records: a record ends at a newline outside double quotes.

    Returns (records without their final newline, their first line numbers, the unfinished
    tail: lines of a record whose quote is still open at the end of ``part``).
    """
    records, lines = [], []
    open_lines: list[bytes] = []
    open_at = 0
    odd = False
    physical = part.split(b"\n")[:-1]
    for i, line in enumerate(physical):
        if line.count(b'"') & 1:
            odd = not odd
        if open_lines or odd:
            if not open_lines:
                open_at = first_line + i
            open_lines.append(line)
            if not odd:
                records.append(b"\n".join(open_lines))
                lines.append(open_at)
                open_lines = []
            continue
        records.append(line)
        lines.append(first_line + i)
    rest = b"".join(line + b"\n" for line in open_lines)
    return records, lines, rest
