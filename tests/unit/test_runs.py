"""status.json is one object many steps update: conditional writes keep every update."""

import threading

import boto3
import pytest
from moto import mock_aws

from stepml.runs import RunPaths, write_status
from stepml.storage import Storage, WriteConflict


@pytest.fixture
def storage():
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="runs-test")
        yield Storage("runs-test")


def test_concurrent_writers_lose_no_step_record(storage):
    """Two writers (say a duplicate delivery and the step itself) update status.json at once,
    20 times each: a plain read-modify-write would drop records; every one is kept."""
    def writer(name):
        for i in range(20):
            write_status(storage, "r1", "RUNNING", f"{name}-{i}")

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = [s["step"] for s in storage.get_json(RunPaths("r1").status)["steps"]]
    assert sorted(steps) == sorted(f"{n}-{i}" for n in "ab" for i in range(20))


def test_a_conditional_write_against_a_stale_etag_is_refused(storage):
    storage.put_json("runs/r2/status.json", {"v": 1})
    _, etag = storage.get_json_and_etag("runs/r2/status.json")
    storage.put_json("runs/r2/status.json", {"v": 2})                 # someone else wrote meanwhile
    with pytest.raises(WriteConflict):
        storage.put_json("runs/r2/status.json", {"v": 3}, if_match=etag)
    with pytest.raises(WriteConflict):
        storage.put_json("runs/r2/status.json", {"v": 3}, if_none_match=True)
    assert storage.get_json("runs/r2/status.json") == {"v": 2}
