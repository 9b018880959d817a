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

Decoupled decay costs one pass over ``W1`` per step instead of two, and the step itself is
three passes: the element-wise update is the largest cost after the two big products.
``lr_t`` follows a cosine from ``learning_rate`` to 0 over all steps of training,
after a linear warm-up over the first 5% of steps.
The two big products (``X W1`` and ``X^T dH``) dominate the cost; they run on contiguous
float32 arrays so BLAS does the work on all cores.

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
from .base import COMMON_PARAM_SPECS, FLOAT, OBJECTIVES, BaseSGDModel, ParamSpec, check_X, random_shifts

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

    def __init__(self, hidden_units: int = 512, epochs: int = 12, batch_size: int = 256,
                 learning_rate: float = 0.2, momentum: float = 0.9, l2: float = 1e-4,
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
        self.W1_ = rng.standard_normal((n_features, h), dtype=FLOAT) * FLOAT(math.sqrt(2.0 / n_features))
        self.b1_ = np.zeros(h, dtype=FLOAT)
        self.W2_ = rng.standard_normal((h, n_classes), dtype=FLOAT) * FLOAT(math.sqrt(1.0 / h))
        self.b2_ = np.zeros(n_classes, dtype=FLOAT)
        self._velocity = [np.zeros_like(p) for p in self._params()]
        self._grads = [np.empty_like(p) for p in self._params()]  # reused matmul outputs

    def _end_training(self):
        # Optimiser state is only needed while training; do not keep 2x the weights around.
        self._velocity = self._grads = None

    def _params(self) -> list[np.ndarray]:
        return [self.W1_, self.b1_, self.W2_, self.b2_]

    def _train_batch(self, Xb, yb, lr, rng):
        W1, b1, W2, b2 = params = self._params()
        mu, l2 = float(self.momentum), float(self.l2)
        if self.image_shape is not None and self.shift_pixels > 0:
            Xb = random_shifts(Xb, tuple(self.image_shape), self.shift_pixels, rng)

        # Forward.
        H = Xb @ W1
        H += b1
        np.maximum(H, 0.0, out=H)                       # ReLU
        Z = H @ W2
        Z += b2
        dZ, loss, acc = self._output_gradient(Z, yb)    # dZ = (P - Y) / m, in Z's memory

        # Backward, with every gradient pre-multiplied by -lr: scaling the small (m, k) dZ
        # once is far cheaper than scaling the big (d, h) dW1 later.
        dZ *= -lr
        gW2 = np.matmul(H.T, dZ, out=self._grads[2])    # -lr * dJ/dW2 (without l2)
        gb2 = dZ.sum(axis=0)
        dH = dZ @ W2.T
        dH *= H > 0                                     # ReLU passes gradient where active
        gW1 = np.matmul(Xb.T, dH, out=self._grads[0])
        gb1 = dH.sum(axis=0)

        # Momentum step:  v = mu v - lr g ;  p = (1 - lr l2) p + v.
        shrink = 1.0 - lr * l2
        for p, g, v, decay in zip(params, (gW1, gb1, gW2, gb2), self._velocity, (True, False, True, False)):
            v *= mu
            v += g
            if decay:
                p *= shrink
            p += v
        return loss, acc

    # -- inference ------------------------------------------------------------------------

    def _logits(self, X):
        H = X @ self.W1_
        H += self.b1_
        np.maximum(H, 0.0, out=H)
        Z = H @ self.W2_
        Z += self.b2_
        return Z
