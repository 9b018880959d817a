"""Specification of the built-in numpy models (stepml.models): learning, determinism,
the artefact format, and input / parameter validation. Small synthetic data keeps it fast.

The tabular tests run the algorithms that take any feature vector (linear, mlp); the cnn
has its own file (test_cnn.py), and the training loop shared by all three -- validation
hold-out, early stopping, best weights, time budget -- is specified in
test_training_budget.py."""

import io
import json
import zipfile

import numpy as np
import pytest

import stepml.models.base as base
from stepml.models import (
    ALGORITHMS,
    FORMAT_VERSION,
    CNNClassifier,
    MLPClassifier,
    NotFittedError,
    SoftmaxRegression,
    default_params,
    load_model,
    make_model,
    save_model,
)
from stepml.models.mlp import random_shifts
from tests.unit.model_helpers import quadrant_squares, rewrite

# Small but real settings for each algorithm, so every test runs in well under a second.
# Early stopping is off so that every run lasts exactly `epochs` (it has its own tests).
FAST = {
    "linear": {"epochs": 10, "early_stopping_patience": 0},
    "mlp": {"hidden_units": 32, "epochs": 15, "batch_size": 64, "learning_rate": 0.1,
            "early_stopping_patience": 0},
}
TABULAR = sorted(FAST)


def blobs(n=600, d=10, k=4, seed=0):
    """Gaussian clusters around well-separated centres: linearly separable in practice."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centres[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    X, y = blobs(n=1000)
    return X[:700], y[:700], X[700:], y[700:]


@pytest.fixture(scope="module", params=TABULAR)
def fitted(request, data):
    Xtr, ytr, _, _ = data
    return make_model(request.param, FAST[request.param], seed=3).fit(Xtr, ytr)


def weights(model):
    return [getattr(model, name) for name in model._weight_names]


# --------------------------------------------------------------------------------------
# Learning and the estimator API
# --------------------------------------------------------------------------------------


def test_learns_a_separable_problem(fitted, data):
    _, _, Xte, yte = data
    assert (fitted.predict(Xte) == yte).mean() >= 0.97


def test_fitted_attributes(fitted, data):
    Xtr = data[0]
    assert fitted.n_classes_ == 4
    assert fitted.classes_.tolist() == [0, 1, 2, 3]
    assert fitted.n_features_in_ == Xtr.shape[1]
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in weights(fitted))
    assert len(fitted.history_) == fitted.epochs == fitted.epochs_completed_
    assert fitted.stop_reason_ == "completed"
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]


def test_predict_proba_is_float32_normalised_and_agrees_with_predict(fitted, data):
    Xte = data[2]
    P = fitted.predict_proba(Xte)
    assert P.dtype == np.float32 and P.shape == (len(Xte), 4)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(P.argmax(axis=1), fitted.predict(Xte))
    assert fitted.predict(Xte).dtype == np.int64


def test_prediction_is_chunked_without_changing_results(fitted, data, monkeypatch):
    Xte = data[2]
    whole = fitted.predict_proba(Xte)
    monkeypatch.setattr(base, "PREDICT_BATCH_ROWS", 7)   # 300 rows -> 43 chunks
    # BLAS may pick a different kernel for a different row count: equal up to rounding.
    np.testing.assert_allclose(fitted.predict_proba(Xte), whole, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(fitted.predict(Xte), whole.argmax(axis=1))


def test_predict_on_empty_input(fitted):
    assert fitted.predict_proba(np.zeros((0, 10), np.float32)).shape == (0, 4)


def test_get_params_is_json_and_rebuilds_the_model(fitted):
    params = fitted.get_params()
    assert json.loads(json.dumps(params)) == params
    assert type(fitted)(**params).get_params() == params


def test_on_epoch_reports_progress(data):
    Xtr, ytr = data[0], data[1]
    seen = []
    model = SoftmaxRegression(epochs=3).fit(Xtr, ytr, on_epoch=lambda e, info: seen.append((e, info)))
    assert [e for e, _ in seen] == [1, 2, 3]
    for e, info in seen:
        assert {"epoch", "loss", "seconds", "learning_rate"} <= set(info)
        assert info["epoch"] == e and info["seconds"] >= 0 and np.isfinite(info["loss"])
    lrs = [info["learning_rate"] for _, info in seen]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.05 * model.learning_rate   # decays to ~0
    assert [h["loss"] for h in model.history_] == [info["loss"] for _, info in seen]


def test_exception_in_on_epoch_stops_training(data):
    def stop(epoch, info):
        raise KeyboardInterrupt("budget exceeded")
    with pytest.raises(KeyboardInterrupt):
        MLPClassifier(**FAST["mlp"]).fit(data[0], data[1], on_epoch=stop)


def test_divergence_is_reported_and_leaves_the_model_unfitted(data):
    model = MLPClassifier(hidden_units=16, epochs=3, batch_size=32, learning_rate=50.0, momentum=0.99)
    with pytest.raises(FloatingPointError, match="diverged.*lower learning_rate"):
        model.fit(data[0] * 1000, data[1])
    with pytest.raises(NotFittedError):
        model.predict(data[2])


def test_n_classes_can_exceed_the_labels_seen(data):
    Xtr, ytr = data[0], data[1]
    model = SoftmaxRegression(epochs=2, n_classes=6).fit(Xtr, ytr)
    assert model.n_classes_ == 6 and model.predict_proba(Xtr[:5]).shape == (5, 6)
    with pytest.raises(ValueError, match="n_classes=3"):
        SoftmaxRegression(n_classes=3).fit(Xtr, ytr)


def test_mlp_with_image_augmentation_learns():
    # A one-pixel shift keeps the quadrant, so augmentation must not hurt.
    X, y = quadrant_squares(800)
    model = MLPClassifier(hidden_units=32, epochs=10, batch_size=32, learning_rate=0.05,
                          image_shape=(8, 8), shift_pixels=1, seed=0).fit(X, y)
    assert (model.predict(X) == y).mean() >= 0.95


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------


def shifted(image, dy, dx):
    """Reference translation with zero fill: out[r, c] = image[r - dy, c - dx]."""
    h, w = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_random_shifts_are_translations_with_zero_fill():
    rng = np.random.default_rng(1)
    X = rng.random((200, 5 * 6), dtype=np.float32) + 0.1    # no zeros, so offsets are identifiable
    out = random_shifts(X, (5, 6), 2, np.random.default_rng(7))
    assert out.shape == X.shape and out.dtype == np.float32
    offsets = []
    for x, o in zip(X.reshape(-1, 5, 6), out.reshape(-1, 5, 6)):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(o, shifted(x, dy, dx))]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 15      # offsets spread over the 25 possibilities
    again = random_shifts(X, (5, 6), 2, np.random.default_rng(7))
    np.testing.assert_array_equal(out, again)


def test_fill_shifted_rows_is_random_shifts_of_the_gathered_rows():
    # The mlp's fused gather + translation: the same pixels as random_shifts(X[idx]) for the
    # same draw, also into a column slice of a wider buffer (the mlp's, after its ones).
    rng = np.random.default_rng(3)
    for h, w, shift in [(5, 6, 2), (7, 4, 1), (28, 28, 1), (9, 9, 4)]:
        X = rng.random((40, h * w), dtype=np.float32) + 0.1
        idx = rng.integers(0, 40, 33)
        expected = random_shifts(X[idx], (h, w), shift, np.random.default_rng(9))
        buf = np.full((33, h * w + 3), np.nan, np.float32)
        counts = base.shift_counts(33, shift, np.random.default_rng(9))
        base.fill_shifted_rows(X, idx, (h, w), counts, shift, buf[:, 1:h * w + 1])
        np.testing.assert_array_equal(buf[:, 1:h * w + 1], expected)
        assert np.isnan(buf[:, 0]).all() and np.isnan(buf[:, h * w + 1:]).all()


@pytest.mark.parametrize("layout", ["C", "F", "column slice"])
def test_fill_shifted_rows_at_the_edges_of_the_data_and_for_any_memory_layout(layout):
    # The first and the last image under every offset (their flat shifts reach before and
    # after X's data), from a C-ordered, a Fortran-ordered and a strided X.
    rng = np.random.default_rng(5)
    h, w, shift = 7, 6, 2
    base_X = rng.random((10, h * w + 4), dtype=np.float32) + 0.1
    X = {"C": np.ascontiguousarray(base_X[:, :h * w]), "F": np.asfortranarray(base_X[:, :h * w]),
         "column slice": base_X[:, 2:h * w + 2]}[layout]
    before = X.copy()
    idx = np.array([0, 9] * 60)
    for seed in range(4):
        expected = random_shifts(X[idx], (h, w), shift, np.random.default_rng(seed))
        counts = base.shift_counts(idx.size, shift, np.random.default_rng(seed))
        assert (counts > 0).sum() > 15                     # most of the 25 offsets are used
        np.testing.assert_array_equal(base.fill_shifted_rows(X, idx, (h, w), counts, shift), expected)
    np.testing.assert_array_equal(X, before)               # the input is never written


def test_mlp_momentum_step_is_classical_momentum_with_decoupled_decay():
    # The two-term form P[t+1] = (s[t] + mu) P[t] - mu s[t-1] P[t-1] + G[t] that the mlp runs
    # as one matrix-vector product, against v = mu v + g ; p = s p + v (no decay for biases).
    from stepml.models.mlp import _SGDState
    rng = np.random.default_rng(0)
    d, h, k = 6, 5, 3
    state = _SGDState(d, h, k)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(d, h), (h,), (h, k), (k,)]]
    state.load(*init)
    p = [x.astype(np.float64) for x in init]
    v = [np.zeros_like(x) for x in p]
    mu = 0.9
    for t in range(40):
        lr = 0.1 * (1 + np.cos(np.pi * t / 40)) / 2
        shrink = 1.0 - lr * 1e-2
        g = [(rng.standard_normal(x.shape) * 1e-2).astype(np.float32) for x in p]
        grads = state.grads()
        grads["W1"][...], grads["b1"][...], grads["W2"][...], grads["b2"][...] = g
        state.step(mu, shrink)
        for i in range(4):
            v[i] = mu * v[i] + g[i]
            p[i] = (shrink if i in (0, 2) else 1.0) * p[i] + v[i]
    now = state.params()
    for name, ref in zip(("W1", "b1", "W2", "b2"), p):
        np.testing.assert_allclose(now[name], ref, rtol=0, atol=1e-5)
    W1aug = state.params()["W1aug"]          # [b1; W1; zero rows up to a multiple of 16]
    assert W1aug.shape == (16, h)
    np.testing.assert_array_equal(W1aug[0], now["b1"])
    np.testing.assert_array_equal(W1aug[1:d + 1], now["W1"])
    assert not W1aug[d + 1:].any()


def test_mlp_padding_rows_stay_zero_and_do_not_change_the_model():
    # W1aug is [b1; W1; zero rows] rounded up to a multiple of 16 rows for BLAS; the zero rows
    # meet zero columns of the minibatch buffer, so they never move and the public weights
    # are exactly d x h.
    from stepml.models.mlp import MLPClassifier, padded_rows
    rng = np.random.default_rng(4)
    d = 20                                           # 1 + 20 = 21 -> 32 rows: 11 of padding
    X = rng.random((300, d), dtype=np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(np.int64)
    seen = []

    def on_epoch(epoch, info):
        W1aug = model._state.params()["W1aug"]
        seen.append((W1aug.shape, bool(W1aug[d + 1:].any()), bool(model._work["X"][:, d + 1:].any())))

    model = MLPClassifier(hidden_units=8, epochs=30, batch_size=32, seed=0)
    model.fit(X, y, on_epoch=on_epoch)
    assert padded_rows(d) == 32 and padded_rows(784) == 800 and padded_rows(15) == 16
    assert len(seen) >= 3 and set(seen) == {((32, 8), False, False)}
    assert model.W1_.shape == (d, 8) and model.b1_.shape == (8,)
    assert (model.predict(X) == y).mean() > 0.8


# --------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", TABULAR)
def test_same_seed_gives_identical_weights_and_another_seed_differs(algorithm, data):
    Xtr, ytr = data[0], data[1]
    fit = lambda seed: make_model(algorithm, FAST[algorithm], seed=seed).fit(Xtr, ytr)  # noqa: E731
    a, b, c = fit(11), fit(11), fit(12)
    for wa, wb in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(weights(a), weights(c)))


def test_fit_does_not_touch_the_global_rng(data):
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    MLPClassifier(**FAST["mlp"]).fit(data[0], data[1])
    assert np.random.random() == expected


# --------------------------------------------------------------------------------------
# Artefact: save / load
# --------------------------------------------------------------------------------------


def saved(model, **kwargs):
    buf = io.BytesIO()
    save_model(model, buf, **kwargs)
    return buf.getvalue()


def test_save_load_round_trip_predicts_identically(fitted, data):
    Xte = data[2]
    model = load_model(io.BytesIO(saved(fitted, input_scale=1 / 255, extra={"blas_threads": 2})))
    assert type(model) is type(fitted)
    assert model.get_params() == fitted.get_params()
    np.testing.assert_array_equal(model.predict_proba(Xte), fitted.predict_proba(Xte))
    for wa, wb in zip(weights(model), weights(fitted)):
        np.testing.assert_array_equal(wa, wb)
    assert model.input_scale_ == pytest.approx(1 / 255)
    assert model.metadata_["extra"] == {"blas_threads": 2}
    assert model.metadata_["format_version"] == FORMAT_VERSION
    assert model.metadata_["n_features"] == 10 and model.metadata_["classes"] == [0, 1, 2, 3]
    assert model.history_ == fitted.history_
    assert model.training_summary() == fitted.training_summary()
    assert model.metadata_["training_summary"]["stop_reason"] == "completed"
    assert model.stop_reason_ == fitted.stop_reason_ and model.best_epoch_ == fitted.best_epoch_
    assert model.metadata_["train_flops_per_sample"] == fitted.train_flops_per_sample()


def test_version_1_artefacts_still_load(data):
    model = SoftmaxRegression(epochs=1).fit(data[0], data[1])

    def as_v1(entries, meta):
        meta["format_version"] = 1
        del meta["training_summary"], meta["train_flops_per_sample"]
    old = load_model(io.BytesIO(rewrite(saved(model), as_v1)))
    np.testing.assert_array_equal(old.W_, model.W_)
    with pytest.raises(NotFittedError):
        old.training_summary()


def test_save_load_by_path(fitted, tmp_path):
    path = tmp_path / "model.bin"                      # no ".npz" gets appended
    save_model(fitted, path)
    assert path.exists() and zipfile.is_zipfile(path)
    assert load_model(path).get_params() == fitted.get_params()
    assert load_model(str(path)).input_scale_ == 1.0


def test_missing_file_is_not_disguised(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.npz")


def test_unfitted_model_cannot_be_saved_or_used():
    with pytest.raises(NotFittedError):
        save_model(SoftmaxRegression(), io.BytesIO())
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((1, 3), np.float32))



def _without_meta(blob):
    with np.load(io.BytesIO(blob)) as z:
        entries = {k: z[k] for k in z.files if k != "__meta__"}
    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()


@pytest.mark.parametrize("corrupt, message", [
    (lambda blob: b"", "not a valid"),
    (lambda blob: b"this is not a zip file at all", "not a valid"),
    (lambda blob: blob[: len(blob) // 2], "not a valid"),
    (lambda blob: blob[:200] + bytes(200) + blob[400:], "not a valid"),
    (lambda blob: _without_meta(blob), "no '__meta__' entry"),
    (lambda blob: rewrite(blob, lambda e, m: m.update(format="other")), "format"),
    (lambda blob: rewrite(blob, lambda e, m: m.update(format_version=FORMAT_VERSION + 1)), "newer"),
    (lambda blob: rewrite(blob, lambda e, m: m.update(algorithm="xgboost")), "unknown algorithm"),
    (lambda blob: rewrite(blob, lambda e, m: m["params"].update(epochs=-1)), "epochs"),
    (lambda blob: rewrite(blob, lambda e, m: m.update(n_features=11)), "expected float32"),
    (lambda blob: rewrite(blob, lambda e, m: m.update(classes=[0, 1, 2])), "expected float32"),
    (lambda blob: rewrite(blob, lambda e, m: e.update(b_=e["b_"].astype(np.float64))), "float64"),
    (lambda blob: rewrite(blob, lambda e, m: e.update(b_=np.full(4, np.nan, np.float32))), "NaN"),
    (lambda blob: rewrite(blob, lambda e, m: e.update(extra=np.zeros(3, np.float32))), "do not match"),
    (lambda blob: rewrite(blob, lambda e, m: e.update(W_=np.array([object()], dtype=object))), "not a valid"),
    (lambda blob: rewrite(blob, lambda e, m: m.pop("training_summary")), "training_summary"),
    (lambda blob: rewrite(blob, lambda e, m: m.update(training_summary=[1])), "training_summary"),
    (lambda blob: rewrite(blob, lambda e, m: m["training_summary"].update(stop_reason="bored")), "stop_reason"),
])
def test_corrupt_or_mismatched_artefact_is_rejected(data, corrupt, message):
    model = SoftmaxRegression(epochs=1).fit(data[0], data[1])
    with pytest.raises(ValueError, match=message):
        load_model(io.BytesIO(corrupt(saved(model))))


def test_a_bare_npy_is_rejected():
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    buf.seek(0)
    with pytest.raises(ValueError, match="not a valid"):
        load_model(buf)


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", TABULAR)
@pytest.mark.parametrize("make_bad, message", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 17, np.nan, X), y), "NaN"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 17, np.inf, X), y), "infinity"),
    (lambda X, y: (X[:, 0], y), "2-D"),
    (lambda X, y: (X[None], y), "2-D"),
    (lambda X, y: (X, y[:-1]), "labels"),
    (lambda X, y: (X, y[:, None]), "1-D"),
    (lambda X, y: (X, np.zeros_like(y)), "at least 2"),
    (lambda X, y: (X, y - 1), "negative"),
    (lambda X, y: (X, y + 0.5), "integer"),
    (lambda X, y: (X.astype(str).astype(object) + "x", y), "numeric"),
])
def test_bad_training_inputs_are_rejected(algorithm, make_bad, message, data):
    X, y = make_bad(data[0][:50], data[1][:50])
    with pytest.raises(ValueError, match=message):
        make_model(algorithm, FAST[algorithm], seed=0).fit(X, y)


def test_integral_float_labels_and_float64_features_are_accepted(data):
    X, y = data[0].astype(np.float64), data[1].astype(np.float64)
    assert SoftmaxRegression(epochs=1).fit(X, y).n_classes_ == 4


def test_predict_checks_the_feature_count(fitted):
    with pytest.raises(ValueError, match="fitted with 10"):
        fitted.predict(np.zeros((2, 9), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full((2, 10), np.nan, np.float32))


def test_image_shape_must_match_the_features(data):
    with pytest.raises(ValueError, match="image_shape"):
        MLPClassifier(image_shape=(3, 4)).fit(data[0], data[1])


# --------------------------------------------------------------------------------------
# Registry and parameter validation
# --------------------------------------------------------------------------------------


def test_registry_and_defaults():
    assert ALGORITHMS == {"linear": SoftmaxRegression, "mlp": MLPClassifier, "cnn": CNNClassifier}
    assert isinstance(make_model("linear", {}, seed=5), SoftmaxRegression)
    model = make_model("mlp", {"image_shape": [28, 28], "epochs": 3}, seed=5)
    assert model.seed == 5 and model.epochs == 3 and model.get_params()["image_shape"] == [28, 28]
    assert "seed" not in default_params("mlp") and default_params("linear")["batch_size"] == 128
    for algorithm in ALGORITHMS:
        params = default_params(algorithm)
        assert params["validation_fraction"] == 0.05 and params["early_stopping_patience"] == 3


@pytest.mark.parametrize("algorithm, params, seed, message", [
    ("xgboost", {}, 0, "unknown algorithm 'xgboost'; choose one of: linear, mlp, cnn"),
    ("linear", {"epoch": 3}, 0, "unknown parameter.*epoch.*valid parameters: epochs"),
    ("linear", {"epochs": 0}, 0, "'epochs' must be an integer >= 1"),
    ("linear", {"epochs": 2.5}, 0, "'epochs'"),
    ("linear", {"epochs": True}, 0, "'epochs'"),
    ("linear", {"learning_rate": 0}, 0, "'learning_rate' must be a number > 0"),
    ("linear", {"learning_rate": "fast"}, 0, "'learning_rate'"),
    ("linear", {"l2": -1e-3}, 0, "'l2'"),
    ("linear", {"l2": float("nan")}, 0, "'l2'"),
    ("mlp", {"momentum": 1.0}, 0, "'momentum'"),
    ("mlp", {"image_shape": [28]}, 0, "'image_shape'"),
    ("mlp", {"image_shape": [4, 4], "shift_pixels": 4}, 0, "'shift_pixels'"),
    ("mlp", {"n_classes": 1}, 0, "'n_classes'"),
    ("mlp", {}, -1, "'seed'"),
    ("mlp", {"seed": 2}, 1, "conflicting seeds"),
    ("mlp", [1, 2], 1, "JSON object"),
    ("linear", {"validation_fraction": 0.6}, 0, "'validation_fraction' must be a number >= 0.0 and <= 0.5"),
    ("linear", {"validation_fraction": -0.1}, 0, "'validation_fraction'"),
    ("mlp", {"early_stopping_patience": -1}, 0, "'early_stopping_patience'"),
    ("mlp", {"early_stopping_patience": 1.5}, 0, "'early_stopping_patience'"),
])
def test_make_model_rejects_bad_requests(algorithm, params, seed, message):
    with pytest.raises(ValueError, match=message):
        make_model(algorithm, params, seed)


# --------------------------------------------------------------------------------------
# FLOP accounting
# --------------------------------------------------------------------------------------


def test_train_flops_per_sample_counts_the_matrix_products(fitted):
    d, k = 10, 4
    if fitted.algorithm == "linear":
        expected = 2 * (2 * d * k)                       # X W and X^T G
    else:
        h = fitted.hidden_units
        expected = 2 * (2 * d * h + 3 * h * k)           # X W1, H W2 / H^T dZ, dZ W2^T, X^T dH
    assert fitted.train_flops_per_sample() == expected
    assert fitted.training_summary()["train_flops_per_sample"] == expected
    assert type(fitted)().train_flops_per_sample(784, 10) > 0     # unfitted, dimensions given
    with pytest.raises(NotFittedError):
        type(fitted)().train_flops_per_sample()


@pytest.mark.parametrize("epochs, ran, reason", [(10, 4, "early_stopping"), (6, 6, "completed")])
def test_early_stopping_never_cuts_the_last_patience_epochs_of_the_schedule(monkeypatch, epochs, ran, reason):
    """Validation never improves after epoch 1, so patience 3 runs out after epoch 4: of 10
    planned epochs the last 6 are skipped; of 6 planned, only 2 are left, and finishing them
    (the annealed end of the learning rate) costs less than the patience it took to notice."""
    from tests.unit.model_helpers import synthetic_digits

    X, y, _, _ = synthetic_digits(200, 10, seed=5)
    model = SoftmaxRegression(epochs=epochs, early_stopping_patience=3, validation_fraction=0.1)
    monkeypatch.setattr(model, "_evaluate", lambda X, y, idx: {"val_loss": 0.5, "val_accuracy": 0.9, "val_rmse": None})
    model.fit(X, y)
    assert (len(model.history_), model.stop_reason_) == (ran, reason)


def test_the_kept_epoch_is_the_one_with_the_lowest_validation_loss_not_a_lucky_accuracy(monkeypatch):
    """Epoch 2 scores one validation row more, epoch 4 has the clearly lower loss: on a few
    thousand rows that row is noise, and the smoother loss decides."""
    from tests.unit.model_helpers import synthetic_digits

    X, y, _, _ = synthetic_digits(200, 10, seed=6)
    curve = iter([(0.30, 0.90), (0.25, 0.95), (0.22, 0.94), (0.18, 0.94)])

    def evaluate(X, y, idx):
        loss, accuracy = next(curve)
        return {"val_loss": loss, "val_accuracy": accuracy, "val_rmse": None}

    model = SoftmaxRegression(epochs=4, validation_fraction=0.1)
    monkeypatch.setattr(model, "_evaluate", evaluate)
    model.fit(X, y)
    assert model.best_epoch_ == 4 and model.training_summary()["best_epoch_metric"] == "val_loss"
