"""The sagemaker engine against a stateful SageMaker fake behind botocore's request validation, in
moto's S3: MNIST-shaped and CSV data, every model type, both algorithms, and the failure paths
(a Failed or Stopped job, throttling, AccessDenied, a retried step)."""

from __future__ import annotations

import gzip
import json
import re

import boto3
import numpy as np
import pytest
from botocore.exceptions import ParamValidationError
from moto import mock_aws

from stepml import datasource as image_datasource, evaluation, mnist, predictions
from stepml.engines import COMPLETED, FAILED, IN_PROGRESS, aws
from stepml.engines import sagemaker as sm
from stepml.errors import EngineThrottled, EngineUnavailable, PredictionFailed, TrainingFailed
from stepml.storage import Storage
from stepml.tabular import datasource as tds
from stepml.trigger import validate
from tests import tabular_data
from tests.fakes.sagemaker import FakeSageMaker

BUCKET = "stepml-sagemaker-test"
ROLE = "arn:aws:iam::123456789012:role/stepml-sagemaker-execution"
DESCRIPTOR = "runs/{run}/datasource/datasource.json"
ENGINE_OPERATIONS = {"CreateTrainingJob", "DescribeTrainingJob", "CreateModel", "CreateTransformJob",
                     "DescribeTransformJob"}


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv(sm.ROLE_ENV, ROLE)
    monkeypatch.delenv(sm.PREFIX_ENV, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        fake = FakeSageMaker(region="us-east-1", polls_to_complete=2)

        def factory(service: str):
            assert service == "sagemaker", service
            return fake.client()

        with aws.use_client_factory(factory):
            yield Storage(BUCKET, s3), fake


# -- datasources ---------------------------------------------------------------------------
def mnist_datasource(storage: Storage, run: str = "r1", n_train: int = 60, n_test: int = 20) -> dict:
    """Small MNIST look-alikes (the failure paths need few rows; the accuracy checks ask for more)."""
    files = {}
    for name, raw in mnist.synthetic_mnist(n_train=n_train, n_test=n_test, seed=3).items():
        storage.put_bytes(f"data/{name}", raw)
        files[name] = f"data/{name}"
    return image_datasource.create_image_datasource(storage, run, files)


def csv_datasource(storage: Storage, model_type: str, run: str = "r1") -> dict:
    data, data_schema = {"BINARY": tabular_data.banking, "MULTICLASS": tabular_data.wines,
                         "REGRESSION": tabular_data.houses}[model_type]()
    storage.put_bytes(f"d/{run}/schema.json", json.dumps(data_schema).encode())
    storage.put_bytes(f"d/{run}/train.csv", data)
    trigger = validate({"version": "1", "dataset": {"kind": "csv", "schema": f"d/{run}/schema.json",
                                                    "training": {"data": f"d/{run}/train.csv"}},
                        "model": {"type": model_type}})
    files = tds.locate_inputs(storage, trigger["dataset"], trigger["model"])
    return tds.create_csv_datasource(storage, run, {"files": files}, trigger["dataset"], trigger["model"])


def engine_job(run: str, algorithm: str, model_type: str, attempt: str = "a1b2c3d4", parameters=None) -> dict:
    return {"run_id": run, "datasource": DESCRIPTOR.format(run=run), "algorithm": algorithm,
            "parameters": sm.check_parameters(algorithm, parameters or {}, model_type), "seed": 0,
            "model_type": model_type, "options": dict(sm.OPTIONS), "attempt": attempt, "trigger": {}}


def poll(describe, state: dict, run: str = "r1", limit: int = 10) -> tuple[dict, list[str]]:
    """Describe until the job is no longer IN_PROGRESS (as CheckTraining / CheckBatchPrediction
    call it: the run id and what the last call returned); the statuses seen, in order."""
    seen = [state["status"]]
    for _ in range(limit):
        if state["status"] != IN_PROGRESS:
            break
        state = {**state, **describe({"run_id": run, **state})}
        seen.append(state["status"])
    return state, seen


def train_and_predict(storage: Storage, run: str, algorithm: str, model_type: str, parameters=None):
    engine = sm.SageMakerEngine(storage)
    training, training_seen = poll(engine.describe_training,
                                   engine.start_training(engine_job(run, algorithm, model_type,
                                                                    parameters=parameters)), run)
    assert training_seen[0] == IN_PROGRESS and training_seen[-1] == COMPLETED, training
    prediction, prediction_seen = poll(engine.describe_batch_prediction, engine.start_batch_prediction(
        {"run_id": run, "datasource": DESCRIPTOR.format(run=run), "model": training["model"],
         "options": dict(sm.OPTIONS), "attempt": "e5f6a7b8", "model_type": model_type, "trigger": {}}), run)
    assert prediction_seen[0] == IN_PROGRESS and prediction_seen[-1] == COMPLETED, prediction
    return training, prediction


# -- the happy paths -----------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", sm.ALGORITHMS)
def test_mnist_shaped_data_trains_and_predicts_through_validated_requests(env, algorithm):
    storage, fake = env
    descriptor = mnist_datasource(storage, n_train=500, n_test=200)
    storage.put_json(DESCRIPTOR.format(run="r1"), descriptor)
    training, prediction = train_and_predict(storage, "r1", algorithm, "MULTICLASS", {})

    assert fake.operations == ENGINE_OPERATIONS            # every one passed botocore's validation first
    [create] = fake.requests("CreateTrainingJob")
    repository = {"linear-learner": "382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1",
                  "xgboost": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"}
    assert create["AlgorithmSpecification"] == {"TrainingImage": repository[algorithm], "TrainingInputMode": "File"}
    assert create["RoleArn"] == ROLE
    assert create["InputDataConfig"][0]["ContentType"] == "text/csv"
    assert create["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/runs/r1/sagemaker/output/"
    assert create["ResourceConfig"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10}
    assert create["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    hp = create["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values())
    if algorithm == "linear-learner":
        assert hp["feature_dim"] == "784" and hp["predictor_type"] == "multiclass_classifier"
        assert hp["num_classes"] == "10"
    else:
        assert hp["objective"] == "multi:softprob" and hp["num_class"] == "10" and hp["num_round"] == "100"

    # the training CSV: label first, no header, pixels scaled to [0, 1]
    rows = storage.get_bytes("runs/r1/sagemaker/train/train.csv").decode().splitlines()
    first = np.array(rows[0].split(","), dtype=np.float64)
    labels = storage.get_npy(descriptor["arrays"]["train_labels"])
    assert len(rows) == 500 and first.size == 785 and first[0] == labels[0] and 0 <= first[1:].min() <= first[1:].max() <= 1

    [transform] = fake.requests("CreateTransformJob")
    assert transform["TransformInput"]["SplitType"] == "Line" and transform["TransformInput"]["ContentType"] == "text/csv"
    assert transform["TransformOutput"]["AssembleWith"] == "Line"
    assert transform["TransformOutput"]["Accept"] == sm.ACCEPT[algorithm]
    [model] = fake.requests("CreateModel")
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{training['model']}"
    assert model["ExecutionRoleArn"] == ROLE

    labels, scores = predictions.read_csv(storage.get_bytes(prediction["predictions"]), n_classes=10)
    assert len(labels) == 200 and np.allclose(scores.sum(axis=1), 1, atol=1e-4)
    metrics = evaluation.evaluate(storage, descriptor, prediction["predictions"])
    assert metrics["accuracy"] > 0.5                                          # chance: 0.1

    record = storage.get_json("runs/r1/model/training.json")
    assert record["status"] == COMPLETED and record["engine"] == "sagemaker" and record["parameters"] == hp
    assert record["summary"]["stop_reason"] == "completed" and record["history"] == []
    assert record["cost_facts"]["instance_type"] == "ml.m5.large" and record["cost_facts"]["billable_seconds"] > 0
    assert prediction["cost_facts"]["transform_seconds"] > 0 and prediction["rows"] == 200


@pytest.mark.parametrize("algorithm", sm.ALGORITHMS)
@pytest.mark.parametrize("model_type", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_csv_datasources_of_every_model_type_are_scored_well_above_the_baseline(env, algorithm, model_type):
    storage, fake = env
    descriptor = csv_datasource(storage, model_type)
    storage.put_json(DESCRIPTOR.format(run="r1"), descriptor)
    _, prediction = train_and_predict(storage, "r1", algorithm, model_type)
    assert fake.operations == ENGINE_OPERATIONS

    n_eval = descriptor["test_rows"]
    metrics = evaluation.evaluate(storage, descriptor, prediction["predictions"])
    if model_type == "REGRESSION":
        assert len(predictions.read_values_csv(storage.get_bytes(prediction["predictions"]))) == n_eval
        assert metrics["r2"] > 0.7
    else:
        labels, _ = predictions.read_csv(storage.get_bytes(prediction["predictions"]), descriptor["n_classes"])
        assert len(labels) == n_eval
        assert metrics["accuracy"] > metrics["baseline"]["accuracy"] + 0.1
    if model_type == "BINARY":
        assert metrics["BinaryAUC"] > 0.75

    # the pipeline fitted at training is the one applied to the evaluation rows
    assert storage.exists("runs/r1/sagemaker/pipeline.json")
    # and Amazon ML's batch-prediction layout is written beside our predictions
    [result] = prediction["amazon_ml_results"]
    assert len(gzip.decompress(storage.get_bytes(result)).decode().splitlines()) == n_eval + 1
    assert storage.exists(prediction["amazon_ml_manifest"])
    expected = {"BINARY": "binary", "MULTICLASS": "multiclass", "REGRESSION": "regression"}[model_type]
    [create] = fake.requests("CreateTrainingJob")
    hp = create["HyperParameters"]
    if algorithm == "linear-learner":
        assert hp["predictor_type"] == sm.PREDICTOR_TYPES[expected]
        assert ("num_classes" in hp) == (expected == "multiclass")
    else:
        assert hp["objective"] == sm.XGBOOST_OBJECTIVES[expected]


def test_a_two_class_multiclass_datasource_is_trained_as_a_binary_classifier():
    assert sm.output_kind("MULTICLASS", 2) == "binary" and sm.output_kind("MULTICLASS", 3) == "multiclass"
    hp = sm.hyperparameters("linear-learner", {}, "binary", 2, 5, 0)
    assert hp["predictor_type"] == "binary_classifier" and "num_classes" not in hp


# -- failures ------------------------------------------------------------------------------
def test_a_failed_training_job_surfaces_its_failure_reason(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    fake.fail_next("training", "AlgorithmError: the data has NaN in row 7")
    engine = sm.SageMakerEngine(storage)
    state, seen = poll(engine.describe_training, engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS")))
    assert seen[-1] == FAILED and "the data has NaN in row 7" in state["message"]
    assert not storage.exists("runs/r1/model/training.json")


def test_a_failed_transform_job_surfaces_its_failure_reason(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    training, _ = poll(engine.describe_training, engine.start_training(engine_job("r1", "xgboost", "MULTICLASS")))
    fake.fail_next("transform", "ClientError: out of memory on ml.m5.large")
    state, seen = poll(engine.describe_batch_prediction, engine.start_batch_prediction(
        {"run_id": "r1", "datasource": DESCRIPTOR.format(run="r1"), "model": training["model"], "attempt": "b1"}))
    assert seen[-1] == FAILED and "out of memory" in state["message"]


def test_a_job_stopped_at_its_max_runtime_fails_naming_the_option(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    started = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS"))
    fake.stop(started["job_id"], secondary="MaxRuntimeExceeded")
    state = engine.describe_training({"run_id": "r1", **started})
    assert state["status"] == FAILED and "max_runtime_seconds" in state["message"]


def test_throttled_creates_raise_engine_throttled_and_throttled_describes_poll_again(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    fake.throttle(1, "CreateTrainingJob")
    with pytest.raises(EngineThrottled, match="ThrottlingException"):
        engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="try1"))
    assert fake.training_jobs == {}
    started = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="try2"))
    fake.throttle(3, "DescribeTrainingJob")
    for _ in range(3):
        assert engine.describe_training({"run_id": "r1", **started})["status"] == IN_PROGRESS
    assert fake.errors["ThrottlingException"] == 4
    training, seen = poll(engine.describe_training, started)
    assert seen[-1] == COMPLETED

    for operation in ("CreateModel", "CreateTransformJob"):
        fake.throttle(1, operation)
        with pytest.raises(EngineThrottled):
            engine.start_batch_prediction({"run_id": "r1", "datasource": DESCRIPTOR.format(run="r1"),
                                           "model": training["model"], "attempt": f"x{operation.lower()}"})
    fake.throttle(1, "DescribeTransformJob")
    state = engine.start_batch_prediction({"run_id": "r1", "datasource": DESCRIPTOR.format(run="r1"),
                                           "model": training["model"], "attempt": "final"})
    assert engine.describe_batch_prediction({"run_id": "r1", **state})["status"] == IN_PROGRESS
    assert poll(engine.describe_batch_prediction, state)[1][-1] == COMPLETED


@pytest.mark.parametrize("denied", ["CreateTrainingJob", "DescribeTrainingJob"])
def test_access_denied_is_engine_unavailable_not_a_retry(env, denied):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    fake.deny(denied)
    with pytest.raises(EngineUnavailable, match=f"AccessDeniedException.*sagemaker:{denied}"):
        started = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS"))
        assert denied == "DescribeTrainingJob"         # starting was allowed; polling is refused
        engine.describe_training({"run_id": "r1", **started})
    assert fake.errors["AccessDeniedException"] == 1


def test_a_retry_never_collides_with_its_earlier_job_and_a_reused_name_is_refused(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    first = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="aaaa1111"))
    retry = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="bbbb2222"))
    assert first["job_id"] != retry["job_id"] and set(fake.training_jobs) == {first["job_id"], retry["job_id"]}
    training, _ = poll(engine.describe_training, retry)
    # the service refuses a second job of the same name; the engine says so
    with pytest.raises(TrainingFailed, match="Job name must be unique"):
        engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="aaaa1111"))
    # and batch prediction's names differ per attempt too
    jobs = [engine.start_batch_prediction({"run_id": "r1", "datasource": DESCRIPTOR.format(run="r1"),
                                           "model": training["model"], "attempt": a}) for a in ("c1", "c2")]
    assert len({j["job_id"] for j in jobs}) == 2 and len(fake.models) == 2
    with pytest.raises(PredictionFailed, match="Cannot create already existing model"):
        engine.start_batch_prediction({"run_id": "r1", "datasource": DESCRIPTOR.format(run="r1"),
                                       "model": training["model"], "attempt": "c1"})


def test_job_names_fit_sagemaker_and_carry_the_prefix(monkeypatch):
    names = {sm.job_name(f"run-{i}", attempt, kind) for i in range(3) for attempt in ("a1", "b2")
             for kind in ("t", "m", "bp")}
    assert len(names) == 18
    assert all(re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", n) and n.startswith("stepml-") for n in names)
    monkeypatch.setenv(sm.PREFIX_ENV, "Team-ML-" + "x" * 20)
    long_name = sm.job_name("r" * 200, "Z" * 40, "bp")
    assert long_name.startswith("team-ml-") and len(long_name) <= 63
    monkeypatch.setenv(sm.PREFIX_ENV, "bad_prefix")
    with pytest.raises(EngineUnavailable, match="STEPML_JOB_PREFIX"):
        sm.job_name("r1", "a1", "t")


def test_images_for_the_required_regions_and_a_clear_error_elsewhere():
    expected = {  # sagemaker-python-sdk image_uri_config: linear-learner "1", xgboost training "1.7-1"
        "us-east-1": ("382416733822", "683313688378"), "us-east-2": ("404615174143", "257758044811"),
        "us-west-2": ("174872318107", "246618743249"), "eu-west-1": ("438346466558", "141502667606"),
        "eu-central-1": ("664544806723", "492215442770"), "ap-northeast-1": ("351501993468", "354813040037"),
        "ap-southeast-2": ("712309505854", "783357654285"),
    }
    for region, (ll, xgb) in expected.items():
        assert sm.image_uri("linear-learner", region) == f"{ll}.dkr.ecr.{region}.amazonaws.com/linear-learner:1"
        assert sm.image_uri("xgboost", region) == f"{xgb}.dkr.ecr.{region}.amazonaws.com/sagemaker-xgboost:1.7-1"
    with pytest.raises(EngineUnavailable, match="no linear-learner image in region 'mars-north-1'"):
        sm.image_uri("linear-learner", "mars-north-1")


def test_an_unknown_region_and_a_missing_role_fail_before_any_request(env, monkeypatch):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    monkeypatch.delenv(sm.ROLE_ENV)
    with pytest.raises(EngineUnavailable, match=sm.ROLE_ENV):
        engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS"))
    monkeypatch.setenv(sm.ROLE_ENV, ROLE)
    elsewhere = FakeSageMaker(region="af-south-9")
    with aws.use_client_factory(lambda service: elsewhere.client()), \
            pytest.raises(EngineUnavailable, match="af-south-9"):
        engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS"))
    assert fake.calls == [] and elsewhere.calls == []


def test_the_fake_answers_only_after_botocore_validation_and_enforces_the_models_patterns(env):
    _, fake = env
    client = fake.client()
    with pytest.raises(ParamValidationError):          # botocore: hyperparameter values are strings
        client.create_training_job(TrainingJobName="stepml-x", HyperParameters={"epochs": 5},
                                   AlgorithmSpecification={"TrainingImage": sm.image_uri("xgboost", "us-east-1"),
                                                           "TrainingInputMode": "File"},
                                   RoleArn=ROLE, OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/o/"},
                                   ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                                   "VolumeSizeInGB": 10},
                                   StoppingCondition={"MaxRuntimeInSeconds": 60})
    assert fake.calls == []
    with pytest.raises(client.exceptions.ClientError, match="regular expression pattern"):
        client.create_model(ModelName="not_a_valid_name", ExecutionRoleArn=ROLE,
                            PrimaryContainer={"Image": sm.image_uri("xgboost", "us-east-1")})
    with pytest.raises(client.exceptions.ClientError, match="Requested resource not found"):
        client.describe_training_job(TrainingJobName="stepml-missing")


def test_the_training_csv_is_uploaded_in_parts_and_reads_back_whole(env, monkeypatch):
    storage, _ = env
    monkeypatch.setattr(sm, "PART_BYTES", 5 * 1024 * 1024)     # S3's smallest part
    monkeypatch.setattr(sm, "BLOCK_CELLS", 100_000)
    x = np.random.default_rng(0).random((3000, 400), dtype=np.float32)
    labels = np.arange(3000) % 7
    size = sm.write_csv(storage, "runs/r1/sagemaker/train/train.csv", 3000, 400, lambda rows: x[rows], labels)
    raw = storage.get_bytes("runs/r1/sagemaker/train/train.csv")
    assert size == len(raw) > 5 * 1024 * 1024
    head = storage.client.head_object(Bucket=BUCKET, Key="runs/r1/sagemaker/train/train.csv")
    assert head["ETag"].strip('"').endswith("-2")                 # a two-part multipart upload
    back = np.loadtxt(raw.decode().splitlines(), delimiter=",")
    assert back.shape == (3000, 401) and np.array_equal(back[:, 0], labels)
    assert np.allclose(back[:, 1:], x, atol=1e-6)


# -- parameters ----------------------------------------------------------------------------
def test_check_parameters_maps_amazon_ml_sgd_keys_onto_linear_learner():
    mapped = sm.check_parameters("linear-learner", {"sgd.maxPasses": "25", "sgd.l2RegularizationAmount": 1e-4,
                                                    "mini_batch_size": 200, "normalize_data": True},
                                 "BINARY")
    assert mapped == {"epochs": "25", "wd": "0.0001", "mini_batch_size": "200", "normalize_data": "true"}
    assert sm.check_parameters("linear-learner", {"sgd.l1RegularizationAmount": "0.01"}, "REGRESSION") == {"l1": "0.01"}
    assert sm.check_parameters("linear-learner", {"learning_rate": "auto", "wd": 0.5}, "MULTICLASS") == \
        {"learning_rate": "auto", "wd": "0.5"}
    assert sm.check_parameters("xgboost", {"eta": 0.1, "max_depth": 4, "num_round": "50"}, "BINARY") == \
        {"eta": "0.1", "max_depth": "4", "num_round": "50"}
    # what check_parameters returns passes it again unchanged (the engine re-checks at Train)
    assert sm.check_parameters("linear-learner", mapped, "BINARY") == mapped


@pytest.mark.parametrize("algorithm, params, message", [
    ("linear-learner", {"sgd.shuffleType": "auto"}, "no Linear Learner counterpart"),
    ("linear-learner", {"sgd.maxMLModelSizeInBytes": "1000000"}, "no Linear Learner counterpart"),
    ("linear-learner", {"sgd.maxPasses": "10", "epochs": 3}, "both set the same thing"),
    ("linear-learner", {"sgd.maxPasses": "1000"}, "integer from 1 to 100"),
    ("linear-learner", {"sgd.l1RegularizationAmount": 0.1, "sgd.l2RegularizationAmount": 0.1}, "L1 or L2"),
    ("linear-learner", {"predictor_type": "regressor"}, "set by the engine"),
    ("linear-learner", {"feature_dim": 3}, "set by the engine"),
    ("linear-learner", {"epochz": 3}, "unknown linear-learner hyperparameter 'epochz'"),
    ("linear-learner", {"epochs": 0}, "'epochs' must be an integer from 1"),
    ("linear-learner", {"wd": "lots"}, "'wd' must be a number.*or 'auto'"),
    ("linear-learner", {"normalize_data": "maybe"}, "true or false"),
    ("linear-learner", {"optimizer": "lbfgs"}, "one of auto, sgd"),
    ("xgboost", {"sgd.maxPasses": "5"}, "linear-learner only"),
    ("xgboost", {"objective": "reg:linear"}, "set by the engine"),
    ("xgboost", {"num_round": 2.5}, "'num_round' must be an integer"),
    ("xgboost", {"eta": float("nan")}, "finite"),
    ("randomforest", {}, "runs linear-learner, xgboost"),
])
def test_check_parameters_refuses_with_the_parameter_named(algorithm, params, message):
    with pytest.raises(ValueError, match=message):
        sm.check_parameters(algorithm, params, "BINARY")


def test_hyperparameters_sent_are_all_strings_with_the_engines_settings_last():
    hp = sm.hyperparameters("xgboost", {"seed": "7", "eta": "0.2"}, "multiclass", 4, 12, seed=0)
    assert hp == {"num_round": "100", "seed": "7", "eta": "0.2", "objective": "multi:softprob", "num_class": "4"}
    hp = sm.hyperparameters("linear-learner", {"epochs": "3"}, "regression", None, 12, seed=0)
    assert hp == {"epochs": "3", "feature_dim": "12", "predictor_type": "regressor"}
    assert all(isinstance(v, str) for v in hp.values())


# -- output parsing ------------------------------------------------------------------------
def test_transform_outputs_parse_in_each_documented_layout():
    ll_binary = b'{"score": 0.8, "predicted_label": 1}\n{"score": 0.1, "predicted_label": 0}\n'
    assert np.allclose(sm.parse_output(ll_binary, "linear-learner", "binary", 2, 2), [[0.2, 0.8], [0.9, 0.1]])
    ll_multi = b'{"score": [0.1, 0.2, 0.7], "predicted_label": 2}\n'
    assert np.allclose(sm.parse_output(ll_multi, "linear-learner", "multiclass", 3, 1), [[0.1, 0.2, 0.7]])
    assert np.allclose(sm.parse_output(b'{"score": 12.5}\n', "linear-learner", "regression", None, 1), [12.5])
    assert np.allclose(sm.parse_output(b"0.25\n0.75\n", "xgboost", "binary", 2, 2), [[0.75, 0.25], [0.25, 0.75]])
    assert np.allclose(sm.parse_output(b"[0.5, 0.25, 0.25]\n", "xgboost", "multiclass", 3, 1), [[0.5, 0.25, 0.25]])
    assert np.allclose(sm.parse_output(b"-3.5\n", "xgboost", "regression", None, 1), [-3.5])
    with pytest.raises(ValueError, match="1 output lines for 2 input rows"):
        sm.parse_output(b"0.5\n", "xgboost", "binary", 2, 2)
    with pytest.raises(ValueError, match="line 1.*expected 3 class scores"):
        sm.parse_output(b'{"score": [0.5, 0.5]}\n', "linear-learner", "multiclass", 3, 1)
    with pytest.raises(ValueError, match="outside 0..1"):
        sm.parse_output(b"1.5\n", "xgboost", "binary", 2, 1)


def test_transform_output_is_parsed_as_a_stream_and_stops_at_the_first_extra_line():
    """CheckBatchPrediction has 256 MB: the output is never held whole, and a runaway one is refused early."""
    read = []

    def chunks():
        for i in range(1000):
            read.append(i)
            yield b"0.5\n0.5\n"

    with pytest.raises(ValueError, match="more output lines than the 3 input rows"):
        sm.parse_output(chunks(), "xgboost", "binary", 2, 3)
    assert len(read) == 2
    split = [b'{"sco', b're": 0.8}\n{"score"', b": 0.1}"]            # chunks end anywhere, even mid-line
    assert np.allclose(sm.parse_output(iter(split), "linear-learner", "binary", 2, 2), [[0.2, 0.8], [0.9, 0.1]])
    # XGBoost multi:softprob as a plain CSV row (the container's other layout) reads the same
    assert np.allclose(sm.parse_output(b"0.5,0.25,0.25\n", "xgboost", "multiclass", 3, 1), [[0.5, 0.25, 0.25]])


def test_a_request_the_service_refuses_fails_the_step_with_the_services_message(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    job = {**engine_job("r1", "linear-learner", "MULTICLASS"), "options": {**sm.OPTIONS, "instance_type": "ml.t9.huge"}}
    with pytest.raises(TrainingFailed, match="CreateTrainingJob was refused.*ml.t9.huge.*enum"):
        sm.SageMakerEngine(storage).start_training(job)
    assert fake.training_jobs == {} and fake.errors["ValidationException"] == 1


def test_a_retried_step_stops_the_job_its_earlier_attempt_left_running(env):
    """A retry after a lost response (Lambda.ServiceException once the job had started) names a
    new job; the earlier attempt's job would keep running and billing, so the retry stops it."""
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    first = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="aaaa1111"))
    retry = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS", attempt="bbbb2222"))
    assert [r["TrainingJobName"] for r in fake.requests("StopTrainingJob")] == [first["job_id"]]
    assert fake.training_jobs[first["job_id"]]["TrainingJobStatus"] == "Stopping"
    training, seen = poll(engine.describe_training, retry)
    assert seen[-1] == COMPLETED

    def predict(attempt):
        return engine.start_batch_prediction({"run_id": "r1", "datasource": DESCRIPTOR.format(run="r1"),
                                              "model": training["model"], "attempt": attempt})

    old, new = predict("c1"), predict("c2")
    assert [r["TransformJobName"] for r in fake.requests("StopTransformJob")] == [old["job_id"]]
    assert poll(engine.describe_batch_prediction, new)[1][-1] == COMPLETED
    # a third attempt asks to stop every earlier job; one that already ended refuses, quietly
    predict("c3")
    assert [r["TransformJobName"] for r in fake.requests("StopTransformJob")][1:] == [old["job_id"], new["job_id"]]


def test_stopping_a_job_that_timed_out_and_one_already_gone(env):
    storage, fake = env
    storage.put_json(DESCRIPTOR.format(run="r1"), mnist_datasource(storage))
    engine = sm.SageMakerEngine(storage)
    started = engine.start_training(engine_job("r1", "linear-learner", "MULTICLASS"))
    engine.stop_training({"run_id": "r1", **started})
    assert engine.describe_training({"run_id": "r1", **started})["status"] == FAILED   # Stopped
    engine.stop_training({"run_id": "r1", "job_id": "stepml-gone-t"})                # no such job: no error
    fake.deny("StopTrainingJob")
    engine.stop_training({"run_id": "r1", **started})                                # best effort: logged
    vanished = engine.describe_training({"run_id": "r1", "job_id": "stepml-gone-t"})
    assert vanished["status"] == FAILED and "not found" in vanished["message"]
