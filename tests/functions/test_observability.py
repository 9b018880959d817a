"""Observability of the handlers: the run id on every log line (the core's stdlib lines too),
no key outliving its invocation, EMF metrics under one namespace with the step, dataset and
engine dimensions, and an X-Ray subsegment around every handler.

Powertools prints both the JSON log lines and the EMF blobs to stdout; the tests parse them.
``stepml.observability`` is imported inside the tests, never at collection: its Powertools
objects read their environment (namespace, tracing off) when first made, as in a Lambda.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from stepml import steps, trigger
from stepml.runs import RunPaths
from tests.conftest import FakeContext, event, load_handler

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))
STEP_HANDLERS = [f for f in FUNCTIONS if f != "start_run"]   # every function the state machine calls
NAMESPACE = "StepMLTest"                                    # POWERTOOLS_METRICS_NAMESPACE in conftest
BUCKET = "observability-test"
RUN_ID = "mnist-demo-0123456789abcdef"
TRIGGER = {
    "version": "1", "name": "mnist-demo",
    "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "data/mnist/"},
    "model": {"type": "MULTICLASS", "algorithm": "linear", "seed": 1, "parameters": {"epochs": 2}},
}
STEP_NAMES = {"create_datasource": "CreateDataSource"}     # the others: CamelCase of the directory
#: What each step handler publishes besides StepSeconds, given STEP_RESULT.
HANDLER_METRICS = {
    "prepare_data": {"InputFiles"}, "create_datasource": {"TrainRows", "TestRows"},
    "train": {"TrainingSeconds"}, "check_training": {"JobPolls"}, "batch_predict": {"PredictedRows"},
    "check_batch_prediction": {"JobPolls"}, "predict_shard": {"PredictedRows"},
    "score": {"Accuracy", "MacroF1"}, "record_failure": {"RunsFailed"},
}
#: One result that satisfies every handler's use of its step's result.
STEP_RESULT = {
    "files": {"train-images-idx3-ubyte": "data/mnist/train-images-idx3-ubyte.gz"},
    "train_rows": 2000, "test_rows": 500, "status": "COMPLETED", "polls": 1, "rows": 500,
    "training_seconds": 0.25, "accuracy": 0.97, "macro_f1": 0.96, "model_type": "MULTICLASS",
    "failure": f"runs/{RUN_ID}/failure.json", "error": "DataError",
}


def step_name(function_dir: str) -> str:
    return STEP_NAMES.get(function_dir, "".join(part.title() for part in function_dir.split("_")))


@pytest.fixture(autouse=True)
def obs(_offline_aws):  # the environment first: the Powertools objects read it when made
    """stepml.observability, with its process-wide metrics and dimension cache clean."""
    import stepml.observability as observability

    observability.metrics.clear_metrics()
    observability._DIMENSIONS.clear()
    yield observability
    observability.metrics.clear_metrics()
    observability._DIMENSIONS.clear()


@pytest.fixture
def stdout(obs, capsys, monkeypatch):
    """What the handlers print to stdout, as (JSON log lines, EMF blobs) read since the last call.

    The log handler keeps the stdout of the moment it was made (in a Lambda, the one stdout),
    so its stream is pointed at a buffer here; EMF blobs are print()ed, so capsys has them."""
    log = io.StringIO()
    monkeypatch.setattr(obs.logger.logger_handler, "stream", log)

    def read() -> tuple[list[dict], list[dict]]:
        lines = log.getvalue().splitlines()
        log.seek(0)
        log.truncate()
        blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
        return [json.loads(line) for line in lines], blobs

    return read


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put_run_trigger(s3, run_id: str, document: dict = TRIGGER) -> None:
    s3.put_object(Bucket=BUCKET, Key=RunPaths(run_id).trigger, Body=json.dumps(trigger.validate(document)))


@pytest.fixture
def subsegments(obs, monkeypatch):
    """Names of the X-Ray subsegments the tracer opens, and the annotations it puts."""
    opened: list[str] = []
    annotations: dict = {}

    class Segment:
        def put_annotation(self, key, value):
            annotations[key] = value

        def put_metadata(self, *args, **kwargs):
            pass

        def add_exception(self, *args, **kwargs):
            pass

    class Provider:
        @contextlib.contextmanager
        def in_subsegment(self, name=None, **kwargs):
            opened.append(name)
            yield Segment()

        def put_annotation(self, key, value):
            annotations[key] = value

    monkeypatch.setattr(obs.tracer, "provider", Provider())
    monkeypatch.setattr(obs.tracer, "disabled", False)
    return opened, annotations


def the_blob(blobs: list[dict]) -> dict:
    assert len(blobs) == 1, blobs
    return blobs[0]


def blob_metrics(blob: dict) -> set[str]:
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    return {m["Name"] for m in directive["Metrics"]}


def blob_dimensions(blob: dict) -> dict:
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    (names,) = directive["Dimensions"]
    return {name: blob[name] for name in names}


# -- the decorators, read from the source -------------------------------------------------------
def _decorators(function_dir: str) -> list[ast.expr]:
    tree = ast.parse((ROOT / "functions" / function_dir / "app.py").read_text())
    (handler,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
    return handler.decorator_list


@pytest.mark.parametrize("function_dir", FUNCTIONS)
def test_every_handler_carries_logger_tracer_and_metrics_in_that_order(function_dir):
    decorators = _decorators(function_dir)
    names = [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in decorators]
    assert names[:3] == ["logger.inject_lambda_context", "tracer.capture_lambda_handler", "metrics.log_metrics"], names
    inject = decorators[0]
    assert isinstance(inject, ast.Call), "inject_lambda_context(clear_state=True): keys must not leak"
    assert {k.arg: ast.literal_eval(k.value) for k in inject.keywords}.get("clear_state") is True, function_dir
    source = (ROOT / "functions" / function_dir / "app.py").read_text()
    assert "metrics.add_metric" in source, f"{function_dir} publishes no metric of its own"
    if function_dir in STEP_HANDLERS:
        # under the Powertools three: its keys and metrics land inside their invocation
        assert names[3:] == ["step_handler"], names
        assert [ast.literal_eval(a) for a in decorators[3].args] == [step_name(function_dir)], names


# -- every step handler, its step stubbed -------------------------------------------------------
@pytest.mark.parametrize("function_dir", STEP_HANDLERS)
def test_a_step_handler_logs_the_run_id_traces_and_publishes_dimensioned_metrics(
        function_dir, obs, s3, stdout, subsegments, monkeypatch):
    put_run_trigger(s3, RUN_ID)
    core_log = logging.getLogger("stepml.steps")

    def fake_step(event, storage, **kwargs):
        core_log.info("inside the core")        # a stdlib logger of the core package
        obs.logger.info("inside the step")
        return dict(STEP_RESULT)

    monkeypatch.setattr(steps, function_dir, fake_step)
    load_handler(function_dir)({"run_id": RUN_ID}, FakeContext())

    logs, blobs = stdout()
    assert {"inside the core", "inside the step"} <= {line["message"] for line in logs}, logs
    for line in logs:
        assert line["run_id"] == RUN_ID and line["step"] == step_name(function_dir), line
        assert line["function_request_id"] == FakeContext.aws_request_id, line
    blob = the_blob(blobs)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert blob_dimensions(blob) == {"service": "stepml", "step": step_name(function_dir),
                                     "dataset": "mnist", "engine": "builtin"}
    assert blob_metrics(blob) == {"StepSeconds", *HANDLER_METRICS[function_dir]}
    assert 0 <= blob["StepSeconds"][0] < 5
    opened, annotations = subsegments
    assert opened == ["## lambda_handler"]
    assert annotations["run_id"] == RUN_ID


def test_no_log_key_outlives_its_invocation(obs, s3, stdout, monkeypatch):
    put_run_trigger(s3, RUN_ID)
    put_run_trigger(s3, "other-run")
    calls = []

    def fake_step(event, storage, **kwargs):
        if not calls:
            obs.logger.append_keys(only_in_the_first="yes")
        calls.append(event["run_id"])
        obs.logger.info("step ran")
        return dict(STEP_RESULT)

    monkeypatch.setattr(steps, "check_training", fake_step)
    handler = load_handler("check_training")
    handler({"run_id": RUN_ID}, FakeContext())
    first, _ = stdout()
    assert first[-1]["only_in_the_first"] == "yes"  # the handler's own line after the step
    handler({"run_id": "other-run"}, FakeContext())
    logs, _ = stdout()
    assert logs and all(line["run_id"] == "other-run" for line in logs)
    assert not any("only_in_the_first" in line for line in logs)


def test_a_failing_step_still_logs_its_run_id_and_publishes_no_half_dimensioned_metrics(s3, stdout, monkeypatch):
    def failing_step(event, storage, **kwargs):
        logging.getLogger("stepml.engines.builtin").warning("about to fail")
        raise RuntimeError("boom")

    monkeypatch.setattr(steps, "train", failing_step)
    with pytest.raises(RuntimeError):
        load_handler("train")({"run_id": RUN_ID}, FakeContext())
    logs, blobs = stdout()
    assert [line["run_id"] for line in logs if line["message"] == "about to fail"] == [RUN_ID]
    assert blobs == []


# -- real steps on moto: the rows, the dimensions read from the run's trigger, epoch log lines ---
@pytest.fixture
def mnist_run(s3, synthetic_files):
    for name, body in synthetic_files.items():
        s3.put_object(Bucket=BUCKET, Key=f"data/mnist/{name}.gz", Body=body)
    put_run_trigger(s3, RUN_ID)
    return {**event("prepare_data"), "run_id": RUN_ID, "bucket": BUCKET}


def test_create_datasource_publishes_its_rows_and_train_logs_every_epoch_with_the_run_id(mnist_run, stdout):
    data = load_handler("prepare_data")(mnist_run, FakeContext())
    stdout()  # what PrepareData printed
    datasource = load_handler("create_datasource")({**mnist_run, "data": data}, FakeContext())
    logs, blobs = stdout()
    blob = the_blob(blobs)
    assert blob_dimensions(blob) == {"service": "stepml", "step": "CreateDataSource",
                                     "dataset": "mnist", "engine": "builtin"}
    assert blob["TrainRows"] == [2000.0] and blob["TestRows"] == [500.0]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE

    load_handler("train")({**mnist_run, "data": data, "datasource": datasource}, FakeContext())
    logs, blobs = stdout()
    epochs = [line for line in logs if line["message"].startswith("epoch ")]
    assert len(epochs) == 2, [line["message"] for line in logs]  # the trigger asks for 2 epochs
    assert all(line["run_id"] == RUN_ID and line["step"] == "Train" for line in epochs)
    assert blob_dimensions(the_blob(blobs))["step"] == "Train"


# -- Score's headline figures -------------------------------------------------------------------
@pytest.mark.parametrize("result, published", [
    ({"model_type": "MULTICLASS", "accuracy": 0.97, "macro_f1": 0.955},
     {"Accuracy": ("Percent", 97.0), "MacroF1": ("Percent", 95.5)}),
    ({"model_type": "BINARY", "accuracy": 0.9, "auc": 0.95, "f1": 0.8},
     {"Accuracy": ("Percent", 90.0), "BinaryAUC": ("Percent", 95.0), "F1": ("Percent", 80.0)}),
    ({"model_type": "REGRESSION", "rmse": 1.5, "r2": 0.75},
     {"RegressionRMSE": ("None", 1.5), "R2": ("Percent", 75.0)}),
])
def test_score_publishes_the_headline_metrics_with_dataset_and_engine(s3, stdout, monkeypatch, result, published):
    csv_trigger = {
        "version": "1",
        "dataset": {"kind": "csv", "schema": "data/banking.csv.schema", "training": {"data": "data/banking.csv"}},
        "model": {"type": result["model_type"], "engine": "builtin", "algorithm": "linear"},
    }
    put_run_trigger(s3, RUN_ID, csv_trigger)
    monkeypatch.setattr(steps, "score", lambda event, storage: {"report": "r", **result})
    load_handler("score")({"run_id": RUN_ID}, FakeContext())

    _, blobs = stdout()
    blob = the_blob(blobs)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert blob_dimensions(blob) == {"service": "stepml", "step": "Score", "dataset": "csv/banking",
                                     "engine": "builtin"}
    units = {m["Name"]: m["Unit"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {name: units[name] for name in published} == {name: unit for name, (unit, _) in published.items()}
    assert {name: blob[name][0] for name in published} == pytest.approx({n: v for n, (_, v) in published.items()})
    assert blob_metrics(blob) == {"StepSeconds", *published}


# -- StartRun: bucket/key first, the run id once known, nothing carried to the next record -------
def test_start_run_logs_the_object_then_the_run_id_and_forgets_both(s3, stdout, monkeypatch):
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="pipeline", roleArn="arn:aws:iam::123456789012:role/stepml-test",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=BUCKET, Key="triggers/mnist-demo.json", Body=json.dumps(TRIGGER))["VersionId"]
    started = {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "triggers/mnist-demo.json", "versionId": version}}}
    ignored = {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "data/x.json"}}}

    results = load_handler("start_run")({"Records": [started, ignored]}, FakeContext())["results"]

    logs, blobs = stdout()
    handled = [line for line in logs if line["message"] == "trigger handled"]
    assert [line.get("run_id") for line in handled] == [results[0]["run_id"], None]
    assert [line["key"] for line in handled] == ["triggers/mnist-demo.json", "data/x.json"]
    assert handled[0]["bucket"] == BUCKET and handled[0]["version"] == version
    assert blob_metrics(the_blob(blobs)) == {"TriggersStarted", "TriggersIgnored"}


# -- the dimensions -----------------------------------------------------------------------------
@pytest.mark.parametrize("dataset, expected", [
    ({"kind": "mnist", "source": "download"}, "mnist"),
    ({"kind": "mnist", "source": "s3", "s3_prefix": "my/digits/"}, "mnist"),
    ({"kind": "csv", "training": {"data": "data/banking.csv"}}, "csv/banking"),
    ({"kind": "csv", "training": {"data": "uploads/banking/"}}, "csv/banking"),
    ({"kind": "csv", "training": {"data": "sales.CSV.gz"}}, "csv/sales"),
])
def test_the_dataset_dimension_names_the_data_not_the_run(obs, dataset, expected):
    dims = obs.dimensions_of({"name": "run-label-42", "dataset": dataset, "model": {"engine": "sagemaker"}})
    assert dims == {"dataset": expected, "engine": "sagemaker"}


def test_unreadable_run_dimensions_are_unknown_and_never_raise(obs, s3):
    assert obs.run_dimensions("no-such-run") == {"dataset": "unknown", "engine": "unknown"}
    assert obs.run_dimensions(None) == {"dataset": "unknown", "engine": "unknown"}
    put_run_trigger(s3, "no-such-run")   # a failure is not cached: it is read once it exists
    assert obs.run_dimensions("no-such-run") == {"dataset": "mnist", "engine": "builtin"}
