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
