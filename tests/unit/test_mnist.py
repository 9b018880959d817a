"""Tests for stepml.mnist: IDX parsing, checks, local folders and mirror fallback.

Downloads run against a real http.server on 127.0.0.1 (ephemeral port) serving small
synthetic files, so the urllib path is exercised without the internet.
"""

import gzip
import http.server
import os
import struct
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from stepml import mnist
from stepml.mnist import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    ChecksumError,
    DownloadError,
    IdxFormatError,
)


@pytest.fixture(scope="module")
def files():
    return mnist.synthetic_mnist(n_train=200, n_test=50, seed=0)


@pytest.fixture(scope="module")
def hashes(files):
    return mnist.file_hashes(files)


def idx(code, dims, payload):
    return struct.pack(f">HBB{len(dims)}I", 0, code, len(dims), *dims) + payload


# --- parse_idx / write_idx ---------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (3, 4, 6), (0,)])
def test_round_trip(shape):
    a = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    raw = mnist.write_idx(a)
    for data in (raw, gzip.compress(raw), bytearray(raw), memoryview(raw)):
        b = mnist.parse_idx(data)
        assert b.dtype == np.uint8 and b.shape == shape
        np.testing.assert_array_equal(a, b)
        assert not b.flags.writeable


def test_parse_does_not_alias_mutable_input():
    buf = bytearray(mnist.write_idx(np.arange(4, dtype=np.uint8)))
    arr = mnist.parse_idx(buf)
    buf[-1] = 99
    assert arr.tolist() == [0, 1, 2, 3]


def test_canonical_headers():
    assert mnist.write_idx(np.zeros((2, 28, 28), np.uint8))[:4] == b"\x00\x00\x08\x03"
    assert mnist.write_idx(np.zeros(2, np.uint8))[:4] == b"\x00\x00\x08\x01"


def test_multibyte_dtypes_are_big_endian_on_disk():
    a = mnist.parse_idx(idx(0x0C, [3], struct.pack(">3i", 1, -2, 70000)))
    assert a.tolist() == [1, -2, 70000] and a.dtype == np.int32
    f = mnist.parse_idx(idx(0x0D, [2], struct.pack(">2f", 1.5, -0.25)))
    assert f.tolist() == [1.5, -0.25]


def test_write_idx_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        mnist.write_idx(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        mnist.write_idx(np.uint8(3))


@pytest.mark.parametrize("data, name, message", [
    (b"\x00\x00", None, "too short for an IDX header: 2 bytes"),
    (b"\x12\x34\x08\x01" + b"\x00" * 8, None, "bad magic 0x12340801"),
    (idx(0x07, [3], b"abc"), None, "unknown IDX dtype code 0x07"),
    (b"\x00\x00\x08\x00", None, "header declares 0 dimensions"),
    (b"\x00\x00\x08\x03" + b"\x00" * 8, None,
     "header declares 3 dimensions but the file ends after 12 bytes"),
    (idx(0x08, [60000], b"\x01" * 59990), TRAIN_LABELS,
     "train-labels-idx1-ubyte: truncated: header says 60000 items, payload has 59990 bytes"),
    (idx(0x08, [2, 2, 2], b"\x00" * 9), None,
     "trailing bytes: header says 8 items, payload has 9 bytes"),
    (idx(0x0C, [2], b"\x00" * 7), None,
     "truncated: header says 2 items of 4 bytes (8 bytes), payload has 7 bytes"),
    # The MNIST name says what the file must be: a labels file with an images header...
    (idx(0x08, [1, 2, 2], b"\x00" * 4), TEST_LABELS,
     ("t10k-labels-idx1-ubyte: expected magic 0x00000801 (uint8, 1-D) for this name, "
      "got 0x00000803")),
    # ... and an images file holding int32 is wrong even with a consistent payload.
    (idx(0x0C, [1, 1, 1], b"\x00" * 4), TEST_IMAGES, "expected magic 0x00000803"),
    (b"\x1f\x8b\x08\x00garbage", "x.gz", "x.gz: corrupt gzip data"),
    (gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100)[:-12], None, "corrupt gzip data"),
])
def test_malformed_idx(data, name, message):
    with pytest.raises(IdxFormatError) as e:
        mnist.parse_idx(data, name=name)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_gzip_bomb_is_capped(tmp_path, files):
    write_dir(tmp_path, files)
    (tmp_path / TEST_LABELS).unlink()
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(b"\x00" * 5000))  # ~40 bytes
    with pytest.raises(IdxFormatError, match="decompresses to more than 1000 bytes"):
        mnist.load_local_dir(tmp_path, verify=False, max_bytes=1000)


# --- synthetic data ----------------------------------------------------------------------

def test_synthetic_is_deterministic_balanced_and_valid(files):
    assert set(files) == set(mnist.MNIST_FILES)
    assert mnist.synthetic_mnist(200, 50, seed=0) == files
    assert mnist.synthetic_mnist(200, 50, seed=1) != files
    splits = mnist.load_splits(files)
    assert splits["train"].images.shape == (200, 28, 28)
    assert splits["test"].image_shape == (28, 28) and len(splits["test"]) == 50
    assert np.bincount(splits["train"].labels).tolist() == [20] * 10
    gz = mnist.synthetic_mnist(200, 50, seed=0, gzip=True)
    assert all(v[:2] == b"\x1f\x8b" for v in gz.values())
    assert mnist.file_hashes(gz) == mnist.file_hashes(files)


def test_synthetic_classes_option():
    s = mnist.load_splits(mnist.synthetic_mnist(30, 9, seed=2, classes=3))
    assert set(s["train"].labels.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError):
        mnist.synthetic_mnist(10, 10, seed=0, classes=11)


def test_synthetic_is_learnable():
    # Few steps of softmax regression must beat chance (10%) by far on held-out data.
    s = mnist.load_splits(mnist.synthetic_mnist(1000, 300, seed=3))
    X = s["train"].images.reshape(1000, -1) / 255.0
    Xt = s["test"].images.reshape(300, -1) / 255.0
    Y = np.eye(10)[s["train"].labels]
    W = np.zeros((784, 10))
    for _ in range(10):
        for i in range(0, 1000, 50):
            z = X[i:i + 50] @ W
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            W -= 0.5 * X[i:i + 50].T @ (p - Y[i:i + 50]) / 50
    accuracy = ((Xt @ W).argmax(1) == s["test"].labels).mean()
    assert accuracy > 0.7, accuracy


# --- load_pair ---------------------------------------------------------------------------

def test_load_pair_records_any_image_size():
    split = mnist.load_pair(np.zeros((4, 8, 6), np.uint8), np.array([0, 9, 3, 3]), "tiny")
    assert split.image_shape == (8, 6) and split.name == "tiny" and len(split) == 4


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((3, 28, 28)), np.zeros(2, int), "train: 3 images but 2 labels"),
    (np.zeros((3, 784)), np.zeros(3, int), "images must be 3-D"),
    (np.zeros((2, 28, 28)), np.zeros((2, 1), int), "labels must be 1-D"),
    (np.zeros((3, 28, 28)), np.array([0, 10, -1]), "2 labels outside 0..9, e.g. [10, -1]"),
    (np.zeros((1, 28, 28)), np.array([1.0]), "labels must be integers"),
    (np.zeros((0, 28, 28)), np.zeros(0, int), "no examples"),
])
def test_load_pair_rejects(images, labels, message):
    with pytest.raises(ValueError) as e:
        mnist.load_pair(images, labels, "train")
    assert message in str(e.value)


# --- checksums and local folders ---------------------------------------------------------

def test_verify_sha256():
    raw = b"\x00\x00\x08\x01\x00\x00\x00\x00"
    digest = mnist.sha256_hex(raw)
    assert mnist.verify_sha256("f", raw, {"f": digest}) == digest
    with pytest.raises(ChecksumError) as e:
        mnist.verify_sha256(TRAIN_LABELS, raw)
    msg = str(e.value)
    assert TRAIN_LABELS in msg and mnist.MNIST_FILES[TRAIN_LABELS].sha256 in msg and digest in msg
    with pytest.raises(ChecksumError, match="no known SHA-256"):
        mnist.verify_sha256("other", raw)


def write_dir(folder: Path, files, gz_names=()):
    for name, data in files.items():
        if name in gz_names:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def test_load_local_dir_mixed_gz_and_raw(tmp_path, files, hashes):
    write_dir(tmp_path, files, gz_names={TRAIN_IMAGES, TEST_LABELS})
    loaded = mnist.load_local_dir(tmp_path, hashes=hashes)
    assert loaded == files
    # Default hashes are the real MNIST ones: synthetic files fail, unless verify=False.
    with pytest.raises(ChecksumError, match=TRAIN_IMAGES):
        mnist.load_local_dir(tmp_path)
    assert mnist.load_local_dir(tmp_path, verify=False) == files


def test_load_local_dir_missing_files(tmp_path, files):
    write_dir(tmp_path, {TRAIN_IMAGES: files[TRAIN_IMAGES]})
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(FileNotFoundError) as e:
        mnist.load_local_dir(tmp_path, verify=False)
    msg = str(e.value)
    assert f"lacks {TRAIN_LABELS}, {TEST_IMAGES}, {TEST_LABELS}" in msg
    assert f"holds: notes.txt, {TRAIN_IMAGES}" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mnist.load_local_dir(tmp_path / "nope")


def test_fetch_prefers_env_dir(tmp_path, monkeypatch, files, hashes):
    write_dir(tmp_path, files, gz_names=set(files))
    monkeypatch.setenv(mnist.ENV_DIR, str(tmp_path))
    # Mirrors that would fail prove the network is not used.
    assert mnist.fetch(mirrors=["https://invalid.invalid/"], hashes=hashes) == files


# --- download against a local HTTP server ------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict] = {}  # path -> body; anything else is a 404

    def do_GET(self):
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1; yields (base_url, routes dict to fill)."""
    handler = type("Handler", (_Handler,), {"routes": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve(routes, mirror, files, names=None):
    for name in names or files:
        routes[f"/{mirror}/{name}.gz"] = gzip.compress(files[name])


def test_download_success(server, files, hashes):
    base, routes = server
    serve(routes, "m1", files)
    messages = []
    data = mnist.download(TRAIN_LABELS, [f"{base}/m1/"], timeout=5, progress=messages.append,
                          hashes=hashes)
    assert data == files[TRAIN_LABELS]
    assert any("ok from" in m for m in messages)
    # fetch() without a local dir downloads all four.
    assert mnist.fetch(mirrors=[f"{base}/m1"], hashes=hashes, timeout=5) == files


def test_download_falls_through_404(server, files, hashes):
    base, routes = server
    serve(routes, "m2", files)  # m1 serves nothing
    data = mnist.download(TEST_IMAGES, [f"{base}/m1/", f"{base}/m2/"], timeout=5,
                          hashes=hashes)
    assert data == files[TEST_IMAGES]


def test_download_falls_through_checksum_mismatch(server, files, hashes):
    base, routes = server
    routes[f"/m1/{TEST_LABELS}.gz"] = gzip.compress(files[TRAIN_LABELS])  # wrong file
    serve(routes, "m2", files)
    messages = []
    data = mnist.download(TEST_LABELS, [f"{base}/m1/", f"{base}/m2/"], timeout=5,
                          progress=messages.append, hashes=hashes)
    assert data == files[TEST_LABELS]
    assert any("m1" in m and "SHA-256 mismatch" in m for m in messages)


def test_download_all_mirrors_fail(server, files, hashes):
    base, routes = server
    routes[f"/bad/{TRAIN_LABELS}.gz"] = b"\x1f\x8b not really gzip"
    routes[f"/big/{TRAIN_LABELS}.gz"] = gzip.compress(b"\x00" * 5000)  # a tiny gzip bomb
    routes[f"/huge/{TRAIN_LABELS}.gz"] = b"\x00" * 101
    mirrors = [f"{base}/missing/", f"{base}/bad/", "http://example.com/mnist/",
               "file:///etc/", f"{base}/big/", f"{base}/huge/"]
    with pytest.raises(DownloadError) as e:
        mnist.download(TRAIN_LABELS, mirrors, timeout=5, hashes=hashes, max_bytes=100)
    msg = str(e.value)
    assert f"{base}/missing/{TRAIN_LABELS}.gz: HTTPError: HTTP Error 404" in msg
    assert f"{base}/bad/{TRAIN_LABELS}.gz: IdxFormatError" in msg and "corrupt gzip" in msg
    assert "example.com/mnist/" in msg and "refusing http URL" in msg
    assert "refusing file URL" in msg
    assert f"{base}/big/{TRAIN_LABELS}.gz" in msg and "more than 100 bytes" in msg
    assert f"{base}/huge/{TRAIN_LABELS}.gz: ValueError: response larger than 100 bytes" in msg
    assert len(e.value.failures) == len(mirrors)


def test_download_unknown_name_fails_before_network():
    with pytest.raises(ChecksumError, match="no known SHA-256"):
        mnist.download("nope", ["https://invalid.invalid/"])


def test_default_mirrors_are_https():
    assert mnist.DEFAULT_MIRRORS
    assert all(m.startswith("https://") and m.endswith("/") for m in mnist.DEFAULT_MIRRORS)


# --- the real files, when this machine has them --------------------------------------------

def _real_dir():
    beside_the_clone = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"
    for d in (os.environ.get(mnist.ENV_DIR), beside_the_clone):
        if d and Path(d).is_dir():
            return Path(d)
    return None


@pytest.mark.skipif(_real_dir() is None,
                    reason=f"real MNIST not present (set ${mnist.ENV_DIR} to a folder with it)")
def test_real_mnist():
    files = mnist.load_local_dir(_real_dir())  # verifies the README hashes
    assert {n: len(b) for n, b in files.items()} == {
        n: info.size for n, info in mnist.MNIST_FILES.items()}
    splits = mnist.load_splits(files)
    assert splits["train"].images.shape == (60000, 28, 28)
    assert splits["test"].images.shape == (10000, 28, 28)
    assert splits["test"].labels.shape == (10000,)
    assert np.bincount(splits["train"].labels).min() > 5000
