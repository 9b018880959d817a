"""The training loop every built-in algorithm shares (stepml.models.base): the validation
hold-out and curve, early stopping, keeping the best weights, the time budget and the run's
summary. Synthetic MNIST look-alikes are images, so linear, mlp and cnn all take them."""

import io
import math
import time

import numpy as np
import pytest

import stepml.models.base as base
from stepml.models import STOP_REASONS, load_model, make_model, save_model
from tests.unit.model_helpers import synthetic_digits

# Small settings per algorithm: an epoch over ~1,000 rows takes milliseconds.
SMALL = {
    "linear": {},
    "mlp": {"hidden_units": 32, "image_shape": [28, 28]},
    "cnn": {"conv1_filters": 4, "conv2_filters": 0, "kernel_size": 5, "hidden_units": 16,
            "batch_size": 64, "image_shape": [28, 28]},
}
ALGORITHMS = sorted(SMALL)


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(n_train=1000, n_test=300, seed=3)


def model_for(algorithm, **params):
    return make_model(algorithm, {**SMALL[algorithm], **params}, seed=params.pop("seed", 0))


class FakeClock:
    """A clock that only moves when a minibatch is trained (``step`` seconds each), so the
    budget logic can be checked exactly, independent of the machine's speed."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        return self.now

    def slow_down(self, model):
        train_batch = model._train_batch

        def timed(*args):
            self.now += self.step
            return train_batch(*args)
        model._train_batch = timed
        return model


# --------------------------------------------------------------------------------------
# Validation hold-out and curve
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_validation_curve_is_recorded_and_best_epoch_reported(algorithm, digits):
    X, y = digits[0], digits[1]
    seen = []
    model = model_for(algorithm, epochs=3, early_stopping_patience=0)
    model.fit(X, y, on_epoch=lambda e, info: seen.append(info))
    assert [info["epoch"] for info in seen] == [1, 2, 3]
    for info in model.history_:
        assert 0.0 <= info["val_accuracy"] <= 1.0 and math.isfinite(info["val_loss"])
        assert info["partial"] is False and info["rows"] == 950
    summary = model.training_summary()
    assert summary["validation_rows"] == 50 and summary["training_rows"] == 950
    assert summary["stop_reason"] == "completed" and summary["epochs_completed"] == 3
    best = model.history_[model.best_epoch_ - 1]
    assert summary["best_epoch"] == model.best_epoch_
    assert summary["best_val_accuracy"] == best["val_accuracy"] == max(h["val_accuracy"] for h in model.history_)
    assert summary["seconds"] == model.fit_seconds_ > 0
    # The validation score is what predict() would score on those rows.
    train_idx, val_idx = model._validation_split(y, 10)
    if model.best_epoch_ == 3:
        assert best["val_accuracy"] == pytest.approx((model.predict(X[val_idx]) == y[val_idx]).mean())


def test_validation_split_is_stratified_seeded_and_disjoint():
    y = np.repeat(np.arange(5), [200, 100, 40, 10, 1])
    model = make_model("linear", {"validation_fraction": 0.1}, seed=4)
    train, val = model._validation_split(y, 5)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(y.size))
    assert np.bincount(y[val], minlength=5).tolist() == [20, 10, 4, 1, 0]   # a class of 1 stays in training
    again = make_model("linear", {"validation_fraction": 0.1}, seed=4)._validation_split(y, 5)[1]
    other = make_model("linear", {"validation_fraction": 0.1}, seed=5)._validation_split(y, 5)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_validation_can_be_switched_off(algorithm, digits):
    model = model_for(algorithm, epochs=2, validation_fraction=0).fit(digits[0], digits[1])
    assert all(h["val_loss"] is None and h["val_accuracy"] is None for h in model.history_)
    summary = model.training_summary()
    assert summary["training_rows"] == 1000 and summary["validation_rows"] == 0
    assert summary["best_epoch"] == 2 and summary["best_val_accuracy"] is None


# --------------------------------------------------------------------------------------
# Early stopping and best weights
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_early_stopping_triggers_on_a_plateau(algorithm, digits):
    # A learning rate of ~0: the validation score cannot move, so patience 1 ends epoch 2.
    model = model_for(algorithm, epochs=20, learning_rate=1e-9, early_stopping_patience=1)
    model.fit(digits[0], digits[1])
    assert model.stop_reason_ == "early_stopping"
    assert model.epochs_completed_ == len(model.history_) < 20
    assert model.training_summary()["stop_reason"] == "early_stopping"


def test_patience_zero_never_stops_early(digits):
    model = model_for("linear", epochs=4, learning_rate=1e-9, early_stopping_patience=0)
    assert model.fit(digits[0], digits[1]).stop_reason_ == "completed" and len(model.history_) == 4


def test_best_weights_are_restored(digits):
    X, y = digits[0], digits[1]
    model = model_for("linear", epochs=4, early_stopping_patience=0)
    snapshots = {}

    def sabotage(epoch, info):
        snapshots[epoch] = model.W_.copy()
        if epoch == 3:
            model.W_ *= -10.0          # the last epoch starts from a terrible model
    model.fit(X, y, on_epoch=sabotage)
    scores = [h["val_accuracy"] for h in model.history_]
    assert scores[3] < max(scores[:3])
    assert model.best_epoch_ in (1, 2, 3)
    np.testing.assert_array_equal(model.W_, snapshots[model.best_epoch_])
    assert model.training_summary()["best_val_accuracy"] == scores[model.best_epoch_ - 1]


# --------------------------------------------------------------------------------------
# Time budget
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_small_time_budget_stops_training_in_time(algorithm, digits):
    budget = 0.4
    model = model_for(algorithm, epochs=100, batch_size=16, early_stopping_patience=0)
    started = time.perf_counter()
    model.fit(digits[0], digits[1], time_budget_s=budget)
    elapsed = time.perf_counter() - started
    assert model.stop_reason_ == "time_budget"
    assert model.epochs_completed_ >= 1 and len(model.history_) < 100
    assert elapsed < budget + 0.25          # one minibatch of slack, plus a loaded machine's jitter
    assert model.training_summary()["time_budget_s"] == budget
    assert (model.predict(digits[2]) == digits[3]).mean() > 0.3           # chance: 0.1


def test_budget_compresses_the_schedule_and_stops_before_the_deadline(digits, monkeypatch):
    clock = FakeClock(step=0.01)                     # 10 ms per minibatch, 10 minibatches per epoch
    monkeypatch.setattr(base, "_clock", clock)
    model = clock.slow_down(model_for("linear", epochs=20, batch_size=95, early_stopping_patience=0))
    model.fit(digits[0], digits[1], time_budget_s=0.55)
    # After epoch 1 (0.1 s) the 19 planned epochs clearly do not fit: the cosine is re-aimed
    # at the end of epoch 4, the last one predicted to fit, and training stops there.
    assert model.stop_reason_ == "time_budget" and model.epochs_completed_ == 4
    assert clock.now <= 0.55
    lrs = [h["learning_rate"] for h in model.history_]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.01 * model.learning_rate
    assert model.training_summary()["sgd_steps"] == 40


def test_budget_cuts_an_epoch_that_would_overrun(digits, monkeypatch):
    clock = FakeClock(step=0.01)
    monkeypatch.setattr(base, "_clock", clock)
    model = clock.slow_down(model_for("linear", epochs=5, batch_size=95))
    model.fit(digits[0], digits[1], time_budget_s=0.05)
    assert clock.now <= 0.05
    assert model.stop_reason_ == "time_budget" and model.epochs_completed_ == 0
    (only,) = model.history_
    assert only["partial"] is True and 0 < only["rows"] < 950 and only["val_accuracy"] is not None
    assert model.training_summary()["partial_epoch"] is True
    model.predict(digits[2])                          # a usable model all the same


def test_even_an_impossible_budget_trains_one_step(digits):
    model = model_for("mlp", epochs=3).fit(digits[0], digits[1], time_budget_s=1e-9)
    assert model.stop_reason_ == "time_budget" and model.training_summary()["sgd_steps"] == 1
    assert model.predict(digits[2]).shape == (300,)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_ample_budget_changes_nothing(algorithm, digits):
    X, y = digits[0], digits[1]
    plain = model_for(algorithm, epochs=2, seed=5).fit(X, y)
    budgeted = model_for(algorithm, epochs=2, seed=5).fit(X, y, time_budget_s=3600)
    assert budgeted.stop_reason_ == plain.stop_reason_ == "completed"
    for name in plain._weight_names:
        np.testing.assert_array_equal(getattr(plain, name), getattr(budgeted, name))
    assert [h["learning_rate"] for h in plain.history_] == [h["learning_rate"] for h in budgeted.history_]


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf"), "10", True])
def test_bad_budgets_are_rejected(budget, digits):
    with pytest.raises(ValueError, match="time_budget_s"):
        model_for("linear").fit(digits[0], digits[1], time_budget_s=budget)


def test_summary_survives_the_artefact(digits, monkeypatch):
    clock = FakeClock(step=0.01)
    monkeypatch.setattr(base, "_clock", clock)
    model = clock.slow_down(model_for("linear", epochs=20, batch_size=95))
    model.fit(digits[0], digits[1], time_budget_s=0.55)
    buf = io.BytesIO()
    save_model(model, buf, input_scale=1 / 255)
    loaded = load_model(io.BytesIO(buf.getvalue()))
    summary = loaded.training_summary()
    assert summary == model.training_summary()
    assert summary["stop_reason"] in STOP_REASONS and summary["stop_reason"] == "time_budget"
    assert loaded.stop_reason_ == "time_budget" and loaded.best_epoch_ == model.best_epoch_
    assert summary["epochs_planned"] == 20 and summary["epochs_completed"] == 4
