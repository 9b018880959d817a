"""Specification of the model types (objective multiclass / binary / regression), the linear
model's sparse FeatureMatrix input, its L1 / shuffle / size options, Amazon ML's ``sgd.*``
training parameters, and the artefact (format 3) that carries all of it.

Synthetic problems with a known answer keep every test well under a second."""

import io

import numpy as np
import pytest

from stepml.models import (
    FORMAT_VERSION,
    LinearModel,
    MLPClassifier,
    load_model,
    make_model,
    save_model,
)
from stepml.models.amazonml_params import from_amazon_ml, max_sparse_columns
from stepml.models.linear import model_bytes
from stepml.models.mlp import MAX_DENSE_FEATURES
from stepml.tabular.features import FeatureMatrix
from tests.unit.model_helpers import rewrite

N_DENSE, N_CATEGORIES, LEVELS = 3, 4, 5          # 4 one-hot columns of 5 levels: 20 sparse columns


def tabular(n=1000, seed=0):
    """A FeatureMatrix (3 dense features, 4 categorical ones one-hot in the sparse block) and
    the linear score ``s`` that generates the targets (with its true weights)."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, N_DENSE)).astype(np.float32)
    levels = rng.integers(0, LEVELS, size=(n, N_CATEGORIES))
    index = (levels + LEVELS * np.arange(N_CATEGORIES)).astype(np.int32)
    value = np.ones(index.shape, np.float32)
    X = FeatureMatrix(dense, index, value, N_CATEGORIES * LEVELS)
    a = np.array([1.5, -2.0, 1.0])
    effects = rng.normal(scale=1.0, size=N_CATEGORIES * LEVELS)
    score = dense @ a + effects[index].sum(axis=1)
    return X, score - score.mean()


def binary_target(score, seed=0):
    """Labels from a logistic model with a steep slope: the classes are ~95% separable."""
    rng = np.random.default_rng(seed + 1)
    return (rng.random(score.size) < 1 / (1 + np.exp(-4 * score))).astype(np.int64)


def regression_target(score, seed=0):
    rng = np.random.default_rng(seed + 2)
    return 50.0 + 10.0 * score + rng.normal(scale=1.0, size=score.size)    # R^2 ~ 0.99


def r2(y, pred):
    return 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)


FAST = {
    "linear": {"epochs": 20, "learning_rate": 1.0, "early_stopping_patience": 0},
    "mlp": {"hidden_units": 32, "epochs": 30, "batch_size": 64, "learning_rate": 0.1,
            "early_stopping_patience": 0},
}
# (algorithm, input form) pairs that must learn every objective
LEARNERS = [("linear", "dense"), ("linear", "features"), ("mlp", "dense")]


@pytest.fixture(scope="module")
def problem():
    X, score = tabular(n=1200)
    train, test = np.arange(900), np.arange(900, 1200)
    return X, score, train, test


def as_input(X, form):
    return X if form == "features" else X.to_dense()


@pytest.mark.parametrize("algorithm, form", LEARNERS)
def test_binary_learns_a_logistic_problem(algorithm, form, problem):
    X, score, train, test = problem
    y = binary_target(score)
    model = make_model(algorithm, {**FAST[algorithm], "objective": "binary"}, seed=1)
    model.fit(as_input(X.rows(train), form), y[train])
    assert model.n_classes_ == 2 and model.classes_.tolist() == [0, 1]
    proba = model.predict_proba(as_input(X.rows(test), form))
    assert proba.shape == (300, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert ((proba[:, 1] > 0.5) == model.predict(as_input(X.rows(test), form))).all()  # positive-class score
    assert (model.predict(as_input(X.rows(test), form)) == y[test]).mean() >= 0.9


@pytest.mark.parametrize("algorithm, form", LEARNERS)
def test_regression_learns_a_linear_problem(algorithm, form, problem):
    X, score, train, test = problem
    y = regression_target(score)
    model = make_model(algorithm, {**FAST[algorithm], "objective": "regression"}, seed=1)
    model.fit(as_input(X.rows(train), form), y[train])
    pred = model.predict(as_input(X.rows(test), form))
    assert pred.dtype == np.float32 and pred.shape == (300,)
    assert r2(y[test], pred) >= 0.95
    assert model.target_mean_ == pytest.approx(y[train].mean())       # learnt in fit, undone in predict
    assert model.classes_ is None and model.n_classes_ is None and model.n_outputs_ == 1


def test_regression_history_and_summary_use_the_rmse(problem):
    X, score, train, _ = problem
    y = regression_target(score)
    model = make_model("linear", {"epochs": 10, "learning_rate": 1.0, "objective": "regression",
                                  "validation_fraction": 0.2, "early_stopping_patience": 0}, seed=0)
    model.fit(X.rows(train), y[train])
    for h in model.history_:
        assert h["train_accuracy"] is None and h["val_accuracy"] is None
        assert h["val_rmse"] > 0 and h["val_loss"] > 0
    summary = model.training_summary()
    assert summary["objective"] == "regression" and summary["best_epoch_metric"] == "val_rmse"
    rmses = [h["val_rmse"] for h in model.history_]
    assert summary["best_val_rmse"] == min(rmses) == rmses[summary["best_epoch"] - 1]
    assert summary["best_val_accuracy"] is None
    # the validation RMSE is in the target's units (noise sd 1, target sd ~20)
    assert 0.5 < summary["best_val_rmse"] < 2.0


def test_classification_summary_names_its_metric(problem):
    X, score, train, _ = problem
    model = make_model("linear", {"epochs": 2, "objective": "binary"}, seed=0)
    model.fit(X.rows(train), binary_target(score)[train])
    assert model.training_summary()["best_epoch_metric"] == "val_loss"
    assert all(h["val_rmse"] is None for h in model.history_)
    off = make_model("linear", {"epochs": 2, "validation_fraction": 0}, seed=0)
    assert off.fit(X.rows(train), binary_target(score)[train]).training_summary()["best_epoch_metric"] \
        == "last_epoch"


def test_regression_has_no_probabilities(problem):
    X, score, train, _ = problem
    model = make_model("linear", {"epochs": 1, "objective": "regression"}, seed=0)
    model.fit(X.rows(train), regression_target(score)[train])
    with pytest.raises(ValueError, match="predict_proba is for classification.*regression.*predict()"):
        model.predict_proba(X.rows(train))


def test_a_constant_regression_target_is_predicted():
    X = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    model = make_model("linear", {"epochs": 2, "objective": "regression"}, seed=0).fit(X, np.full(50, 7.0))
    np.testing.assert_allclose(model.predict(X), 7.0)


@pytest.mark.parametrize("objective, y, message", [
    ("binary", np.array([0, 1, 2] * 10), "objective 'binary' needs y in {0, 1}"),
    ("binary", np.ones(30), "at least 2 distinct classes"),
    ("regression", np.array([1.0, np.nan] * 15), "NaN or infinity .*row 1"),
    ("regression", np.array(["a", "b"] * 15), "numeric"),
    ("regression", np.zeros((30, 1)), "1-D"),
])
def test_bad_targets_are_rejected(objective, y, message):
    X = np.zeros((30, 2), np.float32)
    with pytest.raises(ValueError, match=message):
        make_model("linear", {"objective": objective}, seed=0).fit(X, y)


@pytest.mark.parametrize("algorithm, params, message", [
    ("linear", {"objective": "ranking"}, "'objective' must be one of 'multiclass', 'binary', 'regression'"),
    ("linear", {"objective": "binary", "n_classes": 3}, "'n_classes' must be null or 2"),
    ("mlp", {"objective": "regression", "n_classes": 10}, "'n_classes' must be null with objective 'regression'"),
    ("cnn", {"objective": "binary"}, "'objective' must be 'multiclass' for the cnn"),
    ("linear", {"shuffle": "yes"}, "'shuffle' must be true or false"),
    ("linear", {"l1": -1}, "'l1'"),
    ("linear", {"max_model_bytes": 0}, "'max_model_bytes'"),
])
def test_bad_model_type_parameters_are_rejected(algorithm, params, message):
    with pytest.raises(ValueError, match=message):
        make_model(algorithm, params, seed=0)


# --------------------------------------------------------------------------------------
# The linear model on a FeatureMatrix
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["multiclass", "regression"])
def test_feature_matrix_training_equals_dense_training(objective, problem):
    X, score, train, test = problem
    y = regression_target(score) if objective == "regression" else np.digitize(score, [-1, 0, 1])
    params = {"epochs": 3, "learning_rate": 0.3, "l2": 1e-3, "objective": objective}
    sparse = make_model("linear", params, seed=4).fit(X.rows(train), y[train])
    dense = make_model("linear", params, seed=4).fit(X.rows(train).to_dense(), y[train])
    assert sparse.Ws_.shape == (20, sparse.n_outputs_) and sparse.W_.shape == (3, sparse.n_outputs_)
    np.testing.assert_allclose(sparse.W_, dense.W_[:N_DENSE], atol=1e-5)
    np.testing.assert_allclose(sparse.Ws_, dense.W_[N_DENSE:], atol=1e-5)
    np.testing.assert_allclose(sparse.decision_function(X.rows(test)),
                               dense.decision_function(X.rows(test).to_dense()), atol=1e-4)
    # and the FeatureMatrix model also takes the dense expansion
    np.testing.assert_allclose(sparse.decision_function(X.rows(test).to_dense()),
                               sparse.decision_function(X.rows(test)), atol=1e-5)


def test_padding_slots_and_real_values_in_the_sparse_block(problem):
    X, score, train, _ = problem
    rng = np.random.default_rng(5)
    value = X.value * rng.uniform(0.5, 2.0, size=X.value.shape).astype(np.float32)
    value[:, -1] = 0.0                                        # last slot: padding (index 0, value 0)
    index = X.index.copy()
    index[:, -1] = 0
    Xp = FeatureMatrix(X.dense, index, value, X.n_sparse)
    y = np.digitize(score, [0])
    a = make_model("linear", {"epochs": 2}, seed=0).fit(Xp.rows(train), y[train])
    b = make_model("linear", {"epochs": 2}, seed=0).fit(Xp.rows(train).to_dense(), y[train])
    np.testing.assert_allclose(a.Ws_, b.W_[N_DENSE:], atol=1e-5)


def test_feature_matrix_shape_must_match_the_fitted_one(problem):
    X, score, train, _ = problem
    model = make_model("linear", {"epochs": 1}, seed=0).fit(X.rows(train), np.digitize(score[train], [0]))
    wider = FeatureMatrix(X.dense, X.index, X.value, X.n_sparse + 1)
    with pytest.raises(ValueError, match="3 dense and 21 sparse features but the model was fitted with "
                                         "3 dense and 20 sparse"):
        model.predict(wider)
    fewer = FeatureMatrix(X.dense[:, :2].copy(), X.index, X.value, X.n_sparse)
    with pytest.raises(ValueError, match="2 dense and 20 sparse"):
        model.predict(fewer)
    with pytest.raises(ValueError, match="has 22 features but the model was fitted with 23"):
        model.predict(np.zeros((2, 22), np.float32))


@pytest.mark.parametrize("change, message", [
    (lambda X: FeatureMatrix(X.dense, X.index + 20, X.value, X.n_sparse), "sparse index 2\\d at row 0, slot 0 is outside"),
    (lambda X: FeatureMatrix(X.dense, X.index, np.where(X.index == 7, np.nan, X.value).astype(np.float32),
                             X.n_sparse), "sparse values contains NaN"),
    (lambda X: FeatureMatrix(np.full_like(X.dense, np.inf), X.index, X.value, X.n_sparse),
     "dense block contains NaN or infinity \\(first at row 0, column 0\\)"),
])
def test_bad_feature_matrices_are_rejected(change, message, problem):
    X, score, train, _ = problem
    with pytest.raises(ValueError, match=message):
        make_model("linear", {}, seed=0).fit(change(X.rows(train)), np.digitize(score[train], [0]))


def test_mlp_takes_a_feature_matrix_by_expanding_it_but_not_a_huge_one(problem):
    X, score, train, test = problem
    y = np.digitize(score, [0])
    a = make_model("mlp", FAST["mlp"], seed=0).fit(X.rows(train), y[train])
    b = make_model("mlp", FAST["mlp"], seed=0).fit(X.rows(train).to_dense(), y[train])
    np.testing.assert_array_equal(a.W1_, b.W1_)
    np.testing.assert_array_equal(a.predict(X.rows(test)), b.predict(X.rows(test).to_dense()))
    huge = FeatureMatrix(X.dense, X.index, X.value, MAX_DENSE_FEATURES)
    with pytest.raises(ValueError, match=f"at most {MAX_DENSE_FEATURES} features.*'linear'"):
        MLPClassifier().fit(huge, y)
    with pytest.raises(ValueError, match="not a FeatureMatrix"):
        make_model("cnn", {}, seed=0).fit(X, y)


# --------------------------------------------------------------------------------------
# L1, shuffling, model size
# --------------------------------------------------------------------------------------


def test_l1_makes_weights_exactly_zero():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 30)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.5 * X[:, 2] > 0).astype(np.int64)     # 27 irrelevant features
    plain = LinearModel(epochs=5, batch_size=300, objective="binary").fit(X, y)
    lasso = LinearModel(epochs=5, batch_size=300, objective="binary", l1=0.05).fit(X, y)
    assert np.count_nonzero(plain.W_) == plain.W_.size
    zero_rows = np.all(lasso.W_ == 0, axis=1)
    assert zero_rows[3:].mean() >= 0.8 and not zero_rows[:3].any()
    assert (lasso.predict(X) == y).mean() >= 0.95


def test_l1_on_the_sparse_block_zeroes_the_rows_it_touches():
    X, score = tabular(n=600, seed=3)
    y = np.digitize(score, [0])
    junk = FeatureMatrix(X.dense, X.index, X.value, 1000)      # columns 20..999 never occur
    model = make_model("linear", {"epochs": 5, "l1": 0.02, "objective": "binary"}, seed=0).fit(junk, y)
    assert np.count_nonzero(model.Ws_[20:]) == 0
    assert np.count_nonzero(model.Ws_[:20]) < model.Ws_[:20].size      # weak levels cut to 0 too
    assert (model.predict(junk) == y).mean() >= 0.85


def test_shuffle_false_takes_the_rows_in_input_order():
    X = np.arange(40, dtype=np.float32)[:, None] / 40
    y = np.arange(40) % 2
    model = LinearModel(epochs=2, batch_size=8, shuffle=False, validation_fraction=0)
    seen = []
    train_batch = model._train_batch
    model._train_batch = lambda Xb, yb, lr, rng: (seen.append(Xb[:, 0].copy()), train_batch(Xb, yb, lr, rng))[1]
    model.fit(X, y)
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate([X[:, 0], X[:, 0]]))
    # so the seed changes nothing but the hold-out; shuffled training depends on it
    def fit(seed, shuffle):
        return LinearModel(epochs=2, shuffle=shuffle, validation_fraction=0, seed=seed).fit(*blobs())
    np.testing.assert_array_equal(fit(1, False).W_, fit(2, False).W_)
    assert not np.array_equal(fit(1, True).W_, fit(2, True).W_)


def blobs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    return (rng.normal(scale=3, size=(3, 4))[y] + rng.normal(size=(300, 4))).astype(np.float32), y


def test_max_model_bytes_is_enforced_before_training():
    n, k = 40, 2
    rng = np.random.default_rng(0)
    y = np.arange(n) % k

    def fm(n_sparse):
        return FeatureMatrix(rng.normal(size=(n, 3)).astype(np.float32),
                             rng.integers(0, n_sparse, size=(n, 2)).astype(np.int32),
                             np.ones((n, 2), np.float32), n_sparse)
    cap = max_sparse_columns(100_000, 3, k)
    assert cap == 100_000 // 8 - 3
    params = {"sgd.maxMLModelSizeInBytes": "100000", "sgd.maxPasses": 1}
    fitted = make_model("linear", params, seed=0).fit(fm(cap), y)
    assert model_bytes(fitted.n_features_in_, k) == fitted.W_.nbytes + fitted.Ws_.nbytes <= 100_000
    with pytest.raises(ValueError, match="would take 100008 bytes .* max_model_bytes .* is 100000"):
        make_model("linear", params, seed=0).fit(fm(cap + 1), y)
    with pytest.raises(ValueError, match="too small"):
        max_sparse_columns(100_000, 20_000, 2)
    assert max_sparse_columns(None, 3, 2) is None


# --------------------------------------------------------------------------------------
# Amazon ML sgd.* parameters
# --------------------------------------------------------------------------------------


def test_amazon_ml_defaults_and_string_values():
    params, extra = from_amazon_ml({})
    assert params == {"epochs": 10, "shuffle": True, "l1": 0.0, "l2": 1e-6, "max_model_bytes": 33_554_432}
    assert extra == {"max_model_bytes": 33_554_432}
    mnist = {"sgd.maxPasses": "100", "sgd.l2RegularizationAmount": "1e-4", "sgd.shuffleType": "auto"}
    params, extra = from_amazon_ml(mnist)
    assert params == {"epochs": 100, "shuffle": True, "l1": 0.0, "l2": 1e-4, "max_model_bytes": 33_554_432}
    params, _ = from_amazon_ml({"sgd.maxPasses": 3, "sgd.shuffleType": "none",
                                "sgd.l1RegularizationAmount": 0.5, "sgd.maxMLModelSizeInBytes": "100000",
                                "batch_size": 64})
    assert params == {"epochs": 3, "shuffle": False, "l1": 0.5, "l2": 0.0, "max_model_bytes": 100_000,
                      "batch_size": 64}


def test_make_model_translates_amazon_ml_parameters():
    model = make_model("linear", {"sgd.maxPasses": "7", "sgd.l2RegularizationAmount": "0.001",
                                  "objective": "binary", "learning_rate": 0.5}, seed=3)
    assert (model.epochs, model.l2, model.l1, model.shuffle, model.max_model_bytes) == (7, 0.001, 0.0, True, 33_554_432)
    assert model.objective == "binary" and model.learning_rate == 0.5
    assert not any(k.startswith("sgd.") for k in model.get_params())
    assert make_model("linear", {"epochs": 4}, seed=0).l2 == 0.0          # no sgd.* keys: stepml defaults
    with pytest.raises(ValueError, match="apply to algorithm 'linear' only"):
        make_model("mlp", {"sgd.maxPasses": "3"}, seed=0)


@pytest.mark.parametrize("params, message", [
    ({"sgd.maxPasses": "0"}, "'sgd.maxPasses' must be an integer from 1 to 100; got '0'"),
    ({"sgd.maxPasses": "101"}, "'sgd.maxPasses' must be an integer from 1 to 100"),
    ({"sgd.maxPasses": "10.5"}, "'sgd.maxPasses'"),
    ({"sgd.maxPasses": 10.0}, "'sgd.maxPasses'"),
    ({"sgd.maxPasses": True}, "'sgd.maxPasses'"),
    ({"sgd.maxPasses": "ten"}, "'sgd.maxPasses'"),
    ({"sgd.shuffleType": "random"}, "'sgd.shuffleType' must be 'auto' or 'none'; got 'random'"),
    ({"sgd.shuffleType": True}, "'sgd.shuffleType'"),
    ({"sgd.l2RegularizationAmount": "1.5"}, "'sgd.l2RegularizationAmount' must be a number from 0 to 1"),
    ({"sgd.l2RegularizationAmount": "-1e-4"}, "'sgd.l2RegularizationAmount'"),
    ({"sgd.l1RegularizationAmount": "nan"}, "'sgd.l1RegularizationAmount'"),
    ({"sgd.l1RegularizationAmount": float("inf")}, "'sgd.l1RegularizationAmount'"),
    ({"sgd.l1RegularizationAmount": "1e-3", "sgd.l2RegularizationAmount": "1e-4"},
     "Amazon ML accepts L1 or L2 regularisation, not both"),
    ({"sgd.maxMLModelSizeInBytes": "99999"},
     "'sgd.maxMLModelSizeInBytes' must be an integer from 100000 to 2147483648"),
    ({"sgd.maxMLModelSizeInBytes": 2147483649}, "'sgd.maxMLModelSizeInBytes'"),
    ({"sgd.maxpasses": "3"}, ("unknown Amazon ML parameter.*sgd.maxpasses; valid: sgd.maxPasses, "
                              "sgd.shuffleType, sgd.l1RegularizationAmount")),
    ({"sgd.maxPasses": "3", "epochs": 3}, "'sgd.maxPasses' and 'epochs' both set the same thing"),
    ({"sgd.shuffleType": "none", "shuffle": False}, "'sgd.shuffleType' and 'shuffle'"),
    ({"sgd.l1RegularizationAmount": "0.1", "l2": 0.1}, "'sgd.l1RegularizationAmount' and 'l2'"),
    ({"sgd.maxMLModelSizeInBytes": "100000", "max_model_bytes": 100000}, "'max_model_bytes'"),
])
def test_bad_amazon_ml_parameters_are_rejected(params, message):
    with pytest.raises(ValueError, match=message):
        from_amazon_ml(params)
    with pytest.raises(ValueError, match=message):
        make_model("linear", params, seed=0)


def test_an_l1_amount_turns_off_the_default_l2():
    assert from_amazon_ml({"sgd.l1RegularizationAmount": "0.01"})[0]["l2"] == 0.0
    assert from_amazon_ml({"sgd.l1RegularizationAmount": "0"})[0]["l2"] == 1e-6


# --------------------------------------------------------------------------------------
# Artefact (format 3)
# --------------------------------------------------------------------------------------


def saved(model, **kwargs):
    buf = io.BytesIO()
    save_model(model, buf, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("algorithm, form, objective", [
    ("linear", "dense", "binary"), ("linear", "dense", "regression"),
    ("linear", "features", "multiclass"), ("linear", "features", "binary"),
    ("linear", "features", "regression"), ("mlp", "dense", "regression"), ("mlp", "dense", "binary"),
])
def test_save_load_round_trip_for_each_model_type(algorithm, form, objective, problem):
    X, score, train, test = problem
    y = {"binary": binary_target(score), "regression": regression_target(score),
         "multiclass": np.digitize(score, [-1, 0, 1])}[objective]
    model = make_model(algorithm, {**FAST[algorithm], "epochs": 2, "objective": objective}, seed=0)
    model.fit(as_input(X.rows(train), form), y[train])
    loaded = load_model(io.BytesIO(saved(model)))
    assert loaded.metadata_["format_version"] == FORMAT_VERSION == 3
    assert loaded.get_params() == model.get_params() and loaded.objective == objective
    Xt = as_input(X.rows(test), form)
    np.testing.assert_array_equal(loaded.predict(Xt), model.predict(Xt))
    assert loaded.training_summary() == model.training_summary()
    assert loaded.train_flops_per_sample() == model.train_flops_per_sample()
    if objective == "regression":
        assert loaded.metadata_["classes"] == [] and loaded.target_std_ == model.target_std_
    else:
        np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    if form == "features":
        assert loaded.metadata_["n_sparse_features"] == 20
        np.testing.assert_array_equal(loaded.Ws_, model.Ws_)
        with pytest.raises(ValueError, match="sparse features but the model was fitted"):
            loaded.predict(FeatureMatrix(Xt.dense, Xt.index, Xt.value, 21))


def test_the_artefact_carries_a_large_feature_pipeline(problem):
    X, score, train, _ = problem
    model = make_model("linear", {"epochs": 1}, seed=0).fit(X.rows(train), np.digitize(score[train], [0]))
    pipeline = {"version": 1, "steps": [{"name": f"Var{i:03d}", "quantiles": [i / 7 + j for j in range(49)],
                                         "label": "é✓"} for i in range(3000)]}
    blob = saved(model, pipeline=pipeline, extra={"run_id": "r1"})
    loaded = load_model(io.BytesIO(blob))
    assert loaded.pipeline_ == pipeline and loaded.metadata_["extra"] == {"run_id": "r1"}
    assert len(blob) < 4 * 1024**2                       # stored as UTF-8 (~3 MB), not UTF-32
    assert load_model(io.BytesIO(saved(loaded))).pipeline_ == pipeline      # kept on re-save
    assert load_model(io.BytesIO(saved(make_model("linear", {"epochs": 1}, seed=0).fit(
        X.rows(train), np.digitize(score[train], [0]))))).pipeline_ is None
    with pytest.raises(ValueError, match="pipeline must be a JSON object"):
        saved(model, pipeline=[1])


@pytest.mark.parametrize("change, message", [
    (lambda e, m: m.update(target=None), "regression model has classes \\[\\] and a 'target'"),
    (lambda e, m: m.update(target={"mean": 0, "std": 0}), "'target'"),
    (lambda e, m: m.update(classes=[0, 1]), "regression model has classes"),
    (lambda e, m: e.update(__pipeline__=np.frombuffer(b"[1]", np.uint8)), "JSON object"),
    (lambda e, m: e.update(__pipeline__=np.frombuffer(b"\xff{", np.uint8)), "not UTF-8 JSON"),
])
def test_corrupt_format_3_fields_are_rejected(change, message):
    X = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    model = LinearModel(epochs=1, objective="regression").fit(X, X[:, 0])
    with pytest.raises(ValueError, match=message):
        load_model(io.BytesIO(rewrite(saved(model, pipeline={"a": 1}), change)))


def test_sparse_block_fields_are_checked():
    X, score = tabular(n=100)
    model = LinearModel(epochs=1).fit(X, np.digitize(score, [0]))
    with pytest.raises(ValueError, match="do not match"):
        load_model(io.BytesIO(rewrite(saved(model), lambda e, m: m.update(n_sparse_features=None))))
    with pytest.raises(ValueError, match="expected float32\\[2, 2\\]"):
        load_model(io.BytesIO(rewrite(saved(model), lambda e, m: m.update(n_sparse_features=21))))
    with pytest.raises(ValueError, match="n_sparse_features"):
        load_model(io.BytesIO(rewrite(saved(model), lambda e, m: m.update(n_sparse_features=-1))))


def test_format_2_artefacts_still_load():
    X, y = blobs()
    model = LinearModel(epochs=2).fit(X, y)

    def as_v2(entries, meta):
        meta["format_version"] = 2
        for key in ("n_sparse_features", "sparse_width", "target"):
            del meta[key]
        del meta["params"]["objective"], meta["params"]["l1"], meta["params"]["shuffle"]
        del meta["params"]["max_model_bytes"]
    old = load_model(io.BytesIO(rewrite(saved(model), as_v2)))
    assert old.objective == "multiclass" and old.pipeline_ is None
    np.testing.assert_array_equal(old.predict_proba(X), model.predict_proba(X))
    assert old.training_summary() == model.training_summary()
