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
                     "PredictionDone?", "Score"]


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
