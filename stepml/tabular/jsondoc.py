"""One JSON definition (a data schema, a recipe, a DataRearrangement) from bytes, text or a dict.

Every caller wants the same thing: at most ``max_bytes`` of UTF-8 (a BOM is fine), JSON whose
syntax errors name the line and column, a JSON object at the top, and each problem raised as
the caller's own error class with the caller's name first (``s3://b/schema.json: not JSON: ...``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_type", "load_object"]


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, for messages ("an array", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def load_object(raw: bytes | str | dict, *, name: str, error: type[Exception], max_bytes: int,
                what: str, expected: str = "a JSON object") -> dict:
    """Decode ``raw`` (JSON bytes / text, or an already-decoded value) to a dict.

    ``name`` starts every message; ``what`` names the document in the size message ("a schema
    may have at most ..."); ``expected`` describes the object wanted when the top level is not
    one. Raises ``error``.
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > max_bytes:
            raise error(f"{name}: {len(raw):,} bytes; {what} may have at most {max_bytes:,}")
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise error(f"{name}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    if isinstance(raw, str):
        size = len(raw) if len(raw) > max_bytes else len(raw.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise error(f"{name}: {size:,} bytes or more; {what} may have at most {max_bytes:,}")
        try:
            raw = json.loads(raw.removeprefix("\ufeff"))
        except json.JSONDecodeError as err:
            raise error(f"{name}: not JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
        except RecursionError:
            raise error(f"{name}: nests too deeply to be {what}") from None
    if not isinstance(raw, dict):
        raise error(f"{name}: must be {expected}, not {json_type(raw)}")
    return raw
