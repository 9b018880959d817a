"""Shared machinery for the built-in numpy models.

Every model here is trained by minibatch SGD on one output layer -- softmax cross-entropy for
classification (``objective`` ``"multiclass"`` or ``"binary"``), squared error for
``"regression"`` -- so the parts that do not depend on the model's hidden layers live in
this module:

* input validation (shapes, finiteness, labels, regression targets) with messages that
  name the problem;
* the model types (:data:`OBJECTIVES`): the output-layer loss and gradient, the target
  standardisation of regression, the validation metric that picks the best epoch;
* the training loop: a seeded stratified validation hold-out, shuffled minibatches, the
  learning-rate schedule, a wall-clock budget (``fit(..., time_budget_s=...)``), early
  stopping, keeping the best weights, the ``on_epoch`` progress callback and ``history_``;
* batched inference (``predict_proba`` / ``predict``) so memory stays bounded;
* ``get_params`` and declarative parameter validation (used by ``make_model`` too);
* numerically stable softmax / cross-entropy, the learning-rate schedule and random image
  shifts (data augmentation for the image models).

Subclasses implement ``_init_weights``, ``_train_batch`` (one SGD step on one minibatch; it
turns its output ``Z`` into a gradient with :meth:`BaseSGDModel._output_gradient`),
``_logits`` and ``train_flops_per_sample``, list their weight arrays in ``_weight_names`` and
their parameters in ``_param_specs`` (which must include :data:`COMMON_PARAM_SPECS`, and
``objective`` for models with more than one model type).

Regression. The model has one output ``z`` and is trained on the standardised target
``t = (y - mean) / std`` (mean and std of the training rows, learnt in ``fit``), with the
loss ``J = mean (z - t)^2 / 2``, so ``dJ/dz = (z - t) / m`` plays the role of softmax's
``(P - Y) / m`` and the learning rates that suit classification suit regression too,
whatever the target's units. ``predict`` undoes the standardisation.

Conventions. Everything is float32: weights, activations and gradients (half the memory
and twice the BLAS throughput of float64, and plenty for SGD). Python floats are used for
scalars such as the learning rate so that numpy never promotes an array to float64.
Randomness comes only from generators seeded by ``seed`` inside ``fit``, so the same seed
and data give bit-identical weights (for a fixed BLAS kernel and thread count) -- unless a
time budget cuts training short, which depends on the clock by definition.
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import time
from typing import Any, Callable, ClassVar

import numpy as np

from ..tabular.features import FeatureMatrix

__all__ = [
    "COMMON_PARAM_SPECS",
    "OBJECTIVES",
    "STOP_REASONS",
    "BaseSGDModel",
    "BaseSoftmaxClassifier",
    "NotFittedError",
    "ParamSpec",
    "check_X",
    "check_target",
    "check_y",
    "cosine_learning_rate",
    "fill_shifted_rows",
    "random_shifts",
    "shift_counts",
    "softmax_cross_entropy",
]

FLOAT = np.float32
PREDICT_BATCH_ROWS = 4096  # rows per inference chunk: 4096 x 512 hidden units x 4 B = 8 MB

EpochCallback = Callable[[int, dict], Any]

#: Model types: softmax over k classes, softmax over 2 classes (the positive class is 1 and
#: its score is ``predict_proba(X)[:, 1]``), or one real value (squared loss).
OBJECTIVES = ("multiclass", "binary", "regression")

#: The clock of ``fit`` (timings, time budget); tests replace it with a fake one.
_clock = time.perf_counter


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used for prediction before ``fit`` (as in scikit-learn)."""


# ----------------------------------------------------------------------------------------
# Parameter validation
# ----------------------------------------------------------------------------------------


class ParamSpec:
    """Type and range of one constructor parameter.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` (one of the strings
    ``choices``) or ``"image_shape"``; ``low``/``high`` bound the value (inclusive unless
    ``low_open``); ``optional`` allows ``None``.
    """

    def __init__(self, kind: str, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, optional: bool = False,
                 choices: tuple[str, ...] = ()):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.optional, self.choices = low_open, optional, tuple(choices)

    def describe(self) -> str:
        if self.kind == "image_shape":
            return "null or [height, width] of positive integers"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
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
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise bad
            return
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
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
    # Row sums (one BLAS pass, no temporary the size of X) are finite when every entry is;
    # only if one is not (a NaN or infinity, or a sum overflowing) is X checked entry by entry.
    if not np.isfinite(X @ np.ones(X.shape[1], X.dtype)).all() and not np.isfinite(X).all():
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


def check_target(y: Any, n_samples: int) -> np.ndarray:
    """Return a regression target as a float64 vector, or raise ``ValueError`` saying why not.

    float64 so that the mean and standard deviation learnt from it are exact; the model
    trains on the standardised values in float32.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of target values; got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {y.shape[0]} target values")
    if y.dtype.kind not in "iuf":
        raise ValueError(f"a regression target must be numeric; got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"y contains NaN or infinity (first at row {bad})")
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


def squared_error(Z: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float, None]:
    """Turn outputs ``Z`` (m, 1) into the gradient of ``J = mean (z - t)^2 / 2`` w.r.t. ``Z``.

    In place on ``Z``, like :func:`softmax_cross_entropy`; returns ``(G, J, None)`` with
    ``G = (Z - t) / m`` (there is no accuracy for a real-valued target).
    """
    m = Z.shape[0]
    Z -= t.reshape(m, 1)
    loss = 0.5 * float(np.dot(Z[:, 0], Z[:, 0])) / m if m else 0.0
    Z *= 1.0 / m
    return Z, loss, None


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


def random_shifts(X: np.ndarray, image_shape: tuple[int, int], shift: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Translate each row of ``X`` (m, h*w), seen as an h x w image, by a random offset.

    Offsets ``(dy, dx)`` are uniform on ``[-shift, shift]^2``; pixels shifted in are 0.
    Instead of a loop over images, the batch is cut into one contiguous block per offset
    (block sizes ~ Multinomial(m, uniform)), and each block is moved with one slice
    assignment: at most (2*shift+1)^2 numpy calls per batch whatever its size. Because the
    rows of a training batch are in random order, this has exactly the distribution of
    independent per-image offsets.
    """
    m = X.shape[0]
    h, w = image_shape
    side = 2 * shift + 1
    counts = shift_counts(m, shift, rng)
    src = X.reshape(m, h, w)
    out = np.zeros_like(src)
    lo = 0
    for offset, count in enumerate(counts.tolist()):
        if count == 0:
            continue
        dy, dx = divmod(offset, side)
        dy, dx = dy - shift, dx - shift
        hi = lo + count
        # out[r, c] = src[r - dy, c - dx] where both are inside the image.
        out[lo:hi, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            src[lo:hi, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        lo = hi
    return out.reshape(m, h * w)


def shift_counts(m: int, shift: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``m`` rows get each offset ``(dy, dx)``, offsets in row-major order
    (``offset = (dy + shift) * (2 * shift + 1) + (dx + shift)``): Multinomial(m, uniform).
    The one draw :func:`random_shifts` takes from ``rng`` (and the mlp, which then calls
    :func:`fill_shifted_rows`: the same pixels as random_shifts for the same draw)."""
    return rng.multinomial(m, _uniform_pvals((2 * shift + 1) ** 2))


@functools.lru_cache(maxsize=16)
def _uniform_pvals(n: int) -> np.ndarray:
    """``[1/n] * n`` as a read-only float64 array, built once (it costs a third of a
    multinomial draw on a training batch)."""
    p = np.full(n, 1.0 / n)
    p.flags.writeable = False
    return p


def fill_shifted_rows(X: np.ndarray, idx: np.ndarray, image_shape: tuple[int, int],
                      counts: np.ndarray, shift: int, out: np.ndarray | None = None,
                      scratch: np.ndarray | None = None) -> np.ndarray:
    """Rows ``idx`` of ``X``, each translated by its offset, written into ``out`` (m, h*w).

    ``counts`` (from :func:`shift_counts`) says how many consecutive rows get each offset,
    as in :func:`random_shifts`. The rows are gathered with one ``take`` (into ``scratch``
    if given, (m, h*w)). A translation by ``(dy, dx)`` is then a shift of the flat row by
    ``s = dy * w + dx``: for each block of rows sharing an offset, one copy of long runs
    instead of ``h`` short ones per image. What the flat shift gets wrong is set to 0: the
    first (``s > 0``) or last ``|s|`` pixels, which lie in the bands ``[0, shift * (w + 1))``
    and ``[h*w - shift * (w + 1), h*w)`` zeroed for the whole batch first (the copies leave
    those pixels alone and overwrite the rest of the bands), and, when ``dx != 0``, the
    ``|dx|`` columns that wrapped around from the neighbouring image row. No full zero fill
    is needed, and ``out`` may have any row stride (a column slice of a wider buffer).
    """
    m = idx.size
    h, w = image_shape
    d = h * w
    if out is None:
        out = np.empty((m, d), dtype=X.dtype)
    if scratch is None:
        scratch = np.empty((m, d), dtype=X.dtype)
    # mode="clip" lets take write straight into the given array (the default mode buffers).
    np.take(X, idx, axis=0, out=scratch, mode="clip")
    band = shift * (w + 1)
    out[:, :band] = 0
    out[:, d - band:] = 0
    lo = 0
    for (dst, src, wrapped), count in zip(_shift_plan(h, w, shift), counts.tolist()):
        if count == 0:
            continue
        hi = lo + count
        blk = out[lo:hi]
        blk[:, dst] = scratch[lo:hi, src]
        for cols in wrapped:
            blk[:, cols] = 0
        lo = hi
    return out


@functools.lru_cache(maxsize=16)
def _shift_plan(h: int, w: int, shift: int) -> tuple:
    """Per offset, in the order of :func:`shift_counts`: the slice of a flat row written,
    the slice of the source row read, and the strided slices of the wrapped-around columns
    (``out[r, j] = src[r, j - s]`` with ``s = dy * w + dx``)."""
    d, side = h * w, 2 * shift + 1
    plan = []
    for offset in range(side * side):
        dy, dx = divmod(offset, side)
        dy, dx = dy - shift, dx - shift
        s = dy * w + dx
        wrapped = tuple(slice(c, None, w) for c in (range(dx) if dx > 0 else range(w + dx, w)))
        plan.append((slice(max(s, 0), d + min(s, 0)), slice(max(-s, 0), d + min(-s, 0)), wrapped))
    return tuple(plan)


# ----------------------------------------------------------------------------------------
# The estimator base class
# ----------------------------------------------------------------------------------------

#: Parameters every algorithm has (validation hold-out and early stopping).
COMMON_PARAM_SPECS: dict[str, ParamSpec] = {
    "validation_fraction": ParamSpec("float", 0.0, 0.5),
    "early_stopping_patience": ParamSpec("int", 0, 1000),
}

#: Values of ``stop_reason_``: all planned epochs ran, the time budget ran out, or the
#: validation score stopped improving for ``early_stopping_patience`` epochs.
STOP_REASONS = ("completed", "time_budget", "early_stopping")

#: A validation loss must fall by more than this to count as progress for early stopping
#: (accuracy counts as progress whenever it rises).
MIN_LOSS_IMPROVEMENT = 1e-4

#: Multiplier on measured epoch / minibatch durations when predicting whether more work
#: still fits in the time budget (timings on shared machines wobble).
_SAFETY = 1.15


class _Budget:
    """Wall-clock deadline of one ``fit`` and the running duration estimates it relies on."""

    def __init__(self, start: float, seconds: float | None):
        self.start = start
        self.deadline = None if seconds is None else start + seconds
        self.batch_times: collections.deque = collections.deque(maxlen=16)
        self.epoch_times: collections.deque = collections.deque(maxlen=3)
        self.validation_seconds: float | None = None

    @property
    def active(self) -> bool:
        return self.deadline is not None

    def batch_estimate(self) -> float:
        return _SAFETY * max(self.batch_times, default=0.0)

    def epoch_estimate(self) -> float:
        return _SAFETY * max(self.epoch_times, default=0.0)

    def validation_estimate(self, val_rows: int, batch_size: int) -> float:
        """Seconds to reserve for the end-of-epoch validation pass."""
        if val_rows == 0:
            return 0.0
        if self.validation_seconds is not None:
            return _SAFETY * self.validation_seconds
        # Not measured yet: a forward pass costs about a third of a training step.
        return max(self.batch_times, default=0.0) * val_rows / batch_size / 2 + 0.005

    def left(self, now: float | None = None) -> float:
        return math.inf if self.deadline is None else \
            self.deadline - (_clock() if now is None else now)


class BaseSGDModel:
    """Template for minibatch-SGD models with a scikit-learn style API: softmax classifiers
    (``objective`` ``"multiclass"``/``"binary"``) and least-squares regressors
    (``"regression"``).

    Fitted attributes: ``classes_`` (``arange(k)``; None for regression), ``n_classes_`` (k;
    None for regression), ``n_outputs_`` (k, or 1 for regression), ``n_features_in_``,
    ``target_mean_``/``target_std_`` (regression only: the standardisation of ``y``),
    ``history_`` (one info dict per epoch), ``fit_seconds_``, ``stop_reason_`` (one of
    :data:`STOP_REASONS`), ``epochs_completed_``, ``best_epoch_`` and the weight arrays
    listed in ``_weight_names`` (float32); :meth:`training_summary` gathers the facts of the
    run in one dict.
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
        """Shape of each weight array for the current parameters (checked when loading);
        ``n_classes`` is the number of outputs (1 for regression)."""
        raise NotImplementedError

    @property
    def _objective(self) -> str:
        return getattr(self, "objective", "multiclass")

    @property
    def is_regression(self) -> bool:
        """True for ``objective="regression"`` (one real output, no classes)."""
        return self._objective == "regression"

    def train_flops_per_sample(self, n_features: int | None = None,
                               n_classes: int | None = None) -> int:
        """Floating-point operations (2 x multiply-adds of the matrix products) of one training
        sample's forward + backward pass, from the architecture alone.

        Element-wise work (activations, pooling, the softmax, the update) is not counted, so
        ``flops * samples * epochs / seconds`` is the achieved matrix-product rate. Defaults
        to the fitted feature and class counts.
        """
        raise NotImplementedError

    def _dims(self, n_features: int | None, n_classes: int | None) -> tuple[int, int]:
        d = n_features if n_features is not None else getattr(self, "n_features_in_", None)
        k = n_classes if n_classes is not None else \
            getattr(self, "n_outputs_", None) or getattr(self, "n_classes_", None)
        if d is None or k is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted; pass n_features "
                                 "and n_classes")
        return int(d), int(k)

    # -- parameters ---------------------------------------------------------------------

    def get_params(self) -> dict:
        """Constructor parameters as a JSON-serialisable dict (``cls(**p)`` rebuilds the model)."""
        return {name: _json_value(getattr(self, name)) for name in self._param_specs}

    def set_params(self, **params: Any) -> "BaseSGDModel":
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
        n_classes = getattr(self, "n_classes", None)
        if self._objective == "binary" and n_classes not in (None, 2):
            raise ValueError(f"parameter 'n_classes' must be null or 2 with objective 'binary'; "
                             f"got {n_classes!r}")
        if self._objective == "regression" and n_classes is not None:
            raise ValueError(f"parameter 'n_classes' must be null with objective 'regression' "
                             f"(there are no classes); got {n_classes!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- training -----------------------------------------------------------------------

    def fit(self, X: Any, y: Any, *, on_epoch: EpochCallback | None = None,
            time_budget_s: float | None = None):
        """Train on ``X`` (n, d) float32, already scaled (or a :class:`FeatureMatrix` for the
        models that take one), and ``y`` (n,): class indices (0/1 for ``"binary"``), or real
        values for ``"regression"``.

        Validation. A seeded, stratified ``validation_fraction`` of the rows is held out (at
        least one row of every class stays in training; a plain random sample for
        regression). After every epoch the model is scored on it; the weights of the best
        epoch (lowest validation loss: cross-entropy, or for regression the RMSE) are
        restored at the end, and training stops early once ``early_stopping_patience``
        epochs in a row brought no progress (a new best accuracy, or loss down by more than
        ``MIN_LOSS_IMPROVEMENT``), unless no more than that many planned epochs are left.
        ``validation_fraction=0`` trains on every row and keeps the last weights.

        Time budget. With ``time_budget_s``, the whole call (validation of the inputs
        included) ends within about one minibatch of that many seconds: an epoch is not
        started if the previous epochs say it would not finish in time, a running epoch is
        cut short (after at least one SGD step of the fit) once the next minibatch plus the
        validation pass would overrun, and when the planned epochs clearly do not fit, the
        rest of the learning-rate schedule is compressed so that it still anneals to 0 by
        the last epoch that fits (without a budget, or with enough of it, the schedule is
        exactly the planned one). ``stop_reason_`` is then ``"time_budget"``.

        ``on_epoch(epoch, info)`` is called after every epoch (``epoch`` counts from 1) with
        ``info = {"epoch", "epochs", "loss", "train_accuracy", "val_loss", "val_accuracy",
        "val_rmse", "learning_rate", "rows", "partial", "seconds", "elapsed"}``: ``loss``/
        ``train_accuracy`` are averaged over that epoch's minibatches (as the weights were
        changing, and on augmented data where augmentation is on), ``val_*`` are None
        without validation; the accuracies are None for regression and ``val_rmse`` (in the
        target's units) None for classification; ``learning_rate`` is the rate of the epoch's last step, ``rows``
        the training rows seen, ``partial`` tells an epoch cut by the budget, ``seconds`` the
        epoch's wall time (validation included). An exception raised by the callback stops
        training and propagates. Its run time counts against the budget.

        Raises ``ValueError`` for invalid parameters, data or budget, and
        ``FloatingPointError`` if the loss stops being finite (learning rate too high for
        the data's scale); the model is then left unfitted.
        """
        start = _clock()
        self.training_summary_ = None
        if time_budget_s is not None and (not _is_number(time_budget_s) or not math.isfinite(time_budget_s)
                                          or time_budget_s <= 0):
            raise ValueError(f"time_budget_s must be a positive number of seconds or None; "
                             f"got {time_budget_s!r}")
        self.validate_params()
        X = self._check_input(X, fitted=False)
        y, k = self._check_fit_target(y, len(X))
        self._check_data(X)
        self._check_model_size(_n_columns(X), k)

        self.n_features_in_ = _n_columns(X)
        self.n_outputs_ = k
        if self.is_regression:
            self.n_classes_ = self.classes_ = None
        else:
            self.n_classes_ = k
            self.classes_ = np.arange(k)
        self.history_ = []
        train_idx, val_idx = self._validation_split(y, k)
        rng = np.random.default_rng(self.seed)
        self._init_weights(self.n_features_in_, k, rng)
        steps_per_epoch = math.ceil(train_idx.size / self.batch_size)
        self._step, self._total_steps = 0, self.epochs * steps_per_epoch
        self._warmup_steps = int(self._warmup_fraction * self._total_steps)
        self._segment = (float(self.learning_rate), 0, self._total_steps)   # (lr, first, end step)
        self._lr = 0.0
        self._budget = _Budget(start, None if time_budget_s is None else float(time_budget_s))
        try:
            # Overflow can only come from divergence, which _train reports with a clear error.
            with np.errstate(over="ignore", invalid="ignore"):
                self._train(X, y, train_idx, val_idx, rng, on_epoch, steps_per_epoch)
        finally:
            self._end_training()
            self._budget = None
        self.fit_seconds_ = _clock() - start
        self.training_summary_ = self._summary(time_budget_s, train_idx.size, val_idx.size)
        return self

    def _check_fit_target(self, y: Any, n: int) -> tuple[np.ndarray, int]:
        """The training target as the loop uses it, and the number of outputs.

        Classification: int64 class indices and k. Regression: the standardised float32
        target and 1 (``target_mean_`` and ``target_std_`` are set here).
        """
        if self.is_regression:
            values = check_target(y, n)
            mean = float(values.mean()) if n else 0.0
            std = float(values.std()) if n else 0.0
            if not std > 0:                  # a constant target: predict it, do not divide by 0
                std = 1.0
            self.target_mean_, self.target_std_ = mean, std
            return ((values - mean) / std).astype(FLOAT), 1
        binary = self._objective == "binary"
        try:
            y = check_y(y, n, 2 if binary else self.n_classes)
        except ValueError as exc:
            if binary and "label" in str(exc):
                raise ValueError(f"objective 'binary' needs y in {{0, 1}} (1 = the positive class): "
                                 f"{exc}") from None
            raise
        if y.size == 0 or not (y != y[0]).any():
            raise ValueError("y must contain at least 2 distinct classes to train a classifier")
        k = 2 if binary else (self.n_classes if self.n_classes is not None else int(y.max()) + 1)
        return y, k

    def _validation_split(self, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows), both sorted: a seeded per-class random sample
        (a plain random sample of the rows for regression)."""
        n = y.shape[0]
        fraction = float(self.validation_fraction)
        if fraction == 0:
            return np.arange(n), np.arange(0)
        # Own generator (seeded by the seed, but a different stream) so the hold-out does not
        # shift the shuffling / initialisation stream of the training generator.
        rng = np.random.default_rng([int(self.seed), 0x7A1])
        order = rng.permutation(n)
        if self.is_regression:
            take = min(int(round(fraction * n)), n - 1)
            val = np.sort(order[:take]) if take > 0 else np.arange(0)
            keep = np.ones(n, bool)
            keep[val] = False
            return np.flatnonzero(keep), val
        y_perm = y[order]
        held = []
        for c in range(k):
            rows = order[y_perm == c]
            take = min(int(round(fraction * rows.size)), rows.size - 1)
            if take > 0:
                held.append(rows[:take])
        val = np.sort(np.concatenate(held)) if held else np.arange(0)
        keep = np.ones(n, bool)
        keep[val] = False
        return np.flatnonzero(keep), val

    def _train(self, X: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
               rng: np.random.Generator, on_epoch: EpochCallback | None, steps_per_epoch: int) -> None:
        """The epoch loop: run, validate, record and report each epoch; decide when to stop."""
        budget = self._budget
        validating = val_idx.size > 0
        patience = int(self.early_stopping_patience) if validating else 0
        best_key, best_weights, stale, best_accuracy = None, None, 0, None
        self.stop_reason_, self.best_epoch_, self.epochs_completed_ = "completed", None, 0
        self._best_val = {}
        for epoch in range(self.epochs):
            t0 = _clock()
            if epoch > 0 and budget.active:
                if self._step >= self._segment[2] or \
                        budget.epoch_estimate() > budget.left(t0):
                    self.stop_reason_ = "time_budget"
                    break
            loss, accuracy, rows = self._run_epoch(X, y, train_idx, rng, val_idx.size)
            if rows == 0:                             # budget gone before the first minibatch
                self.stop_reason_ = "time_budget"
                break
            partial = rows < train_idx.size
            if not math.isfinite(loss):
                for name in self._weight_names:      # NaN weights are of no use to anyone
                    setattr(self, name, None)
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (loss={loss}); "
                    "lower learning_rate or check the input scaling")
            val = {"val_loss": None, "val_accuracy": None, "val_rmse": None}
            if validating:
                tv = _clock()
                val = self._evaluate(X, y, val_idx)
                budget.validation_seconds = _clock() - tv
            val_loss, val_accuracy = val["val_loss"], val["val_accuracy"]
            now = _clock()
            info = {
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "loss": loss,
                "train_accuracy": accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "val_rmse": val["val_rmse"],
                "learning_rate": self._lr,
                "rows": rows,
                "partial": partial,
                "seconds": now - t0,
                "elapsed": now - budget.start,
            }
            self.history_.append(info)
            if not partial:
                self.epochs_completed_ += 1

            # Best weights and early stopping.
            if validating:
                # The best epoch is the one with the lowest validation loss (cross-entropy, or
                # half the MSE of the standardised target: the order of the RMSE). On a few
                # thousand rows the accuracy moves in steps of a row or two and would pick an
                # early, unannealed epoch by chance; the loss is smooth. Early stopping counts
                # as progress a loss lower by MIN_LOSS_IMPROVEMENT or a new best accuracy.
                new_accuracy = not self.is_regression and (best_accuracy is None or val_accuracy > best_accuracy)
                if new_accuracy:
                    best_accuracy = val_accuracy
                progress = best_key is None or val_loss < -best_key[0] - MIN_LOSS_IMPROVEMENT or new_accuracy
                key = (-val_loss,)
                if best_key is None or key > best_key:
                    best_key, self.best_epoch_ = key, epoch + 1
                    self._best_val = dict(val)
                    best_weights = None if epoch + 1 == self.epochs else \
                        [getattr(self, name).copy() for name in self._weight_names]
                stale = 0 if progress else stale + 1
            else:
                self.best_epoch_ = epoch + 1

            if on_epoch is not None:
                on_epoch(epoch + 1, dict(info))
            budget.epoch_times.append(_clock() - t0)
            if partial:
                self.stop_reason_ = "time_budget"
                break
            # Stopping saves at most the epochs that are left; when no more than `patience` are
            # left, finish them: they are the annealed end of the schedule, often the best ones.
            if patience and stale >= patience and self.epochs - (epoch + 1) > patience:
                self.stop_reason_ = "early_stopping"
                break
            if budget.active and epoch + 1 < self.epochs:
                self._fit_schedule_to_budget(epoch + 1, steps_per_epoch)

        if validating and self.best_epoch_ is not None and self.best_epoch_ != len(self.history_) \
                and best_weights is not None:
            for name, w in zip(self._weight_names, best_weights):
                setattr(self, name, w)

    def _fit_schedule_to_budget(self, epochs_done: int, steps_per_epoch: int) -> None:
        """If the remaining planned epochs will not fit in the budget, end the cosine earlier.

        From the current step and rate, the rate follows a fresh cosine down to 0 at the end
        of the last epoch predicted to fit; the cut is only ever moved earlier.
        """
        budget = self._budget
        estimate = budget.epoch_estimate()
        if estimate <= 0:
            return
        fits = int(budget.left() // estimate)
        end = self._step + max(fits, 1) * steps_per_epoch
        if end < self._segment[2] and fits < self.epochs - epochs_done:
            self._segment = (self._peek_learning_rate(), self._step, end)
            self._warmup_steps = min(self._warmup_steps, self._step)

    def _run_epoch(self, X: np.ndarray, y: np.ndarray, train_idx: np.ndarray,
                   rng: np.random.Generator, val_rows: int) -> tuple[float, float, int]:
        """One shuffled pass over the training rows, cut short if the budget runs out.

        Returns (mean loss, mean train accuracy, rows trained on).
        """
        budget = self._budget
        loss_sum = acc_sum = 0.0
        rows = 0
        for idx in self._minibatches(train_idx.size, rng):
            t = _clock()
            if budget.active and self._step > 0 and \
                    budget.batch_estimate() + budget.validation_estimate(val_rows, self.batch_size) \
                    > budget.left(t):
                break
            idx = train_idx[idx]
            loss, acc = self._train_batch(self._batch_inputs(X, idx, rng), y[idx],
                                          self._next_learning_rate(), rng)
            loss_sum += loss * idx.size
            if acc is not None:
                acc_sum += acc * idx.size
            rows += idx.size
            budget.batch_times.append(_clock() - t)
        if rows == 0:
            return 0.0, 0.0, 0
        return loss_sum / rows, (None if self.is_regression else acc_sum / rows), rows

    def _evaluate(self, X: Any, y: np.ndarray, idx: np.ndarray) -> dict:
        """Validation metrics on rows ``idx`` of ``X``, in bounded-memory chunks:
        ``val_loss`` (the training loss), ``val_accuracy`` (classification) and ``val_rmse``
        (regression, in the target's units)."""
        if self.is_regression:
            sq = 0.0
            for lo in range(0, idx.size, PREDICT_BATCH_ROWS):
                rows = idx[lo:lo + PREDICT_BATCH_ROWS]
                r = self._logits(_rows(X, rows))[:, 0].astype(np.float64) - y[rows]
                sq += float(np.dot(r, r))
            mse = sq / idx.size
            return {"val_loss": 0.5 * mse, "val_accuracy": None,
                    "val_rmse": math.sqrt(mse) * self.target_std_}
        loss_sum = correct = 0.0
        for lo in range(0, idx.size, PREDICT_BATCH_ROWS):
            rows = idx[lo:lo + PREDICT_BATCH_ROWS]
            Z = self._logits(_rows(X, rows))
            yb = y[rows]
            correct += float(np.count_nonzero(Z.argmax(axis=1) == yb))   # as predict() decides
            Z -= Z.max(axis=1, keepdims=True)
            z_true = Z[np.arange(rows.size), yb]
            loss_sum += float(np.sum(np.log(np.exp(Z).sum(axis=1)) - z_true))
        return {"val_loss": loss_sum / idx.size, "val_accuracy": correct / idx.size, "val_rmse": None}

    def _learning_rate_at(self, step: int) -> float:
        lr0, first, end = self._segment
        rate = 0.5 * lr0 * (1.0 + math.cos(math.pi * min(step - first, end - first) / (end - first)))
        if step < self._warmup_steps:
            rate *= (step + 1) / self._warmup_steps
        return rate

    def _peek_learning_rate(self) -> float:
        return self._learning_rate_at(self._step)

    def _next_learning_rate(self) -> float:
        """Learning rate of the next SGD step: cosine-annealed over all steps of ``fit``
        (after a linear warm-up over ``_warmup_fraction`` of them)."""
        self._lr = self._learning_rate_at(self._step)
        self._step += 1
        return self._lr

    def _minibatches(self, n: int, rng: np.random.Generator):
        """Yield index arrays of one shuffled pass over ``n`` rows (last batch may be short).

        Rows inside a batch come in random order; :func:`random_shifts` relies on that.
        A model whose ``shuffle`` parameter is False takes the rows in input order instead.
        """
        order = rng.permutation(n) if getattr(self, "shuffle", True) else np.arange(n)
        for lo in range(0, n, self.batch_size):
            yield order[lo:lo + self.batch_size]

    # -- the run's facts ----------------------------------------------------------------

    def _summary(self, time_budget_s: float | None, train_rows: int, val_rows: int) -> dict:
        best = self._best_val
        last = self.history_[-1] if self.history_ else {}
        try:
            flops = int(self.train_flops_per_sample())
        except NotImplementedError:
            flops = None
        return {
            "algorithm": self.algorithm,
            "objective": self._objective,
            "epochs_planned": int(self.epochs),
            "epochs_completed": int(self.epochs_completed_),
            "partial_epoch": bool(last.get("partial", False)),
            "stop_reason": self.stop_reason_,
            "best_epoch": self.best_epoch_,
            # What chose best_epoch: the validation loss (for regression the same order as
            # its RMSE), or nothing (no validation rows: the last epoch).
            "best_epoch_metric": ("last_epoch" if not val_rows else
                                  "val_rmse" if self.is_regression else "val_loss"),
            "best_val_accuracy": best.get("val_accuracy"),
            "best_val_loss": best.get("val_loss"),
            "best_val_rmse": best.get("val_rmse"),
            "final_loss": last.get("loss"),
            "final_learning_rate": last.get("learning_rate"),
            "seconds": self.fit_seconds_,
            "time_budget_s": None if time_budget_s is None else float(time_budget_s),
            "training_rows": int(train_rows),
            "validation_rows": int(val_rows),
            "sgd_steps": int(self._step),
            "train_flops_per_sample": flops,
        }

    def training_summary(self) -> dict:
        """What happened in ``fit``, independent of the parameters: ``epochs_planned``,
        ``epochs_completed`` (full epochs), ``partial_epoch``, ``stop_reason``, ``best_epoch``
        (whose weights the model holds), ``best_val_accuracy``, ``best_val_loss``,
        ``seconds``, ``time_budget_s``, ``training_rows``, ``validation_rows``, ``sgd_steps``,
        ``train_flops_per_sample``, ... (JSON-ready; also saved in the model artefact)."""
        summary = getattr(self, "training_summary_", None)
        if summary is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")
        return dict(summary)

    # -- inference ------------------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw outputs (n, n_outputs) float32 -- logits, or the standardised regression
        value -- computed ``PREDICT_BATCH_ROWS`` rows at a time."""
        self._check_fitted()
        X = self._check_input(X, fitted=True)
        n = len(X)
        out = np.empty((n, self._n_outputs()), dtype=FLOAT)
        for lo in range(0, n, PREDICT_BATCH_ROWS):
            out[lo:lo + PREDICT_BATCH_ROWS] = self._logits(_rows(X, slice(lo, lo + PREDICT_BATCH_ROWS)))
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, k) float32; each row sums to 1. For ``objective="binary"``
        the score of the positive class is column 1. Not available for regression."""
        if self.is_regression:
            raise ValueError(f"predict_proba is for classification, but this {type(self).__name__} "
                             "has objective 'regression'; use predict() for its values")
        return softmax_inplace(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class index per row (int64; argmax of the logits = of the softmax),
        or, for regression, the predicted values (float32, in the target's units)."""
        Z = self.decision_function(X)
        if self.is_regression:
            return (Z[:, 0].astype(np.float64) * self.target_std_ + self.target_mean_).astype(FLOAT)
        return Z.argmax(axis=1).astype(np.int64)

    def _n_outputs(self) -> int:
        k = getattr(self, "n_outputs_", None)
        return int(k) if k is not None else int(self.n_classes_)

    def _check_fitted(self) -> None:
        if any(getattr(self, name, None) is None for name in self._weight_names) or \
                getattr(self, "n_features_in_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    # -- hooks for subclasses -------------------------------------------------------------

    def _check_input(self, X: Any, *, fitted: bool) -> Any:
        """Validate features for ``fit`` (``fitted=False``) or prediction; default: a dense
        float32 matrix (of ``n_features_in_`` columns once fitted)."""
        if isinstance(X, FeatureMatrix):
            raise ValueError(f"the {self.algorithm!r} algorithm takes a dense float32 array, not a "
                             "FeatureMatrix (convert it with .to_dense(), or use algorithm 'linear')")
        return check_X(X, n_features=self.n_features_in_ if fitted else None)

    def _output_gradient(self, Z: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, float, float | None]:
        """``(dJ/dZ, loss, accuracy)`` of a minibatch's outputs ``Z`` (in place on ``Z``):
        softmax cross-entropy for classification, squared error for regression (accuracy
        None)."""
        if self.is_regression:
            return squared_error(Z, yb)
        return softmax_cross_entropy(Z, yb)

    def _check_data(self, X: np.ndarray) -> None:
        """Model-specific checks of the training matrix: by default its feature count."""
        self._check_n_features(_n_columns(X))

    def _check_model_size(self, n_features: int, n_outputs: int) -> None:
        """Raise ``ValueError`` before training if the weights would be too big (default: no limit)."""

    def _check_n_features(self, n_features: int) -> None:
        """Raise ``ValueError`` if the model cannot take rows of ``n_features`` (default: any)."""

    def _init_weights(self, n_features: int, n_classes: int, rng: np.random.Generator) -> None:
        """Create the weight arrays (and any optimiser state) before the first epoch."""
        raise NotImplementedError

    def _end_training(self) -> None:
        """Drop optimiser state after ``fit`` (also on error). Default: nothing to drop."""

    def _batch_inputs(self, X: Any, idx: np.ndarray, rng: np.random.Generator) -> Any:
        """The rows ``idx`` of ``X`` that :meth:`_train_batch` gets (default: a fresh copy).
        A model may gather them into its own buffer, or augment them on the way."""
        return _rows(X, idx)

    def _train_batch(self, Xb: np.ndarray, yb: np.ndarray, lr: float,
                     rng: np.random.Generator) -> tuple[float, float]:
        """One SGD step on minibatch rows ``Xb`` (from :meth:`_batch_inputs`: a copy the step
        may modify) with labels ``yb`` at learning rate ``lr``; returns (loss, accuracy) of
        the batch."""
        raise NotImplementedError

    def _logits(self, X: np.ndarray) -> np.ndarray:
        """Logits of one chunk of validated rows."""
        raise NotImplementedError


#: The historical name (every model used to be a softmax classifier); same class.
BaseSoftmaxClassifier = BaseSGDModel


def _rows(X: Any, sel: Any) -> Any:
    """Rows ``sel`` (index array or slice) of a dense matrix or a :class:`FeatureMatrix`."""
    return X.rows(sel) if isinstance(X, FeatureMatrix) else X[sel]


def _n_columns(X: Any) -> int:
    return X.n_features if isinstance(X, FeatureMatrix) else X.shape[1]
