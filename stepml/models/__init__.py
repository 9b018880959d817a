"""The built-in engine's models: pure-numpy SGD models, a registry, and one artefact format.

Algorithms: ``linear`` (softmax/logistic or least-squares regression; takes a dense array or a
:class:`~stepml.tabular.features.FeatureMatrix`, and Amazon ML's ``sgd.*`` parameters),
``mlp`` (one hidden layer) and ``cnn`` (images). ``linear`` and ``mlp`` take an ``objective``:
``"multiclass"`` (default), ``"binary"`` or ``"regression"``; ``cnn`` is multiclass only.

>>> model = make_model("mlp", {"image_shape": [28, 28]}, seed=7)
>>> model.fit(X_train, y_train, on_epoch=lambda e, info: print(e, info["loss"]))
>>> with open("model.npz", "wb") as f:
...     save_model(model, f, input_scale=1 / 255)
>>> with open("model.npz", "rb") as f:
...     model = load_model(f)            # model.input_scale_ == 1/255

The artefact is a single ``.npz`` (``np.savez``): one entry per float32 weight array plus
``__meta__``, a JSON string with the format version, algorithm, parameters (the whole
architecture, ``image_shape`` and ``objective`` included), classes, feature count, input
scale, the weight shapes, the training summary (stop reason, epochs, best epoch, validation
score, seconds, FLOPs per sample) and the per-epoch history, and optionally
``__pipeline__``, the caller's feature pipeline as UTF-8 JSON bytes (uint8; kept out of
``__meta__``, which numpy stores as 4 bytes a character). It holds no pickles, so loading it
never executes code (``allow_pickle=False``), and every field is checked on the way in.

Format versions: 3 added ``objective`` (a parameter), ``n_sparse_features`` and
``sparse_width`` (a linear model fitted on a FeatureMatrix: its ``Ws_`` block), ``target``
(regression: the mean and std of the training target; classes are then ``[]``) and the
optional ``__pipeline__`` entry; 2 added ``training_summary`` (required) and
``train_flops_per_sample``; version-1 and -2 artefacts still load.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from typing import IO, Any, Union

import numpy as np

from .amazonml_params import from_amazon_ml, has_amazon_ml_params
from .base import OBJECTIVES, STOP_REASONS, BaseSGDModel, BaseSoftmaxClassifier, NotFittedError
from .cnn import CNNClassifier
from .linear import LinearModel, SoftmaxRegression
from .mlp import MLPClassifier

__all__ = [
    "ALGORITHMS",
    "FORMAT",
    "FORMAT_VERSION",
    "OBJECTIVES",
    "STOP_REASONS",
    "BaseSGDModel",
    "BaseSoftmaxClassifier",
    "CNNClassifier",
    "LinearModel",
    "MLPClassifier",
    "NotFittedError",
    "SoftmaxRegression",
    "default_params",
    "load_model",
    "make_model",
    "save_model",
]

#: Algorithm names accepted by triggers (``model.algorithm``) -> estimator classes.
ALGORITHMS: dict[str, type[BaseSGDModel]] = {
    "linear": SoftmaxRegression,
    "mlp": MLPClassifier,
    "cnn": CNNClassifier,
}

FORMAT = "stepml.model"
FORMAT_VERSION = 3
_META_KEY = "__meta__"
_PIPELINE_KEY = "__pipeline__"

PathOrFile = Union[str, os.PathLike, IO[bytes]]


def _algorithm_class(algorithm: Any) -> type[BaseSGDModel]:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm]


def default_params(algorithm: str) -> dict:
    """The default parameters of ``algorithm`` (without ``seed``), as JSON-ready values."""
    params = _algorithm_class(algorithm)().get_params()
    params.pop("seed")
    return params


def make_model(algorithm: str, params: dict | None, seed: int) -> BaseSGDModel:
    """Build an unfitted estimator from a trigger's ``algorithm``, ``parameters`` and ``seed``.

    For algorithm ``linear``, ``params`` may hold Amazon ML's ``sgd.*`` training parameters
    (string or number values), alone or mixed with stepml names: they are translated here by
    :func:`~stepml.models.amazonml_params.from_amazon_ml` (Amazon ML's defaults then fill in
    the rest, e.g. 10 epochs and ``l2=1e-6``; ``sgd.maxMLModelSizeInBytes`` becomes the
    model's ``max_model_bytes``, which the engine reads to cap the sparse columns). The
    returned model's ``get_params()`` hold only stepml names.

    Raises ``ValueError`` naming the problem: an unknown algorithm, unknown parameter names
    (listing the valid ones), a value of the wrong type or out of range, a bad ``sgd.*``
    value, or a setting given both as ``sgd.*`` and by its stepml name.
    """
    cls = _algorithm_class(algorithm)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"parameters must be a JSON object (dict); got {type(params).__name__}")
    if has_amazon_ml_params(params):
        if cls is not LinearModel:
            sgd = sorted(k for k in params if isinstance(k, str) and k.startswith("sgd."))
            raise ValueError(f"Amazon ML parameters ({', '.join(sgd)}) apply to algorithm 'linear' "
                             f"only, not {algorithm!r}")
        params, _ = from_amazon_ml(params)
    unknown = sorted(set(params) - set(cls._param_specs))
    if unknown:
        valid = [name for name in cls._param_specs if name != "seed"]
        raise ValueError(f"unknown parameter(s) for algorithm {algorithm!r}: {', '.join(unknown)}; "
                         f"valid parameters: {', '.join(valid)}")
    if "seed" in params and params["seed"] != seed:
        raise ValueError(f"conflicting seeds: parameters say {params['seed']!r} but seed={seed!r}; "
                         "pass the seed once")
    model = cls(**{**params, "seed": seed})
    model.validate_params()
    return model


# ----------------------------------------------------------------------------------------
# Artefact
# ----------------------------------------------------------------------------------------


def save_model(model: BaseSGDModel, fileobj: PathOrFile, *, input_scale: float | None = None,
               extra: dict | None = None, pipeline: dict | None = None) -> dict:
    """Write a fitted model to ``fileobj`` (a path or a binary file) as one ``.npz``; return its metadata.

    ``input_scale`` is the factor the raw features were multiplied by before ``fit`` (1/255
    for MNIST pixels); prediction must apply the same. It defaults to the model's
    ``input_scale_`` (set by :func:`load_model`) or 1. ``extra`` is any small
    JSON-serialisable dict to keep alongside (e.g. the BLAS thread count, run id); it comes
    back in ``model.metadata_["extra"]``. ``pipeline`` is a JSON-serialisable dict of any
    size -- the feature pipeline that turns raw rows into the model's input
    (``FeaturePipeline.to_json()``) -- stored compactly as its own entry; it comes back as
    ``model.pipeline_`` (None when not given; it defaults to the model's ``pipeline_``).
    """
    if not isinstance(model, BaseSGDModel) or model.algorithm not in ALGORITHMS:
        raise ValueError(f"cannot save {type(model).__name__}: not a stepml built-in model")
    model._check_fitted()
    if input_scale is None:
        input_scale = getattr(model, "input_scale_", 1.0)
    input_scale = float(input_scale)
    if not np.isfinite(input_scale) or input_scale <= 0:
        raise ValueError(f"input_scale must be a positive finite number; got {input_scale!r}")

    weights = {name: np.ascontiguousarray(getattr(model, name), dtype=np.float32)
               for name in model._weight_names}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": model.algorithm,
        "params": model.get_params(),
        "classes": [] if model.is_regression else model.classes_.tolist(),
        "n_features": int(model.n_features_in_),
        "n_sparse_features": getattr(model, "n_sparse_in_", None),
        "sparse_width": getattr(model, "sparse_width_", None),
        "target": ({"mean": float(model.target_mean_), "std": float(model.target_std_)}
                   if model.is_regression else None),
        "input_scale": input_scale,
        "weights": {name: list(w.shape) for name, w in weights.items()},
        "training_summary": _training_summary_or_none(model),
        "train_flops_per_sample": model.train_flops_per_sample(),
        "history": getattr(model, "history_", []),
        "fit_seconds": getattr(model, "fit_seconds_", None),
        "numpy_version": np.__version__,
        "extra": extra or {},
    }
    try:
        meta_json = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model metadata is not JSON-serialisable: {exc}") from None

    arrays = {_META_KEY: np.array(meta_json), **weights}
    if pipeline is None:
        pipeline = getattr(model, "pipeline_", None)
    if pipeline is not None:
        if not isinstance(pipeline, dict):
            raise ValueError(f"pipeline must be a JSON object (dict); got {type(pipeline).__name__}")
        try:
            raw = json.dumps(pipeline, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pipeline is not JSON-serialisable: {exc}") from None
        arrays[_PIPELINE_KEY] = np.frombuffer(raw, dtype=np.uint8)
    if isinstance(fileobj, (str, os.PathLike)):
        # Open the path ourselves: np.savez would silently append ".npz" to it.
        with open(fileobj, "wb") as f:
            np.savez(f, **arrays)
    else:
        np.savez(fileobj, **arrays)
    return meta


def _training_summary_or_none(model: BaseSGDModel) -> dict | None:
    try:
        return model.training_summary()
    except NotFittedError:      # weights set by hand rather than by fit()
        return None


def load_model(fileobj: PathOrFile) -> BaseSGDModel:
    """Read a model written by :func:`save_model` from a path or binary file.

    Returns a fitted estimator with ``input_scale_``, ``metadata_``, ``pipeline_`` (the dict
    given to ``save_model(pipeline=...)``, or None) and the training facts
    (``training_summary()``, ``stop_reason_``, ``epochs_completed_``, ``best_epoch_``) set. Raises
    ``ValueError`` if the data is not a stepml model artefact, is truncated or corrupt, comes
    from a newer format version, or its weights do not match its metadata (a missing path
    still raises ``FileNotFoundError``).
    """
    try:
        with np.load(fileobj, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("it is a single .npy array, not an .npz archive")
            names = set(npz.files)
            if _META_KEY not in names:
                raise ValueError(f"no {_META_KEY!r} entry")
            raw_meta = npz[_META_KEY]
            raw_pipeline = npz[_PIPELINE_KEY] if _PIPELINE_KEY in names else None
            arrays = {name: npz[name] for name in names - {_META_KEY, _PIPELINE_KEY}}
    except ValueError as exc:
        raise ValueError(f"not a valid stepml model artefact: {exc}") from None
    except FileNotFoundError:
        raise
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, AttributeError) as exc:
        # Truncated or corrupted archives surface as any of these, depending on where the damage is.
        raise ValueError(f"not a valid stepml model artefact (unreadable .npz): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zlib.error and friends; all mean "corrupt file"
        raise ValueError(f"not a valid stepml model artefact (corrupt .npz): {exc!r}") from None

    meta = _parse_meta(raw_meta)
    model = _model_from_meta(meta)
    _attach_weights(model, meta, arrays)
    model.pipeline_ = _parse_pipeline(raw_pipeline)
    return model


def _parse_pipeline(raw: np.ndarray | None) -> dict | None:
    if raw is None:
        return None
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _invalid(f"{_PIPELINE_KEY!r} must be UTF-8 JSON bytes (uint8)")
    try:
        pipeline = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"{_PIPELINE_KEY!r} is not UTF-8 JSON ({exc})") from None
    if not isinstance(pipeline, dict):
        raise _invalid(f"{_PIPELINE_KEY!r} must hold a JSON object")
    return pipeline


def _invalid(why: str) -> ValueError:
    return ValueError(f"invalid stepml model artefact: {why}")


def _parse_meta(raw: np.ndarray) -> dict:
    if raw.dtype.kind != "U" or raw.shape != ():
        raise _invalid(f"{_META_KEY!r} must be a JSON string")
    try:
        meta = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise _invalid(f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _invalid(f"metadata format is not {FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _invalid(f"bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise _invalid(f"format_version {version} is newer than this stepml reads "
                       f"({FORMAT_VERSION}); upgrade stepml")
    for key, kind in (("algorithm", str), ("params", dict), ("classes", list), ("n_features", int),
                      ("input_scale", (int, float)), ("weights", dict)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise _invalid(f"metadata field {key!r} is missing or of the wrong type")
    # Version 2 always writes the summary: an object, or null for a model not trained by fit().
    summary = meta.get("training_summary")
    if (version >= 2 and "training_summary" not in meta) or not isinstance(summary, (dict, type(None))):
        raise _invalid("metadata field 'training_summary' is missing or not an object")
    if summary is not None and summary.get("stop_reason") not in STOP_REASONS:
        raise _invalid(f"training_summary.stop_reason must be one of {', '.join(STOP_REASONS)}")
    n_sparse = meta.get("n_sparse_features")
    if n_sparse is not None and (not isinstance(n_sparse, int) or isinstance(n_sparse, bool) or n_sparse < 0):
        raise _invalid("metadata field 'n_sparse_features' must be null or a non-negative integer")
    target = meta.get("target")
    if target is not None and not (
            isinstance(target, dict)
            and all(isinstance(target.get(key), (int, float)) and not isinstance(target.get(key), bool)
                    and math.isfinite(target[key]) for key in ("mean", "std"))
            and target["std"] > 0):
        raise _invalid("metadata field 'target' must be null or {\"mean\": number, \"std\": number > 0}")
    return meta


def _model_from_meta(meta: dict) -> BaseSGDModel:
    try:
        params = dict(meta["params"])
        seed = params.pop("seed", 0)
        model = make_model(meta["algorithm"], params, seed)
    except (ValueError, TypeError) as exc:
        raise _invalid(str(exc)) from None
    n_classes = len(meta["classes"])
    try:
        model._check_n_features(meta["n_features"])
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    if model.is_regression:
        if n_classes or meta.get("target") is None:
            raise _invalid("a regression model has classes [] and a 'target' {mean, std}")
    elif n_classes < 2 or meta["classes"] != list(range(n_classes)):
        raise _invalid("classes must be [0, 1, ..., k-1] with k >= 2")
    elif model._objective == "binary" and n_classes != 2:
        raise _invalid("a binary model has classes [0, 1]")
    n_sparse = meta.get("n_sparse_features")
    if n_sparse is not None:
        if not isinstance(model, LinearModel) or n_sparse > meta["n_features"]:
            raise _invalid(f"n_sparse_features {n_sparse} does not fit algorithm {meta['algorithm']!r} "
                           f"with {meta['n_features']} features")
        model.n_sparse_in_ = n_sparse
    if meta["n_features"] < 1:
        raise _invalid("n_features must be positive")
    if not np.isfinite(meta["input_scale"]) or meta["input_scale"] <= 0:
        raise _invalid("input_scale must be a positive finite number")
    return model


def _attach_weights(model: BaseSGDModel, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    n_features = meta["n_features"]
    n_classes = 1 if model.is_regression else len(meta["classes"])
    try:
        expected = model.weight_shapes(n_features, n_classes)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    if set(arrays) != set(expected):
        raise _invalid(f"weight arrays {sorted(arrays)} do not match {meta['algorithm']!r}'s "
                       f"{sorted(expected)}")
    for name, shape in expected.items():
        w = arrays[name]
        if w.dtype != np.float32 or w.shape != shape:
            raise _invalid(f"weight {name!r} is {w.dtype}{list(w.shape)}, expected float32{list(shape)}")
        if not np.isfinite(w).all():
            raise _invalid(f"weight {name!r} contains NaN or infinity")
        setattr(model, name, np.ascontiguousarray(w))
    model.n_features_in_ = n_features
    model.n_outputs_ = n_classes
    if model.is_regression:
        model.n_classes_ = model.classes_ = None
        model.target_mean_, model.target_std_ = float(meta["target"]["mean"]), float(meta["target"]["std"])
    else:
        model.n_classes_ = n_classes
        model.classes_ = np.arange(n_classes)
    if meta.get("sparse_width") is not None:
        model.sparse_width_ = meta["sparse_width"]
    model.history_ = list(meta.get("history") or [])
    model.fit_seconds_ = meta.get("fit_seconds")
    summary = meta.get("training_summary")
    if isinstance(summary, dict):
        model.training_summary_ = dict(summary)
        model.stop_reason_ = summary["stop_reason"]
        model.epochs_completed_ = summary.get("epochs_completed")
        model.best_epoch_ = summary.get("best_epoch")
    model.input_scale_ = float(meta["input_scale"])
    model.metadata_ = meta
