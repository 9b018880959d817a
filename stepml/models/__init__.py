"""The built-in engine's models: pure-numpy softmax classifiers, a registry, and one artefact format.

>>> model = make_model("mlp", {"image_shape": [28, 28]}, seed=7)
>>> model.fit(X_train, y_train, on_epoch=lambda e, info: print(e, info["loss"]))
>>> with open("model.npz", "wb") as f:
...     save_model(model, f, input_scale=1 / 255)
>>> with open("model.npz", "rb") as f:
...     model = load_model(f)            # model.input_scale_ == 1/255

The artefact is a single ``.npz`` (``np.savez``): one entry per float32 weight array plus
``__meta__``, a JSON string with the format version, algorithm, parameters (the whole
architecture, ``image_shape`` included), classes, feature count, input scale, the weight
shapes, the training summary (stop reason, epochs, best epoch, validation score, seconds,
FLOPs per sample) and the per-epoch history. It holds no pickles, so loading it never
executes code (``allow_pickle=False``), and every field is checked on the way in.

Format versions: 2 added ``training_summary`` (required) and ``train_flops_per_sample``;
version-1 artefacts still load.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import IO, Any, Union

import numpy as np

from .base import STOP_REASONS, BaseSoftmaxClassifier, NotFittedError
from .cnn import CNNClassifier
from .linear import SoftmaxRegression
from .mlp import MLPClassifier

__all__ = [
    "ALGORITHMS",
    "FORMAT",
    "FORMAT_VERSION",
    "STOP_REASONS",
    "BaseSoftmaxClassifier",
    "CNNClassifier",
    "MLPClassifier",
    "NotFittedError",
    "SoftmaxRegression",
    "default_params",
    "load_model",
    "make_model",
    "save_model",
]

#: Algorithm names accepted by triggers (``model.algorithm``) -> estimator classes.
ALGORITHMS: dict[str, type[BaseSoftmaxClassifier]] = {
    "linear": SoftmaxRegression,
    "mlp": MLPClassifier,
    "cnn": CNNClassifier,
}

FORMAT = "stepml.model"
FORMAT_VERSION = 2
_META_KEY = "__meta__"

PathOrFile = Union[str, os.PathLike, IO[bytes]]


def _algorithm_class(algorithm: Any) -> type[BaseSoftmaxClassifier]:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm]


def default_params(algorithm: str) -> dict:
    """The default parameters of ``algorithm`` (without ``seed``), as JSON-ready values."""
    params = _algorithm_class(algorithm)().get_params()
    params.pop("seed")
    return params


def make_model(algorithm: str, params: dict | None, seed: int) -> BaseSoftmaxClassifier:
    """Build an unfitted estimator from a trigger's ``algorithm``, ``parameters`` and ``seed``.

    Raises ``ValueError`` naming the problem: an unknown algorithm, unknown parameter names
    (listing the valid ones), or a value of the wrong type or out of range.
    """
    cls = _algorithm_class(algorithm)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"parameters must be a JSON object (dict); got {type(params).__name__}")
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


def save_model(model: BaseSoftmaxClassifier, fileobj: PathOrFile, *, input_scale: float | None = None,
               extra: dict | None = None) -> dict:
    """Write a fitted model to ``fileobj`` (a path or a binary file) as one ``.npz``; return its metadata.

    ``input_scale`` is the factor the raw features were multiplied by before ``fit`` (1/255
    for MNIST pixels); prediction must apply the same. It defaults to the model's
    ``input_scale_`` (set by :func:`load_model`) or 1. ``extra`` is any JSON-serialisable
    dict to keep alongside (e.g. the BLAS thread count, run id); it comes back in
    ``model.metadata_["extra"]``.
    """
    if not isinstance(model, BaseSoftmaxClassifier) or model.algorithm not in ALGORITHMS:
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
        "classes": model.classes_.tolist(),
        "n_features": int(model.n_features_in_),
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
    if isinstance(fileobj, (str, os.PathLike)):
        # Open the path ourselves: np.savez would silently append ".npz" to it.
        with open(fileobj, "wb") as f:
            np.savez(f, **arrays)
    else:
        np.savez(fileobj, **arrays)
    return meta


def _training_summary_or_none(model: BaseSoftmaxClassifier) -> dict | None:
    try:
        return model.training_summary()
    except NotFittedError:      # weights set by hand rather than by fit()
        return None


def load_model(fileobj: PathOrFile) -> BaseSoftmaxClassifier:
    """Read a model written by :func:`save_model` from a path or binary file.

    Returns a fitted estimator with ``input_scale_``, ``metadata_`` and the training facts
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
            arrays = {name: npz[name] for name in names - {_META_KEY}}
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
    return model


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
    return meta


def _model_from_meta(meta: dict) -> BaseSoftmaxClassifier:
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
    if n_classes < 2 or meta["classes"] != list(range(n_classes)):
        raise _invalid("classes must be [0, 1, ..., k-1] with k >= 2")
    if meta["n_features"] < 1:
        raise _invalid("n_features must be positive")
    if not np.isfinite(meta["input_scale"]) or meta["input_scale"] <= 0:
        raise _invalid("input_scale must be a positive finite number")
    return model


def _attach_weights(model: BaseSoftmaxClassifier, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    n_features, n_classes = meta["n_features"], len(meta["classes"])
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
    model.n_classes_ = n_classes
    model.classes_ = np.arange(n_classes)
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
