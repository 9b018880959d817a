"""The amazonml engine against a stateful fake of Amazon ML behind botocore's own validation.

The fake (tests/fakes/amazonml.py) reads the data from moto S3, "trains" a small honest model,
and writes Amazon ML's batch-prediction layout, so every path of the engine -- requests,
status walk, manifest, result parsing, class-column mapping, invalid records, failures,
throttling, refusals -- runs against what the real service sent back.
"""

from __future__ import annotations

import gzip
import json
import re

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError
from moto import mock_aws

from stepml import amlformat, evaluation, predictions
from stepml.engines import COMPLETED, FAILED, IN_PROGRESS, aws
from stepml.engines.amazonml import AmazonMLEngine, check_parameters, check_region, object_id
from stepml.errors import DataError, EngineThrottled, EngineUnavailable
from stepml.storage import Storage
from stepml.tabular import datasource as tds
from stepml.tabular.datasource import load_table
from stepml.trigger import validate
from tests import tabular_data
from tests.fakes.amazonml import NO_NEW_CUSTOMERS, FakeAmazonML

BUCKET = "amazonml-engine"
RUN = "run-1"
DESCRIPTOR = f"runs/{RUN}/datasource/datasource.json"
DATA = {"BINARY": tabular_data.banking, "MULTICLASS": tabular_data.wines, "REGRESSION": tabular_data.houses}
AML_ID = re.compile(r"[a-zA-Z0-9_.-]{1,64}")


@pytest.fixture
def storage():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield Storage(BUCKET, s3)


def make_run(storage: Storage, model_type: str, *, evaluation_data: bool = False, **model) -> dict:
    """Data, schema and datasource for RUN; returns the trigger as the engine gets it."""
    data, schema = DATA[model_type]()
    storage.put_bytes("data/schema.json", json.dumps(schema, indent=1).encode())
    dataset = {"kind": "csv", "schema": "data/schema.json", "training": {"data": "data/train.csv"}}
    if evaluation_data:
        lines = data.splitlines(keepends=True)
        head = lines[:1] if schema["dataFileContainsHeader"] else []
        body = lines[len(head):]
        storage.put_bytes("data/train.csv", b"".join(head + body[:len(body) * 2 // 3]))
        storage.put_bytes("data/eval.csv", b"".join(head + body[len(body) * 2 // 3:]))
        dataset["evaluation"] = {"data": "data/eval.csv"}
    else:
        storage.put_bytes("data/train.csv", data)
    # The datasource is built as the pipeline builds it (the engine-independent steps).
    trigger = validate({"version": "1", "dataset": dataset, "model": {"type": model_type, **model}})
    files = tds.locate_inputs(storage, trigger["dataset"], trigger["model"])
    descriptor = tds.create_csv_datasource(storage, RUN, {"files": files}, trigger["dataset"], trigger["model"])
    storage.put_json(DESCRIPTOR, descriptor)
    trigger["model"].update(engine="amazonml", algorithm="linear", amazonml={})
    trigger["model"].pop("preset", None)
    return trigger


def job(trigger: dict, attempt: str = "a1", parameters: dict | None = None) -> dict:
    return {"run_id": RUN, "datasource": DESCRIPTOR, "algorithm": "linear", "seed": 0, "options": {},
            "parameters": {"sgd.maxPasses": 5} if parameters is None else parameters,
            "model_type": trigger["model"]["type"], "attempt": attempt, "trigger": trigger}


def poll(describe, started: dict, limit: int = 8) -> tuple[dict, list]:
    state, seen = dict(started), []
    for _ in range(limit):
        answer = describe({"run_id": RUN, **state})
        seen.append((answer["status"], answer.get("service_status")))
        state = {**state, **answer}
        if answer["status"] != IN_PROGRESS:
            return state, seen
    raise AssertionError(f"still in progress after {limit} polls: {seen}")


def train_and_predict(engine: AmazonMLEngine, trigger: dict, **kw) -> tuple[dict, dict, list, list]:
    training, training_seen = poll(engine.describe_training, engine.start_training(job(trigger, **kw)))
    assert training["status"] == COMPLETED, training
    started = engine.start_batch_prediction({"run_id": RUN, "datasource": DESCRIPTOR, "model": training["model"],
                                             "options": {}, "attempt": "b2", "model_type": trigger["model"]["type"],
                                             "trigger": trigger})
    prediction, prediction_seen = poll(engine.describe_batch_prediction, started)
    return training, prediction, training_seen, prediction_seen


@pytest.fixture
def fake():
    fake = FakeAmazonML()
    with aws.use_client_factory(lambda service: fake.client()):
        yield fake


# -- the whole walk, per model type ------------------------------------------------------------

@pytest.mark.parametrize("model_type", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_each_model_type_walks_the_statuses_and_its_predictions_beat_the_baseline(storage, fake, model_type):
    trigger = make_run(storage, model_type)
    descriptor = storage.get_json(DESCRIPTOR)
    training, prediction, training_seen, prediction_seen = train_and_predict(AmazonMLEngine(storage), trigger)

    assert training_seen == [(IN_PROGRESS, "PENDING"), (IN_PROGRESS, "INPROGRESS"), (COMPLETED, None)]
    assert [s for s, _ in prediction_seen] == [IN_PROGRESS, IN_PROGRESS, COMPLETED]
    assert prediction_seen[0][1] == {"batch_prediction": "PENDING", "evaluation": "PENDING"}
    assert fake.operations() == (["CreateDataSourceFromS3"] * 3 + ["CreateMLModel"] + ["GetMLModel", "GetDataSource"] * 3
                                 + ["CreateEvaluation", "CreateBatchPrediction"]
                                 + ["GetBatchPrediction", "GetEvaluation"] * 3 + ["GetDataSource"] * 2)

    # What was sent: the schema CreateDataSource checked (the same document as the one stored:
    # Train reads nothing outside runs/), our splits, statistics, sgd.* as strings.
    sources = fake.calls("CreateDataSourceFromS3")
    stored = json.loads(storage.get_bytes("data/schema.json"))
    assert [json.loads(s["DataSpec"]["DataSchema"]) for s in sources] == [stored] * 3
    assert [s["DataSpec"]["DataLocationS3"] for s in sources] == [f"s3://{BUCKET}/data/train.csv"] * 3
    assert json.loads(sources[0]["DataSpec"]["DataRearrangement"]) == descriptor["splits"]["training"]
    assert json.loads(sources[1]["DataSpec"]["DataRearrangement"]) == descriptor["splits"]["evaluation"]
    assert "DataRearrangement" not in sources[2]["DataSpec"]          # the batch prediction reads every line
    assert [s["ComputeStatistics"] for s in sources] == [True, True, False]
    [model] = fake.calls("CreateMLModel")
    assert model["MLModelType"] == model_type and model["Parameters"] == {"sgd.maxPasses": "5"}
    assert model["TrainingDataSourceId"] == sources[0]["DataSourceId"] and "Recipe" not in model
    [batch] = fake.calls("CreateBatchPrediction")
    assert batch["OutputUri"] == f"s3://{BUCKET}/runs/{RUN}/predictions/amazonml/"
    assert batch["BatchPredictionDataSourceId"] == sources[2]["DataSourceId"]
    assert fake.calls("CreateEvaluation")[0]["EvaluationDataSourceId"] == sources[1]["DataSourceId"]

    # training.json as Score reads it, with the service's figures.
    record = storage.get_json(f"runs/{RUN}/model/training.json")
    assert record["status"] == COMPLETED and record["engine"] == "amazonml" and record["model"] == model["MLModelId"]
    assert record["parameters"]["sgd.maxPasses"] == "5" and record["parameters"]["sgd.shuffleType"] == "auto"
    assert record["summary"]["epochs_planned"] == 5 and record["summary"]["stop_reason"] == "completed"
    assert record["training_seconds"] == 240.0 and record["history"] == [] and record["time_budget_s"] is None
    model_cost = fake.objects["mlmodel"][model["MLModelId"]].compute_ms
    source_cost = fake.objects["datasource"][sources[0]["DataSourceId"]].compute_ms
    assert record["cost_facts"] == training["cost_facts"] == {
        "compute_time_ms": model_cost + source_cost,
        "size_bytes": fake.objects["mlmodel"][model["MLModelId"]].state["size_bytes"]}

    # Score reads our predictions.csv unchanged, and the service's model beats the baseline.
    assert prediction["rows"] == descriptor["test_rows"] and prediction["invalid_records"] == 0
    metrics = evaluation.evaluate(storage, descriptor, prediction["predictions"])
    service = prediction["service_metrics"]
    assert list(service) == [{"BINARY": "BinaryAUC", "MULTICLASS": "MulticlassAvgFScore",
                              "REGRESSION": "RegressionRMSE"}[model_type]]
    assert all(type(v) is float for v in service.values())
    if model_type == "REGRESSION":
        assert metrics["RegressionRMSE"] < 0.6 * metrics["baseline"]["RegressionRMSE"]
        assert service["RegressionRMSE"] == pytest.approx(metrics["RegressionRMSE"], rel=0.25)
    else:
        assert metrics["accuracy"] > metrics["baseline"]["accuracy"] + 0.05
        if model_type == "BINARY":
            assert metrics["BinaryAUC"] > 0.6 and service["BinaryAUC"] > 0.6
        else:
            assert metrics["accuracy"] > 0.85 and service["MulticlassAvgFScore"] > 0.85
    assert prediction["cost_facts"]["total_record_count"] == len(load_table(storage, descriptor, "training")) + \
        len(load_table(storage, descriptor, "evaluation")) == prediction["cost_facts"]["total_record_count"]
    assert prediction["cost_facts"]["invalid_record_count"] == 0 and prediction["cost_facts"]["compute_time_ms"] > 0
    assert prediction["amazon_ml_manifest"] == amlformat.manifest_key(f"runs/{RUN}/predictions/amazonml/",
                                                                      batch["BatchPredictionId"])


def test_separate_evaluation_data_needs_no_third_datasource_and_rows_line_up_with_a_header(storage, fake):
    trigger = make_run(storage, "BINARY", evaluation_data=True)           # banking: header row and rowId
    descriptor = storage.get_json(DESCRIPTOR)
    _, prediction, _, _ = train_and_predict(AmazonMLEngine(storage), trigger)
    sources = fake.calls("CreateDataSourceFromS3")
    assert [s["DataSpec"]["DataLocationS3"].rsplit("/", 1)[1] for s in sources] == ["train.csv", "eval.csv"]
    assert all("DataRearrangement" not in s["DataSpec"] for s in sources)
    assert fake.calls("CreateBatchPrediction")[0]["BatchPredictionDataSourceId"] == sources[1]["DataSourceId"]
    # Every evaluation row was checked against the service's row id and trueLabel on the way.
    result = amlformat.read_result(storage.get_bytes(prediction["amazon_ml_results"][0]), "BINARY",
                                   row_id_name="customerId")
    table = load_table(storage, descriptor, "evaluation")
    assert result["row_ids"][:3] == table.columns["customerId"][:3].tolist()
    _, scores = predictions.read_csv(storage.get_bytes(prediction["predictions"]), 2)
    np.testing.assert_allclose(scores[:, 1], result["scores"][table.line_numbers - 2], atol=1e-6)


# -- parsing the service's output -------------------------------------------------------------

def test_multiclass_class_columns_in_the_services_order_are_mapped_by_header(storage, fake):
    trigger = make_run(storage, "MULTICLASS")
    descriptor = storage.get_json(DESCRIPTOR)
    _, prediction, _, _ = train_and_predict(AmazonMLEngine(storage), trigger)
    raw = storage.get_bytes(prediction["amazon_ml_results"][0])
    header = gzip.decompress(raw).decode().splitlines()[0].split(",")
    assert header[0] == "trueLabel" and sorted(header[1:]) == descriptor["class_labels"]
    assert header[1:] != descriptor["class_labels"]                       # the service's own order

    result = amlformat.read_result(raw, "MULTICLASS")
    table = load_table(storage, descriptor, "evaluation")
    row = 7
    line = int(table.line_numbers[row]) - 1                               # no header in the wines data
    labels, scores = predictions.read_csv(storage.get_bytes(prediction["predictions"]), descriptor["n_classes"])
    for column, label in enumerate(result["class_labels"]):
        ours = descriptor["class_labels"].index(label)
        assert scores[row, ours] == pytest.approx(result["scores"][line, column], abs=1e-6)
    assert descriptor["class_labels"][labels[row]] == result["predicted"][line]
    assert result["true_labels"][line] == table.columns["colour"][row]


def test_blank_result_lines_are_invalid_records_with_the_training_distribution(storage, fake):
    trigger = make_run(storage, "MULTICLASS")
    descriptor = storage.get_json(DESCRIPTOR)
    table = load_table(storage, descriptor, "evaluation")
    failed_rows = [0, 5]
    fake.blank_rows = {int(table.line_numbers[r]) - 1 for r in failed_rows}
    _, prediction, _, _ = train_and_predict(AmazonMLEngine(storage), trigger)

    result = amlformat.read_result(storage.get_bytes(prediction["amazon_ml_results"][0]), "MULTICLASS")
    assert result["invalid_records"] == 2
    assert prediction["invalid_records"] == 2 and prediction["cost_facts"]["invalid_record_count"] == 2
    _, scores = predictions.read_csv(storage.get_bytes(prediction["predictions"]), descriptor["n_classes"])
    counts = np.asarray(descriptor["training_class_counts"], dtype=float)
    for r in failed_rows:
        np.testing.assert_allclose(scores[r], counts / counts.sum(), atol=1e-6)
    assert not np.allclose(scores[1], counts / counts.sum(), atol=1e-3)


def test_result_lines_that_do_not_line_up_with_the_evaluation_rows_are_an_error(storage, fake):
    trigger = make_run(storage, "BINARY")                                  # rowId customerId
    engine = AmazonMLEngine(storage)
    _, prediction, _, _ = train_and_predict(engine, trigger)
    key = prediction["amazon_ml_results"][0]
    lines = gzip.decompress(storage.get_bytes(key)).decode().splitlines()
    storage.put_bytes(key, gzip.compress(("\n".join([lines[0], *reversed(lines[1:])]) + "\n").encode()))
    with pytest.raises(DataError, match="row id .* does not line up"):
        engine.describe_batch_prediction({"run_id": RUN, **prediction})


# -- failures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, message, expected", [
    ("mlmodel", "Training failed: all weights diverged", r"model .*-m is FAILED: Training failed: all weights diverged"),
    ("datasource", "More than 10% of the records are invalid",
     r"training datasource .*-ds-t is FAILED: More than 10% of the records are invalid"),
])
def test_a_failed_training_object_fails_with_its_message(storage, fake, kind, message, expected):
    trigger = make_run(storage, "REGRESSION")
    fake.fail_next(kind, message)
    engine = AmazonMLEngine(storage)
    final, seen = poll(engine.describe_training, engine.start_training(job(trigger)))
    assert final["status"] == FAILED and re.search(expected, final["message"]), final
    assert seen[-1][0] == FAILED and len(seen) == 3
    assert not storage.exists(f"runs/{RUN}/model/training.json")


def test_data_the_service_cannot_read_fails_the_datasource_with_the_services_message(storage, fake):
    trigger = make_run(storage, "REGRESSION")
    engine = AmazonMLEngine(storage)
    started = engine.start_training(job(trigger))
    storage.client.delete_object(Bucket=BUCKET, Key="data/train.csv")
    final, _ = poll(engine.describe_training, started)
    assert final["status"] == FAILED
    assert f"cannot read s3://{BUCKET}/data/train.csv: the object does not exist" in final["message"]


def test_a_deleted_model_fails_training(storage, fake):
    trigger = make_run(storage, "REGRESSION")
    engine = AmazonMLEngine(storage)
    started = engine.start_training(job(trigger))
    fake.delete("mlmodel", started["ml_model_id"])
    answer = engine.describe_training({"run_id": RUN, **started})
    assert answer["status"] == FAILED and "is DELETED" in answer["message"]


@pytest.mark.parametrize("kind, what", [("batchprediction", "batch prediction"), ("evaluation", "evaluation")])
def test_a_failed_batch_prediction_or_evaluation_fails_with_its_message(storage, fake, kind, what):
    trigger = make_run(storage, "BINARY")
    engine = AmazonMLEngine(storage)
    training, _ = poll(engine.describe_training, engine.start_training(job(trigger)))
    fake.fail_next(kind, "The output location is not writable")
    started = engine.start_batch_prediction({"run_id": RUN, "datasource": DESCRIPTOR, "model": training["model"],
                                             "options": {}, "attempt": "b2", "model_type": "BINARY", "trigger": trigger})
    final, _ = poll(engine.describe_batch_prediction, started)
    assert final["status"] == FAILED
    assert re.search(rf"{what} \S+ is FAILED: The output location is not writable", final["message"])
    assert not storage.exists(f"runs/{RUN}/predictions/predictions.csv")


def test_a_failed_prediction_datasource_fails_the_batch_prediction_with_the_datasources_message(storage, fake):
    trigger = make_run(storage, "BINARY")
    engine = AmazonMLEngine(storage)
    started = engine.start_training(job(trigger))
    fake.fail("datasource", started["datasources"]["prediction"], "Amazon ML could not parse 12 records")
    training, _ = poll(engine.describe_training, started)
    assert training["status"] == COMPLETED                                   # the model needs only its own data
    started = engine.start_batch_prediction({"run_id": RUN, "datasource": DESCRIPTOR, "model": training["model"],
                                             "options": {}, "attempt": "b2", "model_type": "BINARY", "trigger": trigger})
    final, _ = poll(engine.describe_batch_prediction, started)
    assert final["status"] == FAILED
    assert re.search(r"batch prediction datasource \S+-ds-p is FAILED: Amazon ML could not parse 12 records",
                     final["message"]), final["message"]


def test_access_denied_is_engine_unavailable_naming_no_new_customers(storage, fake):
    trigger = make_run(storage, "BINARY")
    fake.deny = True
    engine = AmazonMLEngine(storage)
    with pytest.raises(EngineUnavailable, match="no longer available to new customers") as caught:
        engine.start_training(job(trigger))
    assert NO_NEW_CUSTOMERS in str(caught.value)
    assert fake.operations() == ["CreateDataSourceFromS3"]               # stopped at the first refusal
    with pytest.raises(EngineUnavailable, match="no longer available to new customers"):
        engine.describe_training({"run_id": RUN, "job_id": "m", "ml_model_id": "m", "datasources": {"training": "t"}})


def test_a_region_amazon_ml_never_served_is_refused_before_any_request(storage):
    trigger = make_run(storage, "BINARY")
    fake = FakeAmazonML(region="eu-central-1")
    with aws.use_client_factory(lambda service: fake.client()), \
            pytest.raises(EngineUnavailable, match="Amazon ML answers only in us-east-1 and eu-west-1"):
        AmazonMLEngine(storage).start_training(job(trigger))
    assert fake.requests == []
    with pytest.raises(EndpointConnectionError):                        # what a request would have met
        fake.client().get_ml_model(MLModelId="x")
    assert fake.operations() == ["GetMLModel"]
    assert check_region("eu-west-1") == "eu-west-1"


def test_throttled_create_raises_engine_throttled_and_a_throttled_get_polls_again(storage, fake):
    trigger = make_run(storage, "REGRESSION")
    engine = AmazonMLEngine(storage)
    fake.throttle("CreateMLModel")
    with pytest.raises(EngineThrottled, match="CreateMLModel was throttled"):
        engine.start_training(job(trigger, attempt="a1"))
    started = engine.start_training(job(trigger, attempt="a2"))            # the state machine's retry
    fake.throttle("GetMLModel", times=2)
    assert engine.describe_training({"run_id": RUN, **started})["status"] == IN_PROGRESS
    assert engine.describe_training({"run_id": RUN, **started})["status"] == IN_PROGRESS
    final, seen = poll(engine.describe_training, started)
    assert final["status"] == COMPLETED and seen[0] == (IN_PROGRESS, "PENDING")   # the throttles did not count


# -- requests, ids and parameters ---------------------------------------------------------------

def test_ids_differ_per_attempt_and_keep_the_prefix(storage, fake, monkeypatch):
    monkeypatch.setenv("STEPML_JOB_PREFIX", "teststack")
    trigger = make_run(storage, "BINARY")
    engine = AmazonMLEngine(storage)
    first, second = engine.start_training(job(trigger, attempt="a1")), engine.start_training(job(trigger, attempt="a2"))
    ids = [c["DataSourceId"] for c in fake.calls("CreateDataSourceFromS3")] + \
          [c["MLModelId"] for c in fake.calls("CreateMLModel")]
    assert len(ids) == len(set(ids)) == 8
    assert all(AML_ID.fullmatch(i) and i.startswith("teststack-") for i in ids)
    assert first["ml_model_id"] != second["ml_model_id"]
    assert first["ml_model_id"] == object_id(RUN, "a1", "m")
    assert object_id(RUN, "x" * 200, "bp") != object_id(RUN, "x" * 199, "bp")
    assert len(object_id(RUN, "x" * 200, "ds-p")) <= 64
    # The same id with other parameters is the service's IdempotentParameterMismatchException.
    with pytest.raises(ClientError) as caught:
        fake.client().create_ml_model(MLModelId=first["ml_model_id"], MLModelType="REGRESSION",
                                      TrainingDataSourceId=first["datasources"]["training"])
    assert caught.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"


def test_every_request_goes_through_botocore_validation_and_the_services_own_checks(fake):
    client = fake.client()
    with pytest.raises(ParamValidationError):                              # botocore: wrong type, missing field
        client.create_ml_model(MLModelId="m1", MLModelType="BINARY", TrainingDataSourceId=5)
    assert fake.requests == []                                             # never reached the fake
    with pytest.raises(ClientError) as caught:                             # the service: id pattern
        client.create_data_source_from_s3(DataSourceId="bad id!", DataSpec={"DataLocationS3": "s3://b/k",
                                                                           "DataSchema": "{}"})
    assert caught.value.response["Error"]["Code"] == "InvalidInputException"
    with pytest.raises(ClientError) as caught:
        client.get_batch_prediction(BatchPredictionId="nope")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    fake.deny = True
    with pytest.raises(ClientError) as caught:
        client.get_batch_prediction(BatchPredictionId="nope")
    assert caught.value.response["Error"] == {"Code": "AccessDeniedException", "Message": NO_NEW_CUSTOMERS}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_recipe_goes_inline_as_the_json_createdatasource_checked_and_none_leaves_amazon_mls_default(storage, fake):
    recipe = {"groups": {}, "assignments": {}, "outputs": ["ALL_NUMERIC", "ALL_CATEGORICAL"]}
    trigger = make_run(storage, "MULTICLASS", recipe=recipe)
    AmazonMLEngine(storage).start_training(job(trigger, attempt="a1"))
    storage.put_bytes("data/recipe.json", b'{"outputs": ["ALL_NUMERIC"]}\n')
    trigger = make_run(storage, "MULTICLASS", recipe="data/recipe.json")
    AmazonMLEngine(storage).start_training(job(trigger, attempt="a2"))
    trigger = make_run(storage, "MULTICLASS")
    AmazonMLEngine(storage).start_training(job(trigger, attempt="a3"))

    inline, from_object, default = fake.calls("CreateMLModel")
    assert json.loads(inline["Recipe"]) == recipe
    assert json.loads(from_object["Recipe"]) == {"outputs": ["ALL_NUMERIC"]}
    assert "Recipe" not in default and "RecipeUri" not in default


def test_check_parameters_normalises_sgd_values_to_strings_and_refuses_the_rest():
    assert check_parameters({"sgd.maxPasses": 20, "sgd.l2RegularizationAmount": "1e-4", "sgd.shuffleType": "none",
                             "sgd.maxMLModelSizeInBytes": "1000000"}, "BINARY") == {
        "sgd.maxPasses": "20", "sgd.l2RegularizationAmount": "0.0001", "sgd.shuffleType": "none",
        "sgd.maxMLModelSizeInBytes": "1000000"}
    assert check_parameters({}, "REGRESSION") == {}
    with pytest.raises(ValueError, match=r"only its sgd.\* training parameters \(sgd.maxPasses, .*\); not epochs"):
        check_parameters({"epochs": 3}, "BINARY")
    with pytest.raises(ValueError, match="L1 or L2"):
        check_parameters({"sgd.l1RegularizationAmount": 0.1, "sgd.l2RegularizationAmount": 0.1}, "BINARY")
    with pytest.raises(ValueError, match="sgd.maxPasses.*integer from 1 to 100"):
        check_parameters({"sgd.maxPasses": 0}, "MULTICLASS")
