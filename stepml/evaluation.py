"""What Score computes: the evaluation of a run's predictions against the true targets, per
model type, with Amazon ML's metric names beside ours, and the quality gate's verdict.

    MULTICLASS  accuracy, MulticlassAvgFScore (macro F1), per class, confusion, log loss, baseline
    BINARY      BinaryAUC, accuracy / precision / recall / F1 at the 0.5 threshold, log loss, baseline
    REGRESSION  RegressionRMSE, MAE, R², residuals, baseline (the training mean)
"""

from __future__ import annotations

import numpy as np

from stepml import predictions
from stepml.errors import DataError
from stepml.metrics import binary_report, classification_report, regression_report
from stepml.storage import Storage

#: Quality-gate fields and the model types they apply to.
GATES = {
    "min_accuracy": ("BINARY", "MULTICLASS"),
    "min_auc": ("BINARY",),
    "max_rmse": ("REGRESSION",),
    "min_coverage": ("BINARY", "MULTICLASS", "REGRESSION"),
}


def evaluate(storage: Storage, descriptor: dict, prediction_key: str, *, missing_rows: int = 0) -> dict:
    """Metrics of the predictions at ``prediction_key`` on the datasource's evaluation rows.

    ``missing_rows`` is how many rows are known to have no prediction (the rows of the fan-out's
    failed shards, within the trigger's tolerance): they are left out of the metrics and
    counted in ``rows_without_prediction``. Any other row without a prediction -- a managed
    engine's output that stops short, say -- is a :class:`DataError`, not a smaller test set.
    """
    if descriptor["kind"] != "csv":  # MNIST: the test split's labels, stored as .npy
        truth = storage.get_npy(descriptor["arrays"]["test_labels"]).astype(np.int64)
        rows, predicted, scores = _classes(storage, prediction_key, descriptor["n_classes"], len(truth), missing_rows)
        report = classification_report(truth[rows], predicted, descriptor["n_classes"], scores=scores)
        return _with_coverage(report, len(rows), len(truth))

    from stepml.tabular.datasource import load_table, target_codes

    model_type = descriptor["model_type"]
    truth = target_codes(load_table(storage, descriptor, "evaluation"), model_type, descriptor["class_labels"])
    if model_type == "REGRESSION":
        rows, values = predictions.read_value_rows(storage.get_bytes(prediction_key))
        _check_rows(rows, len(truth), missing_rows)
        report = regression_report(truth[rows], values, baseline_value=descriptor["target_mean"])
        return _with_coverage(report, len(rows), len(truth))
    rows, predicted, scores = _classes(storage, prediction_key, descriptor["n_classes"], len(truth), missing_rows)
    counts = np.asarray(descriptor["training_class_counts"], dtype=np.float64)
    if model_type == "BINARY":
        report = binary_report(truth[rows], scores[:, 1], baseline_positive_rate=float(counts[1] / counts.sum()))
    else:
        report = classification_report(truth[rows], predicted, descriptor["n_classes"], scores=scores,
                                       baseline_class=descriptor["baseline_class"])
        report["class_labels"] = descriptor["class_labels"]
    return _with_coverage(report, len(rows), len(truth))


def _classes(storage: Storage, key: str, n_classes: int, n_rows: int,
             missing_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, predicted, scores = predictions.read_scored_rows(storage.get_bytes(key), n_classes=n_classes)
    _check_rows(rows, n_rows, missing_rows)
    return rows, predicted, scores


def _check_rows(rows: np.ndarray, n_rows: int, missing_rows: int) -> None:
    """The predictions name only evaluation rows, and all of them but ``missing_rows``."""
    if rows.size and rows[-1] >= n_rows:
        raise DataError(f"predictions name row {int(rows[-1])}; the evaluation data has {n_rows} rows")
    if rows.size == 0:
        raise DataError(f"no predictions for any of the {n_rows} evaluation rows")
    if n_rows - rows.size != missing_rows:
        expected = f"{n_rows - missing_rows} (all but the {missing_rows} rows of failed shards)" if missing_rows \
            else f"all {n_rows}"
        raise DataError(f"the predictions cover {rows.size} of the {n_rows} evaluation rows; expected {expected}")


def _with_coverage(report: dict, evaluated: int, total: int) -> dict:
    return {**report, "rows_evaluated": evaluated, "rows_without_prediction": total - evaluated}


def headline(metrics: dict, model_type: str) -> dict:
    """The few numbers a run is judged by (returned by Score and published as metrics)."""
    if model_type == "REGRESSION":
        return {"rmse": metrics["RegressionRMSE"], "r2": metrics["r2"]}
    if model_type == "BINARY":
        return {"accuracy": metrics["accuracy"], "auc": metrics["BinaryAUC"], "f1": metrics["f1"]}
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def gate_failures(gate: dict, metrics: dict) -> list[str]:
    """Why the model fails the trigger's quality gate (empty: it passes)."""
    failures = []
    if "min_accuracy" in gate and metrics["accuracy"] < gate["min_accuracy"]:
        failures.append(f"accuracy {metrics['accuracy']:.4f} is below the gate {gate['min_accuracy']}")
    if "min_auc" in gate and (metrics["BinaryAUC"] is None or metrics["BinaryAUC"] < gate["min_auc"]):
        failures.append(f"BinaryAUC {metrics['BinaryAUC']} is below the gate {gate['min_auc']}")
    if "max_rmse" in gate and metrics["RegressionRMSE"] > gate["max_rmse"]:
        failures.append(f"RegressionRMSE {metrics['RegressionRMSE']:.6g} is above the gate {gate['max_rmse']}")
    if "min_coverage" in gate:
        evaluated, missing = metrics["rows_evaluated"], metrics["rows_without_prediction"]
        coverage = evaluated / (evaluated + missing)
        if coverage < gate["min_coverage"]:
            failures.append(f"coverage {coverage:.4f} ({evaluated:,} of {evaluated + missing:,} evaluation rows "
                            f"have a prediction) is below the gate {gate['min_coverage']}")
    return failures
