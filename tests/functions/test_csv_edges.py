"""CSV datasources at their edges, from the trigger to the evaluation: one-class data, labels
that look alike, numeric row ids, inputs outside the allowed prefixes, hostile recipes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import boto3
import numpy as np
import pytest
from moto import mock_aws

from stepml import evaluation
from stepml.engines.builtin import BuiltinEngine
from stepml.errors import DataError, TriggerRejected
from stepml.storage import Storage
from stepml.tabular import datasource as tds
from stepml.trigger import validate
from tests.fanout import predict_all_shards
from tests.tabular_data import schema

DESCRIPTOR = "runs/r1/datasource/datasource.json"


@pytest.fixture
def storage():
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="csv-edges")
        yield Storage("csv-edges", boto3.client("s3", region_name="us-east-1"))


def trigger(model_type: str, evaluation_data: bool, **model) -> dict:
    dataset = {"kind": "csv", "schema": "d/schema.json", "training": {"data": "d/train.csv"}}
    if evaluation_data:
        dataset["evaluation"] = {"data": "d/eval.csv"}
    return validate({"version": "1", "dataset": dataset,
                     "model": {"type": model_type, "parameters": {"sgd.maxPasses": "5"}, **model}})


def datasource(storage, data_schema: dict, train: bytes, model_type: str, evaluation_data: bytes | None = None,
               **model) -> tuple[dict, dict]:
    storage.put_bytes("d/schema.json", json.dumps(data_schema).encode())
    storage.put_bytes("d/train.csv", train)
    if evaluation_data is not None:
        storage.put_bytes("d/eval.csv", evaluation_data)
    run = trigger(model_type, evaluation_data is not None, **model)
    files = tds.locate_inputs(storage, run["dataset"], run["model"])
    descriptor = tds.create_csv_datasource(storage, "r1", {"files": files}, run["dataset"], run["model"])
    storage.put_json(DESCRIPTOR, descriptor)
    return descriptor, run


def train_predict_score(storage, descriptor: dict, run: dict) -> tuple[dict, dict]:
    engine = BuiltinEngine(storage)
    training = engine.start_training({"run_id": "r1", "datasource": DESCRIPTOR, "seed": 0, "time_budget_s": 30,
                                      "algorithm": run["model"]["algorithm"],
                                      "parameters": run["model"]["parameters"]})
    prediction = predict_all_shards(storage, "r1", DESCRIPTOR, training["model"])
    return prediction, evaluation.evaluate(storage, descriptor, prediction["predictions"])


def rows(fmt: str, n: int, seed: int = 0) -> bytes:
    x = np.random.default_rng(seed).normal(size=n)
    return "".join(fmt.format(i=i, x=v, pos=int(v > 0)) for i, v in enumerate(x)).encode()


XY_CATEGORICAL = schema([("x", "NUMERIC"), ("y", "CATEGORICAL")], "y")
XY_BINARY = schema([("x", "NUMERIC"), ("y", "BINARY")], "y")


def test_class_labels_are_ordered_like_encode_target_whatever_the_hash_seed():
    # "1" and "1.0" are equal as numbers: the order must not depend on set iteration order
    code = ("from stepml.tabular.datasource import merge_labels; "
            "print(merge_labels(['2', '1.0'], ['1', '1.0']))")
    seen = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        seen.add(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                text=True).stdout.strip())
    assert seen == {"['1', '1.0', '2']"}


def test_an_evaluation_set_with_one_class_is_scored(storage):
    train = rows("{x},{pos}\n", 100).replace(b",0\n", b",a\n").replace(b",1\n", b",b\n")
    evaluation_rows = b"0.5,b\n1.5,b\n2.0,b\n"
    descriptor, run = datasource(storage, XY_CATEGORICAL, train, "MULTICLASS", evaluation_rows)
    assert descriptor["class_labels"] == ["a", "b"]
    _, metrics = train_predict_score(storage, descriptor, run)
    assert metrics["accuracy"] == 1.0


def test_one_class_in_the_training_rows_fails_the_datasource_naming_the_target(storage):
    with pytest.raises(DataError, match=r"target .y.*BINARY.*training data has only .1."):
        datasource(storage, XY_BINARY, rows("{x},1\n", 50), "BINARY", rows("{x},{pos}\n", 20, seed=1))
    with pytest.raises(DataError, match=r"target .y.*training data has only .b."):
        datasource(storage, XY_CATEGORICAL, rows("{x},b\n", 50), "MULTICLASS", rows("{x},a\n", 20, seed=1))


def test_numeric_row_ids_are_written_back_exactly_as_they_came(storage):
    data_schema = schema([("id", "NUMERIC"), ("x", "NUMERIC"), ("y", "BINARY")], "y", row_id="id")
    train = rows("{i}0000001,{x},{pos}\n", 200) + b",0.3,1\n"         # ids beyond float32; one missing
    descriptor, run = datasource(storage, data_schema, train, "BINARY")
    prediction, _ = train_predict_score(storage, descriptor, run)
    [result] = prediction["amazon_ml_results"]
    lines = gzip.decompress(storage.get_bytes(result)).decode().splitlines()
    written = {line.split(",")[1] for line in lines[1:]}
    evaluated = {f"{i}0000001" for i in range(200)} | {""}
    assert written <= evaluated and len(written) == len(lines) - 1


@pytest.mark.parametrize("field, key", [("recipe", "runs/other-run/report.json"),
                                        ("recipe", "triggers/x.json"),
                                        ("recipe", "cache/../runs/x.json")])
def test_a_recipe_key_is_confined_like_the_data_keys(field, key):
    with pytest.raises(TriggerRejected, match="recipe"):
        validate({"version": "1", "dataset": {"kind": "csv", "schema": "d/s.json", "training": {"data": "d/t.csv"}},
                  "model": {"type": "BINARY", field: key}})


def test_a_recipe_object_that_is_not_json_names_its_key_line_and_column(storage):
    from stepml.tabular.recipe import RecipeError
    storage.put_bytes("d/schema.json", json.dumps(XY_BINARY).encode())
    storage.put_bytes("d/train.csv", rows("{x},{pos}\n", 20))
    storage.put_bytes("d/recipe.json", b'{"outputs": [x]}')
    run = trigger("BINARY", False, recipe="d/recipe.json")
    files = tds.locate_inputs(storage, run["dataset"], run["model"])
    with pytest.raises(RecipeError, match=r"model/recipe s3://csv-edges/d/recipe.json: not JSON: .* line 1, column 14"):
        tds.check_definitions(storage, files, {}, run["model"])
