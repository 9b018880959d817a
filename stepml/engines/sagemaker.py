"""The sagemaker engine: SageMaker's built-in Linear Learner and XGBoost, as training jobs and
batch transforms, for data that outgrows a Lambda.

Training (Train / CheckTraining)::

    runs/<id>/sagemaker/train/train.csv     the training rows: label first, no header (File mode,
                                            text/csv, as both algorithms expect), the features
                                            as our models see them: MNIST pixels scaled by
                                            input_scale, or the CSV recipe's features (dense)
    runs/<id>/sagemaker/pipeline.json       the fitted recipe (csv), for the batch step
    runs/<id>/sagemaker/output/<job>/output/model.tar.gz    written by SageMaker

CreateTrainingJob runs the regional image (:data:`IMAGE_ACCOUNTS`) with the execution role
``STEPML_SAGEMAKER_ROLE_ARN``; CheckTraining polls DescribeTrainingJob and, once Completed,
writes ``runs/<id>/model/training.json`` (the builtin's keys, with the service's figures).

Batch prediction (BatchPredict / CheckBatchPrediction)::

    runs/<id>/sagemaker/transform-input/evaluation.csv    the evaluation features, no label
    runs/<id>/sagemaker/transform-output/<job>/evaluation.csv.out   written by SageMaker

CreateModel (the training image and model.tar.gz), then CreateTransformJob (text/csv in,
``SplitType: Line``, ``AssembleWith: Line``). The output is one line per input row:

* Linear Learner, ``Accept: application/jsonlines`` (SageMaker docs, "Linear learner response
  formats"): ``{"score": 0.4, "predicted_label": 0}`` (binary: score = P(label 1)),
  ``{"score": [0.1, 0.2, 0.4, 0.3], "predicted_label": 2}`` (multiclass), ``{"score": 0.4}``
  (regression).
* XGBoost, ``Accept: text/csv``: the container's default output (sagemaker-xgboost-container,
  ``algorithm_mode/serve.py``: in a batch transform ``"\\n".join(map(str, preds.tolist()))``):
  ``0.73`` (binary:logistic, P(label 1)), ``[0.1, 0.2, 0.7]`` (multi:softprob), ``123.4``
  (reg:squarederror). Its JSON Lines output exists only with the selectable-inference
  environment variable, so plain CSV is the documented, stable choice.

CheckBatchPrediction turns it into our ``predictions.csv`` (and, for csv datasources, Amazon ML's
batch-prediction layout), so Score works unchanged.

Parameters (:func:`check_parameters`, called at trigger validation): the algorithm's own
hyperparameters by their SageMaker names, sent as strings. The engine sets ``feature_dim``,
``predictor_type`` and ``num_classes`` (Linear Learner) or ``objective`` and ``num_class``
(XGBoost) from the data. Amazon ML's ``sgd.*`` parameters map onto Linear Learner's where
they have a counterpart, with Amazon ML's ranges:

=============================  ==================  =====================================
Amazon ML parameter            Linear Learner      note
=============================  ==================  =====================================
``sgd.maxPasses``              ``epochs``          integer 1 to 100
``sgd.l2RegularizationAmount`` ``wd``              number 0 to 1
``sgd.l1RegularizationAmount`` ``l1``              number 0 to 1 (not both L1 and L2)
``sgd.shuffleType``            --                  refused: no counterpart
``sgd.maxMLModelSizeInBytes``  --                  refused: no counterpart
=============================  ==================  =====================================

Only the keys given are mapped (Amazon ML's other defaults are not imposed); XGBoost takes no
``sgd.*`` keys.

Errors: throttling on a Create* call raises EngineThrottled (the step is retried with backoff),
on a Describe* call the job stays IN_PROGRESS; AccessDenied, an exhausted instance quota, a
region without the images or a missing execution role raise EngineUnavailable; a request the
service refuses (ValidationException) raises TrainingFailed / PredictionFailed with the
service's message; a Failed or Stopped job is FAILED with its FailureReason.

Stopping: a retried Train or BatchPredict names a new job, so before creating it the engine
stops the jobs that the step's earlier attempts created (their names are recorded under
``runs/<id>/sagemaker/jobs/``), and a run that gives up polling (PollTimeout) stops its job:
neither keeps running and billing after the run has moved on.

Names: ``<prefix>-<12 hex of sha256(run id)>-<attempt>-<t|m|bp>`` (lower case; the prefix is
``STEPML_JOB_PREFIX``, default ``stepml``): unique per run and per Lambda attempt, within
SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from stepml import predictions
from stepml.engines import COMPLETED, FAILED, IN_PROGRESS, aws
from stepml.errors import (DataError, EngineThrottled, EngineUnavailable, PayloadError, PredictionFailed,
                           TrainingFailed)
from stepml.runs import RunPaths
from stepml.storage import Storage, check_key

log = logging.getLogger(__name__)

ALGORITHMS = ("linear-learner", "xgboost")
ROLE_ENV = "STEPML_SAGEMAKER_ROLE_ARN"
PREFIX_ENV = "STEPML_JOB_PREFIX"
DEFAULT_PREFIX = "stepml"
MAX_PREFIX_LENGTH = 28          # + "-" + 12 hex + "-" + 16 attempt + "-bp" = 63, SageMaker's limit

#: The trigger's ``model.sagemaker`` options and their defaults (trigger validation fills them).
OPTIONS = {
    "instance_type": "ml.m5.large",
    "instance_count": 1,
    "volume_size_gb": 10,
    "max_runtime_seconds": 3600,
    "transform_instance_type": "ml.m5.large",
}
TRANSFORM_INSTANCE_COUNT = 1

#: ECR registry account of each algorithm's image, per region. Images:
#: ``<account>.dkr.ecr.<region>.amazonaws.com/linear-learner:1`` and
#: ``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:1.7-1``. Source: the SageMaker
#: Python SDK's ``src/sagemaker/image_uri_config/linear-learner.json`` (version "1") and
#: ``xgboost.json`` (training, version "1.7-1"), which the SageMaker Developer Guide's "Docker
#: Registry Paths and Example Code" pages list too.
IMAGE_ACCOUNTS = {
    "linear-learner": {
        "us-east-1": "382416733822", "us-east-2": "404615174143",
        "us-west-1": "632365934929", "us-west-2": "174872318107",
        "ca-central-1": "469771592824", "sa-east-1": "855470959533",
        "eu-west-1": "438346466558", "eu-west-2": "644912444149", "eu-west-3": "749696950732",
        "eu-central-1": "664544806723", "eu-north-1": "669576153137",
        "ap-northeast-1": "351501993468", "ap-northeast-2": "835164637446",
        "ap-south-1": "991648021394", "ap-southeast-1": "475088953585", "ap-southeast-2": "712309505854",
    },
    "xgboost": {
        "us-east-1": "683313688378", "us-east-2": "257758044811",
        "us-west-1": "746614075791", "us-west-2": "246618743249",
        "ca-central-1": "341280168497", "sa-east-1": "737474898029",
        "eu-west-1": "141502667606", "eu-west-2": "764974769150", "eu-west-3": "659782779980",
        "eu-central-1": "492215442770", "eu-north-1": "662702820516",
        "ap-northeast-1": "354813040037", "ap-northeast-2": "366743142698",
        "ap-south-1": "720646828776", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    },
}
IMAGE_REPOSITORIES = {"linear-learner": ("linear-learner", "1"), "xgboost": ("sagemaker-xgboost", "1.7-1")}

#: Transform output type each algorithm is asked for (see the module docstring).
ACCEPT = {"linear-learner": "application/jsonlines", "xgboost": "text/csv"}

PREDICTOR_TYPES = {"binary": "binary_classifier", "multiclass": "multiclass_classifier", "regression": "regressor"}
XGBOOST_OBJECTIVES = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}
#: What the engine sends unless the trigger says otherwise (the services' own defaults, sent
#: so that the training record says what ran).
DEFAULT_HYPERPARAMETERS = {"linear-learner": {"epochs": "15"}, "xgboost": {"num_round": "100"}}

# -- parameters ----------------------------------------------------------------------------
_AUTO_FLOAT = ("auto|float", 0.0, None)
_FRACTION = ("float", 0.0, 1.0)
#: Linear Learner hyperparameters a trigger may set (SageMaker docs, "Linear learner
#: hyperparameters"): (kind, low, high); "any" is left for the service to check.
LINEAR_LEARNER_PARAMETERS: dict[str, tuple] = {
    "accuracy_top_k": ("int", 1, None),
    "balance_multiclass_weights": ("bool",),
    "beta_1": ("auto|float", 0.0, 1.0),
    "beta_2": ("auto|float", 0.0, 1.0),
    "bias_lr_mult": _AUTO_FLOAT,
    "bias_wd_mult": _AUTO_FLOAT,
    "binary_classifier_model_selection_criteria": ("choice", "accuracy", "f_beta", "precision_at_target_recall",
                                                   "recall_at_target_precision", "loss_function"),
    "early_stopping_patience": ("int", 1, None),
    "early_stopping_tolerance": ("float", 0.0, None),
    "epochs": ("int", 1, None),
    "f_beta": ("float", 0.0, None),
    "huber_delta": ("float", 0.0, None),
    "init_bias": ("float", None, None),
    "init_method": ("choice", "uniform", "normal"),
    "init_scale": ("float", 0.0, None),
    "init_sigma": ("float", 0.0, None),
    "l1": _AUTO_FLOAT,
    "learning_rate": _AUTO_FLOAT,
    "loss": ("choice", "auto", "logistic", "squared_loss", "absolute_loss", "hinge_loss", "eps_insensitive_squared_loss",
             "eps_insensitive_absolute_loss", "quantile_loss", "huber_loss", "softmax_loss"),
    "loss_insensitivity": ("float", 0.0, None),
    "lr_scheduler_factor": ("auto|float", 0.0, 1.0),
    "lr_scheduler_minimum_lr": _AUTO_FLOAT,
    "lr_scheduler_step": ("auto|int", 1, None),
    "margin": ("float", 0.0, None),
    "mini_batch_size": ("int", 1, None),
    "momentum": ("auto|float", 0.0, 1.0),
    "normalize_data": ("bool",),
    "normalize_label": ("bool",),
    "num_calibration_samples": ("int", 1, None),
    "num_models": ("auto|int", 1, None),
    "num_point_for_scaler": ("int", 1, None),
    "optimizer": ("choice", "auto", "sgd", "adam", "rmsprop"),
    "positive_example_weight_mult": ("any",),
    "quantile": ("float", 0.0, 1.0),
    "target_precision": _FRACTION,
    "target_recall": _FRACTION,
    "unbias_data": ("bool",),
    "unbias_label": ("bool",),
    "use_bias": ("bool",),
    "use_lr_scheduler": ("bool",),
    "wd": _AUTO_FLOAT,
}
#: XGBoost hyperparameters a trigger may set (the sagemaker-xgboost container's validation).
XGBOOST_PARAMETERS: dict[str, tuple] = {
    "num_round": ("int", 1, None),
    "alpha": ("float", 0.0, None),
    "base_score": ("float", 0.0, None),
    "booster": ("choice", "gbtree", "gblinear", "dart"),
    "colsample_bylevel": ("float", 0.0, 1.0),
    "colsample_bynode": ("float", 0.0, 1.0),
    "colsample_bytree": ("float", 0.0, 1.0),
    "csv_weights": ("int", 0, 1),
    "early_stopping_rounds": ("int", 1, None),
    "eta": ("float", 0.0, 1.0),
    "eval_metric": ("any",),
    "gamma": ("float", 0.0, None),
    "grow_policy": ("choice", "depthwise", "lossguide"),
    "interaction_constraints": ("any",),
    "lambda": ("float", 0.0, None),
    "lambda_bias": ("float", 0.0, 1.0),
    "max_bin": ("int", 0, None),
    "max_delta_step": ("float", 0.0, None),
    "max_depth": ("int", 0, None),
    "max_leaves": ("int", 0, None),
    "min_child_weight": ("float", 0.0, None),
    "monotone_constraints": ("any",),
    "normalize_type": ("choice", "tree", "forest"),
    "nthread": ("int", 1, None),
    "one_drop": ("int", 0, 1),
    "process_type": ("choice", "default", "update"),
    "rate_drop": ("float", 0.0, 1.0),
    "refresh_leaf": ("int", 0, 1),
    "sample_type": ("choice", "uniform", "weighted"),
    "scale_pos_weight": ("float", 0.0, None),
    "seed": ("int", None, None),
    "sketch_eps": ("float", 0.0, 1.0),
    "skip_drop": ("float", 0.0, 1.0),
    "subsample": ("float", 0.0, 1.0),
    "tree_method": ("choice", "auto", "exact", "approx", "hist"),
    "tweedie_variance_power": ("float", 1.0, 2.0),
    "updater": ("any",),
    "verbosity": ("int", 0, 3),
}
PARAMETERS = {"linear-learner": LINEAR_LEARNER_PARAMETERS, "xgboost": XGBOOST_PARAMETERS}
#: Hyperparameters the engine derives from the data and model.type.
ENGINE_SET = {"linear-learner": ("feature_dim", "predictor_type", "num_classes"),
              "xgboost": ("objective", "num_class")}
#: Amazon ML parameter -> Linear Learner hyperparameter.
SGD_MAPPING = {"sgd.maxPasses": "epochs", "sgd.l2RegularizationAmount": "wd", "sgd.l1RegularizationAmount": "l1"}
MODEL_TYPES = ("BINARY", "MULTICLASS", "REGRESSION")
MAX_HYPERPARAMETER_CHARS = 2500     # SageMaker's limit on one value


def check_parameters(algorithm: str, params: dict, model_type: str) -> dict:
    """The trigger's ``model.parameters`` for ``algorithm`` as the hyperparameters to send: names
    checked, ``sgd.*`` keys mapped (Linear Learner), every value a string. Raises ValueError
    (or TypeError) naming the parameter."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"the sagemaker engine runs {', '.join(ALGORITHMS)}; got {algorithm!r}")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model type must be one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    if not isinstance(params, dict):
        raise TypeError(f"parameters must be a JSON object; got {type(params).__name__}")
    accepted = PARAMETERS[algorithm]
    out: dict[str, str] = {}
    sgd = {k: v for k, v in params.items() if isinstance(k, str) and k.startswith("sgd.")}
    if sgd:
        out.update(_map_sgd(algorithm, sgd, params))
    for name, raw in params.items():
        if name in sgd:
            continue
        if name in ENGINE_SET[algorithm]:
            raise ValueError(f"{name!r} is set by the engine from model.type and the data; leave it out")
        if name not in accepted:
            raise ValueError(f"unknown {algorithm} hyperparameter {name!r}; valid: {', '.join(sorted(accepted))}")
        out[name] = _hyperparameter_value(name, raw, accepted[name])
    return out


def _map_sgd(algorithm: str, sgd: dict, params: dict) -> dict[str, str]:
    from stepml.models.amazonml_params import _parse   # Amazon ML's ranges, one definition

    if algorithm != "linear-learner":
        raise ValueError(f"Amazon ML parameters ({', '.join(sorted(sgd))}) map onto linear-learner only, "
                         f"not {algorithm}; use {algorithm}'s own hyperparameters")
    out = {}
    for key, raw in sgd.items():
        if key not in SGD_MAPPING:
            raise ValueError(f"Amazon ML parameter {key!r} has no Linear Learner counterpart; the sagemaker engine "
                             f"maps {', '.join(f'{k} -> {v}' for k, v in SGD_MAPPING.items())}")
        target = SGD_MAPPING[key]
        if target in params:
            raise ValueError(f"parameters {key!r} and {target!r} both set the same thing; give one of them")
        out[target] = _number_text(_parse(key, raw))
    if float(out.get("wd", 0)) and float(out.get("l1", 0)):
        raise ValueError("Amazon ML accepts L1 or L2 regularisation, not both: set 'sgd.l1RegularizationAmount' "
                         "or 'sgd.l2RegularizationAmount' to 0")
    return out


def _number_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _hyperparameter_value(name: str, raw, spec: tuple) -> str:
    """``raw`` as the string SageMaker takes, checked against ``spec`` (kind, low, high)."""
    kind = spec[0]
    if raw is None:
        raise ValueError(f"hyperparameter {name!r} has no value")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"hyperparameter {name!r} must be finite; got {raw!r}")
    text = _number_text(raw) if isinstance(raw, (bool, int, float)) else str(raw).strip()
    if not text or len(text) > MAX_HYPERPARAMETER_CHARS:
        raise ValueError(f"hyperparameter {name!r} must be 1 to {MAX_HYPERPARAMETER_CHARS} characters")
    if kind == "any":
        return text
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"hyperparameter {name!r} must be true or false; got {raw!r}")
        return text.lower()
    if kind == "choice":
        if text not in spec[1:]:
            raise ValueError(f"hyperparameter {name!r} must be one of {', '.join(spec[1:])}; got {raw!r}")
        return text
    if kind.startswith("auto|"):
        if text == "auto":
            return text
        kind = kind[5:]
    low, high = spec[1], spec[2]
    what = "an integer" if kind == "int" else "a number"
    bounds = "" if low is None and high is None else f" from {low if low is not None else '-inf'} to " \
                                                      f"{high if high is not None else 'inf'}"
    auto = " or 'auto'" if spec[0].startswith("auto|") else ""
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"hyperparameter {name!r} must be {what}{bounds}{auto}; got {raw!r}") from None
    if (kind == "float" and not math.isfinite(value)) or (low is not None and value < low) or \
            (high is not None and value > high):
        raise ValueError(f"hyperparameter {name!r} must be {what}{bounds}{auto}; got {raw!r}")
    return text


def output_kind(model_type: str, n_classes: int | None) -> str:
    """binary | multiclass | regression: a MULTICLASS datasource with two classes is trained as a
    binary classifier (Linear Learner's multiclass_classifier needs 3 or more)."""
    if model_type == "REGRESSION":
        return "regression"
    return "binary" if n_classes == 2 else "multiclass"


def hyperparameters(algorithm: str, params: dict, kind: str, n_classes: int | None, feature_dim: int,
                    seed: int) -> dict[str, str]:
    """Everything sent as HyperParameters: defaults, the trigger's (checked), the engine's."""
    out = {**DEFAULT_HYPERPARAMETERS[algorithm]}
    if algorithm == "linear-learner":
        out.update(params)
        out.update({"feature_dim": str(feature_dim), "predictor_type": PREDICTOR_TYPES[kind]})
        if kind == "multiclass":
            out["num_classes"] = str(n_classes)
    else:
        out["seed"] = str(seed)
        out.update(params)
        out["objective"] = XGBOOST_OBJECTIVES[kind]
        if kind == "multiclass":
            out["num_class"] = str(n_classes)
    return out


# -- names, images, errors -----------------------------------------------------------------
NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def job_name(run_id: str, attempt: str | None, kind: str) -> str:
    """``<prefix>-<12 hex of sha256(run id)>-<attempt>-<kind>``, lower case: unique per run and
    per attempt (a retried step never reuses its earlier job's name)."""
    prefix = os.environ.get(PREFIX_ENV, DEFAULT_PREFIX).strip().lower() or DEFAULT_PREFIX
    if len(prefix) > MAX_PREFIX_LENGTH or not NAME_PATTERN.fullmatch(prefix):
        raise EngineUnavailable(f"{PREFIX_ENV}={prefix!r}: a job name prefix is 1 to {MAX_PREFIX_LENGTH} letters, "
                                f"digits and hyphens, starting and ending with a letter or digit")
    token = re.sub(r"[^a-z0-9]", "", (attempt or "").lower())
    if not token:
        raise PayloadError("the engine job has no 'attempt' token; job names need one per attempt")
    if len(token) > 16:
        token = hashlib.sha256(token.encode()).hexdigest()[:16]
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    name = f"{prefix}-{digest}-{token}-{kind}"
    assert NAME_PATTERN.fullmatch(name) and len(name) <= 63, name
    return name


def image_uri(algorithm: str, region: str) -> str:
    accounts = IMAGE_ACCOUNTS[algorithm]
    if region not in accounts:
        raise EngineUnavailable(f"the sagemaker engine knows no {algorithm} image in region {region!r}; regions: "
                                f"{', '.join(sorted(accounts))}")
    repository, tag = IMAGE_REPOSITORIES[algorithm]
    return f"{accounts[region]}.dkr.ecr.{region}.amazonaws.com/{repository}:{tag}"


def role_arn() -> str:
    arn = os.environ.get(ROLE_ENV, "").strip()
    if not arn:
        raise EngineUnavailable(f"{ROLE_ENV} is not set: the sagemaker engine needs the stack's SageMaker execution "
                                f"role (the jobs read and write the run bucket with it)")
    return arn


THROTTLING = {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
              "RequestLimitExceeded", "SlowDown"}
TRANSIENT = {"InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException"}
DENIED = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId",
          "NotAuthorized", "UnauthorizedOperation", "ExpiredTokenException", "OptInRequired"}


def _start_call(call: Callable, what: str, failed: type[Exception], **params) -> dict:
    """A Create* call, its errors turned into the step's contract."""
    try:
        return call(**params)
    except Exception as err:
        answered = aws.client_error(err)
        if answered is None:
            raise
        code, message = answered
        if code in THROTTLING or code in TRANSIENT:
            raise EngineThrottled(f"SageMaker {what}: {code}: {message}") from None
        if code in DENIED:
            raise EngineUnavailable(f"SageMaker refused {what} ({code}): {message}") from None
        if code == "ResourceLimitExceeded":
            raise EngineUnavailable(f"SageMaker {what}: {message} (an account quota: raise it in Service Quotas, or "
                                    f"choose another instance type in model.sagemaker)") from None
        if code in ("ValidationException", "ResourceNotFound", "ResourceInUse", "ConflictException"):
            raise failed(f"SageMaker {what} was refused: {message}") from None
        raise


def _describe_job(call: Callable, what: str, job_kind: str, status_key: str, name: str,
                  **params) -> tuple[dict | None, dict | None]:
    """A Describe*Job call as the poll loop sees it: (response, None) once the job is Completed,
    else (None, the poll's answer): IN_PROGRESS while it runs or stops, or when the call was
    throttled (poll again); FAILED for a Failed or Stopped job, or one the service no longer
    knows (ValidationException / ResourceNotFound, e.g. deleted). AccessDenied raises
    EngineUnavailable."""
    try:
        response = call(**params)
    except Exception as err:
        answered = aws.client_error(err)
        if answered is None:
            raise
        code, message = answered
        if code in THROTTLING or code in TRANSIENT:
            return None, {"job_id": name, "status": IN_PROGRESS, "note": f"poll again: {code}: {message}"}
        if code in DENIED:
            raise EngineUnavailable(f"SageMaker refused {what} ({code}): {message}") from None
        if code in ("ValidationException", "ResourceNotFound"):
            return None, {"job_id": name, "status": FAILED, "message": f"SageMaker {what}: {message}"}
        raise
    status = response[status_key]
    if status in ("InProgress", "Stopping"):
        secondary = response.get("SecondaryStatus")
        return None, {"job_id": name, "status": IN_PROGRESS,
                      "service_status": f"{status}/{secondary}" if secondary else status}
    if status != "Completed":
        return None, {"job_id": name, "status": FAILED, "message": _failure_message(job_kind, response)}
    return response, None


def _stop_job(call: Callable, what: str, name: str, **params) -> bool:
    """Ask SageMaker to stop a job, best effort: True if it took the request. A job that already
    ended or never existed (ValidationException / ResourceNotFound) needs nothing; any other
    refusal (throttling, AccessDenied, no connection) is logged, never raised: stopping is
    clean-up, and the step it runs in has its own outcome to report."""
    from botocore.exceptions import BotoCoreError

    try:
        call(**params)
    except BotoCoreError as err:
        log.warning("SageMaker %s %s: %s; stop the job by hand if it is still running", what, name, err)
        return False
    except Exception as err:
        answered = aws.client_error(err)
        if answered is None:
            raise
        code, message = answered
        if code not in ("ValidationException", "ResourceNotFound"):
            log.warning("SageMaker %s %s: %s: %s; stop the job by hand if it is still running",
                        what, name, code, message)
        return False
    log.info("SageMaker %s %s: stop requested", what, name)
    return True


def _seconds(start, end) -> float | None:
    if isinstance(start, _dt.datetime) and isinstance(end, _dt.datetime):
        return round((end - start).total_seconds(), 3)
    return None


# -- S3 ------------------------------------------------------------------------------------
PART_BYTES = 16 * 1024 * 1024       # S3 multipart parts (5 MiB minimum, but the last)
BLOCK_CELLS = 2_000_000             # numbers formatted per block of rows
MAX_FEATURES = 100_000              # columns of the CSV SageMaker reads


class S3Writer:
    """An object written in parts (a multipart upload): the training CSV is never whole in memory."""

    def __init__(self, storage: Storage, key: str, content_type: str = "text/csv"):
        self.storage, self.key, self.content_type = storage, check_key(key), content_type
        self.buffer = io.BytesIO()
        self.upload_id: str | None = None
        self.parts: list[dict] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer.write(data)
        self.size += len(data)
        if self.buffer.tell() >= PART_BYTES:
            self._flush()

    def _flush(self) -> None:
        client = self.storage.client
        if self.upload_id is None:
            self.upload_id = client.create_multipart_upload(Bucket=self.storage.bucket, Key=self.key,
                                                            ContentType=self.content_type)["UploadId"]
        number = len(self.parts) + 1
        response = client.upload_part(Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id,
                                      PartNumber=number, Body=self.buffer.getvalue())
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.buffer = io.BytesIO()

    def close(self) -> int:
        if self.upload_id is None:
            self.storage.put_bytes(self.key, self.buffer.getvalue(), self.content_type)
        else:
            if self.buffer.tell():
                self._flush()
            self.storage.client.complete_multipart_upload(Bucket=self.storage.bucket, Key=self.key,
                                                          UploadId=self.upload_id,
                                                          MultipartUpload={"Parts": self.parts})
        return self.size

    def abort(self) -> None:
        if self.upload_id is not None:
            self.storage.client.abort_multipart_upload(Bucket=self.storage.bucket, Key=self.key,
                                                       UploadId=self.upload_id)

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_csv(storage: Storage, key: str, n_rows: int, n_features: int, block: Callable[[slice], np.ndarray],
              labels: np.ndarray | None = None, label_format: str = "%d") -> int:
    """Rows as CSV without a header, label first if given; ``block(rows)`` gives the features of
    a slice of rows (float32), so only one block of text exists at a time. Returns the bytes."""
    rows_per_block = max(1, BLOCK_CELLS // max(1, n_features))
    fmt = ([label_format] if labels is not None else []) + ["%.7g"] * n_features
    with S3Writer(storage, key) as out:
        for start in range(0, n_rows, rows_per_block):
            rows = slice(start, min(n_rows, start + rows_per_block))
            x = block(rows)
            if x.shape != (rows.stop - rows.start, n_features):
                raise AssertionError(f"feature block {x.shape}, expected {(rows.stop - rows.start, n_features)}")
            if not np.isfinite(x).all():
                raise DataError(f"features of rows {rows.start}..{rows.stop - 1} are not all finite")
            table = x if labels is None else np.column_stack([labels[rows].astype(np.float64), x])
            text = io.BytesIO()
            np.savetxt(text, table, fmt=fmt, delimiter=",")
            out.write(text.getvalue())
        return out.size


# -- data ----------------------------------------------------------------------------------
class _Data:
    """One part of a datasource as SageMaker sees it: n rows of d float32 features (by blocks)
    and, for training, the label (class index or value)."""

    def __init__(self, n: int, d: int, block: Callable[[slice], np.ndarray], labels: np.ndarray | None = None,
                 table=None, pipeline=None):
        self.n, self.d, self.block, self.labels, self.table, self.pipeline = n, d, block, labels, table, pipeline


def _mnist_data(storage: Storage, descriptor: dict, split: str, with_labels: bool) -> _Data:
    pixels = storage.get_npy(descriptor["arrays"][f"{split}_images"])
    pixels = pixels.reshape(len(pixels), -1)
    scale = np.float32(descriptor["input_scale"])
    labels = storage.get_npy(descriptor["arrays"][f"{split}_labels"]).astype(np.int64) if with_labels else None
    return _Data(len(pixels), pixels.shape[1], lambda rows: pixels[rows].astype(np.float32) * scale, labels)


def _csv_data(storage: Storage, descriptor: dict, part: str, pipeline=None) -> _Data:
    from stepml.tabular import modeling
    from stepml.tabular.datasource import load_table, target_codes

    table = load_table(storage, descriptor, part)
    if pipeline is None:
        pipeline = modeling.fit_pipeline(descriptor, table, None)
    features = pipeline.transform(table)
    if features.n_features > MAX_FEATURES:
        raise DataError(f"the recipe makes {features.n_features:,} features; the sagemaker engine writes at most "
                        f"{MAX_FEATURES:,} CSV columns (use fewer n-grams, OSB pairs or cartesian products)")
    labels = target_codes(table, descriptor["model_type"], descriptor["class_labels"]) if part == "training" else None
    return _Data(len(table), features.n_features, lambda rows: features.rows(rows).to_dense(), labels,
                 table=table, pipeline=pipeline)


# -- the engine ----------------------------------------------------------------------------
class SageMakerEngine:
    def __init__(self, storage: Storage):
        self.storage = storage

    @staticmethod
    def _client():
        return aws.client("sagemaker")

    @staticmethod
    def _prefix(run_id: str) -> str:
        return RunPaths(run_id).key("sagemaker/")

    def _replace_earlier_jobs(self, run_id: str, kind: str, name: str, stop: Callable[[str], bool]) -> None:
        """Before this attempt creates job ``name``: stop the jobs earlier attempts of the step
        created, and record ``name`` for a later attempt to stop.

        A step is retried with a new name (the attempt token), also after an attempt whose job
        had started but whose answer was lost (Lambda.ServiceException, a timeout after the
        Create call): that job would otherwise run -- and bill -- beside the new one until its
        MaxRuntimeInSeconds. The record is written before the Create call, so even an attempt
        that died right after it is known. A job that already ended refuses the stop, quietly."""
        key = self._prefix(run_id) + f"jobs/{kind}.json"
        earlier = [n for n in self.storage.get_json_or(key, {}).get("jobs", []) if isinstance(n, str) and n != name]
        for old in earlier:
            stop(old)
        self.storage.put_json(key, {"jobs": [*earlier, name]})

    def stop_training(self, job: dict) -> None:
        """Stop the training job (the run gave up on it, e.g. PollTimeout); best effort."""
        name = job["job_id"]
        _stop_job(self._client().stop_training_job, "StopTrainingJob", name, TrainingJobName=name)

    def stop_batch_prediction(self, job: dict) -> None:
        """Stop the transform job (the run gave up on it); best effort."""
        name = job["job_id"]
        _stop_job(self._client().stop_transform_job, "StopTransformJob", name, TransformJobName=name)

    # -- training --------------------------------------------------------------------------
    def start_training(self, job: dict) -> dict:
        run_id, algorithm = job["run_id"], job["algorithm"]
        if algorithm not in ALGORITHMS:
            raise PayloadError(f"the sagemaker engine runs {', '.join(ALGORITHMS)}; got {algorithm!r}")
        options = {**OPTIONS, **(job.get("options") or {})}
        client = self._client()
        image = image_uri(algorithm, client.meta.region_name)
        role = role_arn()
        name = job_name(run_id, job.get("attempt"), "t")
        descriptor = self.storage.get_json(job["datasource"])
        model_type = job.get("model_type") or descriptor.get("model_type", "MULTICLASS")
        params = check_parameters(algorithm, job.get("parameters") or {}, model_type)

        prefix = self._prefix(run_id)
        if descriptor["kind"] == "csv":
            data = _csv_data(self.storage, descriptor, "training")
            self.storage.put_json(prefix + "pipeline.json", data.pipeline.to_json())
            n_classes = descriptor["n_classes"]
        else:
            data = _mnist_data(self.storage, descriptor, "train", with_labels=True)
            n_classes = descriptor["n_classes"]
        kind = output_kind(model_type, n_classes)
        train_key = prefix + "train/train.csv"
        size = write_csv(self.storage, train_key, data.n, data.d, data.block, data.labels,
                         label_format="%.9g" if kind == "regression" else "%d")
        hp = hyperparameters(algorithm, params, kind, n_classes, data.d, job.get("seed", 0))
        self._replace_earlier_jobs(run_id, "training", name, lambda old: _stop_job(
            client.stop_training_job, "StopTrainingJob", old, TrainingJobName=old))
        _start_call(
            client.create_training_job, "CreateTrainingJob", TrainingFailed,
            TrainingJobName=name,
            HyperParameters=hp,
            AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
            RoleArn=role,
            InputDataConfig=[{
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                "S3Uri": self.storage.uri(prefix + "train/"),
                                                "S3DataDistributionType": "FullyReplicated"}},
                "ContentType": "text/csv",
                "CompressionType": "None",
            }],
            OutputDataConfig={"S3OutputPath": self.storage.uri(prefix + "output/")},
            ResourceConfig={"InstanceType": options["instance_type"], "InstanceCount": int(options["instance_count"]),
                            "VolumeSizeInGB": int(options["volume_size_gb"])},
            StoppingCondition={"MaxRuntimeInSeconds": int(options["max_runtime_seconds"])},
        )
        log.info("SageMaker training job %s started: %s, %d rows x %d features (%d bytes of CSV)",
                 name, algorithm, data.n, data.d, size)
        return {"job_id": name, "status": IN_PROGRESS, "engine": "sagemaker", "algorithm": algorithm,
                "output": kind, "n_classes": n_classes, "rows": data.n, "features": data.d,
                "hyperparameters": hp, "seed": job.get("seed", 0), "image": image, "training_data": train_key,
                "pipeline": prefix + "pipeline.json" if descriptor["kind"] == "csv" else None}

    def describe_training(self, job: dict) -> dict:
        name = job["job_id"]
        response, unfinished = _describe_job(self._client().describe_training_job, "DescribeTrainingJob", "training",
                                             "TrainingJobStatus", name, TrainingJobName=name)
        if unfinished:
            return unfinished

        resources = response.get("ResourceConfig", {})
        count = int(resources.get("InstanceCount", 1))
        billable = response.get("BillableTimeInSeconds")
        training_seconds = response.get("TrainingTimeInSeconds")
        cost_facts = {"service": "sagemaker", "job": "training", "instance_type": resources.get("InstanceType"),
                      "instance_count": count, "volume_size_gb": resources.get("VolumeSizeInGB"),
                      "billable_seconds": billable, "training_seconds": training_seconds,
                      "instance_seconds": None if billable is None else billable * count}
        artifact = response["ModelArtifacts"]["S3ModelArtifacts"]
        model = self._key_of(artifact)
        hp = response.get("HyperParameters", job.get("hyperparameters", {}))
        planned = hp.get("epochs") if job.get("algorithm") == "linear-learner" else hp.get("num_round")
        training = {
            "job_id": name,
            "status": COMPLETED,
            "engine": "sagemaker",
            "algorithm": job.get("algorithm"),
            "parameters": hp,
            "seed": job.get("seed"),
            "rows": job.get("rows"),
            "features": job.get("features"),
            "output": job.get("output"),
            "n_classes": job.get("n_classes"),
            "training_seconds": training_seconds,
            "time_budget_s": None,
            "summary": {"epochs_planned": int(planned) if planned and str(planned).isdigit() else None,
                        "epochs_completed": None, "best_epoch": None, "stop_reason": "completed",
                        "seconds": training_seconds},
            "history": [],
            "model": model,
            "model_data_url": artifact,
            "image": response.get("AlgorithmSpecification", {}).get("TrainingImage", job.get("image")),
            "training_data": job.get("training_data"),
            "pipeline": job.get("pipeline"),
            "final_metrics": {m["MetricName"]: m["Value"] for m in response.get("FinalMetricDataList", [])
                              if "MetricName" in m and "Value" in m},
            "cost_facts": cost_facts,
        }
        self.storage.put_json(RunPaths(job["run_id"]).model + "training.json", training)
        return {"job_id": name, "status": COMPLETED, "model": model, "cost_facts": cost_facts,
                "training_seconds": training_seconds}

    def _key_of(self, uri: str) -> str:
        """Our key for an S3 URI in the run bucket (the URI itself if elsewhere)."""
        own = f"s3://{self.storage.bucket}/"
        return uri.removeprefix(own)

    def _uri_of(self, key_or_uri: str) -> str:
        return key_or_uri if key_or_uri.startswith("s3://") else self.storage.uri(key_or_uri)

    # -- batch prediction ------------------------------------------------------------------
    def start_batch_prediction(self, job: dict) -> dict:
        run_id = job["run_id"]
        training = self.storage.get_json(RunPaths(run_id).model + "training.json")
        algorithm = training["algorithm"]
        options = {**OPTIONS, **(job.get("options") or {})}
        client = self._client()
        image = image_uri(algorithm, client.meta.region_name)
        role = role_arn()
        model_name = job_name(run_id, job.get("attempt"), "m")
        transform_name = job_name(run_id, job.get("attempt"), "bp")
        descriptor = self.storage.get_json(job["datasource"])
        prefix = self._prefix(run_id)
        if descriptor["kind"] == "csv":
            from stepml.tabular.transforms import FeaturePipeline

            pipeline = FeaturePipeline.from_json(self.storage.get_json(training["pipeline"]))
            data = _csv_data(self.storage, descriptor, "evaluation", pipeline)
        else:
            data = _mnist_data(self.storage, descriptor, "test", with_labels=False)
        if data.d != training["features"]:
            raise DataError(f"the evaluation rows have {data.d} features; the model was trained on {training['features']}")
        input_name = "evaluation.csv"
        write_csv(self.storage, prefix + "transform-input/" + input_name, data.n, data.d, data.block)

        # Only transform jobs run (and bill); an earlier attempt's model costs nothing.
        self._replace_earlier_jobs(run_id, "transform", transform_name, lambda old: _stop_job(
            client.stop_transform_job, "StopTransformJob", old, TransformJobName=old))
        _start_call(client.create_model, "CreateModel", PredictionFailed,
                    ModelName=model_name,
                    PrimaryContainer={"Image": image, "ModelDataUrl": self._uri_of(job.get("model") or training["model"])},
                    ExecutionRoleArn=role)
        output_prefix = f"{prefix}transform-output/{transform_name}/"
        instance_type = options["transform_instance_type"]
        _start_call(client.create_transform_job, "CreateTransformJob", PredictionFailed,
                    TransformJobName=transform_name,
                    ModelName=model_name,
                    BatchStrategy="MultiRecord",
                    MaxPayloadInMB=6,
                    TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                    "S3Uri": self.storage.uri(prefix + "transform-input/")}},
                                    "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "None"},
                    TransformOutput={"S3OutputPath": self.storage.uri(output_prefix), "Accept": ACCEPT[algorithm],
                                     "AssembleWith": "Line"},
                    TransformResources={"InstanceType": instance_type, "InstanceCount": TRANSFORM_INSTANCE_COUNT})
        log.info("SageMaker transform job %s started on model %s: %d rows", transform_name, model_name, data.n)
        return {"job_id": transform_name, "status": IN_PROGRESS, "engine": "sagemaker", "model_name": model_name,
                "algorithm": algorithm, "output": training["output"], "n_classes": training["n_classes"],
                "rows": data.n, "datasource": job["datasource"], "output_key": output_prefix + input_name + ".out"}

    def describe_batch_prediction(self, job: dict) -> dict:
        name = job["job_id"]
        response, unfinished = _describe_job(self._client().describe_transform_job, "DescribeTransformJob",
                                             "transform", "TransformJobStatus", name, TransformJobName=name)
        if unfinished:
            return unfinished

        run_id, rows = job["run_id"], job["rows"]
        try:
            scores = parse_output(self.storage.iter_chunks(job["output_key"]), job["algorithm"], job["output"],
                                  job["n_classes"], rows)
        except ValueError as err:
            return {"job_id": name, "status": FAILED,
                    "message": f"SageMaker transform output {self.storage.uri(job['output_key'])}: {err}"}
        regression = job["output"] == "regression"
        key = RunPaths(run_id).predictions + "predictions.csv"
        self.storage.put_bytes(key, predictions.values_to_csv(scores) if regression else predictions.to_csv(scores),
                               "text/csv")
        resources = response.get("TransformResources", {})
        count = int(resources.get("InstanceCount", 1))
        seconds = _seconds(response.get("TransformStartTime"), response.get("TransformEndTime"))
        cost_facts = {"service": "sagemaker", "job": "transform", "instance_type": resources.get("InstanceType"),
                      "instance_count": count, "transform_seconds": seconds,
                      "instance_seconds": None if seconds is None else round(seconds * count, 3)}
        result = {"job_id": name, "status": COMPLETED, "predictions": key, "rows": len(scores),
                  "cost_facts": cost_facts}
        descriptor = self.storage.get_json(job.get("datasource") or RunPaths(run_id).datasource + "datasource.json")
        if descriptor["kind"] == "csv":
            from stepml.tabular.datasource import load_table

            table = load_table(self.storage, descriptor, "evaluation")
            result.update(predictions.write_amazon_ml_layout(self.storage, run_id, descriptor, table, scores))
        return result


def _failure_message(what: str, response: dict) -> str:
    status = response.get("TrainingJobStatus") or response.get("TransformJobStatus")
    reason = response.get("FailureReason")
    if status == "Stopped":
        secondary = response.get("SecondaryStatus")
        if secondary == "MaxRuntimeExceeded":
            limit = response.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
            return (f"the SageMaker {what} job ran longer than its MaxRuntimeInSeconds ({limit}) and was stopped; "
                    f"raise model.sagemaker.max_runtime_seconds or use a larger instance")
        return f"the SageMaker {what} job was stopped" + (f": {reason}" if reason else "")
    return f"the SageMaker {what} job {status}: {reason or 'no FailureReason given'}"


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of byte chunks (a chunk may end anywhere); a final empty line is none."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def parse_output(raw: bytes | Iterable[bytes], algorithm: str, kind: str, n_classes: int | None,
                 rows: int) -> np.ndarray:
    """The transform's output (bytes, or a stream of chunks as read from S3) as class
    probabilities (n, k) or values (n,); ValueError if it is not one valid line per input row.
    Memory: the (rows, k) result and one chunk, whatever the output's size; an output with more
    lines than rows is refused at the first extra line."""
    k = 1 if kind == "regression" else n_classes
    out = np.empty((rows, k), dtype=np.float64)
    n = 0
    for n, line in enumerate(_lines([raw] if isinstance(raw, (bytes, bytearray)) else raw), start=1):
        if n > rows:
            raise ValueError(f"more output lines than the {rows} input rows")
        text = line.decode("utf-8").rstrip("\r")
        try:
            out[n - 1] = _scores(_line_value(text, algorithm), kind, k)
        except (ValueError, TypeError) as err:
            raise ValueError(f"line {n} ({text[:80]!r}): {err}") from None
    if n != rows:
        raise ValueError(f"{n} output lines for {rows} input rows")
    if not np.isfinite(out).all():
        raise ValueError("scores that are not finite numbers")
    return out[:, 0] if kind == "regression" else out


def _line_value(text: str, algorithm: str):
    """One output line as JSON: Linear Learner's object's "score"; XGBoost's number or list
    (``[0.1, 0.2, 0.7]``, or the same as a plain CSV row ``0.1,0.2,0.7``)."""
    if algorithm == "linear-learner":
        value = json.loads(text)
        if not isinstance(value, dict) or "score" not in value:
            raise ValueError("not a JSON object with a 'score'")
        return value["score"]
    if "," in text and not text.lstrip().startswith("["):
        return [float(v) for v in text.split(",")]
    return json.loads(text)


def _scores(value, kind: str, k: int) -> list[float]:
    if kind == "multiclass":
        if not isinstance(value, list) or len(value) != k:
            raise ValueError(f"expected {k} class scores")
        return [float(v) for v in value]
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError("expected one score")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("the score is not a number")
    if kind == "binary":
        p = float(value)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a probability outside 0..1: {p}")
        return [1.0 - p, p]
    return [float(value)]
