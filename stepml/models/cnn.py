"""A small convolutional network for images, in numpy: im2col + BLAS, max-pooling, SGD.

Architecture (``image_shape = (H, W)``, one input channel, ``k = kernel_size``)::

    image (H, W)
      -> conv k x k, conv1_filters (valid) -> 2x2 max-pool -> + bias -> ReLU
      -> conv k x k, conv2_filters (valid) -> 2x2 max-pool -> + bias -> ReLU   (if conv2_filters > 0)
      -> dense hidden_units -> ReLU                                            (if hidden_units > 0)
      -> dense n_classes -> softmax

Layout. Activations are stored channels-first and *batch-last*, ``(C, H, W, m)``. Every
non-matrix step -- building the patch matrix (im2col), pooling, adding patch gradients back
(col2im) -- then moves runs of at least ``m`` (the batch, 128 by default) contiguous floats,
which is what keeps them cheap next to the matrix products. A convolution is one product:
the filters ``K`` (F, C*k*k) times the patch matrix (C*k*k, Ho*Wo*m), whose result *is* the
``(F, Ho, Wo, m)`` output. The backward pass is two more products, ``dY cols^T`` for the
filters and ``K^T dY`` for the patches, and col2im adds the k*k patch offsets back with k*k
slice additions over runs of ``Wo*m`` floats (no scatter such as ``np.add.at``).

Cheap non-matrix steps. Pooling comes before the bias and ReLU (max-pooling commutes with
adding a per-channel constant and with the monotone ReLU), so both run on the 4x smaller
pooled array. The first layer's patch matrix is built with its columns grouped by 2x2
pooling corner, so its pooling is a maximum over four contiguous blocks and output
rows/columns that pooling would drop are never computed. Pooling keeps three comparison
masks, and its backward pass sends each window's gradient to its first maximum only (ties --
e.g. blank background -- do not multiply it). The first layer's input gradient is never
computed.

Training is SGD with (heavy-ball) momentum and L2 weight decay, the learning rate warmed up
over the first 3% of steps then cosine-annealed to 0, with optional random shifts of the
training images (:func:`~stepml.models.base.random_shifts`). Everything is float32.

Weight layout (saved as is): ``convN_W_`` is (filters, in_channels * k * k) with the inner
order (channel, row offset, column offset), i.e. PyTorch's ``(F, C, k, k)`` flattened;
``dense_W_`` rows follow the (channel, row, column) flattening of the last pooled map.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import (COMMON_PARAM_SPECS, FLOAT, BaseSoftmaxClassifier, ParamSpec, random_shifts,
                   softmax_cross_entropy)

__all__ = ["CNNClassifier"]

#: Upper bound on the memory one training step and the optimiser may use (bytes), so that a
#: trigger cannot ask for a network that would exhaust the machine.
MAX_TRAINING_BYTES = 2 * 1024**3
#: Bytes of activations per inference chunk; bounds prediction memory whatever the row count.
PREDICT_CHUNK_BYTES = 48 * 1024**2


class _Conv(NamedTuple):
    """Geometry of one conv + pool stage."""
    h: int      # input height, width, channels
    w: int
    c: int
    ho: int     # convolution output height, width (valid: h - k + 1)
    wo: int
    hp: int     # pooled height, width (floor(ho / 2))
    wp: int
    f: int      # filters


# ----------------------------------------------------------------------------------------
# Threads for the non-matrix steps
# ----------------------------------------------------------------------------------------

#: Threads that run the non-BLAS steps (copies, pooling, col2im). numpy releases the GIL in
#: its copy and ufunc loops, so they run in parallel; the work is split by channel (the
#: first axis) and every element and per-channel sum is computed the same way whatever the
#: split, so results do not depend on this number. BLAS keeps its own thread count.
ELEMENTWISE_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                 else os.cpu_count() or 1))
#: Arrays smaller than this many elements per thread are not worth a thread hand-off.
_MIN_ELEMENTS_PER_THREAD = 1 << 15

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _forget_executor() -> None:
    """A forked child has none of the parent's threads: start a fresh pool if it needs one."""
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executor)


def _split(n: int, elements: int, part) -> None:
    """Run ``part(lo, hi)`` over consecutive slices of ``range(n)``, in parallel when worth it."""
    parts = min(ELEMENTWISE_THREADS, n, max(1, elements // _MIN_ELEMENTS_PER_THREAD))
    if parts <= 1:
        part(0, n)
        return
    global _executor
    with _executor_lock:
        if _executor is None or _executor._max_workers < parts - 1:
            _executor = ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="stepml-cnn")
        executor = _executor
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [executor.submit(part, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        part(bounds[0], bounds[1])
    finally:
        for future in futures:
            future.result()                      # re-raises a worker's exception


# ----------------------------------------------------------------------------------------
# Building blocks (pure functions on channels-first, batch-last float32 arrays)
# ----------------------------------------------------------------------------------------


def im2col(A: np.ndarray, k: int) -> np.ndarray:
    """Patch matrix (C*k*k, Ho*Wo*m) of ``A`` (C, H, W, m), valid mode, stride 1.

    Row order (channel, row offset, column offset); column order (row, column, image). One
    copy of a transposed sliding-window view whose innermost run is ``Wo*m`` floats.
    """
    c, h, w, m = A.shape
    ho, wo = h - k + 1, w - k + 1
    view = sliding_window_view(A, (k, k), axis=(1, 2)).transpose(0, 4, 5, 1, 2, 3)  # (C, k, k, Ho, Wo, m)
    out = np.empty(view.shape, dtype=A.dtype)
    _split(c, out.size, lambda lo, hi: np.copyto(out[lo:hi], view[lo:hi]))
    return out.reshape(c * k * k, ho * wo * m)


def im2col_pool_order(images: np.ndarray, k: int, hp: int, wp: int) -> np.ndarray:
    """Patch matrix (k*k, 4 * hp*wp*m) of single-channel ``images`` (H, W, m) whose columns are
    grouped by 2x2 pooling corner: ``(corner, pooled row, pooled column, image)``.

    ``K @ cols`` then yields the convolution output as four contiguous blocks, one per corner
    of the pooling windows. Output rows/columns that pooling would drop (odd sizes) are not
    computed at all.
    """
    m = images.shape[2]
    view = sliding_window_view(images, (k, k), axis=(0, 1))[:2 * hp, :2 * wp]  # (2hp, 2wp, m, k, k)
    view = view.reshape(hp, 2, wp, 2, m, k, k).transpose(5, 6, 1, 3, 0, 2, 4)  # (k, k, 2, 2, hp, wp, m)
    out = np.empty(view.shape, dtype=images.dtype)
    _split(k, out.size, lambda lo, hi: np.copyto(out[lo:hi], view[lo:hi]))
    return out.reshape(k * k, 4 * hp * wp * m)


def col2im(dcols: np.ndarray, shape: tuple[int, int, int, int], k: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: add the patch gradients (C*k*k, Ho*Wo*m) back into (C, H, W, m).

    k*k slice additions; each reads a contiguous block and writes runs of ``Wo*m`` floats.
    """
    c, h, w, m = shape
    ho, wo = h - k + 1, w - k + 1
    d = dcols.reshape(c, k, k, ho, wo, m)
    out = np.zeros(shape, dtype=dcols.dtype)

    def part(lo, hi):
        o = out[lo:hi]
        for i in range(k):
            for j in range(k):
                o[:, i:i + ho, j:j + wo, :] += d[lo:hi, i, j]
    _split(c, d.size, part)
    return out


def _corners(Y: np.ndarray, hp: int, wp: int):
    """The four strided views of the 2x2 pooling windows of ``Y`` (F, Ho, Wo, m)."""
    return (Y[:, 0:2 * hp:2, 0:2 * wp:2], Y[:, 0:2 * hp:2, 1:2 * wp:2],
            Y[:, 1:2 * hp:2, 0:2 * wp:2], Y[:, 1:2 * hp:2, 1:2 * wp:2])


def pool_bias_relu(corners, bias: np.ndarray, keep_masks: bool = True):
    """``relu(max(a, b, c, d) + bias)`` of the four window corners (same-shape arrays
    (F, ...): the top-left, top-right, bottom-left and bottom-right element of every 2x2
    window); ``bias`` (F,) is per channel (the first axis).

    Returns ``(P, masks)`` with ``P`` C-contiguous and ``masks`` the three comparisons that
    locate each window's (first) maximum, for :func:`pool_bias_relu_backward`.
    """
    shape = corners[0].shape
    P = np.empty(shape, dtype=corners[0].dtype)
    masks = tuple(np.empty(shape, dtype=bool) for _ in range(3)) if keep_masks else None
    bias = bias.reshape((-1,) + (1,) * (len(shape) - 1))

    def part(lo, hi):
        a, b, c, d = (x[lo:hi] for x in corners)
        top = P[lo:hi]
        np.maximum(a, b, out=top)
        bottom = np.maximum(c, d)
        if keep_masks:
            ab, cd, upper = (mask[lo:hi] for mask in masks)
            np.greater_equal(a, b, out=ab)
            np.greater_equal(c, d, out=cd)
            np.greater_equal(top, bottom, out=upper)
        np.maximum(top, bottom, out=top)
        top += bias[lo:hi]
        np.maximum(top, 0.0, out=top)
    _split(shape[0], P.size, part)
    return P, masks


def pool_bias_relu_backward(dP: np.ndarray, P: np.ndarray, masks, out_corners) -> np.ndarray:
    """Write the gradient w.r.t. the four corners into ``out_corners``; return the bias gradient.

    ``dP`` (same shape as ``P``) is overwritten.
    """
    gbias = np.empty(P.shape[0], dtype=dP.dtype)

    def part(lo, hi):
        g, ab, cd, upper = dP[lo:hi], masks[0][lo:hi], masks[1][lo:hi], masks[2][lo:hi]
        da, db, dc, dd = (x[lo:hi] for x in out_corners)
        g *= P[lo:hi] > 0                          # ReLU
        gbias[lo:hi] = g.reshape(hi - lo, -1).sum(axis=1)
        g_top = np.multiply(g, upper)
        np.subtract(g, g_top, out=g)               # g is now the bottom row's share
        np.multiply(g_top, ab, out=da)
        np.subtract(g_top, da, out=db)
        np.multiply(g, cd, out=dc)
        np.subtract(g, dc, out=dd)
    _split(P.shape[0], P.size, part)
    return gbias


# ----------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------


class CNNClassifier(BaseSoftmaxClassifier):
    """Convolutional network for single-channel images (see the module docstring).

    Parameters
    ----------
    conv1_filters : filters of the first convolution.
    conv2_filters : filters of the second convolution; 0 leaves it out.
    kernel_size : side of the square convolution kernels (valid padding, stride 1).
    hidden_units : width of the dense ReLU layer before the output; 0 leaves it out.
    epochs : passes over the training data.
    batch_size : rows per SGD step.
    learning_rate : peak step size; reached after a warm-up over the first 3% of steps,
        then annealed to 0 by a cosine.
    momentum : heavy-ball momentum coefficient (0 disables it).
    l2 : weight decay on the filters and dense weights (biases are not decayed).
    shift_pixels : maximum random translation, in pixels, of each training image every
        time it is seen (0 disables augmentation).
    image_shape : ``(height, width)`` of the images the rows of ``X`` hold (row-major);
        required to ``fit``.
    objective : always ``"multiclass"`` (the cnn is an image classifier; binary and regression
        models are the linear and mlp algorithms' job).
    validation_fraction : share of the rows held out (seeded, stratified) to score every
        epoch, pick the best epoch's weights and stop early; 0 trains on all rows.
    early_stopping_patience : stop after this many epochs without validation progress;
        0 never stops early.
    seed : seed of the initial weights, the shuffling, the augmentation and the hold-out.
    n_classes : number of classes; inferred as ``max(y) + 1`` when None.

    Fitted attributes: ``conv1_W_`` (conv1_filters, k*k), ``conv1_b_``, ``conv2_W_``
    (conv2_filters, conv1_filters*k*k), ``conv2_b_``, ``dense_W_`` (flat, hidden_units),
    ``dense_b_``, ``out_W_`` (hidden_units or flat, n_classes), ``out_b_`` (the layers that
    are left out have no arrays), all float32, plus those of
    :class:`~stepml.models.base.BaseSoftmaxClassifier`.
    """

    algorithm = "cnn"
    _param_specs = {
        "conv1_filters": ParamSpec("int", 1, 256),
        "conv2_filters": ParamSpec("int", 0, 256),
        "kernel_size": ParamSpec("int", 1, 11),
        "hidden_units": ParamSpec("int", 0, 4096),
        "epochs": ParamSpec("int", 1, 100),
        "batch_size": ParamSpec("int", 1, 4096),
        "learning_rate": ParamSpec("float", 0.0, 10.0, low_open=True),
        "momentum": ParamSpec("float", 0.0, 0.999),
        "l2": ParamSpec("float", 0.0, 1.0),
        "shift_pixels": ParamSpec("int", 0, 8),
        "image_shape": ParamSpec("image_shape", optional=True),
        "objective": ParamSpec("choice", choices=("multiclass",)),
        **COMMON_PARAM_SPECS,
        "seed": ParamSpec("int", 0, 2**63 - 1),
        "n_classes": ParamSpec("int", 2, 10_000, optional=True),
    }
    _warmup_fraction = 0.03

    def __init__(self, conv1_filters: int = 16, conv2_filters: int = 32, kernel_size: int = 5,
                 hidden_units: int = 128, epochs: int = 6, batch_size: int = 128,
                 learning_rate: float = 0.1, momentum: float = 0.9, l2: float = 5e-4,
                 shift_pixels: int = 2, image_shape: tuple[int, int] | None = None,
                 objective: str = "multiclass", validation_fraction: float = 0.05,
                 early_stopping_patience: int = 3, seed: int = 0, n_classes: int | None = None):
        self.conv1_filters = conv1_filters
        self.conv2_filters = conv2_filters
        self.kernel_size = kernel_size
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

    # -- architecture ---------------------------------------------------------------------

    @property
    def _weight_names(self) -> tuple[str, ...]:
        names = ["conv1_W_", "conv1_b_"]
        if self.conv2_filters:
            names += ["conv2_W_", "conv2_b_"]
        if self.hidden_units:
            names += ["dense_W_", "dense_b_"]
        return tuple(names + ["out_W_", "out_b_"])

    def _stages(self) -> list[_Conv]:
        """Geometry of the conv + pool stages; ``ValueError`` if the image is too small."""
        if self.image_shape is None:
            raise ValueError("the cnn algorithm needs parameter 'image_shape' ([height, width] "
                             "of the images whose pixels the rows hold)")
        h, w = (int(v) for v in self.image_shape)
        c, k = 1, int(self.kernel_size)
        stages = []
        for f in (self.conv1_filters, self.conv2_filters):
            if not f:
                continue
            ho, wo = h - k + 1, w - k + 1
            if ho < 2 or wo < 2:
                raise ValueError(f"image_shape {list(self.image_shape)} is too small for "
                                 f"{len(stages) + 1} convolution(s) with kernel_size {k} and 2x2 pooling")
            stages.append(_Conv(h, w, c, ho, wo, ho // 2, wo // 2, int(f)))
            h, w, c = ho // 2, wo // 2, int(f)
        return stages

    def _flat_features(self, stages: list[_Conv]) -> int:
        s = stages[-1]
        return s.hp * s.wp * s.f

    def weight_shapes(self, n_features, n_classes):
        stages = self._stages()
        self._check_n_features(n_features)
        k = int(self.kernel_size)
        shapes = {}
        for i, s in enumerate(stages, start=1):
            shapes[f"conv{i}_W_"] = (s.f, s.c * k * k)
            shapes[f"conv{i}_b_"] = (s.f,)
        width = self._flat_features(stages)
        if self.hidden_units:
            shapes["dense_W_"] = (width, int(self.hidden_units))
            shapes["dense_b_"] = (int(self.hidden_units),)
            width = int(self.hidden_units)
        shapes["out_W_"] = (width, n_classes)
        shapes["out_b_"] = (n_classes,)
        return shapes

    def train_flops_per_sample(self, n_features=None, n_classes=None):
        d, n_cls = self._dims(n_features, n_classes)
        k = int(self.kernel_size)
        macs = 0
        for i, s in enumerate(self._stages()):
            if i == 0:
                # Only the outputs that pooling keeps are computed; no input gradient.
                macs += 2 * (2 * s.hp) * (2 * s.wp) * k * k * s.c * s.f    # forward, filter gradient
            else:
                macs += 3 * s.ho * s.wo * k * k * s.c * s.f                # + patch gradient
        width = self._flat_features(self._stages())
        for units in ([int(self.hidden_units)] if self.hidden_units else []) + [n_cls]:
            macs += 3 * width * units           # forward, weight gradient, input gradient
            width = units
        return 2 * macs

    def _activation_floats_per_sample(self, training: bool) -> int:
        """float32 values one sample keeps alive in a training step (or inference chunk)."""
        k = int(self.kernel_size)
        total = 0
        for s in self._stages():
            cols = s.ho * s.wo * k * k * s.c
            conv = s.ho * s.wo * s.f
            pooled = s.hp * s.wp * s.f
            # training: cols + its gradient, conv output + its gradient, pooled (+ 3 byte masks)
            total += (2 * cols + 2 * conv + 3 * pooled) if training else (cols + conv + pooled)
        total += 3 * (int(self.hidden_units) + 16)
        return total

    def validate_params(self) -> None:
        if self.objective != "multiclass":
            raise ValueError(f"parameter 'objective' must be 'multiclass' for the cnn algorithm (an image "
                             f"classifier); got {self.objective!r}: use algorithm 'linear' or 'mlp' "
                             "for binary and regression models")
        super().validate_params()
        if self.image_shape is not None:
            if self.shift_pixels >= min(self.image_shape):
                raise ValueError(f"parameter 'shift_pixels' ({self.shift_pixels}) must be smaller "
                                 f"than the image sides {list(self.image_shape)}")
            self._stages()

    def _check_n_features(self, n_features):
        self._stages()
        h, w = self.image_shape
        if n_features != h * w:
            raise ValueError(f"image_shape {[h, w]} needs {h * w} features per row; X has {n_features}")

    def _check_data(self, X):
        self._check_n_features(X.shape[1])
        n_params = sum(math.prod(s) for s in self.weight_shapes(X.shape[1], self.n_classes or 10).values())
        need = 4 * (4 * n_params + int(self.batch_size) * self._activation_floats_per_sample(True))
        if need > MAX_TRAINING_BYTES:
            raise ValueError(
                f"this cnn would need about {need / 2**30:.1f} GiB to train (weights x4 and one "
                f"batch of activations), over the {MAX_TRAINING_BYTES / 2**30:.0f} GiB limit; lower "
                "batch_size, conv1_filters, conv2_filters or hidden_units")

    # -- training -----------------------------------------------------------------------

    def _init_weights(self, n_features, n_classes, rng):
        self._geometry = self._stages()
        for name, shape in self.weight_shapes(n_features, n_classes).items():
            if name.endswith("_b_"):
                w = np.zeros(shape, dtype=FLOAT)
            else:
                fan_in = shape[1] if name.startswith("conv") else shape[0]
                # He initialisation before a ReLU; LeCun (1/fan_in) for the output layer.
                gain = 1.0 if name == "out_W_" else 2.0
                w = rng.standard_normal(shape, dtype=FLOAT) * FLOAT(math.sqrt(gain / fan_in))
            setattr(self, name, w)
        self._velocity = {name: np.zeros_like(getattr(self, name)) for name in self._weight_names}

    def _end_training(self):
        self._velocity = None

    def _conv_forward(self, X, training):
        """All conv + pool stages of the rows ``X`` (m, H*W); returns the flattened features
        transposed, (flat, m), and, when ``training``, each stage's cache for backward."""
        k = int(self.kernel_size)
        m = X.shape[0]
        h, w = self.image_shape
        cache = []
        A = None
        for i, s in enumerate(self._geometry, start=1):
            K, bias = getattr(self, f"conv{i}_W_"), getattr(self, f"conv{i}_b_")
            if i == 1:
                # One input channel: patches in pooling-corner order (see im2col_pool_order).
                images = np.ascontiguousarray(X.T).reshape(h, w, m)
                cols = im2col_pool_order(images, k, s.hp, s.wp)
                Y = (K @ cols).reshape(s.f, 4, s.hp, s.wp, m)
                corners = tuple(Y[:, q] for q in range(4))
            else:
                cols = im2col(A, k)
                Y = (K @ cols).reshape(s.f, s.ho, s.wo, m)
                corners = _corners(Y, s.hp, s.wp)
            P, masks = pool_bias_relu(corners, bias, keep_masks=training)
            del Y, corners
            if training:
                cache.append((cols, P, masks))
            A = P
        return A.reshape(-1, m), cache

    def _dense_forward(self, flat_t):
        """Dense layers on the transposed features (flat, m); returns (hidden, logits)."""
        F = flat_t.T                                # (m, flat), a transposed view BLAS takes as is
        H = None
        if self.hidden_units:
            H = F @ self.dense_W_
            H += self.dense_b_
            np.maximum(H, 0.0, out=H)
            F = H
        Z = F @ self.out_W_
        Z += self.out_b_
        return H, Z

    def _train_batch(self, Xb, yb, lr, rng):
        m = Xb.shape[0]
        k = int(self.kernel_size)
        if self.shift_pixels > 0:
            Xb = random_shifts(Xb, tuple(self.image_shape), int(self.shift_pixels), rng)

        flat_t, cache = self._conv_forward(Xb, training=True)
        H, Z = self._dense_forward(flat_t)
        dZ, loss, acc = softmax_cross_entropy(Z, yb)
        dZ *= lr                                   # every gradient below is pre-scaled by lr

        grads = {}
        if H is not None:
            grads["out_W_"] = H.T @ dZ
            grads["out_b_"] = dZ.sum(axis=0)
            dH = dZ @ self.out_W_.T
            dH *= H > 0
            grads["dense_W_"] = flat_t @ dH
            grads["dense_b_"] = dH.sum(axis=0)
            dA = self.dense_W_ @ dH.T              # (flat, m): the last pooled map's gradient
        else:
            grads["out_W_"] = flat_t @ dZ
            grads["out_b_"] = dZ.sum(axis=0)
            dA = self.out_W_ @ dZ.T

        for i in range(len(self._geometry), 0, -1):
            s = self._geometry[i - 1]
            K = getattr(self, f"conv{i}_W_")
            cols, P, masks = cache[i - 1]
            dP = dA.reshape(P.shape)
            if i == 1:
                dY = np.empty((s.f, 4, s.hp, s.wp, m), dtype=FLOAT)
                grads["conv1_b_"] = pool_bias_relu_backward(dP, P, masks, tuple(dY[:, q] for q in range(4)))
            else:
                odd = (s.ho, s.wo) != (2 * s.hp, 2 * s.wp)
                dY = (np.zeros if odd else np.empty)((s.f, s.ho, s.wo, m), dtype=FLOAT)
                grads[f"conv{i}_b_"] = pool_bias_relu_backward(dP, P, masks, _corners(dY, s.hp, s.wp))
            dY = dY.reshape(s.f, -1)
            grads[f"conv{i}_W_"] = dY @ cols.T
            if i > 1:
                dA = col2im(K.T @ dY, (s.c, s.h, s.w, m), k)
            cache[i - 1] = None                    # free this stage's activations early

        # Momentum step with weight decay:  v = mu v - lr (g + l2 p) ;  p = p + v.
        mu, l2 = float(self.momentum), float(self.l2)
        for name, g in grads.items():
            p, v = getattr(self, name), self._velocity[name]
            v *= mu
            v -= g
            if l2 and not name.endswith("_b_"):
                v -= np.multiply(p, lr * l2, out=g)
            p += v
        return loss, acc

    # -- inference ------------------------------------------------------------------------

    def _logits(self, X):
        self._geometry = self._stages()
        rows = max(1, min(1024, PREDICT_CHUNK_BYTES // (4 * self._activation_floats_per_sample(False))))
        out = np.empty((X.shape[0], self.n_classes_), dtype=FLOAT)
        for lo in range(0, X.shape[0], rows):
            flat_t, _ = self._conv_forward(X[lo:lo + rows], training=False)
            out[lo:lo + rows] = self._dense_forward(flat_t)[1]
        return out
