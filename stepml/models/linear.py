"""Linear models trained by minibatch SGD: Amazon ML's multiclass, binary and regression models.

The model is one linear layer ``Z = x W + b`` under the loss of its ``objective``:

* ``"multiclass"`` / ``"binary"``: ``P(class | x) = softmax(Z)`` (multinomial logistic
  regression; binary is the same with k = 2, the positive class being 1), fitted by
  minimising the mean cross-entropy;
* ``"regression"``: one output, squared loss on the standardised target (see
  :mod:`stepml.models.base`);

plus optional penalties on the weights (never on the bias)::

    J(W, b) = mean_i loss(x_i W + b, y_i)  +  (l2 / 2) * ||W||^2  +  l1 * |W|_1

Each minibatch step uses the gradient ``G = dJ/dZ`` of the outputs (``(P - Y) / m`` for
softmax), so ``dJ/dW = X^T G + l2 W`` and ``dJ/db = sum_rows G``. L1 is applied as a
proximal step after the gradient step: every weight it covers moves ``lr * l1`` towards 0 and
stops at 0 (soft thresholding), which is what makes weights exactly zero. The problem is
convex, so weights start at zero (no initialisation noise) and the seed only decides the
shuffling order (``shuffle=False`` keeps the input order: then the seed changes nothing but
the validation hold-out).

Sparse input. ``X`` may be a :class:`~stepml.tabular.features.FeatureMatrix`: a dense block
(n, n_dense) plus, per row, ``width`` (column, value) pairs among ``n_sparse`` sparse
columns (a recipe's one-hot bins, categories, n-grams). The weights are then ``W_``
(n_dense, k) for the dense block and ``Ws_`` (n_sparse, k) for the sparse one::

    Z = dense W + sum_j value[:, j] * Ws[index[:, j]] + b

computed as one gather of the (m, width, k) weight rows and one batched product. The
gradient of ``Ws`` is a scatter-add of ``value[i, j] * G[i]`` into rows ``index[i, j]``,
done per class with ``np.add.at`` on a column of ``Ws`` -- the fastest of the scatters we
measured on 60,000 x 784 one-hot entries and 10 classes (per-class ``np.add.at`` 1.6 s an
epoch, per-class ``np.bincount`` 2.1 s, a sort + ``np.add.reduceat`` 3.3 s, a 2-D
``np.add.at`` 6-10 s). Splitting the classes over two threads made it slower (the threads
contend for the GIL and for the cache lines of ``Ws``'s rows), so it runs on one. The L2 decay of ``Ws`` is applied to all of it every step (one
multiplication, exact: the same model as the dense expansion ``X.to_dense()`` would give);
the L1 step is applied to the ``Ws`` rows the batch touched (and to all of ``W``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tabular.features import FeatureMatrix
from .base import COMMON_PARAM_SPECS, FLOAT, OBJECTIVES, BaseSGDModel, ParamSpec, check_X

__all__ = ["LinearModel", "SoftmaxRegression", "check_features", "model_bytes"]

#: Upper bound on the floats of the gathered (rows, width, k) weight block of one forward
#: chunk (8 MB): larger minibatches and prediction chunks are cut into pieces of this size.
_GATHER_FLOATS = 1 << 21

def model_bytes(n_features: int, n_outputs: int) -> int:
    """Bytes of a linear model's weight matrices (``W_`` and ``Ws_``, float32) -- what
    Amazon ML's ``sgd.maxMLModelSizeInBytes`` bounds. The bias (``n_outputs`` floats) is not
    counted, so that ``max_bytes // (4 * k) - n_dense`` sparse columns always fit."""
    return 4 * int(n_features) * int(n_outputs)


def check_features(X: FeatureMatrix, *, n_dense: int | None = None, n_sparse: int | None = None,
                   name: str = "X") -> FeatureMatrix:
    """Return ``X`` if it is a valid :class:`FeatureMatrix`, else raise ``ValueError`` saying why.

    Checks the block types and shapes, finiteness of the dense block and the values, that
    every sparse index is a column in ``[0, n_sparse)``, and -- when given -- that the block
    widths are the ones the model was fitted with.
    """
    try:
        X.__post_init__()                   # the arrays may have been replaced since construction
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if n_dense is not None and (X.n_dense != n_dense or X.n_sparse != n_sparse):
        raise ValueError(f"{name} has {X.n_dense} dense and {X.n_sparse} sparse features but the model "
                         f"was fitted with {n_dense} dense and {n_sparse} sparse features")
    for block, what in ((X.dense, "dense block"), (X.value, "sparse values")):
        if block.size and not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(f"{name} {what} contains NaN or infinity (first at row {bad[0]}, "
                             f"{'column' if what == 'dense block' else 'slot'} {bad[1]})")
    if X.index.size:
        lo, hi = int(X.index.min()), int(X.index.max())
        if lo < 0 or hi >= X.n_sparse:
            bad = np.argwhere((X.index < 0) | (X.index >= X.n_sparse))[0]
            raise ValueError(f"{name} sparse index {int(X.index[bad[0], bad[1]])} at row {bad[0]}, "
                             f"slot {bad[1]} is outside [0, n_sparse={X.n_sparse})")
    return X


def _soft_threshold(A: np.ndarray, t: float) -> None:
    """In place: move every entry of ``A`` by ``t`` towards 0, stopping at 0 (the proximal
    step of ``t * |A|_1``)."""
    sign = np.sign(A)
    np.abs(A, out=A)
    A -= t
    np.maximum(A, 0.0, out=A)
    A *= sign


class LinearModel(BaseSGDModel):
    """Linear model (softmax / logistic regression, or least squares) by minibatch SGD.

    Parameters
    ----------
    epochs : passes over the training data (Amazon ML: ``sgd.maxPasses``).
    batch_size : rows per SGD step.
    learning_rate : initial step size, annealed to 0 by a cosine over all steps so that
        late steps refine rather than undo earlier ones (on MNIST it matched or beat 1/t
        decay at every learning rate we tried).
    l2 : strength of the L2 penalty ``(l2/2) ||W||^2`` (the bias is not penalised).
    l1 : strength of the L1 penalty ``l1 |W|_1``, applied by soft thresholding after each
        step (to all dense weights and to the sparse weight rows the batch touched).
    shuffle : shuffle the training rows every epoch (True) or take them in input order.
    objective : ``"multiclass"`` (k classes), ``"binary"`` (classes 0/1; the score of the
        positive class is ``predict_proba(X)[:, 1]``) or ``"regression"`` (one real value).
    max_model_bytes : refuse (``ValueError``, before training) a model whose weight matrices
        would take more bytes than this (:func:`model_bytes`); None for no limit (Amazon ML:
        ``sgd.maxMLModelSizeInBytes``).
    validation_fraction : share of the rows held out (seeded, stratified) to score every
        epoch, pick the best epoch's weights and stop early; 0 trains on all rows.
    early_stopping_patience : stop after this many epochs without validation progress;
        0 never stops early.
    seed : seed of the shuffling order and of the validation hold-out.
    n_classes : number of classes ``k``; inferred as ``max(y) + 1`` when None (multiclass).

    Fitted attributes: ``W_`` (n_dense, k) float32, ``b_`` (k,) float32, and for a model
    fitted on a :class:`FeatureMatrix` ``Ws_`` (n_sparse, k) float32 with ``n_sparse_in_``
    (None for a model fitted on a dense array); k is 1 for regression. Plus those of
    :class:`~stepml.models.base.BaseSGDModel`.

    Amazon ML's ``sgd.*`` training parameters are translated by
    :func:`stepml.models.amazonml_params.from_amazon_ml` (``make_model`` does it).
    """

    algorithm = "linear"
    _param_specs = {
        "epochs": ParamSpec("int", 1, 500),
        "batch_size": ParamSpec("int", 1, 65_536),
        "learning_rate": ParamSpec("float", 0.0, 100.0, low_open=True),
        "l2": ParamSpec("float", 0.0, 100.0),
        "l1": ParamSpec("float", 0.0, 100.0),
        "shuffle": ParamSpec("bool"),
        "objective": ParamSpec("choice", choices=OBJECTIVES),
        "max_model_bytes": ParamSpec("int", 1, 2**40, optional=True),
        **COMMON_PARAM_SPECS,
        "seed": ParamSpec("int", 0, 2**63 - 1),
        "n_classes": ParamSpec("int", 2, 1_000_000, optional=True),
    }

    def __init__(self, epochs: int = 6, batch_size: int = 128, learning_rate: float = 1.0,
                 l2: float = 0.0, l1: float = 0.0, shuffle: bool = True, objective: str = "multiclass",
                 max_model_bytes: int | None = None, validation_fraction: float = 0.05,
                 early_stopping_patience: int = 3, seed: int = 0, n_classes: int | None = None):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.l1 = l1
        self.shuffle = shuffle
        self.objective = objective
        self.max_model_bytes = max_model_bytes
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.n_classes = n_classes
        self.n_sparse_in_: int | None = None

    # -- shapes ---------------------------------------------------------------------------

    @property
    def _weight_names(self) -> tuple[str, ...]:
        return ("W_", "b_") if self.n_sparse_in_ is None else ("W_", "Ws_", "b_")

    @property
    def _n_dense(self) -> int:
        return int(self.n_features_in_) - (self.n_sparse_in_ or 0)

    def weight_shapes(self, n_features, n_classes):
        if self.n_sparse_in_ is None:
            return {"W_": (n_features, n_classes), "b_": (n_classes,)}
        n_dense = n_features - self.n_sparse_in_
        if n_dense < 0:
            raise ValueError(f"n_features {n_features} is smaller than n_sparse {self.n_sparse_in_}")
        return {"W_": (n_dense, n_classes), "Ws_": (self.n_sparse_in_, n_classes), "b_": (n_classes,)}

    def train_flops_per_sample(self, n_features=None, n_classes=None):
        d, k = self._dims(n_features, n_classes)
        width = getattr(self, "sparse_width_", None)
        if n_features is None and self.n_sparse_in_ is not None and width is not None:
            d = self._n_dense + width            # products with the active sparse entries only
        return 2 * (2 * d * k)          # forward X W, backward X^T G (no input gradient)

    # -- input ----------------------------------------------------------------------------

    def _check_input(self, X: Any, *, fitted: bool) -> Any:
        if isinstance(X, FeatureMatrix):
            if not fitted:
                return check_features(X)
            return check_features(X, n_dense=self._n_dense, n_sparse=self.n_sparse_in_ or 0)
        return check_X(X, n_features=self.n_features_in_ if fitted else None)

    def _check_data(self, X):
        if isinstance(X, FeatureMatrix):
            self.n_sparse_in_ = X.n_sparse
            self.sparse_width_ = X.index.shape[1]
        else:
            self.n_sparse_in_ = self.sparse_width_ = None

    def _check_model_size(self, n_features: int, n_outputs: int) -> None:
        if self.max_model_bytes is None:
            return
        size = model_bytes(n_features, n_outputs)
        if size > self.max_model_bytes:
            raise ValueError(
                f"the model would take {size} bytes ({n_features} features x {n_outputs} outputs x 4) "
                f"but max_model_bytes (sgd.maxMLModelSizeInBytes) is {self.max_model_bytes}; "
                f"allow a larger model or keep at most {self.max_model_bytes // (4 * n_outputs)} "
                "features (fewer sparse columns)")

    # -- training -------------------------------------------------------------------------

    def _init_weights(self, n_features, n_classes, rng):
        shapes = self.weight_shapes(n_features, n_classes)
        for name, shape in shapes.items():
            setattr(self, name, np.zeros(shape, dtype=FLOAT))

    def _train_batch(self, Xb, yb, lr, rng):
        if isinstance(Xb, FeatureMatrix):
            return self._train_sparse_batch(Xb, yb, lr)
        W, b = self.W_, self.b_
        G, loss, acc = self._output_gradient(Xb @ W + b, yb)   # G = dJ/dZ
        grad_W = Xb.T @ G
        if self.l2:
            grad_W += float(self.l2) * W
        W -= lr * grad_W
        b -= lr * G.sum(axis=0)
        if self.l1:
            _soft_threshold(W, lr * float(self.l1))
        return loss, acc

    def _train_sparse_batch(self, Xb: FeatureMatrix, yb: np.ndarray, lr: float):
        W, Ws, b = self.W_, self.Ws_, self.b_
        l1, l2 = float(self.l1), float(self.l2)
        G, loss, acc = self._output_gradient(self._feature_logits(Xb), yb)
        # Dense block and bias: as for a dense X.
        if W.shape[0]:
            grad_W = Xb.dense.T @ G
            if l2:
                grad_W += l2 * W
            W -= lr * grad_W
            if l1:
                _soft_threshold(W, lr * l1)
        b -= lr * G.sum(axis=0)
        # Sparse block: decay all of it, then add -lr * value[i, j] * G[i] to row index[i, j].
        if l2:
            Ws *= 1.0 - lr * l2
        if Xb.index.shape[1]:
            G *= -lr
            idx = Xb.index.ravel().astype(np.intp)
            _scatter_add(Ws, idx, Xb.value, G)
            if l1:
                touched = np.zeros(Ws.shape[0], dtype=bool)
                touched[idx] = True
                rows = np.flatnonzero(touched)
                block = Ws[rows]
                _soft_threshold(block, lr * l1)
                Ws[rows] = block
        return loss, acc

    # -- inference ------------------------------------------------------------------------

    def _feature_logits(self, X: FeatureMatrix) -> np.ndarray:
        """``dense W + sum_j value[:, j] Ws[index[:, j]] + b`` (m, k), gathering at most
        ``_GATHER_FLOATS`` weights at a time."""
        m, width = X.index.shape
        k = self.b_.shape[0]
        Z = X.dense @ self.W_ if self.W_.shape[0] else np.zeros((m, k), dtype=FLOAT)
        Z += self.b_
        if width and m:
            Ws = self.Ws_ if self.n_sparse_in_ is not None else np.zeros((0, k), FLOAT)
            step = max(1, _GATHER_FLOATS // (width * k))
            for lo in range(0, m, step):
                rows = slice(lo, lo + step)
                gathered = np.take(Ws, X.index[rows], axis=0)              # (rows, width, k)
                Z[rows] += np.matmul(X.value[rows, None, :], gathered)[:, 0]
        return Z

    def _logits(self, X):
        if isinstance(X, FeatureMatrix):
            return self._feature_logits(X)
        if self.n_sparse_in_ is None:
            return X @ self.W_ + self.b_
        # A dense array laid out as FeatureMatrix.to_dense(): dense columns, then sparse ones.
        nd = self.W_.shape[0]
        return X[:, :nd] @ self.W_ + X[:, nd:] @ self.Ws_ + self.b_


def _scatter_add(Ws: np.ndarray, idx: np.ndarray, value: np.ndarray, G: np.ndarray) -> None:
    """``Ws[idx[i*w + j]] += value[i, j] * G[i]`` for all entries (duplicates add up), one
    class (column of ``Ws``) at a time: ``np.add.at`` is fast on 1-D targets only."""
    for c in range(Ws.shape[1]):
        np.add.at(Ws[:, c], idx, (value * G[:, c:c + 1]).ravel())


#: The historical name: the linear model was a softmax classifier only.
SoftmaxRegression = LinearModel
