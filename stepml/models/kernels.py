"""The mlp's fused element-wise kernels (``_kernels.c``), loaded with ctypes.

A training step of the mlp is two large matrix products, which BLAS runs near the machine's
peak, and a dozen smaller operations around them: gathering and translating the minibatch,
the ReLU, the output layer (three products with only ``k`` = 10 columns), the softmax and
the masked hidden gradient. In numpy each of those is a pass over a (m, hidden) array on one
core. The C library does them in two sweeps with each row in the L1 cache. Measured inside
MNIST training (512 rows, 512 hidden units; steps alternating between the two paths, 2
cores; ``python -m bench.mlp_step``): the output layer 0.63 ms instead of 0.94, the gather
and translation 0.42 ms instead of 0.57, of a step of about 5 ms. Splitting the rows between
two threads was tried and made both ~2x slower in training (though faster alone): between
BLAS calls OpenBLAS's idle worker spins on the second core.

The library is optional. ``pip install`` builds it (setup.py: an optional extension, skipped
without a C compiler), the layer's Makefile builds it for Lambda's arm64. Where it is missing,
was built for another architecture or is of another version, or ``STEPML_KERNELS=numpy`` is
set, :data:`NATIVE` is None and the mlp runs its numpy code: the same mathematics, rounded
differently (so a given seed gives the same weights on the same path and CPU family only).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

__all__ = ["NATIVE", "MAX_CLASSES", "ALIGNMENT", "aligned_empty", "load", "plain_rows"]

#: The library's interface version this module speaks (``stepml_kernels_version()``).
VERSION = 1
#: The most classes :meth:`Kernels.softmax_head` takes (the kernel keeps a row's logits in registers).
MAX_CLASSES = 16
#: Bytes the kernels' row arrays are aligned to: a vector load never straddles two cache lines.
ALIGNMENT = 64

_P, _I = ctypes.c_void_p, ctypes.c_int64


class Kernels:
    """Typed entry points of a loaded library. Every array is checked before C sees it
    (dtype, shape, unit column stride, positive row stride): a wrong argument is a
    ValueError, never a write outside the arrays. The checks cost a few microseconds a call."""

    def __init__(self, lib: ctypes.CDLL):
        self._gather = lib.stepml_gather_shift
        self._gather.argtypes = [_P, _I, _I, _P, _I, _P, _I, _I, _I, _P, _I]
        self._gather.restype = None
        self._head = lib.stepml_softmax_head
        self._head.argtypes = [_P, _I, _I, _I, _I, _P, _P, _P, ctypes.c_float, _P, _P, _P, _I,
                               ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int64)]
        self._head.restype = ctypes.c_int
        self.path = lib._name

    def gather_shift(self, X: np.ndarray, idx: np.ndarray, counts: np.ndarray, shift: int,
                     image_shape: tuple[int, int], out: np.ndarray) -> None:
        """``out[r] = X[idx[r]]`` translated as :func:`~stepml.models.base.fill_shifted_rows`
        does for the same ``counts`` (exactly the same pixels); ``shift=0`` is a plain gather.
        Indices outside ``[0, len(X))`` are clipped into it, as ``np.take(mode="clip")`` does."""
        h, w = (int(v) for v in image_shape)
        shift = int(shift)
        idx = np.ascontiguousarray(idx, np.int64).reshape(-1)
        counts = np.ascontiguousarray(counts, np.int64).reshape(-1)
        _rows("X", X, cols=h * w, min_rows=1)
        _rows("out", out, cols=h * w, min_rows=idx.size, writable=True)
        if not 0 <= shift < min(h, w):
            raise ValueError(f"gather_shift: shift {shift} must be >= 0 and smaller than the image sides {[h, w]}")
        if counts.size != (2 * shift + 1) ** 2 or (counts < 0).any() or counts.sum() != idx.size:
            raise ValueError(f"gather_shift: counts must be {(2 * shift + 1) ** 2} non-negative numbers "
                             f"summing to the {idx.size} rows")
        self._gather(X.ctypes.data, X.shape[0], X.strides[0] // 4, idx.ctypes.data, idx.size, counts.ctypes.data,
                     shift, h, w, out.ctypes.data, out.strides[0] // 4)

    def softmax_head(self, A: np.ndarray, W2T: np.ndarray, b2: np.ndarray, y: np.ndarray,
                     scale: float, gT: np.ndarray, gb2: np.ndarray, dH: np.ndarray) -> tuple[float, int]:
        """ReLU ``A`` (m, h) in place, then the softmax output layer's gradients, all scaled by
        ``scale``: ``gT`` = (dW2)^T (k, h), ``gb2`` (k), ``dH`` (m, h) = (dZ W2^T) * [A > 0],
        with ``dZ = scale (P - Y) / m``. Returns (summed cross-entropy, rows classified right)."""
        m, h = A.shape
        k = W2T.shape[0]
        y = np.ascontiguousarray(y, np.int64).reshape(-1)
        _rows("A", A, cols=h, min_rows=m, writable=True)
        _rows("dH", dH, cols=h, min_rows=m, writable=True)
        for name, a, shape, writable in (("W2T", W2T, (k, h), False), ("gT", gT, (k, h), True),
                                         ("b2", b2, (k,), False), ("gb2", gb2, (k,), True)):
            if a.dtype != np.float32 or a.shape != shape or not a.flags.c_contiguous \
                    or (writable and not a.flags.writeable):
                raise ValueError(f"softmax_head: {name} must be a C-contiguous{' writable' if writable else ''} "
                                 f"float32 array of shape {shape}")
        if y.size != m or m == 0 or dH.shape[0] != m:
            raise ValueError(f"softmax_head: {m} rows of A, {dH.shape[0]} of dH and {y.size} labels")
        # Outputs of this call only: ctypes lets go of the GIL during it, and the local stack
        # may train two models at once on different threads.
        loss, correct = ctypes.c_double(), ctypes.c_int64()
        rc = self._head(A.ctypes.data, A.strides[0] // 4, m, h, k, W2T.ctypes.data,
                        b2.ctypes.data, y.ctypes.data, scale, gT.ctypes.data, gb2.ctypes.data,
                        dH.ctypes.data, dH.strides[0] // 4, ctypes.byref(loss), ctypes.byref(correct))
        if rc != 0:
            raise ValueError(f"softmax_head: {k} classes (2 to {MAX_CLASSES}) or labels outside [0, {k})")
        return loss.value, correct.value


def plain_rows(a) -> bool:
    """Whether the kernels can read ``a`` as it is: a 2-d float32 array of rows of contiguous
    values that do not overlap (C order, or a column slice of such an array)."""
    return (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 2 and a.strides[1] == 4
            and a.strides[0] % 4 == 0 and (a.shape[0] <= 1 or a.strides[0] >= 4 * a.shape[1]))


def _rows(name: str, a: np.ndarray, *, cols: int, min_rows: int, writable: bool = False) -> None:
    """Check that ``a`` is a 2-d float32 array of >= ``min_rows`` rows of ``cols`` contiguous floats."""
    if not (plain_rows(a) and a.shape[1] == cols and a.shape[0] >= min_rows
            and (a.flags.writeable or not writable)):
        raise ValueError(f"{name} must be a {'writable ' if writable else ''}float32 array of at least "
                         f"{min_rows} rows of {cols} contiguous values, with rows that do not overlap")


def load(directory: Path | None = None) -> Kernels | None:
    """The library next to this module (as built by setup.py or the layer), or None."""
    if os.environ.get("STEPML_KERNELS", "").lower() == "numpy":
        return None
    directory = directory or Path(__file__).parent
    for path in sorted(directory.glob("_kernels*.so")):
        try:
            lib = ctypes.CDLL(str(path))
            lib.stepml_kernels_version.restype = ctypes.c_int
            if lib.stepml_kernels_version() == VERSION:
                return Kernels(lib)
        except (OSError, AttributeError):      # another machine's build, or an older one
            continue
    return None


def aligned_empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on an :data:`ALIGNMENT` boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(n + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + n].view(dtype).reshape(shape)


#: The loaded kernels, or None: the mlp then runs its numpy code.
NATIVE: Kernels | None = load()
