"""The evaluation report page and its charts, per model type, on small synthetic runs in moto S3:
the charts that apply are there as valid PNGs (and embedded in the page), the others are not,
user text is escaped, MNIST gets the 2016 comparison, rows missing from the predictions are
handled by their row numbers."""

from __future__ import annotations

import base64
import io
import json
import re

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image                      # Pillow comes with matplotlib

from stepml import evaluation, mnist
from stepml.datasource import create_image_datasource
from stepml.reporting import CHARTS, charts, write_report
from stepml.reporting import evaluated as evaluated_rows
from stepml.reporting.npyrows import read_rows
from stepml.storage import Storage
from stepml.tabular import datasource as tds
from stepml.trigger import validate
from tests import tabular_data

HOSTILE = "<script>alert(1)</script>"
RUN = "r1"
PREDICTIONS = f"runs/{RUN}/predictions/predictions.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION = {"confusion_matrix", "per_class", "confidence"}


@pytest.fixture
def storage():
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="report-test")
        yield Storage("report-test", boto3.client("s3", region_name="us-east-1"))


# -- building small runs -------------------------------------------------------------------
def image_datasource(storage: Storage, n_test: int = 120) -> dict:
    files = mnist.synthetic_mnist(n_train=60, n_test=n_test, seed=3)
    for name, raw in files.items():
        storage.put_bytes(f"in/{name}", raw)
    return create_image_datasource(storage, RUN, {name: f"in/{name}" for name in files})


def csv_datasource(storage: Storage, data: bytes, data_schema: dict, model_type: str) -> dict:
    storage.put_bytes("d/schema.json", json.dumps(data_schema).encode())
    storage.put_bytes("d/train.csv", data)
    run = validate({"version": "1", "dataset": {"kind": "csv", "schema": "d/schema.json",
                                                "training": {"data": "d/train.csv"}},
                    "model": {"type": model_type}})
    files = tds.locate_inputs(storage, run["dataset"], run["model"])
    return tds.create_csv_datasource(storage, RUN, {"files": files}, run["dataset"], run["model"])


def truth_of(storage: Storage, descriptor: dict, model_type: str) -> np.ndarray:
    if descriptor["kind"] != "csv":
        return storage.get_npy(descriptor["arrays"]["test_labels"]).astype(np.int64)
    return tds.target_codes(tds.load_table(storage, descriptor, "evaluation"), model_type, descriptor["class_labels"])


def put_class_predictions(storage: Storage, truth: np.ndarray, n_classes: int, *, rows: np.ndarray | None = None,
                          signal: float = 2.5, seed: int = 0) -> None:
    """Softmax scores that favour the true class (most answers right, some wrong), for ``rows``."""
    rows = np.arange(truth.size) if rows is None else rows
    logits = np.random.default_rng(seed).normal(size=(rows.size, n_classes))
    logits[np.arange(rows.size), truth[rows]] += signal
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = np.column_stack([rows, scores.argmax(axis=1), scores])
    header = "row,predicted_label," + ",".join(f"score_{c}" for c in range(n_classes))
    write_table(storage, table, header, ["%d", "%d"] + ["%.6f"] * n_classes)


def put_value_predictions(storage: Storage, truth: np.ndarray, seed: int = 0) -> None:
    values = truth * 0.95 + np.random.default_rng(seed).normal(0, 0.1 * truth.std(), truth.size)
    write_table(storage, np.column_stack([np.arange(truth.size), values]), "row,predicted_value", ["%d", "%.9g"])


def write_table(storage: Storage, table: np.ndarray, header: str, fmt: list[str]) -> None:
    out = io.StringIO()
    np.savetxt(out, table, fmt=fmt, delimiter=",", header=header, comments="")
    storage.put_bytes(PREDICTIONS, out.getvalue().encode())


def history(model_type: str, epochs: int = 6) -> list[dict]:
    out = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "epochs": epochs, "loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
               "train_accuracy": None, "val_accuracy": None, "val_rmse": None}
        if model_type == "REGRESSION":
            row["val_rmse"] = 10.0 / epoch
        else:
            row.update(train_accuracy=1 - 0.5 / epoch, val_accuracy=1 - 0.6 / epoch)
        out.append(row)
    return out


def make_report(storage: Storage, descriptor: dict, model_type: str, *, engine: str = "builtin",
                dataset: dict | None = None, parameters: dict | None = None, missing_rows: int = 0) -> dict:
    """A report.json as Score writes it (the fields the page reads)."""
    with_history = engine == "builtin"
    return {
        "run_id": RUN,
        "status": "SUCCEEDED",
        "created_at": "2026-11-28T20:46:11.665+00:00",
        "code_version": "0.1.0",
        "dataset": {**(dataset or {"kind": descriptor["kind"]}), "train_rows": descriptor["train_rows"],
                    "test_rows": descriptor["test_rows"], "reused_from": None},
        "model": {"type": model_type, "engine": engine, "algorithm": "mlp" if with_history else "xgboost",
                  "parameters": parameters or {}, "seed": 7},
        "training": {"algorithm": "mlp", "history": history(model_type) if with_history else [],
                     "summary": {"epochs_completed": 6, "epochs_planned": 6, "stop_reason": "completed",
                                 "best_epoch": 5} if with_history else None},
        "metrics": evaluation.evaluate(storage, descriptor, PREDICTIONS, missing_rows=missing_rows),
        "cost": {"currency": "USD", "total_usd": 0.000421, "complete": True,
                 "lines": [{"item": "Lambda compute (arm64)", "quantity": 30.5, "unit": "GB-second",
                            "unit_price_usd": 0.0000133334, "usd": 0.000407},
                           {"item": "Step Functions state transitions", "quantity": 8, "unit": "transition",
                            "unit_price_usd": 0.000025, "usd": 0.0002}],
                 "prices": "us-east-1 on-demand list prices"},
        "seconds_per_step": {"PrepareData": 0.1, "CreateDataSource": 1.2, "Train": 20.5, "BatchPredict": 0.4},
        "wall_seconds": 31.5,
    }


# -- checking what was written -------------------------------------------------------------
def png_size(raw: bytes) -> tuple[int, int]:
    assert raw[:8] == PNG_MAGIC
    image = Image.open(io.BytesIO(raw))
    image.load()                           # decodes every pixel: a truncated file fails here
    return image.size


def check_report(storage: Storage, outputs: dict, expected: set[str]) -> str:
    """The charts in ``expected`` are valid PNGs beside the page and embedded in it; no other
    chart exists. Returns the page."""
    prefix = f"runs/{RUN}/report/"
    assert outputs["report_html"] == prefix + "report.html"
    assert sorted(outputs["report_charts"]) == sorted(f"{prefix}{name}.png" for name in expected)
    written = {key.rsplit("/", 1)[-1] for key in storage.list_keys(prefix)}
    assert written == {"report.html"} | {f"{name}.png" for name in expected}
    page = storage.get_bytes(prefix + "report.html").decode("utf-8")
    assert storage.head(prefix + "report.html")["ContentType"].startswith("text/html")
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(expected)
    for name in expected:
        raw = storage.get_bytes(f"{prefix}{name}.png")
        width, height = png_size(raw)
        assert 200 <= width <= 2000 and 150 <= height <= 2000, (name, width, height)
        assert base64.b64encode(raw).decode() in embedded, name
        assert f'id="{name}"' in page
    for name in set(CHARTS) - expected:
        assert f'id="{name}"' not in page
    # self-contained: nothing is fetched, nothing runs
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    return page


# -- per model type ------------------------------------------------------------------------
def test_multiclass_images_get_every_classification_chart_the_misclassified_grid_and_the_2016_line(storage):
    descriptor = image_datasource(storage)
    truth = truth_of(storage, descriptor, "MULTICLASS")
    put_class_predictions(storage, truth, 10)
    report = make_report(storage, descriptor, "MULTICLASS", dataset={"kind": "mnist", "source": "s3",
                                                                       "s3_prefix": "data/mnist/"},
                         parameters={"note": HOSTILE})
    page = check_report(storage, write_report(storage, RUN, report, descriptor, PREDICTIONS),
                        CLASSIFICATION | {"misclassified", "training_curves"})
    assert "Against Amazon ML, 2016, on MNIST" in page
    assert "91.6% accuracy, about $2.80, about 3 hours" in page
    assert f"This run:</strong> {100 * report['metrics']['accuracy']:.2f}% accuracy, $0.00042 estimated, 31.5 s" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for text in ("Lambda compute (arm64)", "Step Functions state transitions", "$0.00042", "mlp", "seed",
                 "120 evaluation", "Train"):
        assert text in page, text


def test_multiclass_csv_escapes_a_hostile_class_label_and_dataset_name_and_has_no_image_grid(storage):
    data, data_schema = tabular_data.wines()
    data = data.replace(b"rose", HOSTILE.encode())
    descriptor = csv_datasource(storage, data, data_schema, "MULTICLASS")
    assert HOSTILE in descriptor["class_labels"]
    truth = truth_of(storage, descriptor, "MULTICLASS")
    put_class_predictions(storage, truth, descriptor["n_classes"], signal=1.5)
    report = make_report(storage, descriptor, "MULTICLASS",
                         dataset={"kind": "csv", "schema": "d/schema.json", "training": {"data": f"d/{HOSTILE}.csv"}})
    page = check_report(storage, write_report(storage, RUN, report, descriptor, PREDICTIONS),
                        CLASSIFICATION | {"training_curves"})
    assert HOSTILE not in page
    assert "d/&lt;script&gt;alert(1)&lt;/script&gt;.csv" in page
    assert "Amazon ML, 2016" not in page          # not MNIST


def test_binary_gets_the_roc_curve_with_its_auc(storage):
    data, data_schema = tabular_data.banking()
    descriptor = csv_datasource(storage, data, data_schema, "BINARY")
    truth = truth_of(storage, descriptor, "BINARY")
    put_class_predictions(storage, truth, 2, signal=1.2)
    report = make_report(storage, descriptor, "BINARY")
    page = check_report(storage, write_report(storage, RUN, report, descriptor, PREDICTIONS),
                        CLASSIFICATION | {"roc", "training_curves"})
    assert f"{report['metrics']['BinaryAUC']:.4g}" in page        # the AUC tile
    assert "ROC curve" in page and "Amazon ML, 2016" not in page


def test_the_roc_curve_and_its_auc_match_the_metrics(storage):
    data, data_schema = tabular_data.banking()
    descriptor = csv_datasource(storage, data, data_schema, "BINARY")
    truth = truth_of(storage, descriptor, "BINARY")
    put_class_predictions(storage, truth, 2, signal=1.2)
    rows = evaluated_rows.load(storage, descriptor, PREDICTIONS, "BINARY")
    fpr, tpr, auc = rows.roc()
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and (np.diff(fpr) >= 0).all()
    assert auc == pytest.approx(evaluation.evaluate(storage, descriptor, PREDICTIONS)["BinaryAUC"], abs=1e-12)


def test_regression_gets_predicted_against_actual_and_residuals_but_no_class_charts(storage):
    data, data_schema = tabular_data.houses()
    descriptor = csv_datasource(storage, data, data_schema, "REGRESSION")
    truth = truth_of(storage, descriptor, "REGRESSION")
    put_value_predictions(storage, truth)
    report = make_report(storage, descriptor, "REGRESSION", engine="sagemaker")   # no per-epoch history
    page = check_report(storage, write_report(storage, RUN, report, descriptor, PREDICTIONS),
                        {"predicted_vs_actual", "residuals"})
    assert "RMSE (RegressionRMSE)" in page
    assert "No training curves: the sagemaker engine recorded no per-epoch history." in page


# -- rows missing from the predictions, edges ----------------------------------------------
def test_truth_is_matched_by_the_row_column_when_shards_are_missing(storage):
    """Rows 10-39 have no prediction (a failed shard). Every other answer is right: matched by
    row number the report finds no mistake; matched by position it would find many."""
    descriptor = image_datasource(storage)
    truth = truth_of(storage, descriptor, "MULTICLASS")
    kept = np.r_[0:10, 40:truth.size]
    put_class_predictions(storage, truth, 10, rows=kept, signal=30.0)
    rows = evaluated_rows.load(storage, descriptor, PREDICTIONS, "MULTICLASS")
    assert np.array_equal(rows.rows, kept) and rows.expected_rows == truth.size and rows.correct.all()
    report = make_report(storage, descriptor, "MULTICLASS", dataset={"kind": "mnist", "source": "download"},
                         missing_rows=30)
    report["batch_prediction"] = {"failed_shard_count": 1}
    page = check_report(storage, write_report(storage, RUN, report, descriptor, PREDICTIONS),
                        CLASSIFICATION | {"training_curves"})            # no mistakes: no grid
    assert f"{kept.size:,} of {truth.size:,}" in page
    assert "No misclassified examples" in page and "1 prediction shard(s) failed" in page


@pytest.mark.parametrize("model_type", ["MULTICLASS", "BINARY", "REGRESSION"])
def test_rows_missing_beyond_the_failed_shards_are_an_error_not_a_smaller_test_set(storage, model_type):
    """Only the failed shards' rows may lack a prediction (Score passes their count); a
    managed engine's output that stops short must not be scored on what is left."""
    if model_type == "MULTICLASS":
        descriptor = image_datasource(storage)
    else:
        data, data_schema = tabular_data.banking() if model_type == "BINARY" else tabular_data.houses()
        descriptor = csv_datasource(storage, data, data_schema, model_type)
    truth = truth_of(storage, descriptor, model_type)
    kept = np.arange(truth.size - 5)                          # the last 5 rows never came back
    if model_type == "REGRESSION":
        write_table(storage, np.column_stack([kept, truth[kept]]), "row,predicted_value", ["%d", "%.9g"])
    else:
        put_class_predictions(storage, truth, descriptor["n_classes"], rows=kept)
    with pytest.raises(evaluation.DataError, match=f"cover {kept.size} of the {truth.size} evaluation rows; "
                                                  f"expected all {truth.size}"):
        evaluation.evaluate(storage, descriptor, PREDICTIONS)
    with pytest.raises(evaluation.DataError, match=r"expected \d+ \(all but the 3 rows of failed shards\)"):
        evaluation.evaluate(storage, descriptor, PREDICTIONS, missing_rows=3)
    metrics = evaluation.evaluate(storage, descriptor, PREDICTIONS, missing_rows=5)
    assert metrics["rows_evaluated"] == kept.size and metrics["rows_without_prediction"] == 5


def test_a_chart_that_fails_leaves_a_note_and_every_other_chart(storage, monkeypatch):
    data, data_schema = tabular_data.banking()
    descriptor = csv_datasource(storage, data, data_schema, "BINARY")
    put_class_predictions(storage, truth_of(storage, descriptor, "BINARY"), 2)

    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(charts, "roc_curve", broken)
    page = check_report(storage, write_report(storage, RUN, make_report(storage, descriptor, "BINARY"), descriptor,
                                              PREDICTIONS), CLASSIFICATION | {"training_curves"})
    assert "Chart not drawn (ROC curve): RuntimeError: no ink" in page


def test_the_misclassified_grid_reads_only_the_rows_it_shows(storage):
    array = np.arange(50 * 6 * 5, dtype=np.uint8).reshape(50, 30)
    storage.put_npy("x/a.npy", array)
    assert np.array_equal(read_rows(storage, "x/a.npy", np.array([49, 0, 7])), array[[49, 0, 7]])


def test_many_classes_keep_the_charts_bounded():
    k = 100
    rng = np.random.default_rng(0)
    f1 = rng.random(k)
    width, height = png_size(charts.per_class_scores(rng.random(k), rng.random(k), f1, rng.integers(1, 50, k),
                                                     [f"class {i} {'x' * 40}" for i in range(k)]))
    assert height <= 1400 and width <= 1000
    width, height = png_size(charts.confusion_matrix(rng.integers(0, 50, (k, k)), [str(i) for i in range(k)]))
    assert max(width, height) <= 1300
    width, height = png_size(charts.predicted_vs_actual(rng.normal(size=200_000), rng.normal(size=200_000)))
    assert max(width, height) <= 700


def test_labels_with_dollars_and_control_characters_are_drawn_literally():
    """Mathtext is off: "$x$" is not a formula (an unbalanced "$" would otherwise raise)."""
    labels = ["$x$", "a$b", "tab\there", "\x00"]
    png_size(charts.confusion_matrix(np.eye(4, dtype=np.int64) * 3, labels))
    assert charts.label_text("tab\there") == "tab here" and charts.label_text("\x00") == "(blank)"
    assert charts.label_text("x" * 40) == "x" * 15 + "…"


def test_the_2016_line_is_for_mnist_and_the_2016_csv_of_it_only():
    from stepml.reporting.report import mnist_like
    from stepml.tabular.mnist2016 import SCHEMA_2016

    assert mnist_like({"kind": "mnist"}, "MULTICLASS")
    assert mnist_like({"kind": "csv", "schema": SCHEMA_2016, "n_classes": 10}, "MULTICLASS")
    assert not mnist_like({"kind": "csv", "schema": SCHEMA_2016, "n_classes": 3}, "MULTICLASS")
    assert not mnist_like({"kind": "csv", "schema": tabular_data.wines()[1], "n_classes": 10}, "MULTICLASS")
    assert not mnist_like({"kind": "csv", "schema": SCHEMA_2016, "n_classes": 2}, "BINARY")
