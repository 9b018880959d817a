"""CSV datasources in the run bucket: find the objects, check the definitions early, and build
the training and evaluation tables (validated rows, splits, statistics) under the run's prefix.

    runs/<run-id>/datasource/training.npz     the typed training rows (Table)
    runs/<run-id>/datasource/evaluation.npz   the typed evaluation rows
    runs/<run-id>/datasource/shards/          the evaluation rows again, as batch prediction's shards
    runs/<run-id>/datasource/statistics.json  Amazon ML-style statistics of both
    runs/<run-id>/datasource/datasource.json  the descriptor later steps read first

The schema and recipe are parsed at PrepareData, before a byte of data is read: a typo in
either fails the run in seconds with the place named, not after a long read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np

from stepml import shards
from stepml.errors import DataError
from stepml.runs import RunPaths
from stepml.storage import Storage
from stepml.tabular.csvdata import class_labels, encode_target, read_table
from stepml.tabular.jsondoc import load_object
from stepml.tabular.recipe import MAX_RECIPE_BYTES, RecipeError, default_recipe, parse_recipe
from stepml.tabular.schema import DataSchema, check_model_type, parse_schema
from stepml.tabular.split import split_mask
from stepml.tabular.stats import table_statistics
from stepml.tabular.table import Table

log = logging.getLogger(__name__)

MAX_DEFINITION_BYTES = 1024 * 1024           # a schema or recipe object
MAX_DATA_OBJECTS = 1000                      # per data location
# What one CreateDataSource Lambda reads into memory (the typed table is about the size of
# the text again); larger data is the Distributed Map's job.
MAX_DATA_BYTES = 1024 ** 3
#: Without an evaluation location, Amazon ML's console split: 70% to train, the rest to evaluate.
DEFAULT_TRAINING_SPLIT = {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "complement": False}
PARTS = ("training", "evaluation")


# -- PrepareData ---------------------------------------------------------------------------

def locate_inputs(storage: Storage, dataset: dict, model: dict) -> dict[str, str]:
    """Input name -> key: the schema, a recipe object if named, and every data object."""
    files = {"schema": _existing(storage, dataset["schema"], "dataset/schema")}
    if isinstance(model.get("recipe"), str):
        files["recipe"] = _existing(storage, model["recipe"], "model/recipe")
    for part in PARTS:
        if part in dataset:
            for i, key in enumerate(_data_objects(storage, dataset[part]["data"], f"dataset/{part}/data")):
                files[f"{part}/{i:04d}"] = key
    return files


def _existing(storage: Storage, key: str, field: str) -> str:
    if not storage.exists(key):
        raise DataError(f"{field}: {storage.uri(key)} does not exist")
    return key


def _data_objects(storage: Storage, location: str, field: str) -> list[str]:
    """The object itself, or the objects under a prefix ('/'-ended) in key order."""
    if not location.endswith("/"):
        head = storage.head(location)
        if head is None:
            raise DataError(f"{field}: {storage.uri(location)} does not exist")
        _check_total(head["ContentLength"], field, location)
        return [location]
    keys, total = [], 0
    for obj in storage.list_objects(location):
        if obj["Key"].endswith("/"):          # a console "folder" marker, not data
            continue
        keys.append(obj["Key"])
        total += obj["Size"]
        if len(keys) > MAX_DATA_OBJECTS:
            raise DataError(f"{field}: more than {MAX_DATA_OBJECTS} objects under {storage.uri(location)}")
    if not keys:
        raise DataError(f"{field}: no objects under {storage.uri(location)}")
    _check_total(total, field, location)
    return sorted(keys)


def _check_total(size: int, field: str, location: str) -> None:
    if size > MAX_DATA_BYTES:
        raise DataError(f"{field}: {location} holds {size:,} bytes; one datasource reads at most "
                        f"{MAX_DATA_BYTES:,}")


def check_definitions(storage: Storage, files: dict[str, str], versions: dict[str, str | None],
                      model: dict) -> tuple[DataSchema, dict]:
    """Parse the schema and the recipe (or derive the default one); raise on the first problem."""
    schema = parse_schema(storage.get_bytes(files["schema"], max_bytes=MAX_DEFINITION_BYTES,
                                            version_id=versions.get("schema")),
                          name=files["schema"])
    check_model_type(schema, model["type"])
    recipe = model.get("recipe")
    if isinstance(recipe, str):
        raw = storage.get_bytes(files["recipe"], max_bytes=MAX_DEFINITION_BYTES,
                                version_id=versions.get("recipe"))
        recipe = load_object(raw, name=f"model/recipe {storage.uri(files['recipe'])}", error=RecipeError,
                             max_bytes=MAX_RECIPE_BYTES, what="a recipe", expected='a JSON object with "outputs"')
    if recipe is None:
        recipe = default_recipe(schema)
    parse_recipe(recipe, schema)
    return schema, recipe


# -- CreateDataSource ----------------------------------------------------------------------

def create_csv_datasource(storage: Storage, run_id: str, data: dict, dataset: dict, model: dict,
                          shard_rows: int | None = None) -> dict:
    files, versions = data["files"], data.get("versions", {})
    schema, recipe = check_definitions(storage, files, versions, model)
    model_type = model["type"]
    tables, validation = {}, {}
    for part in PARTS:
        keys = [files[name] for name in sorted(files) if name.startswith(part + "/")]
        if keys:
            tables[part], validation[part] = read_table(
                _sources(storage, files, versions, part), schema, model_type=model_type,
                max_invalid_share=dataset["max_invalid_share"],
                progress=lambda message, part=part: log.info("%s data: %s", part, message))

    training_split, evaluation_split = splits(dataset)
    training = _select(tables["training"], training_split, "training")
    evaluation = _select(tables.get("evaluation", tables["training"]), evaluation_split, "evaluation")

    paths = RunPaths(run_id)
    descriptor = {
        "kind": "csv",
        "model_type": model_type,
        "schema": schema.to_json(),
        "recipe": recipe,
        "splits": {"training": training_split, "evaluation": evaluation_split},
        "tables": {},
        "train_rows": len(training),
        "test_rows": len(evaluation),
        # The Amazon ML-layout output names its result files after these objects.
        "evaluation_inputs": list(evaluation.sources),
    }
    descriptor.update(target_description(training, evaluation, model_type))
    statistics = {}
    for part, table in (("training", training), ("evaluation", evaluation)):
        key = f"{paths.datasource}{part}.npz"
        body = table.to_npz_bytes()
        storage.put_bytes(key, body)
        descriptor["tables"][part] = key
        if part == "evaluation":   # batch prediction's shards (stepml.shards)
            descriptor["shards"] = shards.write_table_shards(
                storage, paths.datasource + shards.SHARDS_DIR, table, len(body), shard_rows)
        statistics[part] = table_statistics(table, model_type=model_type, validation=validation.get(part))
    descriptor["validation"] = validation
    storage.put_json(paths.datasource + "statistics.json", statistics)
    storage.put_json(paths.datasource + "datasource.json", descriptor)
    return descriptor


def splits(dataset: dict) -> tuple[dict | None, dict | None]:
    """(training, evaluation) rearrangements; without an evaluation location the evaluation rows
    are the complement of the training split (70/30 random, seeded by the data location)."""
    training = dataset["training"].get("rearrangement")
    if "evaluation" in dataset:
        return training, dataset["evaluation"].get("rearrangement")
    if training is None:
        training = {"splitting": {**DEFAULT_TRAINING_SPLIT, "randomSeed": dataset["training"]["data"]}}
    splitting = training["splitting"]
    return training, {"splitting": {**splitting, "complement": not splitting.get("complement", False)}}


def _select(table: Table, rearrangement: dict | None, part: str) -> Table:
    if rearrangement is None:
        return table
    selected = table.select(split_mask(table, rearrangement))
    if len(selected) == 0:
        raise DataError(f"the {part} split {json.dumps(rearrangement['splitting'])} selects none of "
                        f"the {len(table)} valid rows")
    return selected


def _sources(storage: Storage, files: dict[str, str], versions: dict, part: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    for name in sorted(files):
        if name.startswith(part + "/"):
            yield files[name], storage.iter_chunks(files[name], version_id=versions.get(name))


def target_description(training: Table, evaluation: Table, model_type: str) -> dict:
    """Class labels (one order for both tables), the class count, and each baseline's figure.

    The training rows must hold every class a BINARY model has and at least two a MULTICLASS
    one has; the evaluation rows may hold fewer classes, or classes the training lacks.
    """
    if model_type == "REGRESSION":
        y, _ = encode_target(training, model_type)
        return {"n_classes": None, "class_labels": None, "target_mean": float(np.mean(y))}
    train_codes, train_labels = encode_target(training, model_type, where="the training data")
    _, eval_labels = encode_target(evaluation, model_type, min_classes=1, where="the evaluation data")
    labels = train_labels if model_type == "BINARY" else merge_labels(train_labels, eval_labels)
    codes = _recode(train_codes, train_labels, labels, training)
    counts = np.bincount(codes, minlength=len(labels))
    if model_type == "BINARY" and not counts.all():
        target = training.schema.target
        raise DataError(f"target {target!r}: a BINARY model needs both classes (0 and 1) in the training "
                        f"data; the training data has only {labels[int(counts.argmax())]!r} "
                        f"({len(training):,} rows)")
    return {"n_classes": len(labels), "class_labels": labels,
            "baseline_class": int(counts.argmax()), "training_class_counts": counts.tolist()}


def merge_labels(a: list[str], b: list[str]) -> list[str]:
    """The union of two class-label lists, in encode_target's order (:func:`class_labels`)."""
    return class_labels([*a, *b])


def target_codes(table: Table, model_type: str, labels: list[str] | None) -> np.ndarray:
    """The target as class indices into ``labels`` (classification) or float32 values."""
    y, own = encode_target(table, model_type, min_classes=1)
    return y if model_type == "REGRESSION" else _recode(y, own, labels, table)


def _recode(codes: np.ndarray, own: list[str], labels: list[str], table: Table) -> np.ndarray:
    """Class indices into ``own`` (one table's labels) as indices into ``labels`` (the model's)."""
    if own == labels:
        return codes
    position = {label: i for i, label in enumerate(labels)}
    missing = [label for label in own if label not in position]
    if missing:
        raise DataError(f"target {table.schema.target!r}: class {missing[0]!r} is not one of the "
                        f"model's classes {labels}")
    return np.array([position[label] for label in own], dtype=np.int64)[codes]


def load_table(storage: Storage, descriptor: dict, part: str) -> Table:
    return Table.from_npz_bytes(storage.get_bytes(descriptor["tables"][part]))
