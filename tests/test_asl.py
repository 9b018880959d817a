"""statemachine/pipeline.asl.json: the shape the design promises, checked on the file itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stepml.local.cfn_yaml import load_template

ROOT = Path(__file__).resolve().parents[1]
ASL_TEXT = (ROOT / "statemachine/pipeline.asl.json").read_text()
ASL = json.loads(ASL_TEXT)
STATES = ASL["States"]
TASKS = {name: s for name, s in STATES.items() if s["Type"] == "Task"}
TRANSIENT = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
             "Lambda.TooManyRequestsException"}


def test_every_placeholder_has_a_substitution_and_every_substitution_is_used():
    machine = next(r for r in load_template(ROOT / "template.yaml")["Resources"].values()
                   if r["Type"] == "AWS::Serverless::StateMachine")
    substitutions = set(machine["Properties"]["DefinitionSubstitutions"])
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_TEXT))
    assert placeholders == substitutions


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_retries_transient_lambda_errors_with_backoff(name):
    retriers = TASKS[name]["Retry"]
    covered = {e for r in retriers for e in r["ErrorEquals"]}
    assert TRANSIENT <= covered
    assert all(r["BackoffRate"] > 1 and r["MaxAttempts"] <= 5 for r in retriers)
    assert "States.ALL" not in covered  # bad input must fail fast, not be retried


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_catches_everything(name):
    catch = TASKS[name]["Catch"]
    assert any("States.ALL" in c["ErrorEquals"] for c in catch)
    expected = "RunFailed" if name == "RecordFailure" else "RecordFailure"
    assert {c["Next"] for c in catch} == {expected}


def test_the_happy_path_visits_the_steps_in_order():
    order, name = [], ASL["StartAt"]
    while STATES[name]["Type"] not in ("Succeed", "Fail"):
        order.append(name)
        state = STATES[name]
        name = state["Choices"][0]["Next"] if state["Type"] == "Choice" else state["Next"]
    assert order == ["PrepareData", "CreateDataSource", "Train", "TrainingDone?", "BatchPredict",
                     "PredictionDone?", "PredictShards", "Score"]


@pytest.mark.parametrize("choice, wait, check", [
    ("TrainingDone?", "WaitForTraining", "CheckTraining"),
    ("PredictionDone?", "WaitForPrediction", "CheckBatchPrediction"),
])
def test_poll_loops_wait_then_check_then_decide(choice, wait, check):
    assert STATES[choice]["Default"] == wait
    assert STATES[wait]["Type"] == "Wait" and STATES[wait]["Next"] == check
    assert STATES[check]["Next"] == choice  # bounded: the Check function raises PollTimeout


def test_states_carry_references_not_data():
    for name, state in TASKS.items():
        assert state["ResultPath"].startswith("$."), name  # results go beside the input, named


# -- batch prediction's fan-out -------------------------------------------------------------------
FAN_OUT = STATES["PredictShards"]
WORKER = FAN_OUT["ItemProcessor"]["States"]["PredictShard"]


def test_builtin_predictions_fan_out_over_the_shards_with_a_distributed_map():
    assert STATES["PredictionDone?"]["Choices"][0] == {
        "Variable": "$.prediction.status", "StringEquals": "FAN_OUT", "Next": "PredictShards"}
    assert FAN_OUT["Type"] == "Map" and FAN_OUT["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    reader = FAN_OUT["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert reader["Parameters"] == {"Bucket": "${DataBucketName}", "Prefix.$": "$.prediction.shards"}
    assert FAN_OUT["ItemSelector"]["shard.$"] == "$$.Map.Item.Value.Key"
    assert FAN_OUT["Next"] == "Score"


def test_the_trigger_sets_concurrency_and_tolerance_through_the_state():
    assert FAN_OUT["MaxConcurrencyPath"] == "$.prediction.max_concurrency"
    assert FAN_OUT["ToleratedFailurePercentagePath"] == "$.prediction.tolerated_failure_percentage"
    assert "MaxConcurrency" not in FAN_OUT and "ToleratedFailurePercentage" not in FAN_OUT


def test_a_shard_worker_retries_transient_errors_and_lets_real_failures_count_against_the_tolerance():
    assert WORKER["Resource"] == "${PredictShardFunctionArn}" and WORKER["End"] is True
    covered = {e for r in WORKER["Retry"] for e in r["ErrorEquals"]}
    assert TRANSIENT | {"TransientError"} <= covered and "States.ALL" not in covered
    assert "Catch" not in WORKER   # a caught failure would count as a success
    throttled = [r for r in WORKER["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
    assert len(throttled) == 1 and throttled[0]["MaxAttempts"] >= 8 and throttled[0]["JitterStrategy"] == "FULL"


def test_the_map_keeps_its_results_out_of_the_state_and_fails_into_the_failure_record():
    # Thousands of children's outputs would exceed the 256 KiB state limit: they go to S3.
    assert FAN_OUT["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert FAN_OUT["ResultWriter"]["Parameters"]["Bucket"] == "${DataBucketName}"
    assert FAN_OUT["ResultPath"] == "$.prediction.map_run"
    assert [c["Next"] for c in FAN_OUT["Catch"] if "States.ALL" in c["ErrorEquals"]] == ["RecordFailure"]
