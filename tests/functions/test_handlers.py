"""Each handler on moto, driven by the very events in events/ that `sam local invoke -e` uses.

The events form a chain: each step's output is what the next event already contains, so
these tests also prove the sample events are real.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from stepml import trigger
from stepml.errors import PayloadError
from stepml.runs import RunPaths
from tests.conftest import FakeContext, event, load_handler

S3_OBJECT = event("start_run")["Records"][0]["s3"]
BUCKET = S3_OBJECT["bucket"]["name"]
TRIGGER_KEY = S3_OBJECT["object"]["key"]
RUN_ID = event("prepare_data")["run_id"]
TRIGGER = {
    "version": "1", "name": "mnist-demo",
    "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "data/mnist/"},
    "model": {"type": "MULTICLASS", "algorithm": "linear", "seed": 1},
}


@pytest.fixture
def s3(monkeypatch, synthetic_files):
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for name, body in synthetic_files.items():
            client.put_object(Bucket=BUCKET, Key=f"data/mnist/{name}.gz", Body=body)
        yield client


@pytest.fixture
def state_machine(s3, monkeypatch):
    sfn = boto3.client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/stepml-test"
    arn = sfn.create_state_machine(
        name="pipeline", roleArn=role,
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return sfn, arn


def put_trigger(s3, document) -> dict:
    """Upload the trigger to a versioned bucket; return the sample S3 event for that version."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=BUCKET, Key=TRIGGER_KEY, Body=json.dumps(document).encode())["VersionId"]
    start = event("start_run")
    start["Records"][0]["s3"]["object"]["versionId"] = version
    return start


def test_start_run_starts_one_execution_named_after_the_object_version(s3, state_machine):
    sfn, arn = state_machine
    start = put_trigger(s3, TRIGGER)
    version = start["Records"][0]["s3"]["object"]["versionId"]
    handler = load_handler("start_run")
    first = handler(start, FakeContext())["results"][0]
    again = handler(start, FakeContext())["results"][0]  # S3 delivers at least once

    run_id = trigger.run_id_for(BUCKET, TRIGGER_KEY, version, "mnist-demo")
    assert first["outcome"] == "started" and first["run_id"] == run_id
    assert again["outcome"] == "duplicate"
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in executions] == [run_id]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=RunPaths(run_id).trigger)["Body"].read())
    assert stored["model"]["engine"] == "builtin"  # validated, defaults filled in


def test_start_run_rejects_a_bad_trigger_next_to_it_and_starts_nothing(s3, state_machine):
    sfn, arn = state_machine
    start = put_trigger(s3, {**TRIGGER, "model": {"type": "MULTICLASS", "algorithm": "svm"}})
    result = load_handler("start_run")(start, FakeContext())["results"][0]

    assert result["outcome"] == "rejected"
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=trigger.rejection_key(TRIGGER_KEY))["Body"].read())
    assert "algorithm" in record["reason"]
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []


def test_step_handlers_chain_through_the_sample_events(s3):
    s3.put_object(Bucket=BUCKET, Key=RunPaths(RUN_ID).trigger, Body=json.dumps(trigger.validate(TRIGGER)))

    prepared = load_handler("prepare_data")(event("prepare_data"), FakeContext())
    assert prepared["files"] == event("create_datasource")["data"]["files"]

    datasource = load_handler("create_datasource")(event("create_datasource"), FakeContext())
    assert datasource == event("train")["datasource"]

    training = load_handler("train")(event("train"), FakeContext())
    expected = event("check_training")["training"]
    assert {k: training[k] for k in ("job_id", "status", "model", "polls")} == \
        {k: expected[k] for k in ("job_id", "status", "model", "polls")}
    assert load_handler("check_training")(event("check_training"), FakeContext())["polls"] == 1

    prediction = load_handler("batch_predict")(event("batch_predict"), FakeContext())
    fanned_out = {k: v for k, v in event("score")["prediction"].items() if k != "map_run"}
    assert prediction == fanned_out
    # The Distributed Map's items: each shard under the datasource's shards/ prefix.
    shard_event = event("predict_shard")
    first_shard = shard_event["shard"]
    for first_row in range(0, 500, 125):
        shard = first_shard.replace("shard-000000000000-", f"shard-{first_row:012d}-")
        part = load_handler("predict_shard")({**shard_event, "shard": shard}, FakeContext())
        assert part["rows"] == 125

    scored = load_handler("score")(event("score"), FakeContext())
    assert scored["accuracy"] > 0.8  # synthetic digits are easy; chance is 0.1
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=RunPaths(RUN_ID).report)["Body"].read())
    assert report["metrics"]["MulticlassAvgFScore"] == report["metrics"]["macro_f1"]
    assert set(report["seconds_per_step"]) >= {"PrepareData", "CreateDataSource", "Train", "BatchPredict"}
    assert report["batch_prediction"]["shards"] == 4 and report["batch_prediction"]["invalid_rows"] == 0
    status = json.loads(s3.get_object(Bucket=BUCKET, Key=RunPaths(RUN_ID).status)["Body"].read())
    assert status["state"] == "SUCCEEDED"
    assert load_handler("check_batch_prediction")(event("check_batch_prediction"), FakeContext())["status"] == "COMPLETED"


def test_record_failure_writes_the_failure_record(s3):
    result = load_handler("record_failure")(event("record_failure"), FakeContext())
    failure = json.loads(s3.get_object(Bucket=BUCKET, Key=result["failure"])["Body"].read())
    assert failure["error"] == "DataError"
    assert "lacks t10k-labels" in failure["cause"]  # the message, without the stack trace


def test_start_run_reports_a_vanished_trigger_version_as_a_rejection(s3, state_machine):
    put_trigger(s3, TRIGGER)
    result = load_handler("start_run")(event("start_run"), FakeContext())["results"][0]  # a version that is gone
    assert result["outcome"] == "rejected" and "does not exist" in result["reason"]


@pytest.mark.parametrize("run_id", ["../other", "a/b", "", None, 7, "x" * 81])
def test_a_step_refuses_a_run_id_that_could_escape_its_prefix(s3, run_id):
    with pytest.raises(PayloadError, match="run_id"):
        load_handler("prepare_data")({**event("prepare_data"), "run_id": run_id}, FakeContext())


def test_check_training_fails_the_step_when_the_engine_reports_failed(s3):
    s3.put_object(Bucket=BUCKET, Key=RunPaths(RUN_ID).trigger, Body=json.dumps(trigger.validate(TRIGGER)))
    # no training record was ever written for this run: the builtin engine reports FAILED
    with pytest.raises(Exception, match="no training record") as raised:
        load_handler("check_training")(event("check_training"), FakeContext())
    assert type(raised.value).__name__ == "TrainingFailed"


@pytest.mark.parametrize("record, reason", [
    ({"eventName": "not-s3"}, "not an S3 object event"),
    ({"s3": {"bucket": {"name": BUCKET}, "object": {"key": "triggers/a/../b.json"}}}, "invalid S3 key"),
    ({"s3": {"bucket": {"name": "someone-else"}, "object": {"key": "triggers/x.json"}}}, "not this stack's"),
    ({"s3": {"bucket": {"name": BUCKET}, "object": {"key": "data/x.json"}}}, "not a triggers/"),
])
def test_start_run_ignores_records_it_must_not_act_on(s3, state_machine, record, reason):
    sfn, arn = state_machine
    result = load_handler("start_run")({"Records": [record]}, FakeContext())["results"][0]
    assert result["outcome"] == "ignored" and reason in result["reason"]
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []
