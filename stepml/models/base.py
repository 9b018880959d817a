"""Shared machinery for the built-in numpy classifiers.

Every model here is a softmax classifier trained by minibatch SGD, so the parts that do not
depend on the model's hidden layers live in this module:

* input validation (shapes, finiteness, labels) with messages that name the problem;
* the epoch loop (shuffling, timing, the ``on_epoch`` progress callback, ``history_``);
* batched inference (``predict_proba`` / ``predict``) so memory stays bounded;
* ``get_params`` and declarative parameter validation (used by ``make_model`` too);
* numerically stable softmax / cross-entropy and the learning-rate schedules.

Subclasses implement three hooks, ``_init_weights``, ``_run_epoch`` and ``_logits``, list
their weight arrays in ``_weight_names`` and their parameters in ``_param_specs``.

Conventions. Everything is float32: weights, activations and gradients (half the memory
and twice the BLAS throughput of float64, and plenty for SGD). Python floats are used for
scalars such as the learning rate so that numpy never promotes an array to float64.
Randomness comes only from ``np.random.default_rng(seed)`` created at the start of ``fit``,
so the same seed and data give bit-identical weights (for a fixed BLAS kernel and thread
count).
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable, ClassVar

import numpy as np

__all__ = [
    "BaseSoftmaxClassifier",
    "NotFittedError",
    "ParamSpec",
    "check_X",
    "check_y",
    "cosine_learning_rate",
    "softmax_cross_entropy",
]

FLOAT = np.float32
PREDICT_BATCH_ROWS = 4096  # rows per inference chunk: 4096 x 512 hidden units x 4 B = 8 MB

EpochCallback = Callable[[int, dict], Any]


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used for prediction before ``fit`` (as in scikit-learn)."""


# ----------------------------------------------------------------------------------------
# Parameter validation
# ----------------------------------------------------------------------------------------


class ParamSpec:
    """Type and range of one constructor parameter.

    ``kind`` is ``"int"``, ``"float"`` or ``"image_shape"``; ``low``/``high`` bound the value
    (inclusive unless ``low_open``); ``optional`` allows ``None``.
    """

    def __init__(self, kind: str, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, optional: bool = False):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.optional = low_open, optional

    def describe(self) -> str:
        if self.kind == "image_shape":
            return "null or [height, width] of positive integers"
        lo = "" if self.low is None else (f"> {self.low}" if self.low_open else f">= {self.low}")
        hi = "" if self.high is None else f"<= {self.high}"
        rng = " and ".join(s for s in (lo, hi) if s)
        text = f"{'an integer' if self.kind == 'int' else 'a number'}{' ' + rng if rng else ''}"
        return f"null or {text}" if self.optional else text

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming ``name`` if ``value`` is not allowed."""
        if value is None and self.optional:
            return
        bad = ValueError(f"parameter {name!r} must be {self.describe()}; got {value!r}")
        if self.kind == "image_shape":
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or not all(_is_int(v) and v > 0 for v in value)):
                raise bad
            return
        # bool is an int subclass in Python; `"epochs": true` is a mistake, not 1.
        if self.kind == "int" and not _is_int(value):
            raise bad
        if self.kind == "float" and (not _is_number(value) or not math.isfinite(value)):
            raise bad
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise bad
        if self.high is not None and value > self.high:
            raise bad


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _json_value(v: Any) -> Any:
    """Parameters as plain JSON types (tuples become lists, numpy scalars become Python)."""
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# ----------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------


def check_X(X: Any, *, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float32 matrix, or raise ``ValueError`` saying why not.

    Contiguity matters: row slices of a C-contiguous matrix are what BLAS multiplies fastest.
    """
    try:
        X = np.asarray(X, dtype=FLOAT)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric (convertible to float32): {exc}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the model was fitted with {n_features}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{name} contains NaN or infinity (first at row {bad[0]}, column {bad[1]})")
    return np.ascontiguousarray(X)


def check_y(y: Any, n_samples: int, n_classes: int | None = None) -> np.ndarray:
    """Return labels as an int64 vector of class indices 0..k-1, or raise ``ValueError``.

    Integral floats are accepted (labels often arrive from CSV as ``5.0``); anything else
    that is not a whole non-negative number is rejected.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of class indices; got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {y.shape[0]} labels")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
        if not (y == np.round(y)).all():
            raise ValueError("y must hold integer class indices 0..k-1; got non-integral values")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"y must hold integer class indices 0..k-1; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"y must hold class indices 0..k-1; got negative label {int(y.min())}")
    if n_classes is not None and y.size and y.max() >= n_classes:
        raise ValueError(f"y has label {int(y.max())} but n_classes={n_classes} (labels must be < n_classes)")
    return y


# ----------------------------------------------------------------------------------------
# Math shared by the models
# ----------------------------------------------------------------------------------------


def softmax_cross_entropy(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Turn logits ``Z`` (m, k) into the gradient of the mean cross-entropy w.r.t. ``Z``.

    Works in place on ``Z`` (it is scratch space the caller no longer needs) and returns
    ``(G, loss, accuracy)`` with ``G = (softmax(Z) - onehot(y)) / m``, ``loss`` the mean of
    ``-log softmax(Z)[i, y_i]`` and ``accuracy`` the fraction of rows whose true class has
    the largest logit. The loss uses log-sum-exp on max-shifted logits, so it is exact and
    finite even when a probability underflows to 0 in float32.
    """
    m = Z.shape[0]
    rows = np.arange(m)
    Z -= Z.max(axis=1, keepdims=True)            # exp() now <= 1: no overflow
    z_true = Z[rows, y]
    accuracy = float(np.mean(z_true == 0.0))    # after the shift the row maximum is exactly 0
    np.exp(Z, out=Z)
    total = Z.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - z_true))
    Z /= total                                   # Z is now softmax probabilities P
    Z[rows, y] -= 1.0                            # P - Y
    Z *= 1.0 / m                                 # mean over the batch
    return Z, loss, accuracy


def softmax_inplace(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits, in place (max-shifted for stability)."""
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def cosine_learning_rate(base: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Learning rate of SGD step ``step`` (0-based) of ``total_steps``: cosine annealing to 0.

    Large steps early (fast progress), small steps at the end (the weights settle instead
    of bouncing around the minimum), with no schedule hyper-parameters to tune. An optional
    linear warm-up over the first ``warmup_steps`` keeps the first updates of a freshly
    initialised network (large gradients, momentum not yet averaged) from overshooting.
    """
    rate = 0.5 * base * (1.0 + math.cos(math.pi * step / total_steps))
    if step < warmup_steps:
        rate *= (step + 1) / warmup_steps
    return rate


# ----------------------------------------------------------------------------------------
# The estimator base class
# ----------------------------------------------------------------------------------------


class BaseSoftmaxClassifier:
    """Template for minibatch-SGD softmax classifiers with a scikit-learn style API.

    Fitted attributes: ``classes_`` (``arange(k)``), ``n_classes_``, ``n_features_in_``,
    ``history_`` (one info dict per epoch), ``fit_seconds_`` and the weight arrays listed in
    ``_weight_names`` (float32).
    """

    #: Name of this algorithm in ``stepml.models.ALGORITHMS``.
    algorithm: ClassVar[str] = ""
    #: Constructor parameters, in signature order, with their allowed values.
    _param_specs: ClassVar[dict[str, ParamSpec]] = {}
    #: Fraction of all SGD steps spent warming the learning rate up from 0.
    _warmup_fraction: ClassVar[float] = 0.0
    #: Names of the fitted float32 weight arrays (saved and loaded by ``save_model``).
    _weight_names: ClassVar[tuple[str, ...]] = ()

    def weight_shapes(self, n_features: int, n_classes: int) -> dict[str, tuple[int, ...]]:
        """Shape of each weight array for the current parameters (checked when loading)."""
        raise NotImplementedError

    # -- parameters ---------------------------------------------------------------------

    def get_params(self) -> dict:
        """Constructor parameters as a JSON-serialisable dict (``cls(**p)`` rebuilds the model)."""
        return {name: _json_value(getattr(self, name)) for name in self._param_specs}

    def set_params(self, **params: Any) -> "BaseSoftmaxClassifier":
        """Set constructor parameters (scikit-learn style); unknown names raise ``ValueError``."""
        for name in params:
            if name not in self._param_specs:
                raise ValueError(f"unknown parameter {name!r} for {type(self).__name__}; "
                                 f"valid: {', '.join(self._param_specs)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def validate_params(self) -> None:
        """Raise ``ValueError`` if any parameter is of the wrong type or out of range."""
        for name, spec in self._param_specs.items():
            spec.check(name, getattr(self, name))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- training -----------------------------------------------------------------------

    def fit(self, X: Any, y: Any, *, on_epoch: EpochCallback | None = None):
        """Train on ``X`` (n, d) float32, already scaled, and ``y`` (n,) class indices.

        ``on_epoch(epoch, info)`` is called after every epoch (``epoch`` counts from 1) with
        ``info = {"epoch", "epochs", "loss", "train_accuracy", "learning_rate", "seconds",
        "elapsed"}``: ``loss``/``train_accuracy`` are averaged over that epoch's minibatches
        (as the weights were changing, and on augmented data where augmentation is on),
        ``learning_rate`` is the rate of the epoch's last step, ``seconds`` the epoch's wall
        time. An exception raised by the callback stops training and propagates.

        Raises ``ValueError`` for invalid parameters or data, and ``FloatingPointError`` if the
        loss stops being finite (learning rate too high for the data's scale); the model is
        then left unfitted.
        """
        self.validate_params()
        X = check_X(X)
        y = check_y(y, X.shape[0], self.n_classes)
        if np.unique(y).size < 2:
            raise ValueError("y must contain at least 2 distinct classes to train a classifier")
        self._check_data(X)
        k = self.n_classes if self.n_classes is not None else int(y.max()) + 1

        self.n_features_in_ = X.shape[1]
        self.n_classes_ = k
        self.classes_ = np.arange(k)
        self.history_ = []
        rng = np.random.default_rng(self.seed)
        self._init_weights(X.shape[1], k, rng)
        self._step, self._total_steps = 0, self.epochs * math.ceil(X.shape[0] / self.batch_size)
        self._warmup_steps = int(self._warmup_fraction * self._total_steps)
        try:
            # Overflow can only come from divergence, which _train reports with a clear error.
            with np.errstate(over="ignore", invalid="ignore"):
                self._train(X, y, rng, on_epoch)
        finally:
            self._end_training()
        return self

    def _train(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator,
               on_epoch: EpochCallback | None) -> None:
        """The epoch loop: run, time, record and report each epoch."""
        start = time.perf_counter()
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            loss, accuracy = self._run_epoch(X, y, epoch, rng)
            now = time.perf_counter()
            info = {
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "loss": loss,
                "train_accuracy": accuracy,
                "learning_rate": self._lr,
                "seconds": now - t0,
                "elapsed": now - start,
            }
            if not math.isfinite(loss):
                for name in self._weight_names:      # NaN weights are of no use to anyone
                    setattr(self, name, None)
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (loss={loss}); "
                    "lower learning_rate or check the input scaling")
            self.history_.append(info)
            if on_epoch is not None:
                on_epoch(epoch + 1, dict(info))
        self.fit_seconds_ = time.perf_counter() - start

    def _next_learning_rate(self) -> float:
        """Learning rate of the next SGD step: cosine-annealed over all steps of ``fit``."""
        self._lr = cosine_learning_rate(float(self.learning_rate), self._step, self._total_steps,
                                        self._warmup_steps)
        self._step += 1
        return self._lr

    def _minibatches(self, n: int, rng: np.random.Generator):
        """Yield index arrays of one shuffled pass over ``n`` rows (last batch may be short).

        Rows inside a batch come in random order; ``MLPClassifier``'s shift augmentation
        relies on that.
        """
        order = rng.permutation(n)
        for lo in range(0, n, self.batch_size):
            yield order[lo:lo + self.batch_size]

    # -- inference ------------------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits (n, k) float32, computed ``PREDICT_BATCH_ROWS`` rows at a time."""
        self._check_fitted()
        X = check_X(X, n_features=self.n_features_in_)
        out = np.empty((X.shape[0], self.n_classes_), dtype=FLOAT)
        for lo in range(0, X.shape[0], PREDICT_BATCH_ROWS):
            out[lo:lo + PREDICT_BATCH_ROWS] = self._logits(X[lo:lo + PREDICT_BATCH_ROWS])
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, k) float32; each row sums to 1."""
        return softmax_inplace(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class index per row (int64); argmax of the logits = of the softmax."""
        return self.decision_function(X).argmax(axis=1).astype(np.int64)

    def _check_fitted(self) -> None:
        if any(getattr(self, name, None) is None for name in self._weight_names) or \
                getattr(self, "n_features_in_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    # -- hooks for subclasses -------------------------------------------------------------

    def _check_data(self, X: np.ndarray) -> None:
        """Extra model-specific checks of the training matrix (default: none)."""

    def _init_weights(self, n_features: int, n_classes: int, rng: np.random.Generator) -> None:
        """Create the weight arrays (and any optimiser state) before the first epoch."""
        raise NotImplementedError

    def _end_training(self) -> None:
        """Drop optimiser state after ``fit`` (also on error). Default: nothing to drop."""

    def _run_epoch(self, X: np.ndarray, y: np.ndarray, epoch: int,
                   rng: np.random.Generator) -> tuple[float, float]:
        """One pass over the data; returns (mean loss, mean train accuracy) over its batches."""
        raise NotImplementedError

    def _logits(self, X: np.ndarray) -> np.ndarray:
        """Logits of one chunk of validated rows."""
        raise NotImplementedError
