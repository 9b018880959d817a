"""The trigger contract: parse, validate against the JSON Schema, fill defaults, name the run.

Everything here runs before any compute is spent: a trigger that fails is rejected with a
readable record next to it and starts nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import unquote_plus

import jsonschema

from stepml.errors import DataError, TriggerRejected

TRIGGER_PREFIX = "triggers/"
TRIGGER_SUFFIX = ".json"
REJECTION_SUFFIX = ".rejected"  # deliberately not '.json': it must not trigger a run itself
MAX_TRIGGER_BYTES = 64 * 1024
DEFAULTS = {"engine": "builtin", "seed": 0}
PRESETS = {"fast": "linear", "balanced": "mlp", "accurate": "cnn"}  # preset -> algorithm
# MNIST defaults to the MLP; CSV to Amazon ML's own algorithm, which its recipes were made for.
DEFAULT_PRESET = {"mnist": "balanced", "csv": "fast"}
IMAGE_ALGORITHMS = {"cnn"}
BATCH_PREDICTION_DEFAULTS = {"max_concurrency": 10, "tolerated_failure_percentage": 0}


def schema() -> dict:
    text = resources.files("stepml").joinpath("schemas/trigger.schema.json").read_text()
    return json.loads(text)


_SCHEMA = schema()
_VALIDATOR = jsonschema.Draft202012Validator(_SCHEMA)


def parse(raw: bytes) -> dict:
    """Bytes of a trigger object -> validated trigger with defaults filled in."""
    if len(raw) > MAX_TRIGGER_BYTES:
        raise TriggerRejected(f"trigger is {len(raw):,} bytes; the limit is {MAX_TRIGGER_BYTES:,}")
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise TriggerRejected("trigger is not UTF-8 text") from None
    except RecursionError:
        raise TriggerRejected("trigger nests too deeply to be a trigger") from None
    except json.JSONDecodeError as err:
        raise TriggerRejected(f"trigger is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    return validate(document)


def validate(document: Any) -> dict:
    errors = sorted(_VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        messages, described = [], set()
        for e in errors:   # a key failing both its pattern and its 'not' is explained once
            if e.validator in ("pattern", "not") and "description" in e.schema:
                if (tuple(e.absolute_path), e.schema["description"]) in described:
                    continue
                described.add((tuple(e.absolute_path), e.schema["description"]))
            messages.append(_describe(e))
        raise TriggerRejected("; ".join(messages[:5]))
    trigger = copy.deepcopy(document)  # never modify the caller's object
    model = trigger["model"]
    for name, value in DEFAULTS.items():
        model.setdefault(name, value)
    model.setdefault("parameters", {})
    dataset = trigger["dataset"]
    _apply_engine_defaults(model, dataset["kind"])
    if dataset["kind"] == "mnist":
        dataset.setdefault("source", "download")
    else:
        _check_csv_dataset(dataset)
    _check_model_fits_dataset(model, dataset["kind"])
    _check_quality_gate(trigger.get("quality_gate", {}), model["type"])
    _check_model_parameters(model)
    batch = trigger.setdefault("batch_prediction", {})
    for name, value in BATCH_PREDICTION_DEFAULTS.items():
        batch.setdefault(name, value)
    return trigger


def _check_csv_dataset(dataset: dict) -> None:
    from stepml.tabular.split import check_rearrangement

    dataset.setdefault("max_invalid_share", 0.1)
    for part in ("training", "evaluation"):
        if part in dataset and "rearrangement" in dataset[part]:
            try:
                dataset[part]["rearrangement"] = check_rearrangement(
                    dataset[part]["rearrangement"], name=f"dataset/{part}/rearrangement")
            except (DataError, ValueError) as err:
                raise TriggerRejected(str(err)) from None


def _check_model_fits_dataset(model: dict, kind: str) -> None:
    if kind == "mnist":
        if model["type"] != "MULTICLASS":
            raise TriggerRejected(f"model/type: MNIST is a MULTICLASS problem, not {model['type']}")
        if "recipe" in model:
            raise TriggerRejected("model/recipe: recipes apply to CSV datasets; MNIST images go to the model as pixels")
    elif model["algorithm"] in IMAGE_ALGORITHMS:
        raise TriggerRejected(f"model/algorithm: {model['algorithm']} is for image datasets (kind mnist); "
                              "use linear or mlp for CSV data")


def _check_quality_gate(gate: dict, model_type: str) -> None:
    from stepml.evaluation import GATES

    for name in gate:
        if model_type not in GATES[name]:
            raise TriggerRejected(f"quality_gate/{name} applies to {' and '.join(GATES[name])} models, "
                                  f"not {model_type}")


#: Algorithms each engine runs; the first is its default (builtin: the preset decides).
ENGINE_ALGORITHMS = {"builtin": ("linear", "mlp", "cnn"), "sagemaker": ("linear-learner", "xgboost"),
                     "amazonml": ("linear",)}
ENGINE_OPTIONS = {"builtin": None, "sagemaker": "sagemaker", "amazonml": "amazonml"}


def _apply_engine_defaults(model: dict, kind: str) -> None:
    """The engine decides which algorithms and option blocks make sense."""
    engine = model["engine"]
    for other, block in ENGINE_OPTIONS.items():
        if block and block in model and other != engine:
            raise TriggerRejected(f"model/{block}: options for engine {other!r}, but the engine is {engine!r}")
    if engine == "builtin":
        _apply_preset(model, kind)
    else:
        if "preset" in model:
            raise TriggerRejected(f"model/preset: presets name builtin algorithms; engine {engine!r} "
                                  f"runs {', '.join(ENGINE_ALGORITHMS[engine])}")
        model.setdefault("algorithm", ENGINE_ALGORITHMS[engine][0])
        options = model.setdefault(ENGINE_OPTIONS[engine], {})
        defaults = _SCHEMA["properties"]["model"]["properties"][ENGINE_OPTIONS[engine]].get("properties", {})
        for name, spec in defaults.items():
            if "default" in spec:
                options.setdefault(name, spec["default"])
    if model["algorithm"] not in ENGINE_ALGORITHMS[engine]:
        raise TriggerRejected(f"model/algorithm: engine {engine!r} runs {', '.join(ENGINE_ALGORITHMS[engine])}, "
                              f"not {model['algorithm']!r}")
    if engine == "amazonml" and kind != "csv":
        raise TriggerRejected("model/engine: Amazon ML reads CSV data with a data schema; use dataset kind csv "
                              "(MNIST as CSV: see `stepml demo --amazonml-2016`)")


def _apply_preset(model: dict, kind: str) -> None:
    """A preset names an algorithm (its tuned defaults); an explicit algorithm must agree."""
    if "preset" not in model and "algorithm" in model:
        return
    model.setdefault("preset", DEFAULT_PRESET[kind])
    preset_algorithm = PRESETS[model["preset"]]
    if model.setdefault("algorithm", preset_algorithm) != preset_algorithm:
        raise TriggerRejected(
            f"model: preset {model['preset']!r} means algorithm {preset_algorithm!r}, but the trigger "
            f"asks for {model['algorithm']!r}; give one of them, and tune with model.parameters"
        )


ENGINE_SET_PARAMETERS = {"seed": "model.seed", "n_classes": "the datasource", "image_shape": "the datasource",
                         "objective": "model.type"}


def _check_model_parameters(model: dict) -> None:
    """The algorithm's own check of its parameters (names, types, ranges), before any compute."""
    if model["engine"] != "builtin":
        from stepml.engines import check_parameters

        try:
            model["parameters"] = check_parameters(model["engine"], model["algorithm"], model["parameters"],
                                                   model["type"])
        except (TypeError, ValueError, DataError) as err:
            raise TriggerRejected(f"model.parameters: {err}") from None
        return
    from stepml.models import make_model  # numpy import only when a trigger is checked

    for name in model["parameters"].keys() & ENGINE_SET_PARAMETERS.keys():
        raise TriggerRejected(f"model.parameters.{name} is set by {ENGINE_SET_PARAMETERS[name]}, not here")
    try:
        make_model(model["algorithm"], model["parameters"], seed=model["seed"])
    except (TypeError, ValueError) as err:
        raise TriggerRejected(f"model.parameters: {err}") from None


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator in ("anyOf", "oneOf", "pattern") and "description" in error.schema:   # say what would do
        return f"{where}: {error.message}; expected: {error.schema['description'].rstrip('.')}"
    if error.validator == "not" and "description" in error.schema:   # its message would dump a sub-schema
        return f"{where}: {error.instance!r} is not allowed; expected: {error.schema['description'].rstrip('.')}"
    return f"{where}: {error.message}"


def _refuse_constant(name: str) -> Any:
    raise TriggerRejected(f"trigger contains {name}, which is not valid JSON")


def is_trigger_key(key: str) -> bool:
    return key.startswith(TRIGGER_PREFIX) and key.endswith(TRIGGER_SUFFIX)


def object_from_s3_record(record: Any) -> tuple[str, str, str | None, str]:
    """(bucket, key, versionId, version-or-etag) of one S3 event record; keys arrive URL-encoded.

    Raises ValueError for a record that is not an S3 object event.
    """
    try:
        bucket = record["s3"]["bucket"]["name"]
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError):
        raise ValueError("not an S3 object event record") from None
    version_id = obj.get("versionId") or None
    return bucket, key, version_id, version_id or obj.get("eTag") or ""


def run_id_for(bucket: str, key: str, version: str, label: str | None = None) -> str:
    """A deterministic execution name: the same object version always names the same run.

    Step Functions names allow 1-80 characters of [A-Za-z0-9_-]; a duplicate S3 event
    therefore hits ExecutionAlreadyExists instead of starting a second run.
    """
    if label:
        stem = label
    elif is_trigger_key(key):
        stem = key[len(TRIGGER_PREFIX) : -len(TRIGGER_SUFFIX)]
    else:
        stem = key
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:40] or "run"
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()[:16]
    return f"{stem}-{digest}"


def rejection_key(trigger_key: str) -> str:
    return trigger_key + REJECTION_SUFFIX
