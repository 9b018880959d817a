"""CSV datasources with Amazon ML data schemas through the whole state machine on the local
stack: one real-looking dataset per model type, then bad schemas and bad data, each ending in
a failure record that names the place, with no input object modified."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest

from stepml.local.runner import run_trigger
from tests import tabular_data
from tests.integration.stacks import local_stack


@pytest.fixture(scope="module")
def stack():
    with local_stack() as local:
        s3 = local.client("s3")
        for name, make in (("banking", tabular_data.banking), ("houses", tabular_data.houses),
                           ("wines", tabular_data.wines)):
            body, data_schema = make()
            s3.put_object(Bucket=local.bucket, Key=f"data/{name}/{name}.csv", Body=body)
            s3.put_object(Bucket=local.bucket, Key=f"data/{name}/{name}.csv.schema",
                          Body=json.dumps(data_schema).encode())
        # The wines again as a prefix of two objects, the second a held-out evaluation file.
        body, _ = tabular_data.wines()
        lines = body.splitlines(keepends=True)
        s3.put_object(Bucket=local.bucket, Key="data/wines-parts/train/part-000.csv", Body=b"".join(lines[:200]))
        s3.put_object(Bucket=local.bucket, Key="data/wines-parts/train/part-001.csv", Body=b"".join(lines[200:350]))
        s3.put_object(Bucket=local.bucket, Key="data/wines-parts/eval.csv", Body=b"".join(lines[350:]))
        yield local


def csv_trigger(name: str, model_type: str, **model) -> dict:
    return {
        "version": "1",
        "name": name,
        "dataset": {"kind": "csv", "schema": f"data/{name}/{name}.csv.schema",
                    "training": {"data": f"data/{name}/{name}.csv"}},
        "model": {"type": model_type, **model},
    }


def run(stack, tmp_path, trigger: dict, file_name: str):
    return run_trigger(stack, json.dumps(trigger).encode(), file_name, tmp_path, say=lambda _: None)


def objects(stack) -> dict[str, str]:
    s3 = stack.client("s3")
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=stack.bucket)
    return {f"{v['Key']}@{v['VersionId']}": v["ETag"] for p in pages for v in p.get("Versions", [])}


def aml_result(outcome) -> tuple[list[str], list[str]]:
    """(header, first data line) of the run's Amazon ML-layout result file."""
    [result] = sorted(outcome.out_dir.glob("predictions/batch-prediction/result/*.gz"))
    lines = gzip.decompress(result.read_bytes()).decode().splitlines()
    return lines[0].split(","), lines[1]


def test_binary_with_header_row_id_and_random_split_with_complement(stack, tmp_path):
    trigger = csv_trigger("banking", "BINARY", parameters={"sgd.maxPasses": "20"})
    trigger["dataset"]["training"]["rearrangement"] = {
        "splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "randomSeed": "bank"}}
    trigger["dataset"]["evaluation"] = {"data": "data/banking/banking.csv", "rearrangement": {
        "splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "randomSeed": "bank",
                      "complement": True}}}
    outcome = run(stack, tmp_path, trigger, "banking.json")

    assert outcome.status == "SUCCEEDED", outcome.failure
    report = outcome.report
    assert report["dataset"]["train_rows"] + report["dataset"]["test_rows"] == 600   # an exact partition
    assert 0.6 * 600 < report["dataset"]["train_rows"] < 0.8 * 600
    metrics = report["metrics"]
    assert metrics["BinaryAUC"] > 0.8 > metrics["baseline"]["BinaryAUC"]
    assert metrics["accuracy"] > metrics["baseline"]["accuracy"]
    header, first = aml_result(outcome)
    assert header == ["trueLabel", "customerId", "bestAnswer", "score"]
    assert first.split(",")[1].startswith("C")
    stats = json.loads((outcome.out_dir / "datasource/statistics.json").read_text())
    age = next(a for a in stats["training"]["attributes"] if a["name"] == "age")
    assert age["type"] == "NUMERIC" and age["missing"] > 0


def test_regression_with_an_excluded_column_and_a_separate_evaluation_object(stack, tmp_path):
    trigger = csv_trigger("houses", "REGRESSION", parameters={"sgd.maxPasses": "30"})
    outcome = run(stack, tmp_path, trigger, "houses.json")

    assert outcome.status == "SUCCEEDED", outcome.failure
    metrics = outcome.report["metrics"]
    assert metrics["RegressionRMSE"] < 0.6 * metrics["baseline"]["RegressionRMSE"]
    assert metrics["r2"] > 0.6
    header, _ = aml_result(outcome)
    assert header == ["trueLabel", "score"]


def test_multiclass_from_a_prefix_of_objects_with_the_mlp(stack, tmp_path):
    trigger = {
        "version": "1", "name": "wines",
        "dataset": {"kind": "csv", "schema": "data/wines/wines.csv.schema",
                    "training": {"data": "data/wines-parts/train/"},
                    "evaluation": {"data": "data/wines-parts/eval.csv"}},
        "model": {"type": "MULTICLASS", "algorithm": "mlp", "parameters": {"epochs": 20, "hidden_units": 32}},
    }
    outcome = run(stack, tmp_path, trigger, "wines.json")

    assert outcome.status == "SUCCEEDED", outcome.failure
    report = outcome.report
    assert (report["dataset"]["train_rows"], report["dataset"]["test_rows"]) == (350, 100)
    assert report["metrics"]["accuracy"] > 0.85 > report["metrics"]["baseline"]["accuracy"]
    assert report["metrics"]["class_labels"] == ["red", "rose", "white"]
    header, _ = aml_result(outcome)
    assert header == ["trueLabel", "red", "rose", "white"]


@pytest.mark.parametrize("case, schema_change, data, expected", [
    ("unknown-type", lambda s: s["attributes"][1].update(attributeType="NUMBER"), None, "attributes[1].attributeType"),
    ("target-missing", lambda s: s.update(targetAttributeName="nope"), None, "nope"),
    ("duplicate-names", lambda s: s["attributes"][2].update(attributeName="sugar"), None, "sugar"),
    ("wrong-width", None, b"3.1,2.0,rioja\n" * 50, "columns"),
    ("not-numeric", None, b"3.1,lots,rioja,red\n" * 50, "sugar"),
    ("too-many-classes", None, b"".join(b"3.1,2.0,rioja,c%d\n" % i for i in range(150)), "100"),
    ("empty", None, b"", "no valid rows"),
])
def test_bad_schemas_and_data_end_in_a_failure_record_naming_the_place(stack, tmp_path, case, schema_change,
                                                                        data, expected):
    s3 = stack.client("s3")
    _, data_schema = tabular_data.wines()
    if schema_change:
        schema_change(data_schema)
    body = data if data is not None else tabular_data.wines()[0]
    s3.put_object(Bucket=stack.bucket, Key=f"data/bad-{case}/data.csv", Body=body)
    s3.put_object(Bucket=stack.bucket, Key=f"data/bad-{case}/schema.json", Body=json.dumps(data_schema).encode())
    trigger = {"version": "1", "name": f"bad-{case}",
               "dataset": {"kind": "csv", "schema": f"data/bad-{case}/schema.json",
                           "training": {"data": f"data/bad-{case}/data.csv"}},
               "model": {"type": "MULTICLASS"}}
    before = objects(stack)
    outcome = run(stack, tmp_path, trigger, f"bad-{case}.json")
    after = objects(stack)

    assert outcome.status == "FAILED"
    assert outcome.failure["error"] in ("DataError", "SchemaError")
    assert expected in outcome.failure["cause"]
    assert all(after[k] == etag for k, etag in before.items())   # nothing modified or deleted


def test_a_recipe_error_fails_at_prepare_data_before_any_data_is_read(stack, tmp_path):
    trigger = csv_trigger("wines", "MULTICLASS", recipe={"outputs": ["quantile_bin(sugar 10)"]})
    outcome = run(stack, tmp_path, trigger, "bad-recipe.json")

    assert outcome.status == "FAILED"
    assert outcome.failure["failed_step"] == "PrepareData"
    assert "outputs[0]" in outcome.failure["cause"]


def test_the_amazon_ml_layout_manifest_maps_each_input_to_its_result(stack, tmp_path):
    trigger = csv_trigger("wines", "MULTICLASS", parameters={"sgd.maxPasses": "10"})
    outcome = run(stack, tmp_path, trigger, "wines-linear.json")

    assert outcome.status == "SUCCEEDED", outcome.failure
    [manifest] = outcome.out_dir.glob("predictions/batch-prediction/*.manifest")
    mapping = json.loads(manifest.read_text())
    [(source, result)] = mapping.items()
    assert source == f"s3://{stack.bucket}/data/wines/wines.csv"
    assert result.endswith("-wines.csv.gz") and "/batch-prediction/result/" in result
    raw = stack.client("s3").get_object(Bucket=stack.bucket, Key=result.split("/", 3)[3])["Body"].read()
    rows = gzip.GzipFile(fileobj=io.BytesIO(raw)).read().decode().splitlines()
    assert len(rows) == 1 + outcome.report["dataset"]["test_rows"]


def test_the_2016_amazon_ml_files_run_unchanged_and_their_result_reads_the_2016_way(stack, tmp_path):
    """The 2016 MNIST scripts' format (headerless CSV, their schema, recipe and sgd.* parameters)
    on small synthetic digits; `make demo-2016` runs the same with the real 70,000 images."""
    from stepml import mnist
    from stepml.amlformat import accuracy_like_2016
    from stepml.tabular import mnist2016

    splits = mnist.load_splits(mnist.synthetic_mnist(1500, 300, seed=4))
    s3 = stack.client("s3")
    for split, name in (("train", "train.csv"), ("test", "test.csv")):
        # Real scans have a blank background; the look-alikes' noise would give every pixel
        # 50 quantile bins of pure noise to memorise.
        images = np.where(splits[split].images < 96, 0, splits[split].images).astype(np.uint8)
        body = b"".join(mnist2016.csv_lines(images, splits[split].labels))
        s3.put_object(Bucket=stack.bucket, Key=f"data/mnist-2016/{name}", Body=body)
    s3.put_object(Bucket=stack.bucket, Key="data/mnist-2016/mnist.csv.schema",
                  Body=json.dumps(mnist2016.SCHEMA_2016).encode())
    trigger = mnist2016.trigger_2016("data/mnist-2016/train.csv", "data/mnist-2016/test.csv",
                                     "data/mnist-2016/mnist.csv.schema")
    assert trigger["model"]["recipe"] == mnist2016.RECIPE_2016          # nothing adapted
    outcome = run(stack, tmp_path, trigger, "mnist-2016.json")

    assert outcome.status == "SUCCEEDED", outcome.failure
    metrics = outcome.report["metrics"]
    assert metrics["accuracy"] > 0.8 and metrics["MulticlassAvgFScore"] > 0.8
    [result] = outcome.out_dir.glob("predictions/batch-prediction/result/*-test.csv.gz")
    header, _ = aml_result(outcome)
    assert header == ["trueLabel"] + [str(c) for c in range(10)]
    assert accuracy_like_2016(result.read_bytes()) == pytest.approx(metrics["accuracy"], abs=1e-12)
