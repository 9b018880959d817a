"""The whole state machine — statemachine/pipeline.asl.json itself, as template.yaml deploys it —
on the local stack, with the real handlers and small synthetic MNIST files."""

from __future__ import annotations

import json

import pytest

from stepml.local.runner import find_execution, follow_execution, run_trigger
from stepml.runs import RunPaths
from stepml.trigger import rejection_key
from tests.integration.stacks import ROOT, local_stack


def trigger_body(prefix="data/mnist/", algorithm="linear", **extra) -> bytes:
    return json.dumps({
        "version": "1",
        "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": prefix},
        "model": {"type": "MULTICLASS", "algorithm": algorithm, "parameters": {"epochs": 3}},
        **extra,
    }).encode()


def rebuild_trigger_body() -> bytes:
    """A trigger whose datasource is built afresh (not reused from an earlier test's run)."""
    document = json.loads(trigger_body())
    document["dataset"]["rebuild"] = True
    return json.dumps(document).encode()


@pytest.fixture(scope="module")
def stack(synthetic_files):
    with local_stack(synthetic_files) as local:
        yield local


def steps_module():
    from stepml import steps

    return steps


def executions(stack) -> list[dict]:
    return stack.client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn)["executions"]


def test_the_asl_that_runs_is_the_file_in_the_repo(stack):
    definition = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.state_machine_arn)["definition"]
    text = (ROOT / "statemachine/pipeline.asl.json").read_text()
    for name, function in stack.resolved.functions.items():  # the template's substitutions
        text = text.replace("${%sArn}" % name, function.arn)
    text = text.replace("${DataBucketName}", stack.bucket)
    assert json.loads(definition) == json.loads(text)
    assert "${" not in definition


def test_success_path_writes_datasource_model_predictions_and_report(stack, tmp_path):
    outcome = run_trigger(stack, trigger_body(), "ok.json", tmp_path, say=lambda _: None)

    assert outcome.status == "SUCCEEDED", outcome.failure
    assert outcome.report["metrics"]["accuracy"] > 0.8
    files = {p.relative_to(outcome.out_dir).as_posix() for p in outcome.out_dir.rglob("*") if p.is_file()}
    assert {"trigger.json", "status.json", "manifest.json", "report/report.json", "model/model.npz",
            "predictions/predictions.csv", "datasource/statistics.json"} <= files
    status = json.loads((outcome.out_dir / "status.json").read_text())
    assert status["state"] == "SUCCEEDED"
    started = status["steps"][0]
    assert started["execution_arn"].endswith(":" + outcome.run_id)
    assert started["console_url"] == ("https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
                                      "#/v2/executions/details/" + started["execution_arn"])
    entered = [e["stateEnteredEventDetails"]["name"] for e in outcome.events if e["type"].endswith("StateEntered")]
    assert entered == ["PrepareData", "CreateDataSource", "Train", "TrainingDone?", "BatchPredict",
                       "PredictionDone?", "PredictShards", "Score", "RunSucceeded"]


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
    gate = outcome.report["quality_gate"]
    assert gate["thresholds"] == {"min_accuracy": 1.0} and gate["passed"] is False
    assert len(gate["failures"]) == 1 and gate["failures"][0].endswith("is below the gate 1.0")
    assert gate["failures"][0] in outcome.failure["cause"]


def test_the_same_trigger_delivered_three_times_starts_one_execution(stack):
    s3, lam = stack.client("s3"), stack.client("lambda")
    key = "triggers/twice.json"
    put = s3.put_object(Bucket=stack.bucket, Key=key, Body=trigger_body())  # the upload starts one
    record = {"s3": {"bucket": {"name": stack.bucket},  # the record S3 sends for that upload
                     "object": {"key": key, "eTag": put["ETag"].strip('"'), "versionId": put["VersionId"]}}}
    start_run = stack.resolved.functions["StartRunFunction"].name
    for _ in range(2):  # S3 delivers at least once: the same event twice more
        response = lam.invoke(FunctionName=start_run, Payload=json.dumps({"Records": [record]}))
        assert json.loads(response["Payload"].read())["results"][0]["outcome"] == "duplicate"

    execution = find_execution(stack.client("stepfunctions"), stack.state_machine_arn, key)
    assert execution is not None
    follow_execution(stack.client("stepfunctions"), execution["executionArn"], say=lambda _: None)
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


def test_a_run_writes_only_under_its_own_prefix_and_modifies_no_input(stack, tmp_path):
    s3 = stack.client("s3")

    def objects() -> dict[str, str]:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=stack.bucket)
        return {f"{v['Key']}@{v['VersionId']}": v["ETag"] for p in pages for v in p.get("Versions", [])}

    before = objects()
    outcome = run_trigger(stack, trigger_body(), "confined.json", tmp_path, say=lambda _: None)
    after = objects()

    assert outcome.status == "SUCCEEDED"
    assert all(after[k] == etag for k, etag in before.items())  # nothing changed or deleted
    new_keys = {k.rsplit("@", 1)[0] for k in after.keys() - before.keys()}
    own = RunPaths(outcome.run_id).prefix
    # besides its own prefix, a run may only offer its datasource for reuse (cache/datasources/),
    # and its Distributed Map leaves the Map Run's own result files (map-runs/<Map>/<map run id>/)
    written = new_keys - {"triggers/confined.json"}
    assert written and all(k.startswith((own, "cache/datasources/", "map-runs/PredictShards/")) for k in written)


class SlowJobs:
    """Makes the builtin engine behave like a managed service: training reports IN_PROGRESS
    at first, so the Wait -> CheckTraining -> Choice loop of the real ASL runs."""

    def __init__(self, monkeypatch, polls_until_done: int | None):
        from stepml.engines.builtin import BuiltinEngine

        self.polls = 0
        start, describe = BuiltinEngine.start_training, BuiltinEngine.describe_training

        def start_training(engine, job):
            return {**start(engine, job), "status": "IN_PROGRESS"}

        def describe_training(engine, job):
            self.polls += 1
            done = polls_until_done is not None and self.polls >= polls_until_done
            return describe(engine, job) if done else {"job_id": job["job_id"], "status": "IN_PROGRESS"}

        monkeypatch.setattr(BuiltinEngine, "start_training", start_training)
        monkeypatch.setattr(BuiltinEngine, "describe_training", describe_training)


def test_the_poll_loop_waits_and_checks_until_the_job_completes(stack, tmp_path, monkeypatch):
    jobs = SlowJobs(monkeypatch, polls_until_done=3)
    outcome = run_trigger(stack, trigger_body(), "slow.json", tmp_path, say=lambda _: None)

    assert outcome.status == "SUCCEEDED", outcome.failure
    entered = [e["stateEnteredEventDetails"]["name"] for e in outcome.events if e["type"].endswith("StateEntered")]
    assert entered.count("WaitForTraining") == 3 and entered.count("CheckTraining") == 3
    assert jobs.polls == 3
    waits = [json.loads(e["stateEnteredEventDetails"]["input"])["training"]["wait_seconds"]
             for e in outcome.events if e.get("stateEnteredEventDetails", {}).get("name") == "WaitForTraining"]
    assert waits == [steps_module().poll_wait_seconds(p) for p in range(3)] and waits[0] < waits[1] < waits[2]


def test_a_run_polled_to_the_maximum_stays_far_below_the_execution_history_limit(stack, tmp_path, monkeypatch):
    """Measure the history events one poll costs, then count a run whose two loops both poll
    MAX_POLLS times: it must stay far below Step Functions' 25,000 events."""
    plain = run_trigger(stack, trigger_body(), "count-0.json", tmp_path, say=lambda _: None)
    SlowJobs(monkeypatch, polls_until_done=3)
    polled = run_trigger(stack, trigger_body(), "count-3.json", tmp_path, say=lambda _: None)

    per_poll = (len(polled.events) - len(plain.events)) / 3
    maximal = len(plain.events) + 2 * steps_module().MAX_POLLS * per_poll
    assert 5 <= per_poll <= 12
    assert maximal < 25_000 / 5, f"{maximal:.0f} events for a maximal run"


def test_a_job_that_never_finishes_fails_with_poll_timeout(stack, tmp_path, monkeypatch):
    from stepml import steps

    monkeypatch.setattr(steps, "MAX_POLLS", 4)
    SlowJobs(monkeypatch, polls_until_done=None)
    outcome = run_trigger(stack, trigger_body(), "never.json", tmp_path, say=lambda _: None)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] == "PollTimeout"
    assert "not finished after 4 polls" in outcome.failure["cause"]


def test_a_time_budgeted_run_says_how_many_epochs_ran_and_why_it_stopped(stack, tmp_path):
    body = json.dumps({
        "version": "1",
        "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "data/mnist/"},
        "model": {"type": "MULTICLASS", "preset": "balanced", "time_budget_seconds": 1,
                  "parameters": {"epochs": 500, "early_stopping_patience": 0}},
    }).encode()
    outcome = run_trigger(stack, body, "budget.json", tmp_path, say=lambda _: None)

    assert outcome.status == "SUCCEEDED", outcome.failure
    summary = outcome.report["training"]["summary"]
    assert summary["stop_reason"] == "time_budget"
    assert 1 <= summary["epochs_completed"] < 500
    assert summary["seconds"] < 3  # stopped at the budget, not long after
    assert len(outcome.report["training"]["history"]) >= summary["epochs_completed"]
    assert "val_accuracy" in outcome.report["training"]["history"][0]  # the validation curve


def test_a_step_hit_by_a_passing_s3_fault_is_retried_and_the_run_succeeds(stack, tmp_path, monkeypatch):
    """S3 answers SlowDown once to CreateDataSource's read of the images: the step fails with
    TransientError, the state machine's Retry runs it again, and the run succeeds."""
    import botocore.client
    from botocore.exceptions import ClientError

    real = botocore.client.BaseClient._make_api_call
    faults = {"left": 1}

    def flaky(client, operation, params):
        if operation == "GetObject" and params.get("Key", "").endswith("train-images-idx3-ubyte.gz") \
                and faults["left"]:
            faults["left"] -= 1
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)
        return real(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", flaky)
    outcome = run_trigger(stack, rebuild_trigger_body(), "flaky.json", tmp_path, say=lambda _: None)

    assert faults["left"] == 0
    assert outcome.status == "SUCCEEDED", outcome.failure
    failed = [e["lambdaFunctionFailedEventDetails"] for e in outcome.events if e["type"] == "LambdaFunctionFailed"]
    assert [f["error"] for f in failed] == ["TransientError"]
    assert "SlowDown" in failed[0]["cause"]


def test_a_fault_that_does_not_pass_fails_the_run_after_the_retries(stack, tmp_path, monkeypatch):
    import botocore.client
    from botocore.exceptions import ClientError

    real = botocore.client.BaseClient._make_api_call

    def down(client, operation, params):
        if operation == "GetObject" and params.get("Key", "").endswith("train-images-idx3-ubyte.gz"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error."},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, operation)
        return real(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", down)
    outcome = run_trigger(stack, rebuild_trigger_body(), "down.json", tmp_path, say=lambda _: None)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] == "TransientError" and "InternalError" in outcome.failure["cause"]
    attempts = [e for e in outcome.events if e["type"] == "LambdaFunctionFailed"]
    assert len(attempts) == 5                       # the first try and the ASL's 4 retries


def test_a_fixed_trigger_uploaded_again_runs_and_clears_its_old_rejection(stack, tmp_path):
    s3 = stack.client("s3")
    broken = json.dumps({"version": "1", "dataset": {"kind": "mnist"}}).encode()
    first = run_trigger(stack, broken, "fixme.json", tmp_path, say=lambda _: None)
    assert first.status == "REJECTED" and "model" in first.rejection["reason"]

    second = run_trigger(stack, trigger_body(), "fixme.json", tmp_path, say=lambda _: None)

    assert second.status == "SUCCEEDED", second.failure
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix="triggers/fixme.json").get("Contents", [])
    assert [o["Key"] for o in listed] == ["triggers/fixme.json"]
    versions = s3.list_object_versions(Bucket=stack.bucket, Prefix="triggers/fixme.json.rejected")
    assert versions.get("Versions") and versions.get("DeleteMarkers")      # kept as a version, not lost



def test_a_second_run_with_the_same_inputs_reuses_the_datasource_unless_told_to_rebuild(stack, tmp_path):
    def body(rebuild: bool) -> bytes:
        document = json.loads(trigger_body())
        document["dataset"]["rebuild"] = rebuild
        return json.dumps(document).encode()

    built = run_trigger(stack, body(True), "reuse-built.json", tmp_path, say=lambda _: None)
    reused = run_trigger(stack, body(False), "reuse-again.json", tmp_path, say=lambda _: None)
    rebuilt = run_trigger(stack, body(True), "reuse-rebuilt.json", tmp_path, say=lambda _: None)

    for outcome in (built, reused, rebuilt):
        assert outcome.status == "SUCCEEDED", outcome.failure
    assert reused.report["dataset"]["reused_from"] is not None
    assert built.report["dataset"]["reused_from"] is None and rebuilt.report["dataset"]["reused_from"] is None
    # the reusing run wrote a descriptor of its own but no arrays: they are the earlier run's
    arrays = [p.name for p in (reused.out_dir / "datasource").iterdir()]
    assert arrays == ["datasource.json"]
    steps = json.loads((reused.out_dir / "status.json").read_text())["steps"]
    assert any(s.get("reused_from") for s in steps if s["step"] == "CreateDataSource")
    # same data, same seed, same code: the same model and the same accuracy
    assert reused.report["metrics"]["accuracy"] == built.report["metrics"]["accuracy"]
