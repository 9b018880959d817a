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

from .base import FLOAT, BaseSoftmaxClassifier, ParamSpec, softmax_cross_entropy

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
    seed : seed of the shuffling order.
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
        "seed": ParamSpec("int", 0, 2**63 - 1),
        "n_classes": ParamSpec("int", 2, 1_000_000, optional=True),
    }
    _weight_names = ("W_", "b_")

    def __init__(self, epochs: int = 6, batch_size: int = 128, learning_rate: float = 1.0,
                 l2: float = 0.0, seed: int = 0, n_classes: int | None = None):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.seed = seed
        self.n_classes = n_classes

    def weight_shapes(self, n_features, n_classes):
        return {"W_": (n_features, n_classes), "b_": (n_classes,)}

    def _init_weights(self, n_features, n_classes, rng):
        self.W_ = np.zeros((n_features, n_classes), dtype=FLOAT)
        self.b_ = np.zeros(n_classes, dtype=FLOAT)

    def _run_epoch(self, X, y, epoch, rng):
        W, b = self.W_, self.b_
        l2 = float(self.l2)
        loss_sum = acc_sum = 0.0
        for idx in self._minibatches(X.shape[0], rng):
            lr = self._next_learning_rate()
            Xb = X[idx]
            G, loss, acc = softmax_cross_entropy(Xb @ W + b, y[idx])   # G = dJ/dZ
            grad_W = Xb.T @ G
            if l2:
                grad_W += l2 * W
            W -= lr * grad_W
            b -= lr * G.sum(axis=0)
            loss_sum += loss * len(idx)
            acc_sum += acc * len(idx)
        return loss_sum / X.shape[0], acc_sum / X.shape[0]

    def _logits(self, X):
        return X @ self.W_ + self.b_
