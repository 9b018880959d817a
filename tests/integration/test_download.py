"""source: download — PrepareData fetches the IDX files from the configured mirrors (here a real
HTTP server on 127.0.0.1), checks their SHA-256 and caches them in the bucket."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from stepml import mnist
from stepml.local.runner import run_trigger
from stepml.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mirror(tmp_path, synthetic_files, monkeypatch):
    """Serves the synthetic files under /good/; /empty/ answers 404 for everything."""
    (tmp_path / "good").mkdir()
    (tmp_path / "empty").mkdir()
    for name, body in synthetic_files.items():
        (tmp_path / "good" / f"{name}.gz").write_bytes(body)
    # The pipeline checks the hashes it knows; for synthetic data those are the synthetic ones.
    hashes = mnist.file_hashes(synthetic_files)
    monkeypatch.setattr(mnist, "MNIST_FILES", {
        n: mnist.FileInfo(hashes[n], info.size) for n, info in mnist.MNIST_FILES.items()})
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_falls_through_mirrors_verifies_and_caches(mirror, tmp_path):
    mirrors = f"{mirror}/empty/,{mirror}/good/"
    trigger = {"version": "1", "dataset": {"kind": "mnist", "source": "download"},
               "model": {"type": "MULTICLASS", "algorithm": "linear"}}
    with LocalStack(ROOT, parameters={"MnistMirrors": mirrors}) as stack:
        outcome = run_trigger(stack, json.dumps(trigger).encode(), "dl.json", tmp_path, say=lambda _: None)
        cached = {o["Key"] for o in stack.client("s3").list_objects_v2(
            Bucket=stack.bucket, Prefix="cache/mnist/")["Contents"]}

    assert outcome.status == "SUCCEEDED", outcome.failure
    assert outcome.report["metrics"]["accuracy"] > 0.8
    assert cached == {f"cache/mnist/{name}" for name in mnist.MNIST_FILES}


def test_a_mirror_serving_wrong_bytes_fails_the_run_with_the_checksum(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_FILES", {
        n: mnist.FileInfo("0" * 64, info.size) for n, info in mnist.MNIST_FILES.items()})
    trigger = {"version": "1", "dataset": {"kind": "mnist", "source": "download"},
               "model": {"type": "MULTICLASS", "algorithm": "linear"}}
    with LocalStack(ROOT, parameters={"MnistMirrors": f"{mirror}/good/"}) as stack:
        outcome = run_trigger(stack, json.dumps(trigger).encode(), "bad-mirror.json", tmp_path,
                              say=lambda _: None)

    assert outcome.status == "FAILED"
    assert outcome.failure["failed_step"] == "PrepareData"
    assert "SHA-256" in outcome.failure["cause"] or "sha256" in outcome.failure["cause"].lower()
