"""The evaluation rows cut into shards, for batch prediction's Distributed Map.

CreateDataSource writes the rows that batch prediction will score as S3 objects of a few MB,
one per shard, under ``<datasource>/shards/``; the Map's ``s3:listObjectsV2`` ItemReader lists
them and a PredictShard Lambda scores each one, writing its own part under
``runs/<run-id>/predictions/parts/<shard>.npz``. Score merges the parts in input order.

A shard's key says where its rows sit in the input, so the listing alone orders the parts and
tells how many rows a failed shard held, with no index to keep consistent:

    shard-<first row, 12 digits>-<rows, 9 digits>.npy    pixel rows (image datasources)
    shard-<first row, 12 digits>-<rows, 9 digits>.npz    typed table rows (CSV datasources)
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np

from stepml.errors import DataError, PayloadError
from stepml.storage import Storage

#: About this much input per shard: read, transformed and scored in a second or two by a
#: PredictShard Lambda at 1,024 MB, far inside its timeout, and big enough that Lambda's
#: per-invocation overhead stays small. 8 MiB is 10,700 MNIST rows.
SHARD_BYTES = 8 * 1024 * 1024
#: Small data still spreads over a few workers, so a run shows (and tests) the fan-out.
MIN_SHARDS = 4
MIN_SHARD_ROWS = 100
MAX_SHARD_ROWS = 1_000_000
#: Whatever the trigger asks, a shard stays below this: a PredictShard Lambda (1,024 MB) holds
#: the shard, its float32 copy (4x for pixels) and the scores, and finishes well inside 120 s.
MAX_SHARD_BYTES = 32 * 1024 * 1024
SHARDS_DIR = "shards/"
PARTS_DIR = "parts/"
_NAME = re.compile(r"shard-(\d{12})-(\d{9})\.(npy|npz)")


@dataclass(frozen=True, order=True)
class Shard:
    first_row: int
    rows: int
    key: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def part_key(self, parts_prefix: str) -> str:
        """Where PredictShard writes this shard's scores."""
        return f"{parts_prefix}{self.stem}.npz"

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


def rows_per_shard(rows: int, row_bytes: float, requested: int | None = None) -> int:
    """The trigger's ``batch_prediction.shard_rows`` (cut to MAX_SHARD_BYTES), or about
    SHARD_BYTES of input a shard, but no more than spreads the rows over MIN_SHARDS workers."""
    width = max(1, int(math.ceil(row_bytes)))
    ceiling = max(MIN_SHARD_ROWS, MAX_SHARD_BYTES // width)
    if requested:
        return int(min(requested, ceiling))
    spread = math.ceil(rows / MIN_SHARDS)
    return int(min(MAX_SHARD_ROWS, ceiling, max(MIN_SHARD_ROWS, min(SHARD_BYTES // width, spread))))


def shard_key(prefix: str, first_row: int, rows: int, extension: str) -> str:
    return f"{prefix}shard-{first_row:012d}-{rows:09d}.{extension}"


def parse_shard_key(key: str) -> Shard:
    match = _NAME.fullmatch(key.rsplit("/", 1)[-1])
    if not match:
        raise PayloadError(f"{key!r} is not a shard key (shard-<first row>-<rows>.npy|npz)")
    return Shard(int(match[1]), int(match[2]), key)


def write_image_shards(storage: Storage, prefix: str, pixels: np.ndarray, requested: int | None = None) -> dict:
    """Pixel rows (n, features) uint8 -> .npy shards; returns the descriptor's ``shards`` entry."""
    per = rows_per_shard(len(pixels), pixels.shape[1] * pixels.itemsize, requested)
    for first in range(0, len(pixels), per):
        block = pixels[first:first + per]
        storage.put_npy(shard_key(prefix, first, len(block), "npy"), block)
    return _entry(prefix, len(pixels), per, "npy", requested)


def write_table_shards(storage: Storage, prefix: str, table, table_bytes: int, requested: int | None = None) -> dict:
    """A typed Table -> .npz shards of consecutive rows."""
    rows = len(table)
    per = rows_per_shard(rows, table_bytes / max(rows, 1), requested)
    for first in range(0, rows, per):
        block = table.select(np.arange(first, min(rows, first + per)))
        storage.put_bytes(shard_key(prefix, first, len(block), "npz"), block.to_npz_bytes())
    return _entry(prefix, rows, per, "npz", requested)


def _entry(prefix: str, rows: int, per: int, extension: str, requested: int | None) -> dict:
    entry = {"prefix": prefix, "count": math.ceil(rows / per) if rows else 0, "rows_per_shard": per,
             "rows": rows, "format": extension}
    if requested and requested != per:
        entry["note"] = (f"batch_prediction.shard_rows {requested:,} would make shards over "
                         f"{MAX_SHARD_BYTES // 2**20} MiB; cut to {per:,} rows")
    return entry


def read_image_shard(storage: Storage, shard: Shard) -> np.ndarray:
    try:
        pixels = np.load(io.BytesIO(storage.get_bytes(shard.key, max_bytes=MAX_SHARD_BYTES + 4096)),
                         allow_pickle=False)
    except ValueError as err:
        raise DataError(f"{storage.uri(shard.key)} is not a valid .npy array: {err}") from None
    if pixels.ndim != 2 or len(pixels) != shard.rows:
        raise DataError(f"{storage.uri(shard.key)} holds {pixels.shape} pixels; its name promises {shard.rows} rows")
    return pixels


def read_table_shard(storage: Storage, shard: Shard):
    from stepml.tabular.table import Table

    table = Table.from_npz_bytes(storage.get_bytes(shard.key, max_bytes=2 * MAX_SHARD_BYTES))
    if len(table) != shard.rows:
        raise DataError(f"{storage.uri(shard.key)} holds {len(table)} rows; its name promises {shard.rows}")
    return table


def list_shards(storage: Storage, descriptor: dict) -> list[Shard]:
    """The datasource's shards in input order, checked to cover its evaluation rows exactly."""
    entry = descriptor["shards"]
    shards = sorted(parse_shard_key(key) for key in storage.list_keys(entry["prefix"]))
    expected = 0
    for shard in shards:
        if shard.first_row != expected:
            raise DataError(f"shards under {storage.uri(entry['prefix'])} skip or repeat rows at row {expected}")
        expected += shard.rows
    if expected != descriptor["test_rows"]:
        raise DataError(f"shards under {storage.uri(entry['prefix'])} hold {expected} rows; "
                        f"the datasource has {descriptor['test_rows']} evaluation rows")
    return shards


def part_bytes(scores: np.ndarray, seconds: float, memory_mb: int | None) -> bytes:
    """A worker's part: its shard's scores, and what scoring them took (for the run's cost)."""
    buffer = io.BytesIO()
    np.savez(buffer, scores=np.asarray(scores, dtype=np.float32), seconds=np.float64(seconds),
             memory_mb=np.int64(memory_mb or 0))
    return buffer.getvalue()


def read_part(raw: bytes, shard: Shard) -> tuple[np.ndarray, float, int]:
    """(scores, seconds, memory_mb) of a part, checked against its shard."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as part:
            scores, seconds, memory_mb = part["scores"], float(part["seconds"]), int(part["memory_mb"])
    except (ValueError, KeyError, OSError) as err:
        raise DataError(f"the predictions part of {shard.key} is unreadable: {err}") from None
    if len(scores) != shard.rows or not np.isfinite(scores).all():
        raise DataError(f"the predictions part of {shard.key} has {len(scores)} rows of scores for "
                        f"{shard.rows} rows, or scores that are not finite")
    return scores, seconds, memory_mb
