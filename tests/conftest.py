"""Shared fixtures: fake AWS credentials (nothing may reach a real account), synthetic MNIST."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest

from stepml import mnist

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "stepml", "POWERTOOLS_METRICS_NAMESPACE": "StepMLTest",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def synthetic_files() -> dict[str, bytes]:
    """Small learnable MNIST-shaped IDX files (gzip), keyed by canonical name."""
    return mnist.synthetic_mnist(n_train=2000, n_test=500, seed=7, gzip=True)


def event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def load_handler(function_dir: str):
    """Import functions/<dir>/app.py under a unique name and return its lambda_handler."""
    path = ROOT / "functions" / function_dir / "app.py"
    spec = importlib.util.spec_from_file_location(f"handler_{function_dir}_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


class FakeContext:
    function_name = "test-function"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000
