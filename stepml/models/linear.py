"""Multinomial logistic regression trained by minibatch SGD: Amazon ML's multiclass model.

The model is ``P(class | x) = softmax(x W + b)``, fitted by minimising the mean
cross-entropy plus an optional L2 penalty on ``W``::

    J(W, b) = mean_i -log softmax(x_i W + b)[y_i]  +  (l2 / 2) * ||W||^2

Each minibatch step uses the gradient ``dJ/dZ = (P - Y) / m`` of the logits ``Z``, so
``dJ/dW = X^T (P - Y) / m + l2 W`` and ``dJ/db = sum_rows (P - Y) / m``.
The problem is convex, so weights start at zero (no initialisation noise) and the seed only
decides the shuffling order.
"""

from __future__ import annotations

import numpy as np

from .base import COMMON_PARAM_SPECS, FLOAT, BaseSoftmaxClassifier, ParamSpec, softmax_cross_entropy

__all__ = ["SoftmaxRegression"]


class SoftmaxRegression(BaseSoftmaxClassifier):
    """Softmax (multinomial logistic) regression by minibatch SGD.

    Parameters
    ----------
    epochs : passes over the training data.
    batch_size : rows per SGD step.
    learning_rate : initial step size, annealed to 0 by a cosine over all steps so that
        late steps refine rather than undo earlier ones (on MNIST it matched or beat 1/t
        decay at every learning rate we tried).
    l2 : strength of the L2 penalty ``(l2/2) ||W||^2`` (the bias is not penalised).
    validation_fraction : share of the rows held out (seeded, stratified) to score every
        epoch, pick the best epoch's weights and stop early; 0 trains on all rows.
    early_stopping_patience : stop after this many epochs without validation progress;
        0 never stops early.
    seed : seed of the shuffling order and of the validation hold-out.
    n_classes : number of classes ``k``; inferred as ``max(y) + 1`` when None.

    Fitted attributes: ``W_`` (n_features, k) float32, ``b_`` (k,) float32, plus those of
    :class:`~stepml.models.base.BaseSoftmaxClassifier`.
    """

    algorithm = "linear"
    _param_specs = {
        "epochs": ParamSpec("int", 1, 500),
        "batch_size": ParamSpec("int", 1, 65_536),
        "learning_rate": ParamSpec("float", 0.0, 100.0, low_open=True),
        "l2": ParamSpec("float", 0.0, 100.0),
        **COMMON_PARAM_SPECS,
        "seed": ParamSpec("int", 0, 2**63 - 1),
        "n_classes": ParamSpec("int", 2, 1_000_000, optional=True),
    }
    _weight_names = ("W_", "b_")

    def __init__(self, epochs: int = 6, batch_size: int = 128, learning_rate: float = 1.0,
                 l2: float = 0.0, validation_fraction: float = 0.05, early_stopping_patience: int = 3,
                 seed: int = 0, n_classes: int | None = None):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.n_classes = n_classes

    def weight_shapes(self, n_features, n_classes):
        return {"W_": (n_features, n_classes), "b_": (n_classes,)}

    def _init_weights(self, n_features, n_classes, rng):
        self.W_ = np.zeros((n_features, n_classes), dtype=FLOAT)
        self.b_ = np.zeros(n_classes, dtype=FLOAT)

    def train_flops_per_sample(self, n_features=None, n_classes=None):
        d, k = self._dims(n_features, n_classes)
        return 2 * (2 * d * k)          # forward X W, backward X^T G (no input gradient)

    def _train_batch(self, Xb, yb, lr, rng):
        W, b = self.W_, self.b_
        G, loss, acc = softmax_cross_entropy(Xb @ W + b, yb)   # G = dJ/dZ
        grad_W = Xb.T @ G
        if self.l2:
            grad_W += float(self.l2) * W
        W -= lr * grad_W
        b -= lr * G.sum(axis=0)
        return loss, acc

    def _logits(self, X):
        return X @ self.W_ + self.b_
