"""The whole state machine — statemachine/pipeline.asl.json itself, as template.yaml deploys it —
on the local stack, with the real handlers and small synthetic MNIST files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepml.local.runner import find_execution, run_trigger
from stepml.local.stack import LocalStack
from stepml.runs import RunPaths
from stepml.trigger import rejection_key

ROOT = Path(__file__).resolve().parents[2]


def trigger_body(prefix="data/mnist/", algorithm="linear", **extra) -> bytes:
    return json.dumps({
        "version": "1",
        "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": prefix},
        "model": {"type": "MULTICLASS", "algorithm": algorithm, "parameters": {"epochs": 3}},
        **extra,
    }).encode()


@pytest.fixture(scope="module")
def stack(synthetic_files):
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            mp.setenv(k, v)
        with LocalStack(ROOT) as local:
            s3 = local.client("s3")
            for name, body in synthetic_files.items():
                s3.put_object(Bucket=local.bucket, Key=f"data/mnist/{name}.gz", Body=body)
            yield local


def executions(stack) -> list[dict]:
    return stack.client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn)["executions"]


def test_the_asl_that_runs_is_the_file_in_the_repo(stack):
    definition = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.state_machine_arn)["definition"]
    on_disk = json.loads((ROOT / "statemachine/pipeline.asl.json").read_text())
    assert json.loads(definition)["States"].keys() == on_disk["States"].keys()
    assert "${" not in definition  # every substitution resolved


def test_success_path_writes_datasource_model_predictions_and_report(stack, tmp_path):
    outcome = run_trigger(stack, trigger_body(), "ok.json", tmp_path, say=lambda _: None)

    assert outcome.status == "SUCCEEDED", outcome.failure
    assert outcome.report["metrics"]["accuracy"] > 0.8
    files = {p.relative_to(outcome.out_dir).as_posix() for p in outcome.out_dir.rglob("*") if p.is_file()}
    assert {"trigger.json", "status.json", "manifest.json", "report/report.json", "model/model.npz",
            "predictions/predictions.csv", "datasource/statistics.json"} <= files
    status = json.loads((outcome.out_dir / "status.json").read_text())
    assert status["state"] == "SUCCEEDED"
    entered = [e["stateEnteredEventDetails"]["name"] for e in outcome.events if e["type"].endswith("StateEntered")]
    assert entered == ["PrepareData", "CreateDataSource", "Train", "TrainingDone?", "BatchPredict",
                       "PredictionDone?", "Score", "RunSucceeded"]


def test_failure_path_ends_in_a_failure_record(stack, tmp_path):
    outcome = run_trigger(stack, trigger_body(prefix="data/nothing-here/"), "missing.json", tmp_path,
                          say=lambda _: None)

    assert outcome.status == "FAILED"
    assert outcome.failure["failed_step"] == "PrepareData"
    assert outcome.failure["error"] == "DataError"
    assert "lacks" in outcome.failure["cause"]
    assert json.loads((outcome.out_dir / "status.json").read_text())["state"] == "FAILED"


def test_quality_gate_fails_the_run_after_writing_the_report(stack, tmp_path):
    body = trigger_body(quality_gate={"min_accuracy": 1.0})
    outcome = run_trigger(stack, body, "gate.json", tmp_path, say=lambda _: None)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] == "QualityGateFailed"
    assert outcome.report["status"] == "FAILED_QUALITY_GATE"


def test_a_duplicated_s3_event_starts_one_execution(stack):
    s3, lam = stack.client("s3"), stack.client("lambda")
    key = "triggers/twice.json"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=trigger_body())  # the upload itself starts one
    head = s3.head_object(Bucket=stack.bucket, Key=key)
    record = {"s3": {"bucket": {"name": stack.bucket},
                     "object": {"key": key, "eTag": head["ETag"].strip('"')}}}
    start_run = stack.resolved.functions["StartRunFunction"].name
    for _ in range(2):  # S3 delivers at least once: the same event twice more
        response = lam.invoke(FunctionName=start_run, Payload=json.dumps({"Records": [record]}))
        assert json.loads(response["Payload"].read())["results"][0]["outcome"] == "duplicate"

    execution = find_execution(stack.client("stepfunctions"), stack.state_machine_arn, key)
    assert execution is not None
    same_trigger = [e for e in executions(stack) if e["name"] == execution["name"]]
    assert len(same_trigger) == 1


def test_a_rejected_trigger_gets_a_record_and_starts_nothing(stack, tmp_path):
    before = len(executions(stack))
    outcome = run_trigger(stack, b'{"version": "1", "dataset": {"kind": "mnist"}}', "bad.json", tmp_path,
                          say=lambda _: None)

    assert outcome.status == "REJECTED"
    assert "model" in outcome.rejection["reason"]
    assert len(executions(stack)) == before
    s3 = stack.client("s3")
    assert s3.head_object(Bucket=stack.bucket, Key=rejection_key("triggers/bad.json"))
    # the rejected trigger itself is left exactly as uploaded
    assert s3.get_object(Bucket=stack.bucket, Key="triggers/bad.json")["Body"].read().startswith(b'{"version"')


def test_the_run_is_confined_to_its_prefix(stack, tmp_path):
    outcome = run_trigger(stack, trigger_body(), "confined.json", tmp_path, say=lambda _: None)
    s3 = stack.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="runs/")["Contents"]]
    own = [k for k in keys if k.startswith(RunPaths(outcome.run_id).prefix)]
    assert own and all(k.startswith("runs/") for k in keys)
