"""Batch prediction's Distributed Map on the local stack: the real PredictShards state with its
listObjectsV2 ItemReader, one PredictShard Lambda per shard, concurrency and tolerance from the
trigger, and Score merging the parts - including shards that fail."""

from __future__ import annotations

import json

import pytest

from stepml import fanout
from stepml.local.runner import run_trigger
from tests.integration.stacks import local_stack
from tests.integration.test_pipeline import trigger_body

SHARD_ROWS = 100        # the synthetic test split's 500 rows -> 5 shards


@pytest.fixture(scope="module")
def stack(synthetic_files):
    with local_stack(synthetic_files) as local:
        yield local


def body(**batch_prediction) -> bytes:
    document = json.loads(trigger_body())
    document["dataset"]["rebuild"] = True
    document["batch_prediction"] = {"shard_rows": SHARD_ROWS, **batch_prediction}
    return json.dumps(document).encode()


def map_run(stack, outcome) -> dict:
    sfn = stack.client("stepfunctions")
    started = [e for e in outcome.events if e["type"] == "MapRunStarted"]
    assert len(started) == 1
    return sfn.describe_map_run(mapRunArn=started[0]["mapRunStartedEventDetails"]["mapRunArn"])


@pytest.fixture
def failing_shards(monkeypatch):
    """PredictShard fails for shards starting at these rows (as a worker's bug or bad data would)."""
    first_rows: set[int] = set()
    real = fanout._score

    def score(storage, descriptor, model, shard):
        if shard.first_row in first_rows:
            raise ValueError(f"injected failure in the shard at row {shard.first_row}")
        return real(storage, descriptor, model, shard)

    monkeypatch.setattr(fanout, "_score", score)
    return first_rows


def test_batch_prediction_runs_one_worker_per_shard_and_score_merges_them_in_order(stack, tmp_path):
    outcome = run_trigger(stack, body(max_concurrency=3), "fan-out.json", tmp_path, say=lambda _: None)

    assert outcome.status == "SUCCEEDED", outcome.failure
    run = map_run(stack, outcome)
    assert run["status"] == "SUCCEEDED" and run["maxConcurrency"] == 3
    assert run["itemCounts"]["total"] == 5 and run["itemCounts"]["succeeded"] == 5
    workers = [e for e in outcome.events if e["type"] == "TaskStateEntered"
               and e["stateEnteredEventDetails"]["name"] == "PredictShard"]
    assert workers == []   # the children run as executions of their own, not in the run's history
    parts = sorted(p.name for p in (outcome.out_dir / "predictions" / "parts").iterdir())
    assert parts == [f"shard-{first:012d}-{SHARD_ROWS:09d}.npz" for first in range(0, 500, SHARD_ROWS)]
    rows = [int(line.split(",")[0]) for line in
            (outcome.out_dir / "predictions" / "predictions.csv").read_text().splitlines()[1:]]
    assert rows == list(range(500))
    facts = outcome.report["batch_prediction"]
    assert facts["shards"] == 5 and facts["invalid_rows"] == 0 and facts["map_run"]["MapRunArn"] == run["mapRunArn"]
    assert outcome.report["metrics"]["rows_evaluated"] == 500
    steps = [s["step"] for s in json.loads((outcome.out_dir / "status.json").read_text())["steps"]]
    assert steps.index("BatchPredict") < steps.index("PredictShards") < steps.index("Score")


def test_a_failing_shard_within_the_tolerance_gives_a_successful_run_that_reports_its_rows(
        stack, tmp_path, failing_shards):
    failing_shards.add(200)
    outcome = run_trigger(stack, body(tolerated_failure_percentage=20), "tolerated.json", tmp_path,
                          say=lambda _: None)

    assert outcome.status == "SUCCEEDED", outcome.failure
    run = map_run(stack, outcome)
    assert run["status"] == "SUCCEEDED" and run["itemCounts"]["failed"] == 1
    facts = outcome.report["batch_prediction"]
    assert facts["invalid_rows"] == SHARD_ROWS and facts["failed_shard_count"] == 1
    assert facts["failed_shards"][0]["first_row"] == 200
    assert "injected failure in the shard at row 200" in facts["failed_shards"][0]["message"]
    metrics = outcome.report["metrics"]
    assert metrics["rows_evaluated"] == 400 and metrics["rows_without_prediction"] == SHARD_ROWS
    rows = [int(line.split(",")[0]) for line in
            (outcome.out_dir / "predictions" / "predictions.csv").read_text().splitlines()[1:]]
    assert rows == [r for r in range(500) if not 200 <= r < 300]


def test_a_coverage_gate_fails_a_run_whose_tolerated_failures_leave_too_few_rows(stack, tmp_path, failing_shards):
    failing_shards.add(100)
    document = json.loads(body(tolerated_failure_percentage=20))
    document["quality_gate"] = {"min_coverage": 0.9}
    outcome = run_trigger(stack, json.dumps(document).encode(), "coverage-gate.json", tmp_path, say=lambda _: None)

    assert outcome.status == "FAILED" and outcome.failure["error"] == "QualityGateFailed"
    reason = "coverage 0.8000 (400 of 500 evaluation rows have a prediction) is below the gate 0.9"
    assert outcome.report["status"] == "FAILED_QUALITY_GATE"
    assert outcome.report["quality_gate"] == {"thresholds": {"min_coverage": 0.9}, "passed": False,
                                              "failures": [reason]}
    assert f"Quality gate failed: {reason}." in (outcome.out_dir / "report" / "report.html").read_text()


def test_failing_shards_beyond_the_tolerance_fail_the_run_with_its_record(stack, tmp_path, failing_shards):
    failing_shards.update({0, 300})
    outcome = run_trigger(stack, body(tolerated_failure_percentage=20), "intolerable.json", tmp_path,
                          say=lambda _: None)

    assert outcome.status == "FAILED"
    assert map_run(stack, outcome)["status"] == "FAILED"
    assert outcome.failure["failed_step"] == "PredictShards"
    assert outcome.failure["error"] == "States.ExceedToleratedFailureThreshold"
    assert any(k.endswith("shard-000000000300-000000100.error.json") for k in outcome.failure["produced"])
    assert not any(k.endswith("predictions.csv") for k in outcome.failure["produced"])


def test_without_a_tolerance_one_failed_shard_fails_the_run(stack, tmp_path, failing_shards):
    failing_shards.add(400)
    outcome = run_trigger(stack, body(), "no-tolerance.json", tmp_path, say=lambda _: None)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] == "States.ExceedToleratedFailureThreshold"
    status = json.loads(stack.client("s3").get_object(
        Bucket=stack.bucket, Key=f"runs/{outcome.run_id}/status.json")["Body"].read())
    assert status["state"] == "FAILED" and status["step"] == "PredictShards"


def test_a_worker_failing_once_with_a_transient_error_is_retried_inside_the_map(stack, tmp_path, monkeypatch):
    from stepml.errors import TransientError

    real = fanout._score
    left = {"faults": 1}

    def flaky(storage, descriptor, model, shard):
        if shard.first_row == 100 and left["faults"]:
            left["faults"] -= 1
            raise TransientError("S3 answered SlowDown")
        return real(storage, descriptor, model, shard)

    monkeypatch.setattr(fanout, "_score", flaky)
    outcome = run_trigger(stack, body(), "flaky-shard.json", tmp_path, say=lambda _: None)

    assert left["faults"] == 0
    assert outcome.status == "SUCCEEDED", outcome.failure
    assert outcome.report["batch_prediction"]["invalid_rows"] == 0
    assert map_run(stack, outcome)["itemCounts"]["succeeded"] == 5


@pytest.fixture(scope="module")
def listing_machine(stack) -> str:
    """A Distributed Map that only lists: what the PredictShards ItemReader hands its workers."""
    definition = {"StartAt": "List", "States": {"List": {
        "Type": "Map", "End": True, "MaxConcurrency": 50,
        "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                       "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "Item", "States": {"Item": {"Type": "Pass", "End": True}}}}}}
    sfn = stack.client("stepfunctions")
    return sfn.create_state_machine(name="listing", definition=json.dumps(definition),
                                    roleArn="arn:aws:iam::123456789012:role/stepml-local-role")["stateMachineArn"]


@pytest.mark.parametrize("objects", [0, 1, 1005])
def test_the_item_reader_lists_every_object_under_the_prefix_in_every_page(stack, listing_machine, objects):
    import time

    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    prefix = f"listing-{objects}/"
    for i in range(objects):
        s3.put_object(Bucket=stack.bucket, Key=f"{prefix}{i:05d}", Body=b"x")
    arn = sfn.start_execution(stateMachineArn=listing_machine, name=f"list-{objects}",
                              input=json.dumps({"bucket": stack.bucket, "prefix": prefix}))["executionArn"]
    deadline = time.monotonic() + 120
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    assert described["status"] == "SUCCEEDED", described.get("cause")
    items = json.loads(described["output"])
    assert [item["Key"] for item in items] == [f"{prefix}{i:05d}" for i in range(objects)]
    if items:
        assert set(items[0]) == {"Etag", "Key", "LastModified", "Size", "StorageClass"}
        assert isinstance(items[0]["LastModified"], int) and items[0]["Size"] == 1
