"""A one-hidden-layer perceptron (ReLU) with a softmax (or, for regression, linear) output,
trained by SGD with momentum.

Forward pass for a minibatch ``X`` (m, d)::

    H = relu(X W1 + b1)          (m, hidden_units)
    Z = H W2 + b2                (m, k)    logits;  P = softmax(Z)

Backward pass of ``J = mean cross-entropy`` (for ``objective="regression"``, one output and
``J = mean (z - t)^2 / 2`` on the standardised target, so ``dZ = (Z - t) / m``)::

    dZ  = (P - Y) / m
    dW2 = H^T dZ                 db2 = sum_rows dZ
    dH  = (dZ W2^T) * [H > 0]
    dW1 = X^T dH                 db1 = sum_rows dH

Update, for every parameter ``p`` with gradient ``g`` (classical momentum, and weight
decay applied to the weights directly, as in SGDW, rather than through the gradient)::

    v = momentum * v - lr_t * g ;   p = (1 - lr_t * l2) * p + v     (no decay for biases)

``lr_t`` follows a cosine from ``learning_rate`` to 0 over all steps of training,
after a linear warm-up over the first 5% of steps.

How a step runs. The two big products (``X W1`` and ``X^T dH``) are the work; everything
else is overhead to keep small, since it runs on one core while BLAS runs the products on
all of them:

* minibatches of 512 rows by default: with 256, the products ran further from the machine's
  GEMM speed and the per-step costs (the momentum step, numpy's calls) weighed twice as much;
* the minibatch is gathered (and translated) into a reused buffer whose first column is 1,
  and ``W1`` is stored with ``b1`` as an extra first row, so ``b1`` is added inside
  ``X W1`` and its gradient comes out of ``X^T dH`` (two passes over (m, h) arrays fewer);
  both are padded with zeros to a multiple of 16 (800 for MNIST's 1 + 784), the block size
  of BLAS's kernels: with 785, ``X^T dH`` ran up to 30% slower;
* the gather and translation, and the whole output layer between the two big products
  (ReLU, logits, softmax, the gradients of ``W2``, ``b2`` and the masked ``dH``), run in
  the compiled kernels of :mod:`stepml.models.kernels` where the library is built: one sweep
  over the rows each, every row in the L1 cache while it is used, instead of a dozen numpy
  passes over (m, h) arrays. Without the library (or for regression, or more than 16
  classes), numpy does the same: the softmax on a transposed copy of the logits, (k, m),
  where its reductions over the classes run along contiguous memory;
* the gradients of all parameters are written into one flat array, and the momentum step
  is one matrix-vector product over the weights and one over the biases (see
  :class:`_SGDState`): a read of three arrays and a write of one, on all cores, instead of
  four numpy passes over ten arrays on one core.

These change the order of floating-point operations, not the mathematics; the same seed,
BLAS thread count, kernel library (or none) and CPU family give bit-identical weights.
Element-wise work on a second thread was tried and does not pay: OpenBLAS's idle worker
spins on the other core between products, and handing a task to a Python thread costs about
as much as it saves (gathering the next minibatch on a helper thread during the step,
double-buffered, measured 3% slower; two threads each running half the minibatch with
single-threaded BLAS, 10% slower on a quiet host: the GIL and three barriers a step cost
more than the halved element-wise work).

For images (``image_shape`` given), each training image is translated by a random
``(dy, dx)`` in ``[-shift_pixels, shift_pixels]^2`` (zero fill) every time it is seen: a
cheap way to teach translation invariance, worth about half a point of accuracy on MNIST.

Tabular data. Without ``image_shape`` the rows are any dense feature vectors (a recipe's
output: ``FeatureMatrix.to_dense()``; a :class:`~stepml.tabular.features.FeatureMatrix` given
directly is expanded the same way). Wider inputs than :data:`MAX_DENSE_FEATURES` are refused:
the expanded matrix and ``W1`` grow with the width, and a wide one-hot input is the linear
model's job.
"""

from __future__ import annotations

import math

import numpy as np

from ..tabular.features import FeatureMatrix
from . import kernels
from .base import (COMMON_PARAM_SPECS, FLOAT, OBJECTIVES, BaseSGDModel, ParamSpec, check_X, fill_shifted_rows,
                   random_shifts, shift_counts)
from .kernels import aligned_empty

__all__ = ["MAX_DENSE_FEATURES", "MLPClassifier", "random_shifts"]

#: Widest input the MLP takes (features per row). 60,000 rows of it are 2.4 GB as float32.
MAX_DENSE_FEATURES = 10_000


class MLPClassifier(BaseSGDModel):
    """Multilayer perceptron ``d -> hidden_units (ReLU) -> k (softmax)`` (``-> 1`` for regression).

    Parameters
    ----------
    hidden_units : width of the hidden layer.
    epochs : passes over the training data.
    batch_size : rows per SGD step.
    learning_rate : peak step size; reached after a warm-up over the first 5% of steps,
        then annealed to 0 by a cosine.
    momentum : heavy-ball momentum coefficient (0 disables it).
    l2 : weight decay on ``W1`` and ``W2``: each step scales them by ``1 - lr_t * l2``
        (biases are not decayed).
    shift_pixels : maximum random translation, in pixels, applied to training images.
        Used only when ``image_shape`` is given; 0 disables augmentation.
    image_shape : ``(height, width)`` of the images the rows of ``X`` hold (row-major), or
        None for non-image data.
    objective : ``"multiclass"``, ``"binary"`` (classes 0/1; the positive-class score is
        ``predict_proba(X)[:, 1]``) or ``"regression"`` (one real value; squared loss).
    validation_fraction : share of the rows held out (seeded, stratified) to score every
        epoch, pick the best epoch's weights and stop early; 0 trains on all rows.
    early_stopping_patience : stop after this many epochs without validation progress;
        0 never stops early.
    seed : seed of the initial weights, the shuffling and the augmentation.
    n_classes : number of classes ``k``; inferred as ``max(y) + 1`` when None.

    Fitted attributes: ``W1_`` (d, hidden_units), ``b1_``, ``W2_`` (hidden_units, k), ``b2_``,
    all float32, plus those of :class:`~stepml.models.base.BaseSoftmaxClassifier`.
    """

    algorithm = "mlp"
    _param_specs = {
        "hidden_units": ParamSpec("int", 1, 4096),
        "epochs": ParamSpec("int", 1, 500),
        "batch_size": ParamSpec("int", 1, 65_536),
        "learning_rate": ParamSpec("float", 0.0, 100.0, low_open=True),
        "momentum": ParamSpec("float", 0.0, 0.999),
        "l2": ParamSpec("float", 0.0, 100.0),
        "shift_pixels": ParamSpec("int", 0, 64),
        "image_shape": ParamSpec("image_shape", optional=True),
        "objective": ParamSpec("choice", choices=OBJECTIVES),
        **COMMON_PARAM_SPECS,
        "seed": ParamSpec("int", 0, 2**63 - 1),
        "n_classes": ParamSpec("int", 2, 1_000_000, optional=True),
    }
    _weight_names = ("W1_", "b1_", "W2_", "b2_")
    # Warm-up: without it the first epoch overshoots on inputs that are not in [0, 1]
    # (standardised CSV columns); on MNIST it costs nothing.
    _warmup_fraction = 0.05

    def __init__(self, hidden_units: int = 512, epochs: int = 12, batch_size: int = 512,
                 learning_rate: float = 0.4, momentum: float = 0.9, l2: float = 1e-4,
                 shift_pixels: int = 1, image_shape: tuple[int, int] | None = None,
                 objective: str = "multiclass", validation_fraction: float = 0.05,
                 early_stopping_patience: int = 3, seed: int = 0, n_classes: int | None = None):
        self.hidden_units = hidden_units
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.l2 = l2
        self.shift_pixels = shift_pixels
        self.image_shape = image_shape
        self.objective = objective
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.n_classes = n_classes

    # -- training -----------------------------------------------------------------------

    def validate_params(self) -> None:
        super().validate_params()
        if self.image_shape is not None and self.shift_pixels >= min(self.image_shape):
            raise ValueError(f"parameter 'shift_pixels' ({self.shift_pixels}) must be smaller "
                             f"than the image sides {list(self.image_shape)}")

    def _check_input(self, X, *, fitted):
        if isinstance(X, FeatureMatrix):
            if X.n_features > MAX_DENSE_FEATURES:      # before expanding it
                self._check_n_features(X.n_features)
            X = X.to_dense()
        return check_X(X, n_features=self.n_features_in_ if fitted else None)

    def _check_n_features(self, n_features):
        if n_features > MAX_DENSE_FEATURES:
            raise ValueError(f"the mlp takes at most {MAX_DENSE_FEATURES} features per row; X has "
                             f"{n_features} (use algorithm 'linear' for wide sparse features, or a "
                             "recipe with fewer outputs)")
        if self.image_shape is not None:
            h, w = self.image_shape
            if n_features != h * w:
                raise ValueError(f"image_shape {[h, w]} needs {h * w} features per row; "
                                 f"X has {n_features}")

    def train_flops_per_sample(self, n_features=None, n_classes=None):
        d, k = self._dims(n_features, n_classes)
        h = self.hidden_units
        # forward X W1, H W2; backward H^T dZ, dZ W2^T, X^T dH (no gradient for the input)
        return 2 * (2 * d * h + 3 * h * k)

    def weight_shapes(self, n_features, n_classes):
        h = self.hidden_units
        return {"W1_": (n_features, h), "b1_": (h,), "W2_": (h, n_classes), "b2_": (n_classes,)}

    def _init_weights(self, n_features, n_classes, rng):
        h = self.hidden_units
        # He initialisation keeps the variance of ReLU activations ~constant through the
        # layer; the output layer uses 1/fan_in (LeCun), as it has no ReLU after it.
        W1 = rng.standard_normal((n_features, h), dtype=FLOAT) * FLOAT(math.sqrt(2.0 / n_features))
        W2 = rng.standard_normal((h, n_classes), dtype=FLOAT) * FLOAT(math.sqrt(1.0 / h))
        self._state = _SGDState(n_features, h, n_classes)
        self._state.load(W1, np.zeros(h, FLOAT), W2, np.zeros(n_classes, FLOAT))
        self._bind_weights()
        self._work = None          # per-step buffers, sized by the first minibatch

    def _bind_weights(self):
        """Point the public weights at the current parameters in the state's arena."""
        v = self._state.params()
        self.W1_, self.b1_, self.W2_, self.b2_ = v["W1"], v["b1"], v["W2"], v["b2"]

    def _end_training(self):
        # Optimiser state is only needed while training; do not keep 5x the weights around.
        if getattr(self, "_state", None) is not None:
            for name in self._weight_names:       # standalone copies, not views of the arenas
                w = getattr(self, name, None)
                if w is not None and w.base is not None:
                    setattr(self, name, w.copy())
        self._state = self._work = None

    def _workspace(self, m, d):
        """Buffers every step reuses (allocated once: no page faults, no allocator churn).

        ``X`` holds the minibatch after a leading column of ones, so that ``X @ W1aug`` with
        ``W1aug = [b1; W1; 0]`` adds the bias inside the product and ``X^T dH`` yields the bias
        gradient as its first row: two passes over (m, hidden_units) arrays fewer per step.
        ``Zt`` holds a transposed copy of the logits, (k, m), for the softmax's reductions over
        the classes to run along contiguous memory. ``W2T`` and ``gW2T`` are the output
        weights and their gradient transposed, (k, hidden_units), as the compiled kernel
        takes them. The arrays the kernels sweep start on a cache line.
        """
        work = self._work
        if work is None or work["X"].shape[0] < m:
            h, k = self.hidden_units, self._state.shapes[2]
            # [1 | row | 0 ...]: as wide as W1aug is tall (a multiple of 16 floats, so every
            # row also starts on a 64-byte boundary); the zero columns are never written.
            X = aligned_empty((m, self._state.rows))
            X[...] = 0.0
            X[:, 0] = 1.0
            work = self._work = {
                "X": X,
                "rows": np.empty((m, d), FLOAT),    # the rows as gathered, before any shift
                "H": aligned_empty((m, h)),
                "Z": np.empty((m, k), FLOAT),
                "Zt": np.empty(k * m, FLOAT),       # flat: (k, m') views for any m' <= m
                "dH": aligned_empty((m, h)),
                "mask": np.empty((m, h), bool),
                "cols": np.arange(m),
                "W2T": aligned_empty((k, h)),
                "gW2T": aligned_empty((k, h)),
            }
        return work

    def _native_head(self):
        """The compiled kernels, if they take this model's output layer (softmax, few classes)."""
        native = kernels.NATIVE
        if native is None or self.is_regression or self._state.shapes[2] > kernels.MAX_CLASSES:
            return None
        return native

    def _batch_inputs(self, X, idx, rng):
        # Gather (and, for images, randomly translate) the rows into the reused buffer, after
        # its column of ones. The translation is random_shifts(X[idx], ...) exactly: the same
        # draw from `rng`, the same pixels, with the kernel as with numpy.
        m, d = idx.size, X.shape[1]
        work = self._workspace(m, d)
        out, scratch = work["X"][:m], work["rows"][:m]
        shifting = self.image_shape is not None and self.shift_pixels > 0
        shift = int(self.shift_pixels) if shifting else 0
        counts = shift_counts(m, shift, rng) if shifting else np.array([m])
        if kernels.NATIVE is not None and kernels.plain_rows(X):
            kernels.NATIVE.gather_shift(X, idx, counts, shift, tuple(self.image_shape) if shifting else (1, d),
                                        out[:, 1:d + 1])
        elif shifting:
            fill_shifted_rows(X, idx, tuple(self.image_shape), counts, shift, out[:, 1:d + 1], scratch)
        else:
            np.take(X, idx, axis=0, out=scratch, mode="clip")
            out[:, 1:d + 1] = scratch
        return out

    def _train_batch(self, Xb, yb, lr, rng):
        # Xb is normally _batch_inputs' buffer [1 | row | 0 ...] (m, padded_rows(d)); plain
        # rows (m, d) are accepted too.
        m = Xb.shape[0]
        if Xb.shape[1] == self.n_features_in_:
            Xb = _with_ones(Xb, self)
        state, work = self._state, self._work
        v, grads = state.params(), state.grads()

        H = np.matmul(Xb, v["W1aug"], out=work["H"][:m])      # X W1 + b1
        loss, acc, dH = self._output_layer(H, yb, lr, v, grads, work)
        np.matmul(Xb.T, dH, out=grads["W1aug"])               # row 0: the bias gradient

        # Momentum step  v = mu v - lr g ;  p = (1 - lr l2) p + v  (no decay for biases).
        state.step(float(self.momentum), 1.0 - lr * float(self.l2))
        self._bind_weights()
        return loss, acc

    def _output_layer(self, H, yb, lr, v, grads, work):
        """The output layer, forward and back: ReLU ``H`` in place, write the gradients of W2
        and b2 into ``grads``; returns (loss, accuracy, dH). Every gradient comes
        pre-multiplied by -lr (scaling the small (m, k) dZ is far cheaper than scaling the big
        dW1 later). In the compiled kernel where it takes the model, else in numpy."""
        m = H.shape[0]
        native = self._native_head()
        if native is not None:
            np.copyto(work["W2T"], v["W2"].T)
            loss, correct = native.softmax_head(H, work["W2T"], v["b2"], yb, -lr, work["gW2T"], grads["b2"],
                                                work["dH"][:m])
            np.copyto(grads["W2"], work["gW2T"].T)
            return loss / m, correct / m, work["dH"][:m]
        W2 = v["W2"]
        k = W2.shape[1]
        np.maximum(H, 0.0, out=H)                               # ReLU
        Z = np.matmul(H, W2, out=work["Z"][:m])
        Z += v["b2"]
        Zt = work["Zt"][:k * m].reshape(k, m)                  # the logits, transposed
        np.copyto(Zt, Z.T)
        if self.is_regression:
            dZt, loss, acc = _squared_error_t(Zt, yb, -lr)
        else:
            dZt, loss, acc = _softmax_cross_entropy_t(Zt, yb, -lr, work["cols"][:m])
        np.matmul(H.T, dZt.T, out=grads["W2"])
        np.sum(dZt, axis=1, out=grads["b2"])
        dH = np.matmul(dZt.T, W2.T, out=work["dH"][:m])
        dH *= np.greater(H, 0.0, out=work["mask"][:m])        # ReLU passes gradient where active
        return loss, acc, dH

    # -- inference ------------------------------------------------------------------------

    def _logits(self, X):
        H = X @ self.W1_
        H += self.b1_
        np.maximum(H, 0.0, out=H)
        Z = H @ self.W2_
        Z += self.b2_
        return Z


def _softmax_cross_entropy_t(Zt, y, scale, cols):
    """:func:`~stepml.models.base.softmax_cross_entropy` of transposed logits ``Zt`` (k, m),
    in place: returns ``(scale * (P - Y)^T / m, loss, accuracy)``. ``cols`` is ``arange(m)``.

    With the classes along the first axis, every reduction over the classes of a row is an
    element-wise operation between rows of ``Zt``: contiguous, vectorised, and a dozen numpy
    calls in all, which is what a (256, 10) softmax costs.
    """
    m = Zt.shape[1]
    Zt -= Zt.max(axis=0)                          # exp() now <= 1: no overflow
    z_true = Zt[y, cols]                          # <= 0, and exactly 0 where y has the max
    accuracy = (m - np.count_nonzero(z_true)) / m
    np.exp(Zt, out=Zt)
    total = Zt.sum(axis=0)
    loss = (float(np.log(total).sum()) - float(z_true.sum())) / m
    np.divide(scale / m, total, out=total)        # per sample: scale / (m * sum of exp)
    Zt *= total                                   # scale * P / m
    Zt[y, cols] -= scale / m                      # scale * (P - Y) / m
    return Zt, loss, accuracy


def _squared_error_t(Zt, t, scale):
    """:func:`~stepml.models.base.squared_error` of transposed outputs ``Zt`` (1, m), in place."""
    m = Zt.shape[1]
    Zt -= t
    loss = 0.5 * float(np.dot(Zt[0], Zt[0])) / m if m else 0.0
    Zt *= scale / m
    return Zt, loss, None


def _with_ones(Xb, model):
    """Plain minibatch rows (m, d) copied after a column of ones, into the model's buffer."""
    m, d = Xb.shape
    out = model._workspace(m, d)["X"][:m]
    out[:, 1:d + 1] = Xb
    return out


def padded_rows(d: int) -> int:
    """Rows of ``W1aug`` (and columns of the minibatch buffer) for ``d`` features: the bias
    row, the ``d`` weight rows, then zero rows up to a multiple of 16."""
    return -(-(d + 1) // 16) * 16


class _SGDState:
    """The mlp's parameters and gradients, laid out so that the whole momentum step is one
    matrix-vector product, which BLAS runs on every core.

    Classical momentum with decoupled weight decay,

        V[t+1] = mu V[t] + G[t] ;   P[t+1] = shrink[t] P[t] + V[t+1]      (G: gradient x -lr),

    needs no separate velocity array: ``V[t] = P[t] - shrink[t-1] P[t-1]``, so

        P[t+1] = (shrink[t] + mu) P[t] - mu shrink[t-1] P[t-1] + G[t]

    (the two-term form of heavy-ball momentum), one product ``c @ [P[t]; P[t-1]; G[t]]`` of a
    3-vector with three rows of parameters. It reads three arrays and writes one; numpy's
    element-wise operators would take four passes over ten arrays, on one core. The price is
    rounding: the velocity is a difference of two parameter vectors, so float32 rounding
    errors persist about 1 / (1 - mu) times longer than with a stored velocity (a 2,700-step
    stress test drifts 2e-5 relative from float64 instead of 3e-6): far below the noise of
    SGD, and the same seed still gives the same weights.

    Every row of the (5, L) float32 arena has the same flat layout::

        [ zero padding | b2 | b1 | W1 (d x h) | zero rows (pad x h) | W2 (h x k) ]

    ``b1`` right before ``W1`` makes ``W1aug = [b1; W1; 0]`` a (``rows``, h) matrix: the bias
    rides in the first layer's products, and the zero rows round ``d + 1`` up to a multiple of
    16 (:func:`padded_rows`). BLAS's kernels work in blocks of 16 rows; with the odd 785 of
    MNIST, ``X^T dH`` ran ~30% slower than with 800. The zero rows meet zero columns of the
    minibatch buffer, so their gradient is 0 and they stay 0. The weight-decayed part (W1, its
    zero rows, W2) is one contiguous range, the biases (no decay: ``shrink`` = 1) another.

    Row 2 always receives the gradients; the parameters of the last two steps rotate through
    rows 0, 1, 3 and 4 so that the three input rows are always equally spaced (a strided view
    BLAS reads as is) and the output row is a fourth one: (prev, cur) = (0, 1) -> 3,
    (1, 3) -> 4, (3, 4) -> 0, (4, 0) -> 1.
    """

    GRAD = 2
    #: (previous row, current row) -> output row.
    _NEXT = {(0, 1): 3, (1, 3): 4, (3, 4): 0, (4, 0): 1}

    def __init__(self, d: int, h: int, k: int):
        kpad = -(-k // 16) * 16             # b1 (and so W1aug) starts 64-byte aligned
        self.rows = padded_rows(d)          # of W1aug: b1, W1, zero rows
        self.o_b2, self.o_b1, self.o_W1 = kpad - k, kpad, kpad + h
        self.o_W2 = self.o_b1 + self.rows * h
        self.size = self.o_W2 + h * k
        self.shapes = (d, h, k)
        self.arena = np.zeros((5, self.size), FLOAT)
        self._views = [self._make_views(row) for row in range(5)]
        self.prev, self.cur = 0, 1
        self.prev_shrink = 1.0
        ranges = (slice(self.o_W1, self.size), slice(0, self.o_W1))     # weights, biases
        # For each state: the three input rows as one (3, L) view per range, the output row,
        # and where P[t], P[t-1] and G sit among the three rows.
        self._plan = {}
        for (prev, cur), out in self._NEXT.items():
            rows = sorted((prev, cur, self.GRAD))
            step = rows[1] - rows[0]
            inputs = [self.arena[rows[0]:rows[2] + 1:step, r] for r in ranges]
            outputs = [self.arena[out, r] for r in ranges]
            self._plan[prev, cur] = (inputs, outputs, rows.index(cur), rows.index(prev),
                                     rows.index(self.GRAD), out)
        self._coef = (np.zeros(3, FLOAT), np.zeros(3, FLOAT))

    def _make_views(self, row: int) -> dict:
        d, h, k = self.shapes
        r = self.arena[row]
        return {
            "W1aug": r[self.o_b1:self.o_W2].reshape(self.rows, h),
            "W1": r[self.o_W1:self.o_W1 + d * h].reshape(d, h),
            "b1": r[self.o_b1:self.o_W1],
            "W2": r[self.o_W2:self.size].reshape(h, k),
            "b2": r[self.o_b2:self.o_b1],
        }

    def params(self) -> dict:
        """Views of the current parameters (W1aug = [b1; W1; 0], W1, b1, W2, b2)."""
        return self._views[self.cur]

    def grads(self) -> dict:
        """Views of the gradient row, where the step's products write their results."""
        return self._views[self.GRAD]

    def load(self, W1, b1, W2, b2) -> None:
        for row in (self.prev, self.cur):      # P[-1] = P[0]: no initial velocity
            v = self._views[row]
            v["W1"][...], v["b1"][...], v["W2"][...], v["b2"][...] = W1, b1, W2, b2

    def step(self, mu: float, shrink: float) -> None:
        """P[t+1] from P[t], P[t-1] and the gradient row; then P[t+1] is current."""
        inputs, outputs, i_cur, i_prev, i_grad, out = self._plan[self.prev, self.cur]
        # (shrink now, shrink of the previous step): the weights decay, the biases do not.
        decays = ((shrink, self.prev_shrink), (1.0, 1.0))
        for coef, x, y, (decay, prev_decay) in zip(self._coef, inputs, outputs, decays):
            coef[i_cur] = decay + mu
            coef[i_prev] = -mu * prev_decay
            coef[i_grad] = 1.0
            np.matmul(coef, x, out=y)
        self.prev_shrink = shrink
        self.prev, self.cur = self.cur, out
