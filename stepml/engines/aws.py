"""The AWS clients the managed engines use, created in one place.

Engines never call ``boto3.client`` themselves: they ask :func:`client`. In AWS that is a plain
boto3 client (botocore validates every request against the service model before it is sent).
Tests install a factory with :func:`use_client_factory` that returns a real botocore client
whose requests, after that same validation, are answered by a stateful fake of the service.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

ClientFactory = Callable[[str], Any]

_lock = threading.Lock()
_factory: ClientFactory | None = None


def client(service: str) -> Any:
    """A client for ``service`` ("sagemaker", "machinelearning", ...)."""
    factory = _factory
    if factory is not None:
        return factory(service)
    import boto3

    return boto3.client(service)


@contextlib.contextmanager
def use_client_factory(factory: ClientFactory) -> Iterator[None]:
    """Within the block, :func:`client` returns ``factory(service)`` (tests, the local stack)."""
    global _factory
    with _lock:
        previous, _factory = _factory, factory
    try:
        yield
    finally:
        with _lock:
            _factory = previous


def client_error(err: BaseException) -> tuple[str, str] | None:
    """(code, message) of a botocore ClientError (the service's own words), None for any other error."""
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError):
        return None
    info = err.response.get("Error", {}) if isinstance(err.response, dict) else {}
    return str(info.get("Code") or ""), str(info.get("Message") or err)
