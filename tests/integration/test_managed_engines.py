"""The whole state machine on the local stack with each managed engine, the service being a
stateful fake behind botocore's own request validation: one trigger field switches engine,
every engine's report has the same shape, and a FAILED job, a poll timeout and AccessDenied
each end in a failure record."""

from __future__ import annotations

import json

import pytest

from stepml.engines.aws import use_client_factory
from stepml.local.runner import run_trigger
from tests import tabular_data
from tests.fakes.amazonml import FakeAmazonML
from tests.fakes.sagemaker import FakeSageMaker
from tests.integration.stacks import local_stack

REPORT_KEYS = {"run_id", "status", "created_at", "code_version", "dataset", "model", "training", "metrics",
               "quality_gate", "engine_metrics", "batch_prediction", "cost", "seconds_per_step", "wall_seconds", "outputs"}


@pytest.fixture(scope="module")
def stack():
    with local_stack() as local:
        s3 = local.client("s3")
        body, data_schema = tabular_data.wines()
        s3.put_object(Bucket=local.bucket, Key="data/wines/wines.csv", Body=body)
        s3.put_object(Bucket=local.bucket, Key="data/wines/wines.csv.schema", Body=json.dumps(data_schema).encode())
        yield local


def trigger(engine: str, **model) -> bytes:
    return json.dumps({
        "version": "1", "name": f"wines-{engine}",
        "dataset": {"kind": "csv", "schema": "data/wines/wines.csv.schema", "training": {"data": "data/wines/wines.csv"}},
        "model": {"type": "MULTICLASS", "engine": engine, **model},
    }).encode()


def run(stack, tmp_path, body: bytes, name: str, fake=None):
    if fake is None:
        return run_trigger(stack, body, name, tmp_path, say=lambda _: None)
    with use_client_factory(lambda service: fake.client()):
        return run_trigger(stack, body, name, tmp_path, say=lambda _: None)


@pytest.fixture
def amazonml():
    return FakeAmazonML(pending_gets=1, progress_gets=2)


@pytest.fixture
def sagemaker(monkeypatch):
    # what the template sets when EnableSageMaker is true (the role's ARN)
    monkeypatch.setenv("STEPML_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/stepml-local-SageMakerExecutionRole")
    return FakeSageMaker(polls_to_complete=2)


def test_one_field_switches_the_engine_and_every_report_has_the_same_shape(stack, tmp_path, amazonml, sagemaker):
    params = {"sgd.maxPasses": "10"}
    builtin = run(stack, tmp_path, trigger("builtin", parameters=params), "wines-builtin.json")
    on_amazonml = run(stack, tmp_path, trigger("amazonml", parameters=params), "wines-amazonml.json", amazonml)
    on_sagemaker = run(stack, tmp_path, trigger("sagemaker", parameters=params), "wines-sagemaker.json", sagemaker)

    for outcome in (builtin, on_amazonml, on_sagemaker):
        assert outcome.status == "SUCCEEDED", outcome.failure
        assert set(outcome.report) == REPORT_KEYS
        assert outcome.report["metrics"]["accuracy"] > outcome.report["metrics"]["baseline"]["accuracy"]
        assert (outcome.out_dir / "predictions/predictions.csv").is_file()
        assert list(outcome.out_dir.glob("predictions/**/batch-prediction/*.manifest"))   # Amazon ML's layout
    assert on_amazonml.report["training"]["engine"] == "amazonml"
    assert on_sagemaker.report["training"]["engine"] == "sagemaker"
    assert {"CreateTrainingJob", "DescribeTrainingJob", "CreateModel", "CreateTransformJob",
            "DescribeTransformJob"} <= sagemaker.operations        # each one validated by botocore first
    assert set(on_amazonml.report["engine_metrics"]) >= {"MulticlassAvgFScore"}
    items = [line["item"] for line in on_amazonml.report["cost"]["lines"]]
    assert "Amazon ML compute" in items and "Amazon ML batch predictions" in items
    items = [line["item"] for line in on_sagemaker.report["cost"]["lines"]]
    assert any(i.startswith("SageMaker training") for i in items) and any("batch transform" in i for i in items)
    for managed in (on_amazonml, on_sagemaker):   # the poll loops really looped while the service worked
        entered = [e["stateEnteredEventDetails"]["name"] for e in managed.events if e["type"].endswith("StateEntered")]
        assert entered.count("CheckTraining") >= 2 and entered.count("CheckBatchPrediction") >= 2


def test_sagemaker_trains_on_mnist_images_too(stack, tmp_path, sagemaker):
    from stepml import mnist

    s3 = stack.client("s3")
    for name, body in mnist.synthetic_mnist(600, 200, seed=3, gzip=True).items():
        s3.put_object(Bucket=stack.bucket, Key=f"data/mnist-small/{name}.gz", Body=body)
    body = json.dumps({"version": "1", "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "data/mnist-small/"},
                       "model": {"type": "MULTICLASS", "engine": "sagemaker",
                                 "sagemaker": {"instance_type": "ml.m5.xlarge"}}}).encode()
    outcome = run(stack, tmp_path, body, "mnist-sagemaker.json", sagemaker)

    assert outcome.status == "SUCCEEDED", outcome.failure
    assert outcome.report["metrics"]["accuracy"] > 0.3
    [training] = sagemaker.requests("CreateTrainingJob")
    assert training["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert training["AlgorithmSpecification"]["TrainingImage"].endswith("/linear-learner:1")


def test_a_failed_sagemaker_job_and_access_denied_end_in_failure_records(stack, tmp_path, sagemaker):
    sagemaker.fail_next("training", "ClientError: Unable to parse the training data")
    failed = run(stack, tmp_path, trigger("sagemaker"), "wines-sagemaker-failed.json", sagemaker)
    sagemaker.deny()
    denied = run(stack, tmp_path, trigger("sagemaker"), "wines-sagemaker-denied.json", sagemaker)

    assert failed.status == "FAILED" and failed.failure["error"] == "TrainingFailed"
    assert "Unable to parse the training data" in failed.failure["cause"]
    assert denied.status == "FAILED" and denied.failure["error"] == "EngineUnavailable"


def test_every_request_the_engine_sent_passed_botocore_validation(stack, tmp_path, amazonml):
    outcome = run(stack, tmp_path, trigger("amazonml"), "wines-amazonml-calls.json", amazonml)

    assert outcome.status == "SUCCEEDED", outcome.failure
    assert {"CreateDataSourceFromS3", "CreateMLModel", "GetMLModel", "CreateEvaluation",
            "CreateBatchPrediction", "GetBatchPrediction", "GetEvaluation"} <= {r["operation"] for r in amazonml.requests}


def test_a_failed_job_ends_in_a_failure_record_with_the_services_message(stack, tmp_path, amazonml):
    amazonml.fail_next("mlmodel", "Training failed: the datasource has no variance")
    outcome = run(stack, tmp_path, trigger("amazonml"), "wines-amazonml-failed.json", amazonml)

    assert outcome.status == "FAILED"
    assert outcome.failure["failed_step"] == "after Train" and outcome.failure["error"] == "TrainingFailed"
    assert "no variance" in outcome.failure["cause"]


def test_access_denied_fails_at_once_saying_amazon_ml_takes_no_new_customers(stack, tmp_path, amazonml):
    amazonml.deny = True
    outcome = run(stack, tmp_path, trigger("amazonml"), "wines-amazonml-denied.json", amazonml)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] == "EngineUnavailable"
    assert "no longer available to new customers" in outcome.failure["cause"]
    retried = [e for e in outcome.events if e["type"] == "TaskStateEntered"
               and e["stateEnteredEventDetails"]["name"] == "Train"]
    assert len(retried) == 1


def test_a_job_that_never_finishes_times_out(stack, tmp_path, monkeypatch):
    from stepml import steps

    monkeypatch.setattr(steps, "MAX_POLLS", 3)
    slow = FakeAmazonML(pending_gets=50, progress_gets=50)
    outcome = run(stack, tmp_path, trigger("amazonml"), "wines-amazonml-slow.json", slow)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] == "PollTimeout" and "after 3 polls" in outcome.failure["cause"]
