"""MNIST in the form the 2016 Amazon ML scripts used, to show that their files run unchanged.

The scripts wrote each split as a CSV without a header: 784 integer pixel columns, then the
label. Their data schema names the pixels ``Var001`` ... ``Var784`` (NUMERIC) and the label
``prediction`` (CATEGORICAL, the target); the model was MULTICLASS with the recipe and SGD
parameters below. Amazon ML reached 91.6% test accuracy with it, in about 3 hours, for
about $2.80.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_PIXELS = 784
TARGET = "prediction"

SCHEMA_2016 = {
    "version": "1.0",
    "rowId": None,
    "rowWeight": None,
    "targetAttributeName": TARGET,
    "dataFormat": "CSV",
    "dataFileContainsHeader": False,
    "attributes": [{"attributeName": f"Var{i:03d}", "attributeType": "NUMERIC"}
                   for i in range(1, N_PIXELS + 1)]
    + [{"attributeName": TARGET, "attributeType": "CATEGORICAL"}],
    "excludedAttributeNames": [],
}

RECIPE_2016 = {
    "groups": {},
    "assignments": {},
    "outputs": ["ALL_BINARY", "ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,50)", "lowercase(ALL_TEXT)"],
}

PARAMETERS_2016 = {"sgd.maxPasses": "100", "sgd.l2RegularizationAmount": "1e-4"}

#: What Amazon ML reported for this setup in 2016.
AMAZON_ML_2016 = {"accuracy": 0.916, "cost_usd": 2.80, "hours": 3}

_DECIMAL = [str(v).encode() for v in range(256)]


def csv_lines(images: np.ndarray, labels: np.ndarray):
    """Yield the CSV text of each row: ``p1,...,p784,label\\n`` (uint8 pixels as integers)."""
    rows = images.reshape(len(images), -1)
    if rows.shape[1] != N_PIXELS:
        raise ValueError(f"expected 28x28 images; got rows of {rows.shape[1]} pixels")
    for row, label in zip(rows.tolist(), labels.tolist()):
        yield b",".join([_DECIMAL[p] for p in row] + [_DECIMAL[label]]) + b"\n"


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    with open(path, "wb") as handle:
        handle.writelines(csv_lines(images, labels))
    return path


def trigger_2016(training_key: str, evaluation_key: str, schema_key: str, *, seed: int = 0,
                 name: str = "mnist-amazonml-2016") -> dict:
    return {
        "version": "1",
        "name": name,
        "description": "MNIST as the 2016 Amazon ML scripts had it: headerless CSV, their schema, "
                       "recipe and SGD parameters",
        "dataset": {"kind": "csv", "schema": schema_key,
                    "training": {"data": training_key}, "evaluation": {"data": evaluation_key}},
        "model": {"type": "MULTICLASS", "engine": "builtin", "algorithm": "linear", "seed": seed,
                  "recipe": RECIPE_2016, "parameters": dict(PARAMETERS_2016)},
    }
