"""Specification of the mlp's compiled kernels (stepml/models/_kernels.c via
stepml.models.kernels): each does exactly what the numpy code it replaces does, the library is
built by the dev install, and the mlp falls back to numpy wherever the library is missing,
foreign or switched off."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stepml.models.base as base
from stepml.models import MLPClassifier, kernels
from stepml.models.mlp import random_shifts
from tests.unit.model_helpers import quadrant_squares

NATIVE = kernels.NATIVE
#: Without the library only test_the_dev_install_builds_and_loads_the_kernels fails: that one
#: says why; the tests of the kernels themselves have nothing to run.
needs_native = pytest.mark.skipif(NATIVE is None, reason="the kernels are not built (see the test above)")


def test_the_dev_install_builds_and_loads_the_kernels():
    # setup.py builds the library as an optional extension; if a compiler is missing, pip
    # goes on without it and the mlp runs slower. Here (make test: gcc present) it must load.
    assert NATIVE is not None, "stepml/models/_kernels*.so missing or not loadable: `pip install -e .` again"
    assert NATIVE.path.endswith(".so")


# --------------------------------------------------------------------------------------
# gather + shift
# --------------------------------------------------------------------------------------


@needs_native
@pytest.mark.parametrize("h, w, shift", [(5, 6, 2), (7, 4, 1), (28, 28, 1), (9, 9, 4), (3, 3, 2)])
def test_gather_shift_gives_the_pixels_of_random_shifts(h, w, shift):
    # The same draw, the same pixels, into a column slice of a wider buffer (the mlp's,
    # after its column of ones), leaving the rest of the buffer alone.
    rng = np.random.default_rng(3)
    X = rng.random((40, h * w), dtype=np.float32) + 0.1
    before = X.copy()
    idx = rng.integers(0, 40, 300)
    expected = random_shifts(X[idx], (h, w), shift, np.random.default_rng(9))
    counts = base.shift_counts(idx.size, shift, np.random.default_rng(9))
    buf = np.full((idx.size, h * w + 3), np.nan, np.float32)
    NATIVE.gather_shift(X, idx, counts, shift, (h, w), buf[:, 1:h * w + 1])
    np.testing.assert_array_equal(buf[:, 1:h * w + 1], expected)
    assert np.isnan(buf[:, 0]).all() and np.isnan(buf[:, h * w + 1:]).all()
    np.testing.assert_array_equal(X, before)


@needs_native
def test_gather_without_shift_is_take_and_clips_indices_like_it():
    rng = np.random.default_rng(1)
    X = rng.random((50, 13), dtype=np.float32)[:, 1:12]            # rows 13 floats apart
    idx = np.array([0, 49, 7, -3, 50, 10_000, 25])
    out = np.empty((idx.size, 11), np.float32)
    NATIVE.gather_shift(X, idx, np.array([idx.size]), 0, (1, 11), out)
    np.testing.assert_array_equal(out, np.take(X, idx, axis=0, mode="clip"))


def gather_args(**change):
    args = {"X": np.zeros((10, 12), np.float32), "idx": np.arange(4), "counts": np.array([4]), "shift": 0,
            "image_shape": (3, 4), "out": np.zeros((4, 12), np.float32)}
    args.update(change)
    return args


@needs_native
@pytest.mark.parametrize("change, message", [
    ({"X": np.zeros((10, 12))}, "X must be"),                                   # float64
    ({"X": np.zeros((10, 12), np.float32, order="F")}, "X must be"),           # columns not contiguous
    ({"X": np.zeros((10, 11), np.float32)}, "X must be"),                       # not h * w pixels
    ({"out": np.zeros((3, 12), np.float32)}, "out must be"),                    # fewer rows than idx
    ({"out": np.zeros((4, 12), np.float32)[::-1]}, "out must be"),              # rows backwards
    ({"out": np.lib.stride_tricks.as_strided(np.zeros(20, np.float32), (4, 12), (8, 4))}, "out must be"),
    ({"counts": np.array([3])}, "counts"),                                      # do not sum to the rows
    ({"counts": np.array([4, 0])}, "counts"),                                   # one count per offset
    ({"shift": 1}, "counts"),
    ({"shift": 3, "counts": np.array([4] + [0] * 48)}, "shift 3"),          # not smaller than the sides
    ({"shift": -1}, "shift -1"),
])
def test_gather_shift_refuses_arrays_it_would_read_or_write_out_of_bounds(change, message):
    args = gather_args(**change)
    out_before = args["out"].copy()
    with pytest.raises(ValueError, match=message):
        NATIVE.gather_shift(**args)
    np.testing.assert_array_equal(args["out"], out_before)


# --------------------------------------------------------------------------------------
# the softmax output layer
# --------------------------------------------------------------------------------------


def head_inputs(m=37, h=40, k=10, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, h), dtype=np.float32)
    W2 = (rng.standard_normal((h, k)) * 0.3).astype(np.float32)
    b2 = (rng.standard_normal(k) * 0.1).astype(np.float32)
    y = rng.integers(0, k, m)
    return A, W2, b2, y


def numpy_head(A, W2, b2, y, scale):
    """The output layer as the numpy path computes it, in float64."""
    H = np.maximum(A.astype(np.float64), 0.0)
    Z = H @ W2 + b2
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    m = len(y)
    loss = float(-np.log(P[np.arange(m), y]).sum())
    correct = int((Z[np.arange(m), y] == 0).sum())
    G = P.copy()
    G[np.arange(m), y] -= 1.0
    G *= scale / m
    return H, loss, correct, H.T @ G, G.sum(axis=0), (G @ W2.T) * (H > 0)


@needs_native
@pytest.mark.parametrize("m, h, k", [(37, 40, 10), (64, 512, 10), (5, 17, 2), (9, 33, 16), (1, 16, 3), (6, 5, 3)])
def test_softmax_head_is_the_output_layer_forward_and_back(m, h, k):
    # Any width: whole vector blocks and a remainder (h = 17, 33, 40), or no whole block (5).
    A, W2, b2, y = head_inputs(m, h, k)
    scale = -0.3
    H, loss, correct, gW2, gb2, dH = numpy_head(A, W2, b2, y, scale)
    out_gT, out_gb2, out_dH = np.empty((k, h), np.float32), np.empty(k, np.float32), np.empty((m, h), np.float32)
    A_run = A.copy()
    got_loss, got_correct = NATIVE.softmax_head(A_run, np.ascontiguousarray(W2.T), b2, y, scale,
                                                out_gT, out_gb2, out_dH)
    np.testing.assert_array_equal(A_run, np.maximum(A, 0))                # ReLU in place
    assert got_loss == pytest.approx(loss, rel=1e-5) and got_correct == correct
    np.testing.assert_allclose(out_gT.T, gW2, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out_gb2, gb2, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out_dH, dH, rtol=1e-4, atol=1e-7)
    assert not out_dH[H == 0].any()                                      # masked by the ReLU


@needs_native
def test_softmax_head_reads_and_writes_rows_of_wider_buffers():
    A, W2, b2, y = head_inputs(m=20, h=24, k=4)
    _, loss, _, gW2, _, dH = numpy_head(A, W2, b2, y, -1.0)
    wide_A = np.zeros((20, 30), np.float32)
    wide_A[:, 3:27] = A
    wide_dH = np.full((20, 29), 7.0, np.float32)
    gT, gb2 = np.empty((4, 24), np.float32), np.empty(4, np.float32)
    got_loss, _ = NATIVE.softmax_head(wide_A[:, 3:27], np.ascontiguousarray(W2.T), b2, y, -1.0,
                                      gT, gb2, wide_dH[:, 2:26])
    assert got_loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(wide_dH[:, 2:26], dH, rtol=1e-4, atol=1e-7)
    assert (wide_dH[:, :2] == 7).all() and (wide_dH[:, 26:] == 7).all()
    assert not wide_A[:, :3].any() and not wide_A[:, 27:].any()


@needs_native
def test_softmax_head_lets_a_nan_through_to_the_loss():
    # Divergence must show in the loss (the epoch loop stops on it), not vanish in the ReLU.
    A, W2, b2, y = head_inputs(m=8, h=32, k=10)
    A[3, 5] = np.nan
    finite_rows_right = numpy_head(np.delete(A, 3, axis=0), W2, b2, np.delete(y, 3), -0.1)[2]
    gT, gb2, dH = np.empty((10, 32), np.float32), np.empty(10, np.float32), np.empty((8, 32), np.float32)
    loss, correct = NATIVE.softmax_head(A, np.ascontiguousarray(W2.T), b2, y, -0.1, gT, gb2, dH)
    assert np.isnan(loss) and np.isnan(A[3, 5])
    assert correct == finite_rows_right                     # a NaN row is never classified right


@needs_native
@pytest.mark.parametrize("k, label", [(10, 10), (10, -1), (17, 0), (1, 0)])
def test_softmax_head_refuses_labels_or_class_counts_it_cannot_take(k, label):
    A = np.ones((4, 16), np.float32)
    y = np.array([0, 0, label, 0])
    dH = np.full((4, 16), 5.0, np.float32)
    with pytest.raises(ValueError, match="classes"):
        NATIVE.softmax_head(A, np.ones((k, 16), np.float32), np.zeros(k, np.float32), y, -0.1,
                            np.empty((k, 16), np.float32), np.empty(k, np.float32), dH)
    assert (dH == 5).all()                                  # nothing written


def head_args(**change):
    m, h, k = 4, 16, 3
    args = {"A": np.ones((m, h), np.float32), "W2T": np.ones((k, h), np.float32), "b2": np.zeros(k, np.float32),
            "y": np.zeros(m, np.int64), "scale": -0.1, "gT": np.empty((k, h), np.float32),
            "gb2": np.empty(k, np.float32), "dH": np.empty((m, h), np.float32)}
    args.update(change)
    return args


@needs_native
@pytest.mark.parametrize("change, message", [
    ({"A": np.ones((4, 16))}, "A must be"),                                     # float64
    ({"dH": np.empty((3, 16), np.float32)}, "dH must be"),                      # fewer rows than A
    ({"dH": np.empty((4, 15), np.float32)}, "dH must be"),
    ({"gT": np.empty((3, 8), np.float32)}, "gT must be"),                       # too small for k x h
    ({"W2T": np.ones((16, 3), np.float32).T}, "W2T must be"),                   # not C-contiguous
    ({"b2": np.zeros(2, np.float32)}, "b2 must be"),
    ({"y": np.zeros(5, np.int64)}, "labels"),
    ({"A": np.ones((0, 16), np.float32), "dH": np.empty((0, 16), np.float32), "y": np.zeros(0, np.int64)}, "rows"),
])
def test_softmax_head_refuses_arrays_it_would_read_or_write_out_of_bounds(change, message):
    with pytest.raises(ValueError, match=message):
        NATIVE.softmax_head(**head_args(**change))


# --------------------------------------------------------------------------------------
# in the mlp, and without the library
# --------------------------------------------------------------------------------------


def fit(X, y, seed=0):
    return MLPClassifier(hidden_units=24, epochs=6, batch_size=32, learning_rate=0.1, image_shape=(8, 8),
                         shift_pixels=1, early_stopping_patience=0, seed=seed).fit(X, y)


@needs_native
def test_the_mlp_trains_the_same_model_with_or_without_the_kernels(monkeypatch):
    # The same minibatches and translations (the gather is exact), the same mathematics: the
    # weights agree to float32 rounding, and each path is deterministic.
    X, y = quadrant_squares(600)
    calls = []
    for name in ("gather_shift", "softmax_head"):
        method = getattr(kernels.Kernels, name)
        monkeypatch.setattr(kernels.Kernels, name, lambda self, *a, _m=method, _n=name: (calls.append(_n), _m(self, *a))[1])
    native = fit(X, y)
    assert calls.count("gather_shift") == calls.count("softmax_head") == 6 * 18   # every step: 6 x 570/32
    monkeypatch.undo()
    assert fit(X, y).W1_.tobytes() == native.W1_.tobytes()
    monkeypatch.setattr(kernels, "NATIVE", None)
    plain = fit(X, y)
    for name in ("W1_", "b1_", "W2_", "b2_"):
        np.testing.assert_allclose(getattr(native, name), getattr(plain, name), rtol=1e-3, atol=1e-4)
    assert [e["loss"] for e in native.history_] == pytest.approx([e["loss"] for e in plain.history_], rel=1e-4)
    assert (native.predict(X) == y).mean() >= 0.95


@needs_native
def test_the_mlp_keeps_numpy_for_what_the_kernel_does_not_take(monkeypatch):
    # Regression (one linear output) and more than 16 classes run the numpy output layer.
    calls = []
    head = kernels.Kernels.softmax_head
    monkeypatch.setattr(kernels.Kernels, "softmax_head", lambda self, *a: (calls.append(a[1].shape[0]), head(self, *a))[1])
    rng = np.random.default_rng(0)
    X = rng.random((200, 6), dtype=np.float32)
    MLPClassifier(hidden_units=8, epochs=2, objective="regression", seed=0).fit(X, X[:, 0] * 3)
    MLPClassifier(hidden_units=8, epochs=2, seed=0).fit(X, rng.integers(0, 20, 200))
    assert calls == []
    MLPClassifier(hidden_units=8, epochs=2, seed=0).fit(X, rng.integers(0, 16, 200))   # 16 classes: it does
    assert calls and set(calls) == {16}


def test_a_foreign_or_missing_library_means_numpy(tmp_path, monkeypatch):
    assert kernels.load(tmp_path) is None                               # none built
    (tmp_path / "_kernels.cpython-311-aarch64-linux-gnu.so").write_bytes(b"\x7fELF not this machine's")
    assert kernels.load(tmp_path) is None                               # foreign: skipped
    monkeypatch.setenv("STEPML_KERNELS", "numpy")
    assert kernels.load() is None                                       # switched off


def test_stepml_kernels_numpy_switches_the_library_off_for_a_whole_process():
    code = "from stepml.models import kernels; print(kernels.NATIVE is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"STEPML_KERNELS": "numpy"}, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "True"


def test_aligned_empty_starts_on_a_cache_line():
    for shape in [(3, 5), (512, 512), (7,)]:
        a = kernels.aligned_empty(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.ctypes.data % kernels.ALIGNMENT == 0
