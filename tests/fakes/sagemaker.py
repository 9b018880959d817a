"""A stateful fake of SageMaker's training jobs, models and batch transforms, behind botocore's
own request validation.

``FakeSageMaker().client()`` is a real botocore client (parameter validation on): botocore
validates and serialises every request against the SageMaker service model, then emits
``before-call``; the fake's handler answers there, so nothing reaches the network. On top of
botocore (which checks types, required members and minimum lengths) the fake checks what the
service itself enforces from the same model: maximum lengths, ``pattern`` and enum values
(ValidationException). Every response is checked against the operation's output shape.

Jobs walk InProgress -> Completed after ``polls_to_complete`` describes. On completion a
training job reads its CSV channel (label first, no header) from S3 and fits something small
and honest -- a linear softmax model (100 steps of gradient descent on standardised features)
for classification, least squares for regression -- and writes ``<S3OutputPath>/<job>/output/
model.tar.gz`` (a tar.gz holding ``model.json``); a transform job applies that model to each
input object and writes ``<S3OutputPath>/<input name>.out`` in the algorithm's real layout:
Linear Learner JSON Lines (``{"score": p, "predicted_label": k}`` / ``{"score": [..],
"predicted_label": k}`` / ``{"score": v}``), XGBoost's default CSV (``0.73`` / ``[0.1, 0.9]``
/ ``123.4``, whatever the Accept). Knobs: :meth:`fail_next`, :meth:`throttle`, :meth:`deny`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import tarfile
import uuid
from collections import Counter

import boto3
import numpy as np
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.validate import validate_parameters

ACCOUNT = "123456789012"


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _split_uri(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise ServiceError("ValidationException", f"{uri} is not an S3 URI")
    return match.group(1), match.group(2)


class FakeSageMaker:
    def __init__(self, region: str = "us-east-1", polls_to_complete: int = 2):
        self.region = region
        self.polls_to_complete = polls_to_complete
        self.training_jobs: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.transform_jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []         # (operation, request) that passed botocore validation
        self.errors: Counter = Counter()                 # error codes returned, by code
        self._fail: dict[str, list[str]] = {"training": [], "transform": []}
        self._throttle: list[str | None] = []
        self._deny: set[str] | None = None
        self._s3 = None
        self._client = None

    # -- knobs -----------------------------------------------------------------------------
    def fail_next(self, kind: str, reason: str) -> None:
        """The next ``kind`` ("training" or "transform") job created fails with FailureReason ``reason``."""
        self._fail[kind].append(reason)

    def throttle(self, times: int = 1, operation: str | None = None) -> None:
        """The next ``times`` calls (of ``operation``, or any) get ThrottlingException."""
        self._throttle.extend([operation] * times)

    def deny(self, *operations: str) -> None:
        """AccessDeniedException for these operations (all, if none named); ``deny()`` again to widen."""
        self._deny = set(operations) if operations else set()

    def allow(self) -> None:
        self._deny = None

    def stop(self, name: str, secondary: str = "Stopped") -> None:
        """Stop a training job as the service would (e.g. secondary "MaxRuntimeExceeded")."""
        job = self.training_jobs[name]
        job.update(TrainingJobStatus="Stopped", SecondaryStatus=secondary, TrainingEndTime=_now())

    @property
    def operations(self) -> set[str]:
        return {op for op, _ in self.calls}

    def requests(self, operation: str) -> list[dict]:
        return [request for op, request in self.calls if op == operation]

    # -- the client ------------------------------------------------------------------------
    def client(self):
        """The botocore client whose validated requests this fake answers (one, built on first use:
        building a client costs a fifth of a second)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self):
        session = boto3.session.Session(region_name=self.region, aws_access_key_id="testing",
                                        aws_secret_access_key="testing", aws_session_token="testing")
        client = session.client("sagemaker", config=Config(parameter_validation=True, retries={"max_attempts": 1}))
        client.meta.events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}", self._handle)
        return client

    def _handle(self, model, params, **_):
        operation = model.name
        body = params.get("body") or b"{}"
        request = json.loads(body.decode() if isinstance(body, bytes) else body)
        self.calls.append((operation, request))
        try:
            if self._deny is not None and (not self._deny or operation in self._deny):
                raise ServiceError("AccessDeniedException",
                                   f"User: arn:aws:sts::{ACCOUNT}:assumed-role/stepml-train/fn is not authorized to "
                                   f"perform: sagemaker:{operation} because no identity-based policy allows the "
                                   f"sagemaker:{operation} action")
            for i, target in enumerate(self._throttle):
                if target is None or target == operation:
                    del self._throttle[i]
                    raise ServiceError("ThrottlingException", "Rate exceeded")
            _check_constraints(request, model.input_shape, operation)
            handler = getattr(self, "_" + re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower(), None)
            if handler is None:
                raise AssertionError(f"FakeSageMaker does not implement {operation}")
            response = handler(request)
        except ServiceError as err:
            self.errors[err.code] += 1
            parsed = {"Error": {"Code": err.code, "Message": err.message},
                      "ResponseMetadata": {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": err.status,
                                           "HTTPHeaders": {}, "RetryAttempts": 0}}
            return AWSResponse("https://api.sagemaker.fake/", err.status, {}, None), parsed
        if model.output_shape is not None:   # the service answers with its output shape's members only
            response = {k: v for k, v in response.items() if k in model.output_shape.members}
            validate_parameters(response, model.output_shape)   # raises if the fake drifts from the model
        response["ResponseMetadata"] = {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": 200,
                                        "HTTPHeaders": {}, "RetryAttempts": 0}
        return AWSResponse("https://api.sagemaker.fake/", 200, {}, None), response

    # -- helpers ---------------------------------------------------------------------------
    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = boto3.client("s3", region_name=self.region)
        return self._s3

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"

    def _check_image(self, image: str) -> str:
        match = re.fullmatch(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([a-z0-9-]+):(\S+)", image)
        if not match:
            raise ServiceError("ValidationException", f"Image {image!r} is not a valid ECR image URI")
        if match.group(2) != self.region:
            raise ServiceError("ValidationException", f"Image {image} is in region {match.group(2)}; "
                                                      f"jobs in {self.region} pull images from {self.region}")
        repository = match.group(3)
        if repository not in ("linear-learner", "sagemaker-xgboost", "xgboost"):
            raise ServiceError("ValidationException", f"the fake knows no algorithm image {repository!r}")
        return "linear-learner" if repository == "linear-learner" else "xgboost"

    def _read_prefix(self, uri: str) -> list[tuple[str, bytes]]:
        bucket, prefix = _split_uri(uri)
        objects = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    objects.append((obj["Key"], self.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
        return objects

    def _advance(self, job: dict, status_key: str) -> bool:
        """One describe of an InProgress job; True when it is time to finish it."""
        if job[status_key] != "InProgress":
            return False
        job["_polls"] += 1
        return job["_polls"] >= self.polls_to_complete

    # -- training jobs ---------------------------------------------------------------------
    def _create_training_job(self, request: dict) -> dict:
        name = request["TrainingJobName"]
        arn = self._arn("training-job", name)
        if name.lower() in {n.lower() for n in self.training_jobs}:
            raise ServiceError("ValidationException", f"Job name must be unique within an AWS account and region, "
                                                      f"and a job with this name already exists ({arn})")
        algorithm = self._check_image(request["AlgorithmSpecification"]["TrainingImage"])
        resources = request.get("ResourceConfig")
        if not resources or "InstanceType" not in resources:
            raise ServiceError("ValidationException", "ResourceConfig.InstanceType is required")
        if not request.get("InputDataConfig"):
            raise ServiceError("ValidationException", "the algorithm needs a 'train' channel")
        self.training_jobs[name] = {
            **request, "TrainingJobArn": arn, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting",
            "CreationTime": _now(), "LastModifiedTime": _now(), "ModelArtifacts": {"S3ModelArtifacts": ""},
            "_algorithm": algorithm, "_polls": 0,
            "_fail": self._fail["training"].pop(0) if self._fail["training"] else None,
        }
        return {"TrainingJobArn": arn}

    def _describe_training_job(self, request: dict) -> dict:
        job = self.training_jobs.get(request["TrainingJobName"])
        if job is None:
            raise ServiceError("ValidationException", "Requested resource not found.")
        if job["TrainingJobStatus"] == "Stopping":
            job.update(TrainingJobStatus="Stopped", SecondaryStatus="Stopped", TrainingEndTime=_now())
        elif self._advance(job, "TrainingJobStatus"):
            self._finish_training(job)
        elif job["TrainingJobStatus"] == "InProgress":
            job["SecondaryStatus"] = "Training"
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _stop_training_job(self, request: dict) -> dict:
        job = self.training_jobs.get(request["TrainingJobName"])
        if job is None:
            raise ServiceError("ValidationException", "Requested resource not found.")
        if job["TrainingJobStatus"] != "InProgress":       # as the service answers
            raise ServiceError("ValidationException", f"The request was rejected because the training job is in "
                                                      f"status {job['TrainingJobStatus']}.")
        job.update(TrainingJobStatus="Stopping", SecondaryStatus="Stopping")
        return {}

    def _finish_training(self, job: dict) -> None:
        start = job["CreationTime"]
        try:
            if job["_fail"]:
                raise _AlgorithmError(job["_fail"])
            model = self._fit(job)
        except _AlgorithmError as err:
            job.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=str(err),
                       TrainingEndTime=_now(), LastModifiedTime=_now())
            return
        bucket, prefix = _split_uri(job["OutputDataConfig"]["S3OutputPath"])
        key = f"{prefix.rstrip('/')}/{job['TrainingJobName']}/output/model.tar.gz".lstrip("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=_tar_gz({"model.json": json.dumps(model).encode()}))
        seconds = 60 + model["rows"] // 1000
        job.update(TrainingJobStatus="Completed", SecondaryStatus="Completed",
                   ModelArtifacts={"S3ModelArtifacts": f"s3://{bucket}/{key}"},
                   TrainingStartTime=start, TrainingEndTime=start + dt.timedelta(seconds=seconds),
                   TrainingTimeInSeconds=seconds, BillableTimeInSeconds=seconds, LastModifiedTime=_now(),
                   FinalMetricDataList=[{"MetricName": "train:objective_loss", "Value": float(model["loss"]),
                                         "Timestamp": _now()}])

    def _fit(self, job: dict) -> dict:
        hp = job.get("HyperParameters", {})
        algorithm = job["_algorithm"]
        channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
        if "train" not in channels:
            raise _AlgorithmError("ClientError: no 'train' channel")
        channel = channels["train"]
        if channel.get("ContentType", "").split(";")[0].strip() != "text/csv":
            raise _AlgorithmError(f"ClientError: the fake reads text/csv only; got {channel.get('ContentType')!r}")
        data = _read_csv([body for _, body in self._read_prefix(channel["DataSource"]["S3DataSource"]["S3Uri"])])
        if data.shape[0] == 0:
            raise _AlgorithmError("ClientError: no training rows found")
        y, x = data[:, 0], data[:, 1:]
        if algorithm == "linear-learner":
            for required in ("feature_dim", "predictor_type"):
                if required not in hp:
                    raise _AlgorithmError(f"ClientError: Missing required hyperparameter: {required}")
            if int(hp["feature_dim"]) != x.shape[1]:
                raise _AlgorithmError(f"ClientError: feature_dim is {hp['feature_dim']} but the data has "
                                      f"{x.shape[1]} features")
            kind = {"binary_classifier": "binary", "multiclass_classifier": "multiclass",
                    "regressor": "regression"}[hp["predictor_type"]]
            k = int(hp["num_classes"]) if kind == "multiclass" else 2
            if kind == "multiclass" and k < 3:
                raise _AlgorithmError("ClientError: num_classes must be an integer from 3 to 1000000")
        else:
            if "num_round" not in hp:
                raise _AlgorithmError("ClientError: Missing required hyperparameter: num_round")
            objective = hp.get("objective", "reg:squarederror")
            kind = {"binary:logistic": "binary", "multi:softprob": "multiclass",
                    "reg:squarederror": "regression"}.get(objective)
            if kind is None:
                raise _AlgorithmError(f"ClientError: the fake runs no objective {objective!r}")
            if kind == "multiclass" and "num_class" not in hp:
                raise _AlgorithmError("ClientError: Require input for parameter 'num_class' for multi-classification")
            k = int(hp.get("num_class", 2))
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std < 1e-9] = 1.0
        z = (x - mean) / std
        model = {"algorithm": algorithm, "kind": kind, "features": x.shape[1], "rows": len(y),
                 "mean": mean.tolist(), "std": std.tolist()}
        if kind == "regression":
            design = np.column_stack([z, np.ones(len(z))])
            weights = np.linalg.solve(design.T @ design + 1e-6 * np.eye(design.shape[1]), design.T @ y)
            model["weights"] = weights.tolist()
            model["loss"] = float(np.mean((design @ weights - y) ** 2))
            return model
        if not np.array_equal(y, np.round(y)) or y.min() < 0 or y.max() >= k:
            raise _AlgorithmError(f"ClientError: labels must be integers from 0 to {k - 1}")
        weights, loss = _softmax_regression(z, y.astype(np.int64), k)
        model.update(weights=weights.tolist(), loss=loss)
        return model

    # -- models ----------------------------------------------------------------------------
    def _create_model(self, request: dict) -> dict:
        name = request["ModelName"]
        arn = self._arn("model", name)
        if name.lower() in {n.lower() for n in self.models}:
            raise ServiceError("ValidationException", f'Cannot create already existing model "{arn}".')
        container = request.get("PrimaryContainer")
        if not container:
            raise ServiceError("ValidationException", "PrimaryContainer is required")
        self._check_image(container["Image"])
        bucket, key = _split_uri(container["ModelDataUrl"])
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.ClientError:
            raise ServiceError("ValidationException", f"Could not find model data at {container['ModelDataUrl']}.") from None
        self.models[name] = {**request, "ModelArn": arn, "CreationTime": _now()}
        return {"ModelArn": arn}

    def _describe_model(self, request: dict) -> dict:
        model = self.models.get(request["ModelName"])
        if model is None:
            raise ServiceError("ValidationException", f"Could not find model \"{self._arn('model', request['ModelName'])}\".")
        return dict(model)

    # -- transform jobs --------------------------------------------------------------------
    def _create_transform_job(self, request: dict) -> dict:
        name = request["TransformJobName"]
        arn = self._arn("transform-job", name)
        if name.lower() in {n.lower() for n in self.transform_jobs}:
            raise ServiceError("ValidationException", f"Job name must be unique within an AWS account and region, "
                                                      f"and a job with this name already exists ({arn})")
        if request["ModelName"] not in self.models:
            raise ServiceError("ValidationException",
                               f"Could not find model \"{self._arn('model', request['ModelName'])}\".")
        self.transform_jobs[name] = {
            **request, "TransformJobArn": arn, "TransformJobStatus": "InProgress", "CreationTime": _now(),
            "_polls": 0, "_fail": self._fail["transform"].pop(0) if self._fail["transform"] else None,
        }
        return {"TransformJobArn": arn}

    def _describe_transform_job(self, request: dict) -> dict:
        job = self.transform_jobs.get(request["TransformJobName"])
        if job is None:
            raise ServiceError("ValidationException", "Could not find requested job with name "
                                                      f"{request['TransformJobName']}")
        if job["TransformJobStatus"] == "Stopping":
            job.update(TransformJobStatus="Stopped", TransformEndTime=_now())
        elif self._advance(job, "TransformJobStatus"):
            self._finish_transform(job)
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _stop_transform_job(self, request: dict) -> dict:
        job = self.transform_jobs.get(request["TransformJobName"])
        if job is None:
            raise ServiceError("ValidationException", "Could not find requested job with name "
                                                      f"{request['TransformJobName']}")
        if job["TransformJobStatus"] != "InProgress":      # as the service answers
            raise ServiceError("ValidationException", f"The request was rejected because the transform job is in "
                                                      f"status {job['TransformJobStatus']}.")
        job.update(TransformJobStatus="Stopping")
        return {}

    def _finish_transform(self, job: dict) -> None:
        start = job["CreationTime"] + dt.timedelta(seconds=240)     # instances take minutes to start
        try:
            if job["_fail"]:
                raise _AlgorithmError(job["_fail"])
            rows = self._transform(job)
        except _AlgorithmError as err:
            job.update(TransformJobStatus="Failed", FailureReason=str(err))
            return
        job.update(TransformJobStatus="Completed", TransformStartTime=start,
                   TransformEndTime=start + dt.timedelta(seconds=30 + rows // 1000))

    def _transform(self, job: dict) -> int:
        container = self.models[job["ModelName"]]["PrimaryContainer"]
        bucket, key = _split_uri(container["ModelDataUrl"])
        model = json.loads(_untar(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())["model.json"])
        source = job["TransformInput"]
        if source.get("ContentType", "").split(";")[0].strip() != "text/csv":
            raise _AlgorithmError(f"ClientError: content type {source.get('ContentType')!r} is not supported")
        if source.get("SplitType") != "Line":
            raise _AlgorithmError("ClientError: the fake splits records by line only")
        accept = job["TransformOutput"].get("Accept", "")
        if model["algorithm"] == "linear-learner" and accept not in ("application/jsonlines", "application/json"):
            raise _AlgorithmError(f"ClientError: Linear Learner cannot answer in {accept!r}")
        input_uri = source["DataSource"]["S3DataSource"]["S3Uri"]
        _, input_prefix = _split_uri(input_uri)
        objects = self._read_prefix(input_uri)
        if not objects:
            raise _AlgorithmError(f"ClientError: No S3 objects found under S3 URL \"{input_uri}\"")
        out_bucket, out_prefix = _split_uri(job["TransformOutput"]["S3OutputPath"])
        total = 0
        base = input_prefix if input_prefix.endswith("/") or not input_prefix else input_prefix.rsplit("/", 1)[0] + "/"
        for key, body in objects:
            x = _read_csv([body])
            if x.shape[1] != model["features"]:
                raise _AlgorithmError(f"ClientError: the model expects {model['features']} features; "
                                      f"{key} has {x.shape[1]}")
            lines = _predict_lines(model, x, accept)
            name = key[len(base):]
            out_key = f"{out_prefix.rstrip('/')}/{name}.out".lstrip("/")
            self.s3.put_object(Bucket=out_bucket, Key=out_key, Body=("\n".join(lines) + "\n").encode())
            total += len(lines)
        return total


class _AlgorithmError(Exception):
    """What makes a job Failed (its message is the FailureReason)."""


def _check_constraints(value, shape, path: str) -> None:
    """What the service enforces beyond botocore: max lengths, patterns, enums."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        for name, member in shape.members.items():
            if isinstance(value, dict) and name in value:
                _check_constraints(value[name], member, f"{path}.{name}")
    elif kind == "list":
        if "max" in meta and len(value) > meta["max"]:
            raise ServiceError("ValidationException", f"{path}: at most {meta['max']} items")
        for i, item in enumerate(value):
            _check_constraints(item, shape.member, f"{path}[{i}]")
    elif kind == "map":
        if "max" in meta and len(value) > meta["max"]:
            raise ServiceError("ValidationException", f"{path}: at most {meta['max']} entries")
        for k, v in value.items():
            _check_constraints(k, shape.key, f"{path} key")
            _check_constraints(v, shape.value, f"{path}.{k}")
    elif kind == "string":
        if "max" in meta and len(value) > meta["max"]:
            raise ServiceError("ValidationException", f"1 validation error detected: Value at '{path}' failed to "
                                                      f"satisfy constraint: Member must have length less than or "
                                                      f"equal to {meta['max']}")
        pattern = meta.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                compiled = None
            if compiled is not None and not compiled.fullmatch(value):
                raise ServiceError("ValidationException", f"1 validation error detected: Value '{value}' at '{path}' "
                                                          f"failed to satisfy constraint: Member must satisfy regular "
                                                          f"expression pattern: {pattern}")
        if shape.enum and value not in shape.enum:
            raise ServiceError("ValidationException", f"1 validation error detected: Value '{value}' at '{path}' "
                                                      f"failed to satisfy constraint: Member must satisfy enum value "
                                                      f"set: {shape.enum}")
    elif kind in ("integer", "long") and "max" in meta and value > meta["max"]:
        raise ServiceError("ValidationException", f"{path}: must be at most {meta['max']}")


def _read_csv(bodies: list[bytes]) -> np.ndarray:
    text = b"".join(b if b.endswith(b"\n") or not b else b + b"\n" for b in bodies)
    if not text.strip():
        return np.zeros((0, 0))
    try:
        return np.loadtxt(io.BytesIO(text), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise _AlgorithmError(f"ClientError: the CSV data could not be parsed: {err}") from None


def _softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def _softmax_regression(z: np.ndarray, labels: np.ndarray, k: int, steps: int = 100,
                        l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """A linear softmax model by full-batch gradient descent (step 2/L, L from a power iteration):
    small, deterministic, and a linear learner like the one it stands in for."""
    design = np.column_stack([z, np.ones(len(z))])
    n = len(design)
    v = np.ones(design.shape[1])
    for _ in range(20):
        v = design.T @ (design @ v)
        v /= np.linalg.norm(v) or 1.0
    rate = 1.0 / (0.5 * float(np.linalg.norm(design @ v)) ** 2 / n + l2)
    weights = np.zeros((design.shape[1], k))
    onehot = np.eye(k)[labels]
    for _ in range(steps):
        p = _softmax(design @ weights)
        weights -= rate * (design.T @ (p - onehot) / n + l2 * weights)
    p = _softmax(design @ weights)
    return weights, float(-np.mean(np.log(np.maximum(p[np.arange(n), labels], 1e-12))))


def _predict_lines(model: dict, x: np.ndarray, accept: str) -> list[str]:
    z = (x - np.asarray(model["mean"])) / np.asarray(model["std"])
    design = np.column_stack([z, np.ones(len(z))])
    kind, algorithm = model["kind"], model["algorithm"]
    if kind == "regression":
        values = design @ np.asarray(model["weights"])
        if algorithm == "linear-learner":
            return [json.dumps({"score": float(v)}) for v in values]
        return [str(float(np.float32(v))) for v in values]
    p = _softmax(design @ np.asarray(model["weights"]))
    if algorithm == "linear-learner":
        if kind == "binary":
            return [json.dumps({"score": float(np.float32(row[1])), "predicted_label": int(row[1] > 0.5)}) for row in p]
        return [json.dumps({"score": [float(np.float32(v)) for v in row], "predicted_label": int(row.argmax())})
                for row in p]
    # XGBoost without selectable inference answers text/csv whatever the Accept:
    # "\n".join(map(str, preds.tolist())) of float32 predictions.
    if kind == "binary":
        return [str(float(np.float32(row[1]))) for row in p]
    return [str([float(np.float32(v)) for v in row]) for row in p]


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _untar(raw: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
