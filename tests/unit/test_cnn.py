"""The convolutional network (stepml.models.cnn): its building blocks against naive
references, exact gradients, learning, determinism, the artefact and parameter limits."""

import io

import numpy as np
import pytest

import stepml.models.cnn as cnn
from stepml.models import CNNClassifier, load_model, make_model, save_model
from stepml.models.base import softmax_cross_entropy
from stepml.models.cnn import col2im, im2col, im2col_pool_order, pool_bias_relu, pool_bias_relu_backward
from tests.unit.model_helpers import rewrite, synthetic_digits

# Few, largish minibatches: the tests stay fast even where BLAS threads compete for the cores.
SMALL = {"conv1_filters": 8, "conv2_filters": 16, "kernel_size": 5, "hidden_units": 64,
         "epochs": 5, "batch_size": 64, "learning_rate": 0.1, "image_shape": [28, 28]}


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(n_train=800, n_test=300, seed=11)


@pytest.fixture(scope="module")
def fitted(digits):
    return make_model("cnn", SMALL, seed=1).fit(digits[0], digits[1])


def weights(model):
    return {name: getattr(model, name) for name in model._weight_names}


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def naive_conv(A, K, k):
    """Valid cross-correlation of A (C, H, W, m) with K (F, C*k*k), one output pixel at a time."""
    c, h, w, m = A.shape
    Kr = K.reshape(-1, c, k, k)
    out = np.zeros((Kr.shape[0], h - k + 1, w - k + 1, m))
    for r in range(h - k + 1):
        for s in range(w - k + 1):
            out[:, r, s] = np.einsum("cijm,fcij->fm", A[:, r:r + k, s:s + k], Kr)
    return out


def test_im2col_is_a_convolution_and_col2im_its_adjoint():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 7, 6, 5))                   # (C, H, W, m)
    K = rng.standard_normal((3, 4 * 9))
    cols = im2col(A, 3)
    np.testing.assert_allclose((K @ cols).reshape(3, 5, 4, 5), naive_conv(A, K, 3), atol=1e-12)
    # <cols, D> = <A, col2im(D)> for every A and D.
    D = rng.standard_normal(cols.shape)
    dA = col2im(D, A.shape, 3)
    assert dA.shape == A.shape
    assert np.sum(cols * D) == pytest.approx(np.sum(A * dA), rel=1e-12)


def test_pool_order_patches_give_the_convolution_at_each_pooling_corner():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((9, 8, 2))               # 7 x 6 output: the odd last row is dropped
    K = rng.standard_normal((3, 9))
    Y = (K @ im2col_pool_order(images, 3, 3, 3)).reshape(3, 2, 2, 3, 3, 2)
    reference = naive_conv(images[None], K, 3)
    for qi in (0, 1):
        for qj in (0, 1):
            np.testing.assert_allclose(Y[:, qi, qj], reference[:, qi:6:2, qj:6:2], atol=1e-12)


def test_pooling_matches_a_reference_and_routes_gradients_to_one_maximum():
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((3, 4, 6, 2)).astype(np.float32)     # (F, Ho, Wo, m)
    Y[0, :2, :2, 0] = 0.7                              # a tie: all four corners equal
    bias = rng.standard_normal(3).astype(np.float32)
    P, masks = pool_bias_relu(cnn._corners(Y, 2, 3), bias)
    windows = Y.reshape(3, 2, 2, 3, 2, 2)
    reference = np.maximum(windows.max(axis=(2, 4)) + bias[:, None, None, None], 0)
    np.testing.assert_array_equal(P, reference)
    dY = np.empty_like(Y)
    gbias = pool_bias_relu_backward(np.ones_like(P), P, masks, cnn._corners(dY, 2, 3))
    window_sums = dY.reshape(3, 2, 2, 3, 2, 2).sum(axis=(2, 4))
    np.testing.assert_array_equal(window_sums, (P > 0).astype(np.float32))   # one winner per window
    np.testing.assert_array_equal(gbias, (P > 0).sum(axis=(1, 2, 3)))
    if P[0, 0, 0, 0] > 0:
        assert dY[0, 0, 0, 0] == 1 and dY[0, :2, :2, 0].sum() == 1          # the first of the tied


@pytest.mark.parametrize("arch, shape", [
    ({"conv1_filters": 3, "conv2_filters": 4, "kernel_size": 3, "hidden_units": 5}, (11, 10)),
    ({"conv1_filters": 2, "conv2_filters": 3, "kernel_size": 3, "hidden_units": 4}, (12, 13)),  # odd conv2
    ({"conv1_filters": 3, "conv2_filters": 0, "kernel_size": 2, "hidden_units": 0}, (11, 10)),
])
def test_gradients_match_finite_differences(arch, shape):
    # The training step in float64 (lr 1, no momentum or decay): the update is minus the gradient.
    rng = np.random.default_rng(3)
    d = shape[0] * shape[1]
    model = CNNClassifier(**arch, image_shape=shape, shift_pixels=0, momentum=0.0, l2=0.0)
    model.n_classes_ = 4
    model._init_weights(d, 4, rng)
    for name in model._weight_names:
        w = getattr(model, name)
        setattr(model, name, w.astype(np.float64) + 0.1 * rng.standard_normal(w.shape))
        model._velocity[name] = np.zeros(w.shape)
    X, y = rng.random((6, d)), rng.integers(0, 4, 6)

    def loss():
        flat_t, _ = model._conv_forward(X, training=False)
        return softmax_cross_entropy(model._dense_forward(flat_t)[1], y)[1]

    before = {name: getattr(model, name).copy() for name in model._weight_names}
    model._train_batch(X.copy(), y, 1.0, rng)
    gradients = {name: before[name] - getattr(model, name) for name in model._weight_names}
    for name, w in before.items():
        setattr(model, name, w)
    for name, grad in gradients.items():
        p = getattr(model, name)
        for index in list(np.ndindex(p.shape))[:40]:
            old = p[index]
            p[index] = old + 1e-6
            up = loss()
            p[index] = old - 1e-6
            down = loss()
            p[index] = old
            # float32 scratch buffers in the first layer's backward pass bound the agreement
            assert (up - down) / 2e-6 == pytest.approx(grad[index], abs=1e-6), (name, index)


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------


def test_learns_synthetic_digits(fitted, digits):
    accuracy = (fitted.predict(digits[2]) == digits[3]).mean()
    assert accuracy >= 0.9                                    # chance is 0.1
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in weights(fitted).values())
    P = fitted.predict_proba(digits[2])
    assert P.dtype == np.float32 and P.shape == (300, 10)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("arch, names", [
    ({"conv2_filters": 0}, {"conv1_W_", "conv1_b_", "dense_W_", "dense_b_", "out_W_", "out_b_"}),
    ({"hidden_units": 0}, {"conv1_W_", "conv1_b_", "conv2_W_", "conv2_b_", "out_W_", "out_b_"}),
])
def test_optional_layers(arch, names, digits):
    model = make_model("cnn", {**SMALL, **arch, "epochs": 4}, seed=0).fit(digits[0], digits[1])
    assert set(model._weight_names) == names
    assert (model.predict(digits[2]) == digits[3]).mean() > 0.5


def test_same_seed_same_weights_other_seed_differs(digits):
    params = {**SMALL, "epochs": 1}
    fit = lambda seed: make_model("cnn", params, seed=seed).fit(digits[0][:300], digits[1][:300])  # noqa: E731
    a, b, c = fit(4), fit(4), fit(5)
    for name in a._weight_names:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.conv1_W_, c.conv1_W_)


def test_results_do_not_depend_on_the_elementwise_thread_count(digits, monkeypatch):
    params = {**SMALL, "epochs": 1}
    fit = lambda: make_model("cnn", params, seed=4).fit(digits[0][:200], digits[1][:200])  # noqa: E731
    monkeypatch.setattr(cnn, "ELEMENTWISE_THREADS", 1)
    one = fit()
    monkeypatch.setattr(cnn, "ELEMENTWISE_THREADS", 3)
    monkeypatch.setattr(cnn, "_MIN_ELEMENTS_PER_THREAD", 1)    # split even tiny arrays
    three = fit()
    for name in one._weight_names:
        np.testing.assert_array_equal(getattr(one, name), getattr(three, name))
    np.testing.assert_array_equal(one.predict_proba(digits[2]), three.predict_proba(digits[2]))


def test_prediction_runs_in_bounded_chunks_with_the_same_result(fitted, digits, monkeypatch):
    whole = fitted.predict_proba(digits[2])
    monkeypatch.setattr(cnn, "PREDICT_CHUNK_BYTES", 1)      # one image per chunk
    np.testing.assert_allclose(fitted.predict_proba(digits[2][:20]), whole[:20], rtol=1e-4, atol=1e-6)


def test_flops_per_sample_from_the_architecture(fitted):
    # 28 -> conv5 24 -> pool 12 -> conv5 8 -> pool 4; 4*4*16 = 256 features -> 64 -> 10
    conv1 = 24 * 24 * 25 * 1 * 8
    conv2 = 8 * 8 * 25 * 8 * 16
    dense = 256 * 64 + 64 * 10
    assert fitted.train_flops_per_sample() == 2 * (2 * conv1 + 3 * conv2 + 3 * dense)
    assert CNNClassifier(image_shape=(28, 28)).train_flops_per_sample(784, 10) == 6_237_696   # defaults


# --------------------------------------------------------------------------------------
# Artefact
# --------------------------------------------------------------------------------------


def saved(model):
    buf = io.BytesIO()
    save_model(model, buf, input_scale=1 / 255, extra={"blas_threads": 2})
    return buf.getvalue()


def test_save_load_round_trip(fitted, digits):
    model = load_model(io.BytesIO(saved(fitted)))
    assert isinstance(model, CNNClassifier) and model.get_params() == fitted.get_params()
    np.testing.assert_array_equal(model.predict_proba(digits[2]), fitted.predict_proba(digits[2]))
    meta = model.metadata_
    assert meta["params"]["image_shape"] == [28, 28] and meta["params"]["conv2_filters"] == 16
    assert meta["input_scale"] == pytest.approx(1 / 255) and meta["classes"] == list(range(10))
    assert meta["training_summary"] == fitted.training_summary()
    assert meta["weights"]["conv2_W_"] == [16, 200]



@pytest.mark.parametrize("change, message", [
    (lambda e, m: e.update(conv2_W_=np.zeros((9, 200), np.float32)), r"conv2_W_.*expected float32\[16, 200\]"),
    (lambda e, m: e.pop("conv2_W_"), "do not match"),
    (lambda e, m: e.pop("dense_b_"), "do not match"),
    (lambda e, m: m["params"].update(conv2_filters=0), "do not match"),
    (lambda e, m: m["params"].update(kernel_size=3), "expected float32"),
    (lambda e, m: m["params"].update(image_shape=[16, 49]), "expected float32"),
    (lambda e, m: m["params"].update(image_shape=[28, 27]), "image_shape"),
    (lambda e, m: m["params"].update(image_shape=None), "image_shape"),
    (lambda e, m: m["params"].update(image_shape=[4, 196]), "too small"),
    (lambda e, m: m["params"].update(conv1_filters=10_000), "conv1_filters"),
    (lambda e, m: m.update(format_version=99), "newer"),
    (lambda e, m: e.update(out_b_=np.full(10, np.inf, np.float32)), "NaN or infinity"),
])
def test_corrupt_or_mismatched_cnn_artefacts_are_rejected(fitted, change, message):
    with pytest.raises(ValueError, match=message):
        load_model(io.BytesIO(rewrite(saved(fitted), change)))


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("params, message", [
    ({"conv1_filters": 0}, "'conv1_filters'"),
    ({"conv1_filters": 257}, "'conv1_filters'"),
    ({"conv2_filters": -1}, "'conv2_filters'"),
    ({"kernel_size": 12}, "'kernel_size'"),
    ({"hidden_units": 4097}, "'hidden_units'"),
    ({"epochs": 101}, "'epochs'"),
    ({"batch_size": 4097}, "'batch_size'"),
    ({"learning_rate": 0}, "'learning_rate'"),
    ({"momentum": 1}, "'momentum'"),
    ({"shift_pixels": 9}, "'shift_pixels'"),
    ({"image_shape": [28, 28], "shift_pixels": 8, "kernel_size": 3}, None),     # allowed
    ({"image_shape": [6, 6], "shift_pixels": 6}, "'shift_pixels'"),
    ({"image_shape": [8, 8], "kernel_size": 5}, "too small"),            # 4 -> pool 2 -> conv 5 impossible
    ({"validation_fraction": 0.9}, "'validation_fraction'"),
])
def test_parameter_ranges(params, message):
    if message is None:
        make_model("cnn", params, seed=0)
        return
    with pytest.raises(ValueError, match=message):
        make_model("cnn", params, seed=0)


def test_image_shape_is_optional_for_a_trigger_but_required_to_fit(digits):
    model = make_model("cnn", {}, seed=0)                    # triggers validate without data
    with pytest.raises(ValueError, match="needs parameter 'image_shape'"):
        model.fit(digits[0], digits[1])
    with pytest.raises(ValueError, match="784 features"):
        make_model("cnn", {"image_shape": [28, 28]}, seed=0).fit(digits[0][:, :700], digits[1])


def test_a_network_too_big_for_memory_is_refused_before_training(digits):
    huge = {"conv1_filters": 256, "conv2_filters": 256, "kernel_size": 3, "hidden_units": 4096,
            "batch_size": 4096, "image_shape": [28, 28]}
    with pytest.raises(ValueError, match="GiB to train.*lower batch_size"):
        make_model("cnn", huge, seed=0).fit(digits[0][:50], digits[1][:50])
