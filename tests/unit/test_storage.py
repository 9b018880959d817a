"""Keys are checked before any request, so no step can escape the prefix it was given."""

import pytest

from stepml.storage import check_key


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a/./b", "a//b", "a\\b", "a\x00b"])
def test_hostile_keys_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_ordinary_keys_pass():
    assert check_key("runs/x-1/report/report.json") == "runs/x-1/report/report.json"


def test_get_json_or_tells_a_missing_object_from_a_broken_one():
    import boto3
    from moto import mock_aws

    from stepml.errors import DataError
    from stepml.storage import Storage

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="storage-test")
        storage = Storage("storage-test")
        assert storage.get_json_or("runs/x/status.json", {}) == {}
        storage.put_bytes("runs/x/status.json", b"{not json")
        with pytest.raises(DataError, match="not valid JSON"):
            storage.get_json_or("runs/x/status.json", {})


@pytest.mark.parametrize("code, status, transient", [
    ("SlowDown", 503, True), ("InternalError", 500, True), ("ServiceUnavailable", 503, True),
    ("RequestTimeout", 400, True), ("AccessDenied", 403, False), ("InvalidRequest", 400, False),
])
def test_s3_errors_that_may_pass_become_transient_errors_and_the_rest_do_not(code, status, transient):
    import boto3
    from botocore.stub import Stubber

    from stepml.errors import TransientError
    from stepml.storage import Storage

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    storage = Storage("b", _client=client)
    with Stubber(client) as stub:
        stub.add_client_error("put_object", service_error_code=code, service_message="m", http_status_code=status)
        if transient:
            with pytest.raises(TransientError, match=f"S3 PutObject s3://b/runs/x/a.json: {code}"):
                storage.put_bytes("runs/x/a.json", b"{}")
        else:
            with pytest.raises(client.exceptions.ClientError, match=code):
                storage.put_bytes("runs/x/a.json", b"{}")


def test_a_missing_object_is_still_missing_not_transient():
    import boto3
    from botocore.stub import Stubber

    from stepml.storage import MissingObject, Storage

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        with pytest.raises(MissingObject, match="does not exist"):
            Storage("b", _client=client).get_bytes("data/x.csv")


def test_a_put_carries_the_crc32_of_its_bytes_and_sends_them_as_they_are():
    # The checksum S3 verifies is computed from the bytes in memory, and the body is not
    # wrapped in botocore's aws-chunked stream (slow to read whole, as the local stack does).
    import boto3
    from moto import mock_aws

    from stepml.storage import Storage, crc32_base64

    assert crc32_base64(b"hello") == "NhCmhg=="          # CRC-32 0x3610a686, big-endian, base64
    sent = []
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="storage-test")
        client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request))
        body = bytes(range(256)) * 5000
        Storage("storage-test", client).put_bytes("runs/x/blob.bin", body)
        assert Storage("storage-test", client).get_bytes("runs/x/blob.bin") == body
    (request,) = sent
    assert request.headers["x-amz-checksum-crc32"] == crc32_base64(body).encode()
    assert int(request.headers["Content-Length"]) == len(body)
    assert b"aws-chunked" not in request.headers.get("Content-Encoding", b"")
