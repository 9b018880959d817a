"""MNIST: read, check, download and synthesise IDX files.

The IDX format (LeCun) is a 4-byte big-endian magic -- two zero bytes, a dtype code and
the number of dimensions -- then one big-endian uint32 per dimension, then the raw
big-endian payload. MNIST ships four such files, usually gzip-compressed.

Integrity rests on the SHA-256 of the *decompressed* bytes: gzip headers differ between
mirrors (timestamps, compression level), the IDX bytes do not. So every path that brings
files in (download, local folder) gunzips first and hashes second.

Offline machines point the setting ``STEPML_MNIST_DIR`` at a folder holding the four
files (``<name>.gz`` or raw ``<name>``); :func:`fetch` prefers it over the network.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import io
import os
import re
import struct
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import NamedTuple

import numpy as np

ENV_DIR = "STEPML_MNIST_DIR"


class FileInfo(NamedTuple):
    sha256: str  # of the decompressed bytes
    size: int  # decompressed bytes


# From /work/shared/datasets/README.md (the original LeCun files).
MNIST_FILES: dict[str, FileInfo] = {
    "train-images-idx3-ubyte": FileInfo(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47_040_016),
    "train-labels-idx1-ubyte": FileInfo(
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60_008),
    "t10k-images-idx3-ubyte": FileInfo(
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7_840_016),
    "t10k-labels-idx1-ubyte": FileInfo(
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10_008),
}
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES

# Tried in order; each serves <name>.gz. yann.lecun.com is left out: it is http-only and
# has been refusing automated downloads. Reassign or mutate to override.
DEFAULT_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

# The largest real file is 47 MB; anything far beyond that is a broken or hostile source
# (e.g. a gzip bomb), so stop reading rather than exhaust a Lambda's memory.
MAX_BYTES = 100 * 1024 * 1024

# Plain http is only acceptable where nothing sits between us and the server (tests).
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

# IDX dtype codes -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """Bytes that are not a well-formed IDX file (or not valid gzip around one)."""


class ChecksumError(ValueError):
    """Decompressed bytes whose SHA-256 is not the one we expect."""


class DownloadError(RuntimeError):
    """Every mirror failed; ``failures`` holds (url, reason) for each."""

    def __init__(self, name: str, failures: list[tuple[str, str]]):
        self.name, self.failures = name, failures
        lines = "\n".join(f"  {url}: {why}" for url, why in failures) or "  (no mirrors given)"
        super().__init__(f"{name}: could not download from any mirror:\n{lines}")


def _prefix(name: str | None) -> str:
    return f"{name}: " if name else ""


def _read_capped(f, max_bytes: int) -> bytes | None:
    """Read a stream to EOF in 1 MB chunks; None once it exceeds max_bytes.

    Chunks rather than read(max_bytes + 1): that would allocate the whole cap up front.
    """
    chunks, total = [], 0
    while chunk := f.read(1 << 20):
        total += len(chunk)
        if total > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip_if_needed(data: bytes, name: str | None, max_bytes: int = MAX_BYTES) -> bytes:
    """Decompress gzip input (detected by its 0x1f8b magic), pass anything else through."""
    if bytes(data[:2]) != b"\x1f\x8b":
        # Copy bytearray/memoryview input so results never alias a caller's mutable buffer.
        return data if isinstance(data, bytes) else bytes(data)
    try:
        # GzipFile, not gzip.decompress, so a gzip bomb stops at max_bytes instead of
        # inflating in full; it also handles multi-member files.
        with _gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = _read_capped(f, max_bytes)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise IdxFormatError(f"{_prefix(name)}corrupt gzip data: {e}") from None
    if out is None:
        raise IdxFormatError(f"{_prefix(name)}decompresses to more than {max_bytes} bytes")
    return out


def _expected_ndim(name: str | None) -> int | None:
    """MNIST-style names encode the shape: 'train-labels-idx1-ubyte' is 1-D uint8."""
    m = re.search(r"idx(\d+)-ubyte", name or "")
    return int(m.group(1)) if m else None


def parse_idx(data: bytes, name: str | None = None) -> np.ndarray:
    """Parse IDX bytes (raw or gzip) into an array; raise IdxFormatError on any defect.

    ``name`` is used in messages and, if it follows the MNIST pattern ``idxN-ubyte``,
    also to require uint8 with N dimensions. uint8 results are zero-copy read-only views.
    """
    p = _prefix(name)
    data = _gunzip_if_needed(data, name)
    if len(data) < 4:
        raise IdxFormatError(f"{p}too short for an IDX header: {len(data)} bytes")
    magic = struct.unpack(">I", data[:4])[0]
    if data[0] or data[1]:
        raise IdxFormatError(
            f"{p}bad magic 0x{magic:08x}: an IDX file starts with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise IdxFormatError(f"{p}unknown IDX dtype code 0x{code:02x} (magic 0x{magic:08x})")
    if ndim == 0:
        raise IdxFormatError(f"{p}header declares 0 dimensions (magic 0x{magic:08x})")
    want = _expected_ndim(name)
    if want is not None and (code, ndim) != (0x08, want):
        raise IdxFormatError(
            f"{p}expected magic 0x{0x0800 | want:08x} (uint8, {want}-D) for this name, "
            f"got 0x{magic:08x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{p}header declares {ndim} dimensions but the file ends after {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    items = int(np.prod(shape, dtype=object))  # Python ints: no overflow on hostile dims
    expected, payload = items * dtype.itemsize, len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        size = f" of {dtype.itemsize} bytes ({expected} bytes)" if dtype.itemsize > 1 else ""
        raise IdxFormatError(
            f"{p}{what}: header says {items} items{size}, payload has {payload} bytes")
    arr = np.frombuffer(data, dtype=dtype, count=items, offset=header).reshape(shape)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))  # native order; downstream code expects it
    arr.flags.writeable = False  # uint8 results share memory with `data`: keep them read-only
    return arr


def write_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array (1-D labels, 3-D images, any ndim >= 1) as raw IDX bytes."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"write_idx writes uint8 only, got {a.dtype}")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"write_idx needs 1 to 255 dimensions, got {a.ndim}")
    header = struct.pack(f">HBB{a.ndim}I", 0, 0x08, a.ndim, *a.shape)
    return header + np.ascontiguousarray(a).tobytes()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    """SHA-256 of each file's decompressed bytes: the ``hashes=`` override for test data."""
    return {n: sha256_hex(_gunzip_if_needed(b, n)) for n, b in files.items()}


def verify_sha256(name: str, raw_bytes: bytes, hashes: Mapping[str, str] | None = None) -> str:
    """Check decompressed bytes against the known hash; return the digest."""
    known = hashes if hashes is not None else {n: i.sha256 for n, i in MNIST_FILES.items()}
    if name not in known:
        raise ChecksumError(f"{name}: no known SHA-256 for this file name")
    actual = sha256_hex(raw_bytes)
    if actual != known[name].lower():
        raise ChecksumError(
            f"{name}: SHA-256 mismatch: expected {known[name]}, got {actual} "
            f"({len(raw_bytes)} bytes)")
    return actual


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class MnistSplit:
    """A checked (images, labels) pair; ``image_shape`` records (H, W)."""
    name: str
    images: np.ndarray  # (n, H, W)
    labels: np.ndarray  # (n,) integers in 0..9
    image_shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.labels)


def load_pair(images: np.ndarray, labels: np.ndarray, name: str) -> MnistSplit:
    """Check that images and labels belong together; raise ValueError if not."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or 0 in images.shape[1:]:
        raise ValueError(f"{name}: images must be 3-D (n, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{name}: labels must be 1-D, got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError(f"{name}: no examples")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers, got {labels.dtype}")
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} labels outside 0..9, "
                         f"e.g. {labels[bad][:5].tolist()}")
    return MnistSplit(name, images, labels, (int(images.shape[1]), int(images.shape[2])))


def load_splits(files: Mapping[str, bytes]) -> dict[str, MnistSplit]:
    """Parse the four files (raw or gzip) into checked {'train', 'test'} splits."""
    return {
        split: load_pair(parse_idx(files[img], img), parse_idx(files[lab], lab), split)
        for split, img, lab in (("train", TRAIN_IMAGES, TRAIN_LABELS),
                                ("test", TEST_IMAGES, TEST_LABELS))
    }


# Seven-segment layout on a 28x28 canvas: (row slice, col slice) per segment.
_SEGMENTS = {
    "a": (slice(4, 7), slice(9, 19)), "b": (slice(4, 15), slice(16, 19)),
    "c": (slice(13, 24), slice(16, 19)), "d": (slice(21, 24), slice(9, 19)),
    "e": (slice(13, 24), slice(9, 12)), "f": (slice(4, 15), slice(9, 12)),
    "g": (slice(13, 16), slice(9, 19)),
}
_DIGIT_SEGMENTS = ["abcdef", "bc", "abdeg", "abcdg", "bcfg",
                   "acdfg", "acdefg", "abc", "abcdefg", "abcdfg"]


def _digit_templates(classes: int) -> np.ndarray:
    t = np.zeros((classes, 28, 28), np.float32)
    for k in range(classes):
        for seg in _DIGIT_SEGMENTS[k]:
            t[(k, *_SEGMENTS[seg])] = 1.0
    return t


def synthetic_mnist(n_train: int, n_test: int, seed: int, classes: int = 10,
                    gzip: bool = False) -> dict[str, bytes]:
    """Small, learnable MNIST look-alikes keyed by the four canonical names.

    Class k is digit k drawn as a seven-segment figure, shifted up to 3 px, with random
    stroke intensity and Gaussian noise: distinct enough for a linear model to reach far
    above chance, varied enough that a model must generalise. Labels are balanced.
    With ``gzip=True`` the values are gzip bytes (deterministic: mtime 0); keys stay the
    same. Same arguments, same bytes.
    """
    if not 2 <= classes <= 10:
        raise ValueError(f"classes must be 2..10, got {classes}")
    rng = np.random.default_rng(seed)
    templates = _digit_templates(classes)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % classes).astype(np.uint8)
        images = np.empty((n, 28, 28), np.float32)
        shifts = rng.integers(-3, 4, size=(n, 2))
        for i in range(n):
            images[i] = np.roll(templates[labels[i]], tuple(shifts[i]), axis=(0, 1))
        images *= rng.uniform(150, 255, size=(n, 1, 1)).astype(np.float32)
        images += rng.normal(0, 30, size=images.shape).astype(np.float32)
        return np.clip(images, 0, 255).astype(np.uint8), labels

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    raw = {TRAIN_IMAGES: write_idx(xtr), TRAIN_LABELS: write_idx(ytr),
           TEST_IMAGES: write_idx(xte), TEST_LABELS: write_idx(yte)}
    if gzip:
        raw = {n: _gzip.compress(b, mtime=0) for n, b in raw.items()}
    return raw


def _check_url(url: str) -> None:
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https" or (u.scheme == "http" and u.hostname in _LOCAL_HOSTS):
        return
    # file:// and ftp:// would also be opened by urlopen; a mirror list must not be a way
    # to read local files or talk plain text to the internet.
    raise ValueError(f"refusing {u.scheme or 'scheme-less'} URL: https required "
                     "(plain http only for localhost)")


def download(name: str, mirrors: Sequence[str] | None = None, timeout: float = 60,
             progress: Callable[[str], None] | None = None,
             hashes: Mapping[str, str] | None = None,
             max_bytes: int = MAX_BYTES) -> bytes:
    """Fetch ``<mirror><name>.gz`` from the first mirror that delivers verified bytes.

    Returns the decompressed, SHA-256-verified bytes. ``mirrors`` defaults to
    DEFAULT_MIRRORS as it is at call time. Network errors, bad gzip, oversize and checksum
    mismatches all move on to the next mirror; if none succeeds, DownloadError lists them.
    """
    say = progress or (lambda msg: None)
    known = hashes if hashes is not None else {n: i.sha256 for n, i in MNIST_FILES.items()}
    if name not in known:  # fail before touching the network
        raise ChecksumError(f"{name}: no known SHA-256 for this file name")
    failures: list[tuple[str, str]] = []
    for base in DEFAULT_MIRRORS if mirrors is None else mirrors:
        url = base.rstrip("/") + "/" + name + ".gz"
        try:
            _check_url(url)
            say(f"{name}: downloading {url}")
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = _read_capped(resp, max_bytes)
            if body is None:
                raise ValueError(f"response larger than {max_bytes} bytes")
            # Some servers hand out the file already decompressed; the hash decides.
            data = _gunzip_if_needed(body, name, max_bytes)
            verify_sha256(name, data, known)
        except (OSError, HTTPException, ValueError) as e:
            # URLError/HTTPError/timeouts are OSErrors; IdxFormatError/ChecksumError are
            # ValueErrors. Anything else is a bug in our code and should surface.
            failures.append((url, f"{type(e).__name__}: {e}"))
            say(f"{name}: {url} failed: {e}")
            continue
        say(f"{name}: ok from {url} ({len(data)} bytes)")
        return data
    raise DownloadError(name, failures)


def load_local_dir(path: str | os.PathLike, verify: bool = True,
                   hashes: Mapping[str, str] | None = None,
                   max_bytes: int = MAX_BYTES) -> dict[str, bytes]:
    """Read the four MNIST files from a folder, each as ``<name>.gz`` or raw ``<name>``.

    Returns decompressed bytes keyed by name, SHA-256-verified unless ``verify=False``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} does not exist or is not a folder "
                                f"(set by {ENV_DIR} or passed in)")
    found: dict[str, Path] = {}
    for name in MNIST_FILES:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                found[name] = candidate
                break
    missing = [n for n in MNIST_FILES if n not in found]
    if missing:
        present = sorted(p.name for p in folder.iterdir()) or ["(empty)"]
        raise FileNotFoundError(
            f"MNIST folder {folder} lacks {', '.join(missing)} (as <name>.gz or <name>); "
            f"it holds: {', '.join(present)}")
    out = {}
    for name, file in found.items():
        data = _gunzip_if_needed(file.read_bytes(), file.name, max_bytes)
        if verify:
            verify_sha256(name, data, hashes)
        out[name] = data
    return out


def fetch(local_dir: str | os.PathLike | None = None, *,
          mirrors: Sequence[str] | None = None, hashes: Mapping[str, str] | None = None,
          timeout: float = 60, progress: Callable[[str], None] | None = None,
          ) -> dict[str, bytes]:
    """All four files, verified: from ``local_dir`` or $STEPML_MNIST_DIR if set, else the web."""
    local_dir = local_dir or os.environ.get(ENV_DIR)
    if local_dir:
        return load_local_dir(local_dir, hashes=hashes)
    return {n: download(n, mirrors, timeout, progress, hashes) for n in MNIST_FILES}
