"""The amazonml engine: the original Amazon Machine Learning service, called as the 2016 scripts did.

Amazon ML takes no new customers (an account that never used it gets ``AccessDeniedException``:
"AmazonML is no longer available to new customers") and answers only in us-east-1 and
eu-west-1. For the accounts that still have it, this engine makes exactly the 2016 calls:

* Train: ``CreateDataSourceFromS3`` for the training data (the data schema inline,
  ``ComputeStatistics``, our training split as ``DataRearrangement``), for the evaluation data
  (the evaluation location, or the training data with the evaluation split), and -- only when
  the evaluation datasource is a split -- for the whole evaluation location, which the batch
  prediction reads (see "Row alignment"); then ``CreateMLModel`` (type, recipe, ``sgd.*``
  parameters as strings). All at once: Amazon ML queues work on pending datasources.
* CheckTraining: ``GetMLModel`` and ``GetDataSource`` (a FAILED datasource fails the run with
  its own ``Message``, which says more than the model's).
* BatchPredict: ``CreateEvaluation`` (the model on the evaluation datasource) and
  ``CreateBatchPrediction`` into ``s3://<bucket>/runs/<run>/predictions/amazonml/``.
* CheckBatchPrediction: ``GetBatchPrediction`` and ``GetEvaluation``; once both are COMPLETED
  the output is found through ``batch-prediction/<bp-id>.manifest``, each gzipped result read
  with :func:`stepml.amlformat.read_result`, and our ``predictions.csv`` written, so Score
  evaluates the service's predictions exactly as it evaluates the builtin engine's. The
  evaluation's ``PerformanceMetrics`` come back as ``service_metrics`` (floats).

Ids are ``<prefix>-<12 hex of sha256(run id)>-<attempt>-<kind>``: the prefix from
``STEPML_JOB_PREFIX`` (default ``stepml``; IAM grants only ids with it), the attempt token of
the Lambda invocation (a retried step never collides with its own earlier objects), and the
kind ``ds-t`` / ``ds-e`` / ``ds-p`` (training / evaluation / prediction datasource), ``m``
(model), ``ev`` (evaluation), ``bp`` (batch prediction). Amazon ML ids are 1-64 characters of
``[a-zA-Z0-9_.-]``. Names, for the console, are ``<prefix> run <run id>: <what>``.

Row alignment. Score compares ``predictions.csv`` row by row with OUR evaluation rows. Amazon
ML's random split hashes each row's byte offset and ours its position, so a split
evaluation datasource may not hold the same rows as ours. The batch prediction therefore
reads the whole evaluation location (no rearrangement), where Amazon ML writes exactly one
result line per input line (observations are one line each in Amazon ML's format; a header
line is not an observation), and each of our rows is picked by its source object and line
number. Where the result carries the row id or ``trueLabel``, every picked row is checked
against ours, so a misalignment is an error, never a silently wrong score. The evaluation's
own metrics (``service_metrics``) are on Amazon ML's split and may differ slightly from ours.
The price of exactness: with a split (no separate evaluation location) the batch prediction
predicts every line of the data, and Amazon ML bills each ($0.10 per 1,000): about 3.3 times
the evaluation rows for the default 70/30 split. A separate evaluation location costs nothing
extra (its datasource has no rearrangement and serves both the evaluation and the batch
prediction).

Invalid records: a blank (or malformed) result line for one of our rows -- Amazon ML could
not predict it -- gets the no-information prediction: the training class distribution
(classification) or the training mean (regression), and is counted in ``invalid_records``.

Errors: ``AccessDeniedException`` and a region Amazon ML never served raise
:class:`EngineUnavailable` (never retried); throttling (or a 5xx) on a Create* call raises
:class:`EngineThrottled` (the state machine retries the step), on a Get* call it reports
IN_PROGRESS (poll again); ``InvalidInputException`` on a Create* call raises
:class:`DataError` with the service's message; a FAILED or DELETED object reports FAILED with
its ``Message``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from typing import Any

import numpy as np

from stepml import amlformat, predictions
from stepml.engines import COMPLETED, FAILED, IN_PROGRESS, aws
from stepml.errors import DataError, EngineThrottled, EngineUnavailable
from stepml.models.amazonml_params import AMAZON_ML_DEFAULTS, SGD_KEYS, _parse
from stepml.runs import RunPaths
from stepml.storage import Storage
from stepml.tabular.csvdata import BINARY_VALUES
from stepml.tabular.datasource import MAX_DEFINITION_BYTES, load_table

log = logging.getLogger(__name__)

__all__ = ["AmazonMLEngine", "SUPPORTED_REGIONS", "check_parameters", "check_region", "object_id"]

SUPPORTED_REGIONS = ("us-east-1", "eu-west-1")
SERVICE = "machinelearning"
ENGINE = "amazonml"
ALGORITHM = "linear"
OUTPUT_FOLDER = "amazonml/"                  # under runs/<run>/predictions/
#: Amazon ML takes a DataSchema or Recipe of at most this many characters inline (API
#: reference: CreateDataSourceFromS3 / CreateMLModel); longer ones go by their S3 URI.
MAX_INLINE_CHARS = 131_071
_ID = re.compile(r"[a-zA-Z0-9_.-]{1,64}")
_PREFIX = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,23}")
_TOKEN = re.compile(r"[a-zA-Z0-9]{1,16}")
KINDS = ("ds-t", "ds-e", "ds-p", "m", "ev", "bp")
THROTTLING = {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
              "RequestLimitExceeded", "LimitExceededException", "RequestThrottled",
              "InternalServerException", "ServiceUnavailable", "ServiceUnavailableException"}
DENIED = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}
NOT_FOUND = {"ResourceNotFoundException"}
PERFORMANCE_METRICS = {"BINARY": "BinaryAUC", "MULTICLASS": "MulticlassAvgFScore", "REGRESSION": "RegressionRMSE"}


# -- parameters, region, ids -------------------------------------------------------------------

def check_parameters(params: dict | None, model_type: str) -> dict[str, str]:
    """The trigger's ``model.parameters`` as Amazon ML's CreateMLModel takes them: a map of
    ``sgd.*`` names to strings. Values may be given as strings or numbers; they are checked
    (ranges, L1 and L2 not both) and normalised (``"1e-4"`` -> ``"0.0001"``). Any other name
    is refused, listing the valid ones. Raises ``ValueError``."""
    if model_type not in amlformat.MODEL_TYPES:
        raise ValueError(f"model type must be one of {', '.join(amlformat.MODEL_TYPES)}; got {model_type!r}")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError(f"parameters must be a JSON object; got {type(params).__name__}")
    unknown = sorted(str(k) for k in params if k not in SGD_KEYS)
    if unknown:
        raise ValueError(f"Amazon ML takes only its sgd.* training parameters ({', '.join(SGD_KEYS)}); "
                         f"not {', '.join(unknown)}")
    values = {key: _parse(key, raw) for key, raw in params.items()}
    if values.get("sgd.l1RegularizationAmount") and values.get("sgd.l2RegularizationAmount"):
        raise ValueError("Amazon ML accepts L1 or L2 regularisation, not both: set "
                         "'sgd.l1RegularizationAmount' or 'sgd.l2RegularizationAmount' to 0")
    return {key: _text(value) for key, value in values.items()}


def _text(value: Any) -> str:
    """``10`` -> ``"10"``, ``1e-4`` -> ``"0.0001"``, ``"auto"`` -> ``"auto"``."""
    return repr(value) if isinstance(value, float) else str(value)


def check_region(region: str | None) -> str:
    """``region`` if Amazon ML ever answered there, else :class:`EngineUnavailable`."""
    if region not in SUPPORTED_REGIONS:
        raise EngineUnavailable(f"Amazon ML answers only in us-east-1 and eu-west-1; this run's region is "
                                f"{region or 'not set'}. Deploy the stack in one of those regions, or use "
                                f"engine 'sagemaker' or 'builtin'")
    return region


def job_prefix() -> str:
    prefix = os.environ.get("STEPML_JOB_PREFIX", "stepml")
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"STEPML_JOB_PREFIX must be 1-24 characters of [a-zA-Z0-9-], starting with a "
                         f"letter or digit; got {prefix!r}")
    return prefix


def object_id(run_id: str, attempt: str, kind: str) -> str:
    """``<prefix>-<12 hex of sha256(run id)>-<attempt>-<kind>``, an Amazon ML id (<= 64 chars).

    An attempt token outside ``[a-zA-Z0-9]{1,16}`` is replaced by 12 hex of its own sha256, so
    distinct tokens stay distinct ids."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    token = str(attempt)
    if not _TOKEN.fullmatch(token):
        token = hashlib.sha256(token.encode()).hexdigest()[:12]
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    value = f"{job_prefix()}-{digest}-{token}-{kind}"
    assert _ID.fullmatch(value), value
    return value


def _name(run_id: str, what: str) -> str:
    """A readable name for the console (Amazon ML names: up to 1024 UTF-8 characters)."""
    return f"{job_prefix()} run {run_id}: {what}"[:1024]


# -- errors ----------------------------------------------------------------------------------

def _unavailable(code: str, message: str, operation: str) -> EngineUnavailable:
    if "no longer available to new customers" in message:
        return EngineUnavailable(f"Amazon ML refused {operation}: it is no longer available to new customers "
                                 f"(AccessDeniedException: {message}). Use engine 'sagemaker' or 'builtin'")
    return EngineUnavailable(f"Amazon ML refused {operation} ({code}: {message}); check the stack's IAM "
                             f"permissions for machinelearning:{operation}, or whether this account still has "
                             f"Amazon ML (it is no longer available to new customers)")


def _call(ml, operation: str, request: dict) -> tuple[dict | None, tuple[str, str, Exception] | None]:
    """One Amazon ML call: (response, None), or (None, (code, message, error)) for an error the service
    answered. Denial raises EngineUnavailable (never retried); any other error propagates."""
    try:
        return getattr(ml, _snake(operation))(**request), None
    except Exception as err:                  # botocore's errors: ClientError and its subclasses
        answered = aws.client_error(err)
        if answered is None:
            raise
        code, message = answered
        if code in DENIED:
            raise _unavailable(code, message, operation) from None
        return None, (code, message, err)


def _create(ml, operation: str, **request) -> dict:
    """One Create* call: throttling -> EngineThrottled, denial -> EngineUnavailable, bad input ->
    DataError, each with the service's message."""
    response, error = _call(ml, operation, request)
    if error is None:
        return response
    code, message, _ = error
    if code in THROTTLING:
        raise EngineThrottled(f"Amazon ML {operation} was throttled ({code}: {message}); retrying the step")
    raise DataError(f"Amazon ML {operation} refused the request ({code}: {message})")


def _get(ml, operation: str, **request) -> tuple[dict | None, str | None]:
    """One Get* call -> (response, None); throttled -> (None, None) (poll again); a missing
    object -> (None, message); denial -> EngineUnavailable."""
    response, error = _call(ml, operation, request)
    if error is None:
        return response, None
    code, message, err = error
    if code in THROTTLING:
        log.warning("Amazon ML %s throttled (%s); polling again later", operation, code)
        return None, None
    if code in NOT_FOUND:
        return None, f"Amazon ML {operation}: {message} ({', '.join(f'{k}={v}' for k, v in request.items())})"
    raise err


def _snake(operation: str) -> str:
    from botocore import xform_name

    return xform_name(operation)


def _failed(what: str, object_id_: str, response: dict) -> str:
    status = response.get("Status")
    message = response.get("Message") or "no message given"
    return f"Amazon ML {what} {object_id_} is {status}: {message}"


def _seconds(response: dict) -> float | None:
    started, finished = response.get("StartedAt"), response.get("FinishedAt")
    if started is None or finished is None:
        return None
    return round((finished - started).total_seconds(), 3)


def _compute_ms(*responses: dict | None) -> int:
    return int(sum(int(r.get("ComputeTime") or 0) for r in responses if r))


# -- the engine ------------------------------------------------------------------------------

class AmazonMLEngine:
    def __init__(self, storage: Storage):
        self.storage = storage

    def _client(self):
        ml = aws.client(SERVICE)
        check_region(ml.meta.region_name)
        return ml

    # -- training --------------------------------------------------------------------------
    def start_training(self, job: dict) -> dict:
        ml = self._client()                      # refuses an unserved region before any call
        run_id, attempt = job["run_id"], job["attempt"]
        descriptor = self.storage.get_json(job["datasource"])
        if descriptor.get("kind") != "csv":
            raise DataError("engine amazonml reads CSV datasets with an Amazon ML data schema (dataset kind csv)")
        model_type = job.get("model_type") or descriptor["model_type"]
        trigger = job["trigger"]
        dataset, model = trigger["dataset"], trigger["model"]
        parameters = check_parameters(job.get("parameters") or {}, model_type)
        # The definitions as CreateDataSource checked them (kept in the descriptor), so Train reads
        # nothing outside runs/: only a text too long to send inline goes by its S3 URI.
        schema = _definition(descriptor["schema"], dataset["schema"], "DataSchema", "DataSchemaLocationS3",
                             self.storage)
        training_split, evaluation_split = descriptor["splits"]["training"], descriptor["splits"]["evaluation"]
        training_location = dataset["training"]["data"]
        evaluation_location = dataset.get("evaluation", dataset["training"])["data"]

        # A retry of this step (EngineThrottled on a later Create, a lost Lambda answer) creates
        # all of these again under new ids. Amazon ML has no call to stop a datasource or model
        # being built, so an earlier attempt's objects finish and bill their compute time
        # (minutes at $0.42/h for statistics and training); they are left, named after the run.
        ids = {kind: object_id(run_id, attempt, kind) for kind in KINDS}
        datasources = {"training": ids["ds-t"], "evaluation": ids["ds-e"]}
        specs = [("training", ids["ds-t"], training_location, training_split, True),
                 ("evaluation", ids["ds-e"], evaluation_location, evaluation_split, True)]
        if evaluation_split is not None:        # the batch prediction reads every evaluation line
            datasources["prediction"] = ids["ds-p"]
            specs.append(("prediction", ids["ds-p"], evaluation_location, None, False))
        else:
            datasources["prediction"] = ids["ds-e"]
        for part, ds_id, location, split, statistics in specs:
            spec = {"DataLocationS3": self.storage.uri(location), **schema}
            if split is not None:
                spec["DataRearrangement"] = json.dumps(_rearrangement(split))
            _create(ml, "CreateDataSourceFromS3", DataSourceId=ds_id, DataSourceName=_name(run_id, f"{part} data"),
                    DataSpec=spec, ComputeStatistics=statistics)
        request = {"MLModelId": ids["m"], "MLModelName": _name(run_id, f"{model_type} model"),
                   "MLModelType": model_type, "TrainingDataSourceId": ids["ds-t"], "Parameters": parameters}
        recipe = model.get("recipe")          # none: Amazon ML derives its own default recipe
        if isinstance(recipe, dict) and len(json.dumps(descriptor["recipe"])) > MAX_INLINE_CHARS:
            raise DataError(f"model/recipe is over {MAX_INLINE_CHARS:,} characters as JSON, Amazon ML's inline "
                            "limit: put it in an S3 object and name its key")
        if recipe is not None:
            request.update(_definition(descriptor["recipe"], recipe if isinstance(recipe, str) else None,
                                       "Recipe", "RecipeUri", self.storage))
        _create(ml, "CreateMLModel", **request)
        log.info("Amazon ML model %s queued on datasources %s", ids["m"], datasources)
        return {"job_id": ids["m"], "status": IN_PROGRESS, "ml_model_id": ids["m"], "datasources": datasources,
                "parameters": parameters, "recipe": "none" if recipe is None else ("inline" if isinstance(recipe, dict) else recipe),
                "model_type": model_type, "seed": job.get("seed"), "rows": descriptor.get("train_rows")}

    def describe_training(self, job: dict) -> dict:
        ml = self._client()
        model_id = job["ml_model_id"]
        carried = {k: job[k] for k in ("job_id", "ml_model_id", "datasources") if k in job}
        model, missing = _get(ml, "GetMLModel", MLModelId=model_id)
        if missing:
            return {**carried, "status": FAILED, "message": missing}
        if model is None:
            return {**carried, "status": IN_PROGRESS}
        status = model["Status"]
        training_ds, missing = _get(ml, "GetDataSource", DataSourceId=job["datasources"]["training"])
        if missing:
            return {**carried, "status": FAILED, "message": missing}
        if training_ds is not None and training_ds["Status"] in ("FAILED", "DELETED"):
            return {**carried, "status": FAILED,
                    "message": _failed("training datasource", training_ds["DataSourceId"], training_ds)}
        if status in ("FAILED", "DELETED"):
            return {**carried, "status": FAILED, "message": _failed("model", model_id, model)}
        if status != "COMPLETED":
            return {**carried, "status": IN_PROGRESS, "service_status": status}
        if training_ds is None:                  # throttled: the model's cost needs it, poll again
            return {**carried, "status": IN_PROGRESS, "service_status": status}

        cost_facts = {"compute_time_ms": _compute_ms(model, training_ds),
                      "size_bytes": int(model.get("SizeInBytes") or 0)}
        seconds = _seconds(model)
        parameters = dict(model.get("TrainingParameters") or job.get("parameters") or {})
        passes = parameters.get("sgd.maxPasses", job.get("parameters", {}).get("sgd.maxPasses"))
        training = {
            "job_id": model_id,
            "status": COMPLETED,
            "engine": ENGINE,
            "algorithm": ALGORITHM,
            "parameters": parameters,
            "seed": job.get("seed"),
            "rows": job.get("rows"),
            "training_seconds": seconds,
            "time_budget_s": None,
            "summary": {"epochs_planned": int(passes or AMAZON_ML_DEFAULTS["sgd.maxPasses"]),
                        "epochs_completed": None, "best_epoch": None, "stop_reason": "completed",
                        "seconds": seconds},
            "history": [],
            "model": model_id,
            "cost_facts": cost_facts,
            "amazonml": {"region": ml.meta.region_name, "ml_model_id": model_id, "model_type": model.get("MLModelType"),
                         "datasources": job["datasources"], "score_threshold": model.get("ScoreThreshold"),
                         "recipe": job.get("recipe"), "size_bytes": cost_facts["size_bytes"]},
        }
        self.storage.put_json(RunPaths(job["run_id"]).model + "training.json", training)
        return {**carried, "status": COMPLETED, "model": model_id, "cost_facts": cost_facts,
                "training_seconds": seconds}

    # -- batch prediction ------------------------------------------------------------------
    def start_batch_prediction(self, job: dict) -> dict:
        ml = self._client()
        run_id, attempt = job["run_id"], job["attempt"]
        training = self.storage.get_json(RunPaths(run_id).model + "training.json")
        service = training.get("amazonml") or {}
        if training.get("model") != job["model"] or "datasources" not in service:
            raise DataError(f"runs/{run_id}/model/training.json does not describe Amazon ML model {job['model']}")
        datasources = service["datasources"]
        evaluation_id, bp_id = object_id(run_id, attempt, "ev"), object_id(run_id, attempt, "bp")
        output_uri = self.storage.uri(RunPaths(run_id).predictions + OUTPUT_FOLDER)
        _create(ml, "CreateEvaluation", EvaluationId=evaluation_id, EvaluationName=_name(run_id, "evaluation"),
                MLModelId=job["model"], EvaluationDataSourceId=datasources["evaluation"])
        _create(ml, "CreateBatchPrediction", BatchPredictionId=bp_id, BatchPredictionName=_name(run_id, "batch prediction"),
                MLModelId=job["model"], BatchPredictionDataSourceId=datasources["prediction"], OutputUri=output_uri)
        return {"job_id": bp_id, "status": IN_PROGRESS, "batch_prediction_id": bp_id, "evaluation_id": evaluation_id,
                "output_uri": output_uri, "datasources": datasources, "model_type": job.get("model_type")}

    def describe_batch_prediction(self, job: dict) -> dict:
        ml = self._client()
        carried = {k: job[k] for k in ("job_id", "batch_prediction_id", "evaluation_id", "output_uri", "datasources")
                   if k in job}
        bp_id, evaluation_id = job["batch_prediction_id"], job["evaluation_id"]
        batch, missing = _get(ml, "GetBatchPrediction", BatchPredictionId=bp_id)
        if missing:
            return {**carried, "status": FAILED, "message": missing}
        evaluation, missing = _get(ml, "GetEvaluation", EvaluationId=evaluation_id)
        if missing:
            return {**carried, "status": FAILED, "message": missing}
        for what, object_id_, response, source in (
                ("batch prediction", bp_id, batch, "BatchPredictionDataSourceId"),
                ("evaluation", evaluation_id, evaluation, "EvaluationDataSourceId")):
            if response is not None and response["Status"] in ("FAILED", "DELETED"):
                # A failed datasource fails what reads it; its own Message says why.
                data, _ = _get(ml, "GetDataSource", DataSourceId=response[source]) if response.get(source) else (None, None)
                if data is not None and data["Status"] in ("FAILED", "DELETED"):
                    return {**carried, "status": FAILED,
                            "message": _failed(f"{what} datasource", data["DataSourceId"], data)}
                return {**carried, "status": FAILED, "message": _failed(what, object_id_, response)}
        if batch is None or evaluation is None or batch["Status"] != COMPLETED or evaluation["Status"] != COMPLETED:
            return {**carried, "status": IN_PROGRESS,
                    "service_status": {"batch_prediction": batch and batch["Status"],
                                       "evaluation": evaluation and evaluation["Status"]}}
        return {**carried, **self._collect(job["run_id"], batch, evaluation, job.get("datasources") or {}, ml)}

    def _collect(self, run_id: str, batch: dict, evaluation: dict, datasources: dict, ml) -> dict:
        """Read the service's output, write our predictions.csv, and report."""
        paths = RunPaths(run_id)
        descriptor = self.storage.get_json(paths.datasource + "datasource.json")
        model_type = descriptor["model_type"]
        bp_id = batch["BatchPredictionId"]
        output = self._key(batch.get("OutputUri") or self.storage.uri(paths.predictions + OUTPUT_FOLDER))
        manifest_key = amlformat.manifest_key(output, bp_id)
        manifest = self.storage.get_json(manifest_key)
        if not isinstance(manifest, dict):
            raise DataError(f"{self.storage.uri(manifest_key)} is not a JSON map of input -> result")
        table = load_table(self.storage, descriptor, "evaluation")
        aligned = _Alignment(descriptor, table)
        results = []
        for source_index, source in enumerate(table.sources):
            rows = np.flatnonzero(table.source_index == source_index)
            if rows.size == 0:
                continue
            result_uri = manifest.get(self.storage.uri(source))
            if result_uri is None:
                raise DataError(f"the batch prediction manifest {self.storage.uri(manifest_key)} has no result for "
                                f"{self.storage.uri(source)}")
            result_key = self._key(result_uri)
            results.append(result_key)
            try:
                parsed = amlformat.read_result(self.storage.get_bytes(result_key), model_type,
                                               row_id_name=descriptor["schema"].get("rowId"))
            except ValueError as err:
                raise DataError(f"{result_uri}: {err}") from None
            aligned.take(rows, parsed, result_uri)
        scores, invalid = aligned.finish()
        key = paths.predictions + "predictions.csv"
        body = predictions.values_to_csv(scores) if model_type == "REGRESSION" else predictions.to_csv(scores)
        self.storage.put_bytes(key, body, "text/csv")

        extra = [_get(ml, "GetDataSource", DataSourceId=ds)[0] for ds in sorted(set(datasources.values()))
                 if ds != datasources.get("training")]
        cost_facts = {
            # Billed at the compute-hour rate: the evaluation and the statistics of its datasources.
            "compute_time_ms": _compute_ms(evaluation, *extra),
            # Billed per prediction instead; its compute time is reported, not charged by the hour.
            "batch_prediction_compute_time_ms": _compute_ms(batch),
            "total_record_count": int(batch.get("TotalRecordCount") or 0),
            "invalid_record_count": int(batch.get("InvalidRecordCount") or 0),
        }
        return {"status": COMPLETED, "predictions": key, "rows": len(scores), "invalid_records": invalid,
                "service_metrics": _metrics(evaluation), "cost_facts": cost_facts,
                "amazon_ml_manifest": manifest_key, "amazon_ml_results": results,
                "prediction_seconds": _seconds(batch)}

    def _key(self, uri: str) -> str:
        prefix = f"s3://{self.storage.bucket}/"
        if not isinstance(uri, str) or not uri.startswith(prefix):
            raise DataError(f"Amazon ML output {uri!r} is not in this run's bucket {self.storage.bucket}")
        return uri[len(prefix):]


def _definition(document: dict, key: str | None, inline: str, by_uri: str, storage) -> dict:
    """``{inline: JSON text}``, or ``{by_uri: s3://...}`` of its object when too long to send inline."""
    text = json.dumps(document)
    if len(text) <= MAX_INLINE_CHARS or key is None:
        return {inline: text}
    return {by_uri: storage.uri(key)}


def _rearrangement(split: dict) -> dict:
    """Our DataRearrangement in Amazon ML's terms (a randomSeed only with the random strategy)."""
    splitting = dict(split["splitting"])
    if splitting.get("strategy") != "random":
        splitting.pop("randomSeed", None)
    return {"splitting": splitting}


def _metrics(evaluation: dict) -> dict:
    """The evaluation's PerformanceMetrics properties as floats (strings in the API)."""
    out = {}
    for name, value in ((evaluation.get("PerformanceMetrics") or {}).get("Properties") or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            log.warning("Amazon ML performance metric %s is not a number: %r", name, value)
            continue
        out[name] = number if math.isfinite(number) else None
    return out


class _Alignment:
    """Our evaluation rows, filled from Amazon ML's result lines by source object and line number."""

    def __init__(self, descriptor: dict, table):
        self.model_type = descriptor["model_type"]
        schema = descriptor["schema"]
        self.header_lines = 1 if schema.get("dataFileContainsHeader") else 0
        self.table = table
        self.row_id = schema.get("rowId")
        self.target = schema.get("targetAttributeName")
        n = len(table.line_numbers)
        if self.model_type == "REGRESSION":
            self.labels = None
            self.fallback = np.array([float(descriptor["target_mean"])])
            self.scores = np.full(n, np.nan)
        else:
            self.labels = list(descriptor["class_labels"])
            counts = np.asarray(descriptor["training_class_counts"], dtype=np.float64)
            self.fallback = counts / counts.sum()
            self.scores = np.full((n, len(self.labels)), np.nan)
        self.filled = np.zeros(n, dtype=bool)

    def take(self, rows: np.ndarray, parsed: dict, uri: str) -> None:
        lines = self.table.line_numbers[rows] - 1 - self.header_lines      # observation index in the file
        if lines.size and (lines.min() < 0 or lines.max() >= parsed["rows"]):
            raise DataError(f"{uri} has {parsed['rows']} result lines; the evaluation rows need line "
                            f"{int(lines.max()) + 1}: the batch prediction did not read the whole evaluation data")
        valid = parsed["valid"][lines]
        self._check(rows[valid], lines[valid], parsed, uri)
        if self.model_type == "MULTICLASS":
            position = {label: i for i, label in enumerate(self.labels)}
            unknown = [label for label in parsed["class_labels"] if label not in position]
            if unknown:
                raise DataError(f"{uri} scores class(es) {unknown} that the datasource does not have "
                                f"(its classes: {self.labels})")
            columns = [position[label] for label in parsed["class_labels"]]
            block = np.zeros((rows.size, len(self.labels)))
            block[:, columns] = parsed["scores"][lines]
            self.scores[rows] = block
        elif self.model_type == "BINARY":
            p = parsed["scores"][lines]
            self.scores[rows] = np.column_stack([1.0 - p, p])
        else:
            self.scores[rows] = parsed["scores"][lines]
        self.filled[rows[valid]] = True

    def _check(self, rows: np.ndarray, lines: np.ndarray, parsed: dict, uri: str) -> None:
        """Each picked result line must be the row it stands for (row id, trueLabel)."""
        if self.row_id and parsed["row_ids"] is not None:
            ours = self.table.columns[self.row_id][rows]
            theirs = [parsed["row_ids"][i] for i in lines]
            for r, a, b in zip(rows, ours, theirs):
                if str(a) != str(b):
                    raise DataError(f"{uri}: the result for input line {int(self.table.line_numbers[r])} has row id "
                                    f"{b!r} where the evaluation row has {str(a)!r}; the batch prediction does "
                                    f"not line up with the data")
        if self.target and parsed["true_labels"] is not None and self.target in self.table.columns:
            ours = self.table.columns[self.target][rows]
            for r, a, b in zip(rows, ours, (parsed["true_labels"][i] for i in lines)):
                if b in (None, "") or _same_label(a, b, self.model_type):
                    continue
                raise DataError(f"{uri}: the result for input line {int(self.table.line_numbers[r])} has trueLabel "
                                f"{b!r} where the evaluation row has {a!r}; the batch prediction does not "
                                f"line up with the data")

    def finish(self) -> tuple[np.ndarray, int]:
        invalid = int((~self.filled).sum())
        if invalid:
            log.warning("%d evaluation row(s) have no Amazon ML prediction (invalid records); they get the "
                        "training %s", invalid, "mean" if self.labels is None else "class distribution")
        if self.labels is None:
            self.scores[~self.filled] = self.fallback[0]
            return self.scores, invalid
        self.scores[~self.filled] = self.fallback
        totals = self.scores.sum(axis=1, keepdims=True)
        scores = np.where(totals > 0, self.scores / np.where(totals > 0, totals, 1.0), self.fallback)
        return scores, invalid


def _same_label(ours: Any, theirs: str, model_type: str) -> bool:
    if model_type == "MULTICLASS":
        return str(ours) == theirs
    if model_type == "BINARY":
        value = BINARY_VALUES.get(theirs.strip().lower())
        return value is not None and float(value) == float(ours)
    try:
        return math.isclose(float(ours), float(theirs), rel_tol=1e-5, abs_tol=1e-6)
    except ValueError:
        return False
