"""Amazon ML's DataRearrangement: use a percentage range of a datasource's rows.

    {"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random",
                   "randomSeed": "my-seed", "complement": false}}

Defaults: percentBegin 0, percentEnd 100, strategy "sequential", randomSeed "",
complement false. The API took this as a JSON *string*; both forms are accepted.

* ``sequential``: row ``r`` of the ``n`` valid rows (input order) is in when
  ``percentBegin <= 100 * r / n < percentEnd``.
* ``random``: each row gets a pseudo-random number ``u`` in [0, 100) from a hash of
  (randomSeed, source object index, line number), and is in when ``percentBegin <= u < percentEnd``.
  Amazon ML hashed the seed with the row's byte offset; we use its position, which, like the
  offset, does not depend on which other rows are valid, so a row's side of the split is
  stable when other rows are fixed or dropped.
* ``complement``: take the rows the range does *not* select. The same splitting with and
  without complement partitions the rows exactly (the usual 70/30 train/evaluate pair).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from stepml.errors import DataError
from stepml.tabular.jsondoc import load_object

__all__ = ["check_rearrangement", "split_mask", "random_percent", "STRATEGIES"]

STRATEGIES = ("sequential", "random")
_DEFAULTS = {"percentBegin": 0, "percentEnd": 100, "strategy": "sequential", "randomSeed": "",
             "complement": False}
MAX_REARRANGEMENT_BYTES = 64 * 1024
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def check_rearrangement(value: Any, *, name: str = "DataRearrangement") -> dict | None:
    """Validate a DataRearrangement (dict or JSON string); return it with defaults filled, or None.

    None, "" and {} mean "all rows". Raises DataError naming the field.
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes)) and not value.strip():
        return None
    value = load_object(value, name=name, error=DataError, max_bytes=MAX_REARRANGEMENT_BYTES,
                        what="a DataRearrangement", expected='an object like {"splitting": {...}}')
    if not value:
        return None
    unknown = [k for k in value if k != "splitting"]
    if unknown:
        raise DataError(f"{name}.{unknown[0]}: unknown key; a DataRearrangement has only \"splitting\"")
    splitting = value["splitting"]
    where = f"{name}.splitting"
    if not isinstance(splitting, dict):
        raise DataError(f"{where}: must be an object, not {type(splitting).__name__}")
    unknown = [k for k in splitting if k not in _DEFAULTS]
    if unknown:
        raise DataError(f"{where}.{unknown[0]}: unknown key; splitting has {', '.join(_DEFAULTS)}")
    out = {**_DEFAULTS, **splitting}
    for key in ("percentBegin", "percentEnd"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise DataError(f"{where}.{key}: must be a number from 0 to 100, not {v!r}")
    if out["percentBegin"] >= out["percentEnd"]:
        raise DataError(f"{where}: percentBegin ({out['percentBegin']}) must be less than "
                        f"percentEnd ({out['percentEnd']})")
    if out["strategy"] not in STRATEGIES:
        raise DataError(f"{where}.strategy: {out['strategy']!r} is not one of {', '.join(STRATEGIES)}")
    if not isinstance(out["randomSeed"], str):
        raise DataError(f"{where}.randomSeed: must be a string, not {out['randomSeed']!r}")
    if not isinstance(out["complement"], bool):
        raise DataError(f"{where}.complement: must be true or false, not {out['complement']!r}")
    return {"splitting": out}


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 (wrapping arithmetic): a fast, well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def random_percent(seed: str, source_index: np.ndarray, line_numbers: np.ndarray) -> np.ndarray:
    """A pseudo-random float64 in [0, 100) per row, fixed by (seed, source index, line number)."""
    key = np.uint64(int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "little"))
    position = (np.asarray(source_index).astype(np.uint64) << np.uint64(40)) ^ \
        np.asarray(line_numbers).astype(np.uint64)
    h = _splitmix64(_splitmix64(position ^ key))
    # the top 53 bits as a double in [0, 1)
    return (h >> np.uint64(11)).astype(np.float64) * (100.0 / 2.0 ** 53)


def split_mask(table_or_rows, rearrangement: dict | str | None) -> np.ndarray:
    """Boolean mask of the rows a DataRearrangement selects.

    ``table_or_rows`` is a :class:`~stepml.tabular.table.Table` (random splits hash each row's
    source index and line number) or a row count ``n`` (rows are then numbered as lines 1..n of
    one source, as in a headerless single object).
    """
    if isinstance(table_or_rows, (int, np.integer)) and not isinstance(table_or_rows, bool):
        n = int(table_or_rows)
        if n < 0:
            raise ValueError(f"row count must be >= 0, not {n}")
        source_index = np.zeros(n, dtype=np.int64)
        line_numbers = np.arange(1, n + 1, dtype=np.int64)
    else:
        source_index, line_numbers = table_or_rows.source_index, table_or_rows.line_numbers
        n = len(line_numbers)
    checked = check_rearrangement(rearrangement)
    if checked is None:
        return np.ones(n, dtype=bool)
    s = checked["splitting"]
    begin, end = float(s["percentBegin"]), float(s["percentEnd"])
    if s["strategy"] == "sequential":
        # 100 * r / n compared as 100 * r against begin * n: exact for integer percents
        r100 = np.arange(n, dtype=np.float64) * 100.0
        mask = (r100 >= begin * n) & (r100 < end * n)
    else:
        u = random_percent(s["randomSeed"], source_index, line_numbers)
        mask = (u >= begin) & (u < end)
    return ~mask if s["complement"] else mask
