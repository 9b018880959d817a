"""A few rows of a large .npy object in S3, read with ranged GETs (never the whole array).

The misclassified-examples grid needs a couple of dozen test images; the test set may be far
larger than the Score Lambda's memory should hold for a picture.
"""

from __future__ import annotations

import io

import numpy as np

from stepml.errors import DataError
from stepml.storage import Storage, check_key, transient_errors

#: The header of a .npy file (magic, version, header length, the header dict) fits in this.
HEADER_BYTES = 4096


def _range(storage: Storage, key: str, first: int, last: int) -> bytes:
    with transient_errors("GetObject", storage.uri(key)):
        response = storage.client.get_object(Bucket=storage.bucket, Key=check_key(key),
                                             Range=f"bytes={first}-{last}")
        return response["Body"].read()


def read_rows(storage: Storage, key: str, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` of the C-ordered .npy at ``key``, one ranged GET per row."""
    head = io.BytesIO(_range(storage, key, 0, HEADER_BYTES - 1))
    try:
        version = np.lib.format.read_magic(head)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(head)
    except ValueError as err:
        raise DataError(f"{storage.uri(key)} is not a .npy array this reader can slice: {err}") from None
    if fortran_order or dtype.hasobject or not shape:
        raise DataError(f"{storage.uri(key)}: expected a C-ordered numeric array")
    offset = head.tell()
    row_items = int(np.prod(shape[1:], dtype=np.int64))
    row_bytes = row_items * dtype.itemsize
    out = np.empty((len(rows), *shape[1:]), dtype=dtype)
    for i, row in enumerate(np.asarray(rows, dtype=np.int64)):
        if not 0 <= row < shape[0]:
            raise DataError(f"row {row} is outside {storage.uri(key)} ({shape[0]} rows)")
        start = offset + int(row) * row_bytes
        raw = _range(storage, key, start, start + row_bytes - 1)
        if len(raw) != row_bytes:
            raise DataError(f"{storage.uri(key)} is shorter than its header says")
        out[i] = np.frombuffer(raw, dtype=dtype, count=row_items).reshape(shape[1:])
    return out
