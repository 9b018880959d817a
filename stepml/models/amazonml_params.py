"""Amazon ML training parameters (``sgd.*``) translated into the ``linear`` algorithm's parameters.

Amazon ML trained its models (binary, multiclass and regression alike) by SGD on a linear
model, steered by a handful of ``sgd.*`` parameters, sent by its API as strings
(``{"sgd.maxPasses": "100", "sgd.l2RegularizationAmount": "1e-4"}``). A trigger may give
them as they were, as strings or as numbers, in ``model.parameters`` of algorithm
``linear``; :func:`stepml.models.make_model` translates them with :func:`from_amazon_ml`:

=============================  =======================================  ====================================
Amazon ML parameter            allowed values (Amazon ML default)       stepml ``linear`` parameter
=============================  =======================================  ====================================
``sgd.maxPasses``              integer 1 to 100 (10)                    ``epochs``
``sgd.shuffleType``            ``"auto"`` or ``"none"`` (``"auto"``)    ``shuffle``: ``true`` (reshuffle the
                                                                        rows every pass) / ``false`` (input
                                                                        order)
``sgd.l1RegularizationAmount`` number 0 to 1 (0)                        ``l1`` (soft-thresholding step)
``sgd.l2RegularizationAmount`` number 0 to 1 (1e-6, or 0 with a         ``l2``
                               non-zero L1 amount)
``sgd.maxMLModelSizeInBytes``  integer 100000 to 2147483648             ``max_model_bytes``: the weight
                               (33554432 = 32 MiB)                      matrices, 4 bytes a weight, must fit
=============================  =======================================  ====================================

Rules. Amazon ML accepts L1 or L2 regularisation, not both: two non-zero amounts are an
error. Once any ``sgd.*`` key is given, the Amazon ML defaults above fill in the parameters
that neither an ``sgd.*`` key nor their stepml name sets (so ``epochs`` becomes 10, not the
linear algorithm's own 6); without ``sgd.*`` keys nothing changes. Giving the same setting
twice -- ``sgd.maxPasses`` and ``epochs``, ``sgd.shuffleType`` and ``shuffle``,
``sgd.maxMLModelSizeInBytes`` and ``max_model_bytes``, or an ``sgd.*`` regularisation amount
and ``l1`` or ``l2`` -- is an error, as is an unknown ``sgd.*`` key.

Model size. Amazon ML capped the model at ``sgd.maxMLModelSizeInBytes`` by dropping rare
features; here the feature pipeline keeps at most :func:`max_sparse_columns` sparse columns
(``max_model_bytes // (4 * k) - n_dense`` for k outputs: classes, or 1 for regression), and
the model refuses to train (``ValueError``) if its weights would still not fit.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["AMAZON_ML_DEFAULTS", "SGD_KEYS", "from_amazon_ml", "has_amazon_ml_params",
           "max_sparse_columns"]

PREFIX = "sgd."

#: Amazon ML's defaults, in Amazon ML's own terms.
AMAZON_ML_DEFAULTS = {
    "sgd.maxPasses": 10,
    "sgd.shuffleType": "auto",
    "sgd.l1RegularizationAmount": 0.0,
    "sgd.l2RegularizationAmount": 1e-6,     # unless the L1 amount is non-zero
    "sgd.maxMLModelSizeInBytes": 33_554_432,
}

#: Each ``sgd.*`` key: (kind, low, high) and the stepml parameters it sets.
SGD_KEYS: dict[str, tuple[tuple, tuple[str, ...]]] = {
    "sgd.maxPasses": (("int", 1, 100), ("epochs",)),
    "sgd.shuffleType": (("choice", "auto", "none"), ("shuffle",)),
    "sgd.l1RegularizationAmount": (("float", 0.0, 1.0), ("l1", "l2")),
    "sgd.l2RegularizationAmount": (("float", 0.0, 1.0), ("l1", "l2")),
    "sgd.maxMLModelSizeInBytes": (("int", 100_000, 2_147_483_648), ("max_model_bytes",)),
}

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def has_amazon_ml_params(params: dict | None) -> bool:
    """True if ``params`` holds any ``sgd.*`` key."""
    return isinstance(params, dict) and any(isinstance(k, str) and k.startswith(PREFIX) for k in params)


def _parse(key: str, raw: Any) -> Any:
    """The value of ``sgd.*`` key ``key``, parsed strictly, or ``ValueError`` naming key and range."""
    (kind, *bounds), _ = SGD_KEYS[key]
    if kind == "choice":
        allowed = " or ".join(repr(b) for b in bounds)
        if not isinstance(raw, str) or raw.strip() not in bounds:
            raise ValueError(f"parameter {key!r} must be {allowed}; got {raw!r}")
        return raw.strip()
    low, high = bounds
    what = (f"an integer from {low} to {high}" if kind == "int"
            else f"a number from {low:g} to {high:g}")
    bad = ValueError(f"parameter {key!r} must be {what}; got {raw!r}")
    if isinstance(raw, bool):
        raise bad
    if isinstance(raw, str):
        text = raw.strip()
        if not (_INT if kind == "int" else _FLOAT).fullmatch(text):
            raise bad
        value = int(text) if kind == "int" else float(text)
    elif kind == "int" and isinstance(raw, int):
        value = raw
    elif kind == "float" and isinstance(raw, (int, float)):
        value = float(raw)
    else:
        raise bad
    if (kind == "float" and not math.isfinite(value)) or not low <= value <= high:
        raise bad
    return value


def from_amazon_ml(params: dict) -> tuple[dict, dict]:
    """Translate a trigger's parameters, which may mix ``sgd.*`` keys and stepml names, into
    ``(linear parameters, extra settings)``.

    The linear parameters are ``params`` without its ``sgd.*`` keys, plus ``epochs``,
    ``shuffle``, ``l1``, ``l2`` and ``max_model_bytes`` from the ``sgd.*`` keys or Amazon
    ML's defaults (see the module docstring; stepml names given by the caller are kept).
    The extra settings are ``{"max_model_bytes": int}`` (also among the linear parameters),
    from which the engine caps the feature pipeline's sparse columns
    (:func:`max_sparse_columns`). Raises ``ValueError`` for a bad value (naming the key and
    its allowed range), an unknown ``sgd.*`` key (listing the valid ones), both L1 and L2, or
    a setting given twice.
    """
    if not isinstance(params, dict):
        raise ValueError(f"parameters must be a JSON object (dict); got {type(params).__name__}")
    sgd = {k: v for k, v in params.items() if isinstance(k, str) and k.startswith(PREFIX)}
    ours = {k: v for k, v in params.items() if k not in sgd}
    unknown = sorted(set(sgd) - set(SGD_KEYS))
    if unknown:
        raise ValueError(f"unknown Amazon ML parameter(s): {', '.join(unknown)}; "
                         f"valid: {', '.join(SGD_KEYS)}")
    for key in sgd:
        clash = [name for name in SGD_KEYS[key][1] if name in ours]
        if clash:
            raise ValueError(f"parameters {key!r} and {clash[0]!r} both set the same thing; give one of them")
    values = {key: _parse(key, raw) for key, raw in sgd.items()}

    l1 = values.get("sgd.l1RegularizationAmount")
    l2 = values.get("sgd.l2RegularizationAmount")
    if l1 and l2:
        raise ValueError("Amazon ML accepts L1 or L2 regularisation, not both: set "
                         "'sgd.l1RegularizationAmount' or 'sgd.l2RegularizationAmount' to 0")
    out = dict(ours)
    if "epochs" not in ours:
        out["epochs"] = values.get("sgd.maxPasses", AMAZON_ML_DEFAULTS["sgd.maxPasses"])
    if "shuffle" not in ours:
        out["shuffle"] = values.get("sgd.shuffleType", AMAZON_ML_DEFAULTS["sgd.shuffleType"]) == "auto"
    if "l1" not in ours and "l2" not in ours:
        if l2 is None and not l1:
            l2 = AMAZON_ML_DEFAULTS["sgd.l2RegularizationAmount"]
        out["l1"], out["l2"] = float(l1 or 0.0), float(l2 or 0.0)
    if "max_model_bytes" not in ours:
        out["max_model_bytes"] = values.get("sgd.maxMLModelSizeInBytes",
                                            AMAZON_ML_DEFAULTS["sgd.maxMLModelSizeInBytes"])
    return out, {"max_model_bytes": out["max_model_bytes"]}


def max_sparse_columns(max_model_bytes: int | None, n_dense: int, n_outputs: int) -> int | None:
    """Most sparse columns a linear model with ``n_dense`` dense features and ``n_outputs``
    outputs (k classes, or 1 for regression) may have within ``max_model_bytes`` (None: no
    cap). Raises ``ValueError`` if even the dense features do not fit."""
    if max_model_bytes is None:
        return None
    cap = int(max_model_bytes) // (4 * int(n_outputs)) - int(n_dense)
    if cap < 0:
        raise ValueError(f"max_model_bytes {max_model_bytes} is too small for {n_dense} dense features "
                         f"x {n_outputs} outputs (4 bytes a weight)")
    return cap
