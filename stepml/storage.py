"""A small, typed view of the run bucket: bytes, JSON and numpy arrays under keys.

Every step talks to S3 through this class, so that keys are checked in one place and the
boto3 client is created lazily (inside a moto mock when running locally).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from stepml.errors import DataError, TransientError

MAX_JSON_BYTES = 16 * 1024 * 1024  # reports and descriptors are small; refuse giant JSON
#: S3 error codes that may pass on their own (botocore has already retried them a few times).
TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                   "ThrottlingException", "RequestLimitExceeded", "503", "500"}


@contextlib.contextmanager
def transient_errors(operation: str, uri: str):
    """Turn S3's passing failures into TransientError (retried by the state machine); every
    other error (access denied, no such key, ...) goes through unchanged."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, ResponseStreamingError

    try:
        yield
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in TRANSIENT_CODES or status >= 500:
            raise TransientError(f"S3 {operation} {uri}: {code or status} "
                                 f"({err.response.get('Error', {}).get('Message', 'no message')})") from None
        raise
    except (ConnectionError, HTTPClientError, ResponseStreamingError) as err:
        raise TransientError(f"S3 {operation} {uri}: {type(err).__name__}: {err}") from None


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or confuse readers ('..', '//', absolute)."""
    if not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"invalid S3 key {key!r}")
    parts = key.split("/")
    if any(p in (".", "..") for p in parts) or "" in parts[:-1]:
        raise ValueError(f"invalid S3 key {key!r}: no '.', '..' or empty path segments")
    if any(ord(c) < 32 for c in key):
        raise ValueError(f"invalid S3 key {key!r}: control characters")
    return key


class WriteConflict(Exception):
    """A conditional write lost: the object changed (or appeared) since it was read."""


class MissingObject(DataError):
    """The object (or the requested version of it) is not in the bucket."""


@dataclass
class Storage:
    bucket: str
    _client: Any = field(default=None, repr=False)

    @property
    def client(self):
        if self._client is None:
            import boto3  # imported late: the core is usable without AWS

            self._client = boto3.client("s3")
        return self._client

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)

    # -- reading ---------------------------------------------------------------------------
    def head(self, key: str) -> dict | None:
        """Metadata of an object, or None when it does not exist."""
        try:
            with transient_errors("HeadObject", self.uri(key)):
                return self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except self.client.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get_bytes(self, key: str, *, max_bytes: int | None = None, version_id: str | None = None) -> bytes:
        obj = self._get_object(key, version_id)
        if max_bytes is not None and obj["ContentLength"] > max_bytes:
            raise DataError(
                f"{self.uri(key)} is {obj['ContentLength']:,} bytes; the limit is {max_bytes:,}"
            )
        with transient_errors("GetObject", self.uri(key)):
            return obj["Body"].read()

    def iter_chunks(self, key: str, *, version_id: str | None = None,
                    chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The object's bytes as a stream of chunks: large data is never held whole."""
        body = self._get_object(key, version_id)["Body"]
        try:
            with transient_errors("GetObject", self.uri(key)):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def _get_object(self, key: str, version_id: str | None) -> dict:
        kwargs = {"Bucket": self.bucket, "Key": check_key(key)}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            with transient_errors("GetObject", self.uri(key)):
                return self.client.get_object(**kwargs)
        except self.client.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "NoSuchVersion", "404"):
                missing = f"version {version_id} of {self.uri(key)}" if version_id else self.uri(key)
                raise MissingObject(f"{missing} does not exist") from None
            raise

    def get_json(self, key: str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
        raw = self.get_bytes(key, max_bytes=max_bytes)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{self.uri(key)} is not valid JSON: {err}") from None

    def get_json_and_etag(self, key: str) -> tuple[Any, str | None]:
        """(JSON, ETag) of the object, or (None, None) when it does not exist: the ETag makes a
        later :meth:`put_bytes` conditional on nobody having changed it meanwhile."""
        try:
            obj = self._get_object(key, None)
        except MissingObject:
            return None, None
        with transient_errors("GetObject", self.uri(key)):
            raw = obj["Body"].read()
        try:
            return json.loads(raw), obj["ETag"]
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{self.uri(key)} is not valid JSON: {err}") from None

    def get_json_or(self, key: str, default: Any) -> Any:
        """The JSON at key, or default when there is no such object (one request, not two)."""
        try:
            return self.get_json(key)
        except MissingObject:
            return default

    def get_npy(self, key: str) -> np.ndarray:
        raw = self.get_bytes(key)
        try:
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as err:
            raise DataError(f"{self.uri(key)} is not a valid .npy array: {err}") from None

    def list_keys(self, prefix: str, limit: int | None = None) -> Iterator[str]:
        for obj in self.list_objects(prefix, limit):
            yield obj["Key"]

    def list_objects(self, prefix: str, limit: int | None = None) -> Iterator[dict]:
        """ListObjectsV2 entries (Key, Size, ETag, ...) under prefix, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        config = {"MaxItems": limit} if limit else {}
        with transient_errors("ListObjectsV2", self.uri(prefix)):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig=config):
                yield from page.get("Contents", [])

    # -- writing ---------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
                  if_match: str | None = None, if_none_match: bool = False) -> str:
        """One PUT (atomic: readers see the old object or the new one, never a part). With
        ``if_match`` (an ETag) or ``if_none_match`` it is S3's conditional write and raises
        :class:`WriteConflict` when the object changed or already exists.

        The body's CRC32 goes with it, computed here from the bytes in memory: S3 refuses the
        object if what arrives differs, and botocore sends the body as it is instead of
        streaming it through its aws-chunked checksum wrapper (which re-copies its buffer for
        every 1 MiB chunk when a body is read whole, as the local stack's S3 does: 25 s for a
        190 MB datasource table, against 0.5 s with the checksum given)."""
        conditions = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            with transient_errors("PutObject", self.uri(key)):
                self.client.put_object(
                    Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type,
                    ChecksumCRC32=crc32_base64(data), **conditions
                )
        except self.client.exceptions.ClientError as err:
            if conditions and err.response.get("Error", {}).get("Code") in ("PreconditionFailed",
                                                                              "ConditionalRequestConflict"):
                raise WriteConflict(f"{self.uri(key)} changed while it was being updated") from None
            raise
        return self.uri(key)

    def delete(self, key: str) -> None:
        """Remove the object (in a versioned bucket: a delete marker; its versions stay)."""
        with transient_errors("DeleteObject", self.uri(key)):
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def put_json(self, key: str, value: Any, **conditions: Any) -> str:
        body = json.dumps(value, indent=2, sort_keys=False, default=_json_default).encode()
        return self.put_bytes(key, body, "application/json", **conditions)

    def put_npy(self, key: str, array: np.ndarray) -> str:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        return self.put_bytes(key, buf.getvalue())


def _json_default(value: Any) -> Any:
    """Let numpy scalars and arrays appear in reports without ceremony."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def crc32_base64(data: bytes) -> str:
    """S3's ``x-amz-checksum-crc32`` of ``data``: the big-endian CRC-32, base64-encoded."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")
