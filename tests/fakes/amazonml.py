"""A stateful fake of Amazon Machine Learning behind botocore's own request handling.

``FakeAmazonML().client()`` is a real botocore ``machinelearning`` client: botocore validates
every request against the service model and serialises it; then a ``before-call`` handler
answers it from the fake's state instead of sending it. On top of botocore's validation the
fake checks what the service checked and botocore does not (id and URI patterns, maximum
lengths, enums), answering ``InvalidInputException`` as the service did. Every response is
validated against the operation's output shape, encoded as the service's JSON and parsed
back by botocore's own parser, so the engine sees exactly what a real client returns
(datetimes, ``ClientError`` with the right code and HTTP status).

What it does, honestly and small:

* datasources read the CSV objects and the schema from (moto) S3 when they complete: one
  observation per line (a header line is skipped when the schema says so), a line with the
  wrong field count is invalid; ``DataRearrangement`` selects observations, the random
  strategy hashing (seed, file, byte offset) as Amazon ML did -- deliberately NOT stepml's
  hash, so the engine cannot rely on both sides splitting alike;
* models "train" on the NUMERIC inputs (mean-imputed, standardised): BINARY / MULTICLASS a
  nearest-centroid classifier with class priors (softmax of -d^2/2 + log prior), REGRESSION
  least squares; with no numeric input, the majority class / the mean;
* batch predictions write Amazon ML's layout (``stepml.amlformat.write_result``): per input
  file a gzipped CSV with ``trueLabel`` when the data has the target, the row id, and the
  scores -- MULTICLASS columns in the order the classes first appear in the training data
  (never the sorted order, as the real service did not sort them) -- plus the manifest; an
  invalid observation, or one listed in ``blank_rows``, is a blank line;
* evaluations compute ``BinaryAUC`` / ``MulticlassAvgFScore`` / ``RegressionRMSE`` from the
  model's own predictions on the evaluation datasource's observations.

Statuses walk PENDING -> INPROGRESS -> COMPLETED over ``pending_gets`` + ``progress_gets`` + 1
Get calls of each object (an object that another one needs is finished when that one is).
Knobs: :meth:`throttle` the next call(s) of an operation, :meth:`fail_next` the next object of
a kind or :meth:`fail` a given one (FAILED with a Message), :meth:`delete` an object (DELETED), ``deny = True`` (every call
gets the real ``AccessDeniedException``), ``blank_rows``; a client in a region Amazon ML never
served fails to connect, as the real client did (``EndpointConnectionError``).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.parsers import create_parser
from botocore.validate import validate_parameters

from stepml import amlformat

REGIONS = ("us-east-1", "eu-west-1")
#: The real refusal (rebuy-de/aws-nuke#341, rusoto/rusoto#1306): HTTP 403, this text.
NO_NEW_CUSTOMERS = ("Thank you for your interest in Amazon Machine Learning. AmazonML is no longer available "
                    "to new customers.  Please consider using Amazon SageMaker.")
ACCOUNT = "123456789012"
KINDS = ("datasource", "mlmodel", "evaluation", "batchprediction")
BINARY_VALUES = {"0": 0, "1": 1, "n": 0, "y": 1, "no": 0, "yes": 1, "f": 0, "t": 1, "false": 0, "true": 1}
SGD_DEFAULTS = {"sgd.maxPasses": "10", "sgd.shuffleType": "auto", "sgd.l1RegularizationAmount": "0.0",
                "sgd.l2RegularizationAmount": "1e-06", "sgd.maxMLModelSizeInBytes": "33554432"}


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class _Object:
    kind: str
    id: str
    request: dict
    created: dt.datetime
    gets: int = 0
    fail_message: str | None = None
    deleted: bool = False
    status: str = "PENDING"           # the terminal one once finished
    message: str | None = None
    finished: dt.datetime | None = None
    compute_ms: int = 0
    state: dict = field(default_factory=dict)


class FakeAmazonML:
    def __init__(self, region: str = "us-east-1", *, pending_gets: int = 1, progress_gets: int = 1):
        self.region = region
        self.pending_gets, self.progress_gets = pending_gets, progress_gets
        self.objects: dict[str, dict[str, _Object]] = {kind: {} for kind in KINDS}
        self.requests: list[dict] = []        # every call that reached the fake, validated
        self.deny = False
        self.blank_rows: set[int] = set()     # observation indexes (all files, in order) to fail
        self._throttled: dict[str, int] = {}
        self._fail_next: dict[str, str] = {}
        self._clock = dt.datetime(2016, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
        self._s3 = None
        self._client = None

    # -- knobs -----------------------------------------------------------------------------
    def client(self):
        """A real botocore client whose calls this fake answers (one per fake: every call of
        ``client()`` returns it, as creating clients is slow and they share the state anyway)."""
        if self._client is None:
            session = boto3.session.Session(region_name=self.region, aws_access_key_id="testing",
                                            aws_secret_access_key="testing")
            self._client = session.client("machinelearning", config=Config(parameter_validation=True,
                                                                           retries={"max_attempts": 1}))
            self._client.meta.events.register("before-call.machine-learning", self._before_call)
        return self._client

    def throttle(self, operation: str, times: int = 1) -> None:
        self._throttled[operation] = self._throttled.get(operation, 0) + times

    def fail_next(self, kind: str, message: str) -> None:
        assert kind in KINDS, kind
        self._fail_next[kind] = message

    def fail(self, kind: str, object_id: str, message: str) -> None:
        """The object (not yet finished) will end FAILED with ``message``."""
        obj = self.objects[kind][object_id]
        assert obj.finished is None, f"{kind} {object_id} has finished already"
        obj.fail_message = message

    def delete(self, kind: str, object_id: str) -> None:
        self.objects[kind][object_id].deleted = True

    def operations(self) -> list[str]:
        return [r["operation"] for r in self.requests]

    def calls(self, operation: str) -> list[dict]:
        return [r["params"] for r in self.requests if r["operation"] == operation]

    # -- the botocore hook -----------------------------------------------------------------
    def _before_call(self, model, params, context, **_):
        operation = model.name
        region = context.get("client_region")
        body = json.loads(params["body"] or b"{}")
        self.requests.append({"operation": operation, "params": body, "region": region})
        if region not in REGIONS:      # no such endpoint: the real client cannot connect
            raise EndpointConnectionError(endpoint_url=f"https://machinelearning.{region}.amazonaws.com/")
        self._clock += dt.timedelta(seconds=30)
        try:
            if self.deny:
                raise ServiceError("AccessDeniedException", NO_NEW_CUSTOMERS, 403)
            if self._throttled.get(operation):
                self._throttled[operation] -= 1
                raise ServiceError("ThrottlingException", "Rate exceeded")
            _check_constraints(body, model.input_shape, operation)
            response = getattr(self, "_" + operation)(**body)
        except ServiceError as err:
            return self._wire(model, err.status, {"__type": err.code, "message": err.message})
        check = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        validate_parameters(check, model.output_shape)          # the fake never drifts from the model
        return self._wire(model, 200, response)

    def _wire(self, model, status: int, payload: dict):
        body = json.dumps(payload, default=_epoch).encode()
        headers = {"x-amzn-requestid": str(uuid.uuid4()), "content-type": "application/x-amz-json-1.1"}
        parsed = create_parser("json").parse({"status_code": status, "headers": headers, "body": body},
                                             model.output_shape)
        return AWSResponse(f"https://machinelearning.{self.region}.amazonaws.com/", status, headers, _Raw(body)), parsed

    # -- creates ---------------------------------------------------------------------------
    def _create(self, kind: str, object_id: str, request: dict) -> _Object:
        existing = self.objects[kind].get(object_id)
        if existing is not None:
            if existing.request != request:
                raise ServiceError("IdempotentParameterMismatchException",
                                   f"A {kind} with id {object_id} already exists with different parameters")
            return existing
        obj = _Object(kind, object_id, request, self._clock, fail_message=self._fail_next.pop(kind, None))
        self.objects[kind][object_id] = obj
        return obj

    def _need(self, kind: str, object_id: str, what: str) -> _Object:
        obj = self.objects[kind].get(object_id)
        if obj is None:
            raise ServiceError("InvalidInputException", f"{what} {object_id} does not exist")
        return obj

    def _CreateDataSourceFromS3(self, DataSourceId, DataSpec, DataSourceName=None, ComputeStatistics=False):
        if "DataSchema" not in DataSpec and "DataSchemaLocationS3" not in DataSpec:
            raise ServiceError("InvalidInputException", "DataSpec needs a DataSchema or a DataSchemaLocationS3")
        if "DataSchema" in DataSpec:
            try:
                json.loads(DataSpec["DataSchema"])
            except ValueError as err:
                raise ServiceError("InvalidInputException", f"DataSchema is not valid JSON: {err}") from None
        if DataSpec.get("DataRearrangement"):
            _rearrangement(DataSpec["DataRearrangement"])          # InvalidInputException when bad
        self._create("datasource", DataSourceId, {"DataSpec": DataSpec, "Name": DataSourceName,
                                                  "ComputeStatistics": ComputeStatistics})
        return {"DataSourceId": DataSourceId}

    def _CreateMLModel(self, MLModelId, MLModelType, TrainingDataSourceId, MLModelName=None, Parameters=None,
                       Recipe=None, RecipeUri=None):
        source = self._need("datasource", TrainingDataSourceId, "DataSource")
        if not source.request["ComputeStatistics"]:
            raise ServiceError("InvalidInputException",
                               f"DataSource {TrainingDataSourceId} was created without ComputeStatistics; "
                               "a training datasource needs its statistics")
        unknown = sorted(set(Parameters or {}) - set(SGD_DEFAULTS))
        if unknown:
            raise ServiceError("InvalidInputException", f"unknown training parameter(s) {unknown}")
        if Recipe is not None:
            try:
                json.loads(Recipe)
            except ValueError as err:
                raise ServiceError("InvalidInputException", f"Recipe is not valid JSON: {err}") from None
        self._create("mlmodel", MLModelId, {"MLModelType": MLModelType, "TrainingDataSourceId": TrainingDataSourceId,
                                            "Name": MLModelName, "Parameters": Parameters or {},
                                            "Recipe": Recipe, "RecipeUri": RecipeUri})
        return {"MLModelId": MLModelId}

    def _CreateEvaluation(self, EvaluationId, MLModelId, EvaluationDataSourceId, EvaluationName=None):
        self._need("mlmodel", MLModelId, "MLModel")
        self._need("datasource", EvaluationDataSourceId, "DataSource")
        self._create("evaluation", EvaluationId, {"MLModelId": MLModelId, "DataSourceId": EvaluationDataSourceId,
                                                  "Name": EvaluationName})
        return {"EvaluationId": EvaluationId}

    def _CreateBatchPrediction(self, BatchPredictionId, MLModelId, BatchPredictionDataSourceId, OutputUri,
                               BatchPredictionName=None):
        self._need("mlmodel", MLModelId, "MLModel")
        self._need("datasource", BatchPredictionDataSourceId, "DataSource")
        key = OutputUri.split("/", 3)[3] if OutputUri.count("/") >= 3 else ""
        if any(bad in key for bad in (":", "//", "/./", "/../")):
            raise ServiceError("InvalidInputException", f"OutputUri {OutputUri} holds ':', '//', '/./' or '/../'")
        self._create("batchprediction", BatchPredictionId, {"MLModelId": MLModelId, "OutputUri": OutputUri,
                                                            "DataSourceId": BatchPredictionDataSourceId,
                                                            "Name": BatchPredictionName})
        return {"BatchPredictionId": BatchPredictionId}

    # -- gets ------------------------------------------------------------------------------
    def _get(self, kind: str, object_id: str) -> _Object:
        obj = self.objects[kind].get(object_id)
        if obj is None:
            raise ServiceError("ResourceNotFoundException", "A specified resource cannot be located.")
        obj.gets += 1
        if obj.gets > self.pending_gets + self.progress_gets:
            self._finish(obj)
        return obj

    def _status(self, obj: _Object) -> str:
        if obj.deleted:
            return "DELETED"
        if obj.finished is not None:
            return obj.status
        return "PENDING" if obj.gets <= self.pending_gets else "INPROGRESS"

    def _common(self, obj: _Object) -> dict:
        status = self._status(obj)
        out = {"CreatedByIamUser": f"arn:aws:iam::{ACCOUNT}:user/stepml", "CreatedAt": obj.created,
               "LastUpdatedAt": obj.finished or obj.created, "Status": status,
               "LogUri": f"https://eml-prod-emr.s3.amazonaws.com/{ACCOUNT}-{obj.kind}-{obj.id}/userlog"}
        if obj.request.get("Name"):
            out["Name"] = obj.request["Name"]
        if status != "PENDING":
            out["StartedAt"] = obj.created + dt.timedelta(minutes=1)
        if obj.finished is not None:
            out["FinishedAt"] = obj.finished
            if obj.message:
                out["Message"] = obj.message
            if obj.status == "COMPLETED":
                out["ComputeTime"] = obj.compute_ms
        return out

    def _GetDataSource(self, DataSourceId, Verbose=False):
        obj = self._get("datasource", DataSourceId)
        spec = obj.request["DataSpec"]
        out = {"DataSourceId": obj.id, "DataLocationS3": spec["DataLocationS3"],
               "ComputeStatistics": obj.request["ComputeStatistics"], **self._common(obj)}
        if spec.get("DataRearrangement"):
            out["DataRearrangement"] = spec["DataRearrangement"]
        if obj.status == "COMPLETED" and obj.finished is not None:
            out["DataSizeInBytes"] = obj.state["bytes"]
            out["NumberOfFiles"] = len(obj.state["files"])
        if Verbose and "DataSchema" in spec:
            out["DataSourceSchema"] = spec["DataSchema"]
        return out

    def _GetMLModel(self, MLModelId, Verbose=False):
        obj = self._get("mlmodel", MLModelId)
        source = self.objects["datasource"][obj.request["TrainingDataSourceId"]]
        out = {"MLModelId": obj.id, "TrainingDataSourceId": source.id, "MLModelType": obj.request["MLModelType"],
               "InputDataLocationS3": source.request["DataSpec"]["DataLocationS3"],
               "TrainingParameters": {**SGD_DEFAULTS, **obj.request["Parameters"]}, **self._common(obj)}
        if obj.request["MLModelType"] == "BINARY":
            out["ScoreThreshold"] = 0.5
        if obj.finished is not None and obj.status == "COMPLETED":
            out["SizeInBytes"] = obj.state["size_bytes"]
        if Verbose and obj.request.get("Recipe"):
            out["Recipe"] = obj.request["Recipe"]
        return out

    def _GetEvaluation(self, EvaluationId):
        obj = self._get("evaluation", EvaluationId)
        source = self.objects["datasource"][obj.request["DataSourceId"]]
        out = {"EvaluationId": obj.id, "MLModelId": obj.request["MLModelId"], "EvaluationDataSourceId": source.id,
               "InputDataLocationS3": source.request["DataSpec"]["DataLocationS3"], **self._common(obj)}
        if obj.finished is not None and obj.status == "COMPLETED":
            out["PerformanceMetrics"] = {"Properties": obj.state["metrics"]}
        return out

    def _GetBatchPrediction(self, BatchPredictionId):
        obj = self._get("batchprediction", BatchPredictionId)
        source = self.objects["datasource"][obj.request["DataSourceId"]]
        out = {"BatchPredictionId": obj.id, "MLModelId": obj.request["MLModelId"],
               "BatchPredictionDataSourceId": source.id, "OutputUri": obj.request["OutputUri"],
               "InputDataLocationS3": source.request["DataSpec"]["DataLocationS3"], **self._common(obj)}
        if obj.finished is not None and obj.status == "COMPLETED":
            out["TotalRecordCount"] = obj.state["total"]
            out["InvalidRecordCount"] = obj.state["invalid"]
        return out

    # -- the work, done when an object completes -------------------------------------------
    def _finish(self, obj: _Object) -> None:
        if obj.finished is not None:
            return
        try:
            if obj.fail_message:
                raise ServiceError("Failed", obj.fail_message)
            getattr(self, f"_run_{obj.kind}")(obj)
            obj.status = "COMPLETED"
        except ServiceError as err:
            obj.status, obj.message = "FAILED", err.message
        obj.finished = obj.created + dt.timedelta(minutes=5)

    def _dependency(self, kind: str, object_id: str) -> _Object:
        dep = self.objects[kind][object_id]
        self._finish(dep)
        if dep.status != "COMPLETED" or dep.deleted:
            raise ServiceError("Failed", f"The {kind} {object_id} that this operation depends on "
                                         f"{'was deleted' if dep.deleted else 'failed'}")
        return dep

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = boto3.client("s3", region_name="us-east-1")
        return self._s3

    def _read(self, uri: str) -> bytes:
        bucket, key = _split(uri)
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            raise ServiceError("Failed", f"Amazon ML cannot read {uri}: the object does not exist") from None

    def _run_datasource(self, obj: _Object) -> None:
        spec = obj.request["DataSpec"]
        schema = json.loads(spec["DataSchema"] if "DataSchema" in spec else self._read(spec["DataSchemaLocationS3"]))
        names = [a["attributeName"] for a in schema["attributes"]]
        bucket, key = _split(spec["DataLocationS3"])
        if key and not key.endswith("/"):
            files = [spec["DataLocationS3"]]
        else:
            listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
            files = [f"s3://{bucket}/{o['Key']}" for o in listing if not o["Key"].endswith("/")]
        if not files:
            raise ServiceError("Failed", f"Amazon ML found no data at {spec['DataLocationS3']}")
        observations, size = [], 0
        for file_index, uri in enumerate(files):
            raw = self._read(uri)
            size += len(raw)
            offset = 0
            lines = raw.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            for number, line in enumerate(lines):
                start, offset = offset, offset + len(line) + 1
                if number == 0 and schema.get("dataFileContainsHeader"):
                    continue
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                fields = next(csv.reader([text]), [])
                record = dict(zip(names, (f.strip() for f in fields))) if len(fields) == len(names) else None
                observations.append({"file": uri, "file_index": file_index, "offset": start, "record": record})
        selected = _select(observations, spec.get("DataRearrangement"))
        obj.state.update(schema=schema, files=files, bytes=size, observations=[observations[i] for i in selected])
        obj.compute_ms = 30_000 + 20 * len(observations) if obj.request["ComputeStatistics"] else 0

    def _run_mlmodel(self, obj: _Object) -> None:
        source = self._dependency("datasource", obj.request["TrainingDataSourceId"])
        schema = source.state["schema"]
        model_type, target = obj.request["MLModelType"], schema["targetAttributeName"]
        rows = [o["record"] for o in source.state["observations"]
                if o["record"] is not None and _target(o["record"].get(target, ""), model_type) is not None]
        if len(rows) < 2:
            raise ServiceError("Failed", "The training datasource has too few valid observations with a target")
        inputs = [a["attributeName"] for a in schema["attributes"]
                  if a["attributeType"] == "NUMERIC" and a["attributeName"] not in
                  {target, schema.get("rowId"), *schema.get("excludedAttributeNames", [])}]
        x = _numbers(rows, inputs)
        mean = np.nanmean(x, axis=0) if inputs else np.zeros(0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        x = np.where(np.isnan(x), mean, x)
        std = x.std(axis=0) if inputs else np.zeros(0)
        std = np.where(std > 0, std, 1.0)
        z = (x - mean) / std
        y = [_target(r[target], model_type) for r in rows]
        state: dict[str, Any] = {"schema": schema, "inputs": inputs, "mean": mean, "std": std, "type": model_type}
        if model_type == "REGRESSION":
            design = np.column_stack([np.ones(len(z)), z])
            state["coef"] = np.linalg.lstsq(design, np.asarray(y, dtype=np.float64), rcond=None)[0]
        else:
            classes = list(dict.fromkeys(y))                       # first appearance in the data
            if model_type == "BINARY":
                classes = [0, 1]
            elif classes == sorted(classes, key=_class_order):
                classes = classes[::-1]                            # never hand out the sorted order
            codes = np.array([classes.index(v) for v in y])
            state["classes"] = classes
            state["prior"] = np.log(np.maximum(np.bincount(codes, minlength=len(classes)), 1) / len(codes))
            state["centroids"] = np.array([z[codes == c].mean(axis=0) if (codes == c).any() and inputs
                                           else np.zeros(len(inputs)) for c in range(len(classes))])
        obj.state.update(state)
        obj.state["size_bytes"] = 8 * (1 + len(inputs)) * max(1, len(state.get("classes", [0])))
        obj.compute_ms = 60_000 + 50 * len(rows)

    def _scores(self, model: _Object, records: list[dict | None]) -> np.ndarray:
        """One score vector per record (NaN for an invalid one): P(1), class scores, or the value."""
        s = model.state
        ok = [r is not None for r in records]
        x = _numbers([r if r is not None else {} for r in records], s["inputs"])
        x = np.where(np.isnan(x), s["mean"], x)
        z = (x - s["mean"]) / s["std"]
        if s["type"] == "REGRESSION":
            out = np.column_stack([np.ones(len(z)), z]) @ s["coef"]
        else:
            d2 = ((z[:, None, :] - s["centroids"][None, :, :]) ** 2).sum(axis=2)
            logits = -0.5 * d2 + s["prior"]
            logits -= logits.max(axis=1, keepdims=True)
            out = np.exp(logits)
            out /= out.sum(axis=1, keepdims=True)
            if s["type"] == "BINARY":
                out = out[:, 1]
        out = np.asarray(out, dtype=np.float64)
        out[~np.asarray(ok, dtype=bool)] = np.nan
        return out

    def _run_evaluation(self, obj: _Object) -> None:
        model = self._dependency("mlmodel", obj.request["MLModelId"])
        source = self._dependency("datasource", obj.request["DataSourceId"])
        target, model_type = model.state["schema"]["targetAttributeName"], model.state["type"]
        records = [o["record"] for o in source.state["observations"]
                   if o["record"] is not None and _target(o["record"].get(target, ""), model_type) is not None]
        if not records:
            raise ServiceError("Failed", "The evaluation datasource has no valid observation with a target")
        truth = [_target(r[target], model_type) for r in records]
        scores = self._scores(model, records)
        if model_type == "REGRESSION":
            metrics = {"RegressionRMSE": float(np.sqrt(np.mean((scores - np.asarray(truth)) ** 2)))}
        elif model_type == "BINARY":
            metrics = {"BinaryAUC": _auc(np.asarray(truth), scores)}
        else:
            predicted = [model.state["classes"][i] for i in scores.argmax(axis=1)]
            metrics = {"MulticlassAvgFScore": _macro_f1(truth, predicted)}
        obj.state["metrics"] = {k: repr(v) for k, v in metrics.items()}
        obj.compute_ms = 10_000 + 5 * len(records)

    def _run_batchprediction(self, obj: _Object) -> None:
        model = self._dependency("mlmodel", obj.request["MLModelId"])
        source = self._dependency("datasource", obj.request["DataSourceId"])
        schema = source.state["schema"]
        target, row_id, model_type = schema["targetAttributeName"], schema.get("rowId"), model.state["type"]
        has_target = target in {a["attributeName"] for a in schema["attributes"]}
        output = obj.request["OutputUri"]
        observations = source.state["observations"]
        mapping, invalid = {}, 0
        for uri in source.state["files"]:
            chosen = [(i, o) for i, o in enumerate(observations) if o["file"] == uri]
            if not chosen:
                continue
            records = [o["record"] for _, o in chosen]
            failed = np.array([r is None or i in self.blank_rows for (i, _), r in zip(chosen, records)])
            scores = self._scores(model, records)
            if model_type == "MULTICLASS":
                scores = np.where(failed[:, None], 0.0, scores)
            else:
                scores = np.where(failed, 0.0, scores)
            truth = None
            if has_target:
                truth = []
                for r in records:
                    value = "" if r is None else r.get(target, "")
                    coded = _target(value, model_type) if model_type == "BINARY" else None
                    truth.append(coded if coded is not None else value)
            body = amlformat.write_result(
                model_type, scores=scores, class_labels=[str(c) for c in model.state.get("classes", [])] or None,
                true_labels=truth, row_ids=[("" if r is None else r.get(row_id, "")) for r in records] if row_id else None,
                row_id_name=row_id, failed=failed)
            result = amlformat.result_key(output, obj.id, uri)
            self._write(result, body)
            mapping[uri] = result
            invalid += int(failed.sum())
        self._write(amlformat.manifest_key(output, obj.id), amlformat.manifest_json(mapping))
        obj.state.update(total=len(observations), invalid=invalid)
        obj.compute_ms = 5_000 + 2 * len(observations)

    def _write(self, uri: str, body: bytes) -> None:
        bucket, key = _split(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)


# -- helpers ---------------------------------------------------------------------------------

class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"not JSON: {value!r}")


def _split(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise ServiceError("InvalidInputException", f"{uri!r} is not an S3 URI")
    return match.group(1), match.group(2)


def _check_constraints(value: Any, shape, where: str) -> None:
    """What the service checked and botocore does not: patterns, maximum lengths, enums."""
    kind = shape.type_name
    if kind == "structure":
        for name, member in shape.members.items():
            if name in value:
                _check_constraints(value[name], member, f"{where}.{name}")
    elif kind == "map":
        for k, v in value.items():
            _check_constraints(k, shape.key, f"{where} key")
            _check_constraints(v, shape.value, f"{where}[{k}]")
    elif kind == "list":
        for i, v in enumerate(value):
            _check_constraints(v, shape.member, f"{where}[{i}]")
    elif kind == "string":
        meta = shape.metadata
        problem = None
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value, flags=re.S):
            problem = f"does not match {meta['pattern']}"
        elif "max" in meta and len(value) > meta["max"]:
            problem = f"is longer than {meta['max']} characters"
        elif "min" in meta and len(value) < meta["min"]:
            problem = f"is shorter than {meta['min']} characters"
        elif shape.enum and value not in shape.enum:
            problem = f"is not one of {shape.enum}"
        if problem:
            raise ServiceError("InvalidInputException", f"{where} {value[:80]!r} {problem}")


def _rearrangement(text: str) -> dict:
    try:
        value = json.loads(text)
        splitting = value["splitting"]
        begin, end = float(splitting.get("percentBegin", 0)), float(splitting.get("percentEnd", 100))
        strategy = splitting.get("strategy", "sequential")
        assert 0 <= begin < end <= 100 and strategy in ("sequential", "random")
        assert set(value) == {"splitting"}
        assert set(splitting) <= {"percentBegin", "percentEnd", "complement", "strategy", "strategyParams",
                                  "randomSeed"}
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ServiceError("InvalidInputException", f"DataRearrangement {text!r} is not valid") from None
    return {"begin": begin, "end": end, "strategy": strategy, "seed": str(splitting.get("randomSeed", "")),
            "complement": str(splitting.get("complement", False)).lower() == "true"}


def _select(observations: list[dict], text: str | None) -> list[int]:
    if not text:
        return list(range(len(observations)))
    r = _rearrangement(text)
    n = len(observations)
    picked = []
    for i, o in enumerate(observations):
        if r["strategy"] == "sequential":
            u = 100.0 * i / n
        else:      # Amazon ML hashed the seed with the row's byte offset (here: file and offset, md5)
            digest = hashlib.md5(f"{r['seed']}|{o['file_index']}|{o['offset']}".encode()).hexdigest()
            u = int(digest[:12], 16) / 16 ** 12 * 100.0
        inside = r["begin"] <= u < r["end"]
        if inside != r["complement"]:
            picked.append(i)
    return picked


def _target(text: str, model_type: str):
    text = (text or "").strip()
    if not text:
        return None
    if model_type == "BINARY":
        return BINARY_VALUES.get(text.lower())
    if model_type == "REGRESSION":
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    return text


def _numbers(records: list[dict], names: list[str]) -> np.ndarray:
    out = np.full((len(records), len(names)), np.nan)
    for i, r in enumerate(records):
        for j, name in enumerate(names):
            try:
                out[i, j] = float(r.get(name, ""))
            except ValueError:
                pass
    out[~np.isfinite(out)] = np.nan
    return out


def _class_order(label: Any):
    try:
        return (0, float(label), str(label))
    except ValueError:
        return (1, 0.0, str(label))


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives = truth == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _macro_f1(truth: list, predicted: list) -> float:
    scores = []
    for c in set(truth) | set(predicted):
        tp = sum(t == c and p == c for t, p in zip(truth, predicted))
        fp = sum(t != c and p == c for t, p in zip(truth, predicted))
        fn = sum(t == c and p != c for t, p in zip(truth, predicted))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))
