"""The local stack as the integration tests use it: built from the repository's template.yaml,
with dummy credentials so that no real AWS account can ever be reached."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepml.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


MNIST_PREFIX = "data/mnist/"


@contextlib.contextmanager
def local_stack(mnist_files: dict[str, bytes] | None = None) -> Iterator[LocalStack]:
    """The stack; with ``mnist_files`` (name -> gzipped IDX) also uploaded to data/mnist/."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            mp.setenv(k, v)
        with LocalStack(ROOT) as local:
            for name, body in (mnist_files or {}).items():
                local.client("s3").put_object(Bucket=local.bucket, Key=f"{MNIST_PREFIX}{name}.gz", Body=body)
            yield local
