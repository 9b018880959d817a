"""Score's evaluation report for people: runs/<run-id>/report/report.html, one self-contained page,
and each of its charts beside it as runs/<run-id>/report/<chart>.png.

Which charts a run gets depends on its model type and data:

    confusion_matrix      MULTICLASS, BINARY
    per_class             MULTICLASS, BINARY      precision / recall / F1 per class
    confidence            MULTICLASS, BINARY      score distribution of right and wrong answers
    roc                   BINARY                  when the rows hold both classes
    predicted_vs_actual   REGRESSION
    residuals             REGRESSION
    training_curves       any model with a per-epoch history (the builtin engine)
    misclassified         image datasources with at least one mistake
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import Callable

import numpy as np

from stepml.reporting import evaluated as evaluated_rows
from stepml.reporting import html
from stepml.runs import RunPaths
from stepml.storage import Storage

log = logging.getLogger(__name__)

#: Every chart the report may hold, in page order, with its title.
CHARTS = {
    "confusion_matrix": "Confusion matrix",
    "per_class": "Precision, recall and F1 per class",
    "roc": "ROC curve",
    "predicted_vs_actual": "Predicted against actual",
    "residuals": "Residuals",
    "confidence": "Score distribution of right and wrong answers",
    "misclassified": "Misclassified examples",
    "training_curves": "Training and validation by epoch",
}
MNIST_PIXELS = 784


def report_prefix(run_id: str) -> str:
    return RunPaths(run_id).report.rsplit("/", 1)[0] + "/"


def write_report(storage: Storage, run_id: str, report: dict, descriptor: dict, prediction_key: str) -> dict:
    """Draw the charts that apply to the run, write them and the HTML page; returns the keys
    written as ``{"report_html": key, "report_charts": [key, ...]}``."""
    model_type = report["model"]["type"]
    threshold = float((report.get("metrics") or {}).get("threshold", 0.5))
    rows = evaluated_rows.load(storage, descriptor, prediction_key, model_type, threshold=threshold)
    notes: list[str] = []
    charts = []
    for name, make in chart_makers(storage, rows, report, descriptor, notes):
        try:
            png, caption = make()
        except Exception as err:      # a chart that fails must not hide the others or the run's result
            log.exception("report chart %s failed", name)
            notes.append(f"Chart not drawn ({CHARTS[name]}): {type(err).__name__}: {err}")
            continue
        if png is not None:
            charts.append({"name": name, "title": CHARTS[name], "caption": caption, "png": png})
    prediction = report.get("batch_prediction") or {}
    if prediction.get("failed_shard_count"):
        notes.append(f"{prediction['failed_shard_count']} prediction shard(s) failed; their rows have no "
                     f"prediction and are left out of the metrics and charts.")
    gate_failures = (report.get("quality_gate") or {}).get("failures") or []
    notes[:0] = [f"Quality gate failed: {failure}." for failure in gate_failures]     # first on the page
    context = {
        "wall_seconds": wall_seconds(storage, run_id, report),
        "predicted_rows": int(rows.rows.size),
        "expected_rows": rows.expected_rows,
        "mnist_like": mnist_like(descriptor, model_type),
        "notes": notes,
    }
    prefix = report_prefix(run_id)
    written = []
    for chart in charts:
        key = f"{prefix}{chart['name']}.png"
        storage.put_bytes(key, chart["png"], "image/png")
        written.append(key)
    page = html.render(report, charts, context).encode("utf-8")
    storage.put_bytes(prefix + "report.html", page, "text/html; charset=utf-8")
    return {"report_html": prefix + "report.html", "report_charts": written}


def mnist_like(descriptor: dict, model_type: str) -> bool:
    """MNIST itself, or a CSV of it (784 pixel columns, ten classes, as the 2016 scripts wrote it)."""
    if model_type != "MULTICLASS":
        return False
    if descriptor.get("kind") == "mnist":
        return True
    schema = descriptor.get("schema") or {}
    target = schema.get("targetAttributeName")
    features = [a for a in schema.get("attributes") or [] if a.get("attributeName") != target]
    return descriptor.get("n_classes") == 10 and len(features) == MNIST_PIXELS


def wall_seconds(storage: Storage, run_id: str, report: dict) -> float | None:
    """The run's wall time so far: the report's own figure, else status.json's start to the
    report's creation."""
    for value in (report.get("wall_seconds"), (report.get("timing") or {}).get("wall_seconds")):
        if isinstance(value, (int, float)):
            return float(value)
    started = (storage.get_json_or(RunPaths(run_id).status, {}) or {}).get("started_at")
    try:
        end = (_dt.datetime.fromisoformat(report["created_at"]) if report.get("created_at")
               else _dt.datetime.now(_dt.timezone.utc))
        return max(0.0, (end - _dt.datetime.fromisoformat(started)).total_seconds())
    except (TypeError, ValueError):
        return None


# -- which charts, drawn how ---------------------------------------------------------------
def chart_makers(storage: Storage, rows: evaluated_rows.Evaluated, report: dict, descriptor: dict,
                 notes: list[str]) -> list[tuple[str, Callable[[], tuple[bytes | None, str]]]]:
    """(name, maker) of each chart that applies, in page order; a maker returns (PNG or None, caption)."""
    from stepml.reporting import charts  # here, not at the top: matplotlib loads only to draw a report

    model_type, labels = rows.model_type, rows.class_labels
    classifier = model_type in ("MULTICLASS", "BINARY")

    def confusion():
        caption = ("Rows are the true class, columns the predicted one; each cell holds its count, "
                   "coloured by its share of the true class (a row's diagonal cell is the class's recall).")
        if model_type == "BINARY":
            caption += f" A row is predicted positive when its score is at least {_threshold(report)}."
        return charts.confusion_matrix(rows.confusion(), labels), caption

    def per_class():
        scores = rows.per_class()
        caption = ("Precision: of the rows predicted as the class, the share that are. Recall: of the "
                   "class's rows, the share found. F1: their harmonic mean. n: the class's evaluation rows.")
        if rows.n_classes > charts.MAX_BARS:
            caption += f" {rows.n_classes} classes: the {charts.MAX_BARS} with the lowest F1 are shown."
        return charts.per_class_scores(scores["precision"], scores["recall"], scores["f1"],
                                       scores["support"], labels), caption

    def roc():
        curve = rows.roc()
        if curve is None:
            notes.append("No ROC curve: the evaluation rows hold only one class.")
            return None, ""
        fpr, tpr, auc = curve
        return charts.roc_curve(fpr, tpr, auc), (
            "Each point is one score threshold: the share of positives found against the share of "
            "negatives wrongly flagged. AUC is the chance that a random positive scores above a random "
            "negative (0.5: guessing, 1: perfect).")

    def scatter():
        caption = "Each point is one evaluation row; on the dashed line the prediction is exact."
        if rows.truth.size > charts.MAX_SCATTER_POINTS:
            caption += f" A seeded random sample of {charts.MAX_SCATTER_POINTS:,} rows is drawn."
        return charts.predicted_vs_actual(rows.truth, rows.predicted), caption

    def residuals():
        return charts.residuals(rows.truth - rows.predicted), (
            "Residual = actual - predicted: positive where the model underestimates. A good model's "
            "residuals centre on 0 and are narrow.")

    def confidence():
        if model_type == "BINARY":
            xlabel = f"score of the positive class ({labels[1]})"
            caption = ("The model's score for the positive class, for the rows it got right and the rows "
                       f"it got wrong at the threshold {_threshold(report)}.")
        else:
            xlabel = "confidence (largest class probability)"
            caption = ("Confidence is the probability the model gave its answer. A useful model is sure "
                       "when right and hesitant when wrong.")
        return charts.confidence(rows.confidence(), rows.correct, xlabel), caption

    applies = {
        "confusion_matrix": (classifier, confusion),
        "per_class": (classifier, per_class),
        "roc": (model_type == "BINARY", roc),
        "predicted_vs_actual": (model_type == "REGRESSION", scatter),
        "residuals": (model_type == "REGRESSION", residuals),
        "confidence": (classifier, confidence),
        "misclassified": (classifier and descriptor.get("kind") != "csv",
                          lambda: _misclassified(storage, rows, descriptor, notes)),
        "training_curves": (True, lambda: _training_curves(report, notes)),
    }
    return [(name, make) for name, (applicable, make) in applies.items() if applicable]


def _threshold(report: dict) -> str:
    return f"{float((report.get('metrics') or {}).get('threshold', 0.5)):g}"


def _misclassified(storage: Storage, rows: evaluated_rows.Evaluated, descriptor: dict,
                   notes: list[str]) -> tuple[bytes | None, str]:
    from stepml.reporting import charts
    from stepml.reporting.npyrows import read_rows

    key = (descriptor.get("arrays") or {}).get("test_images")
    shape = descriptor.get("image_shape")
    wrong = np.flatnonzero(~rows.correct)
    if key is None or not shape or wrong.size == 0:
        if wrong.size == 0:
            notes.append("No misclassified examples: every evaluation row was predicted right.")
        return None, ""
    confidence = rows.confidence()
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")[:charts.MAX_IMAGES]]
    images = read_rows(storage, key, rows.rows[chosen]).reshape(len(chosen), *shape)
    labels = rows.class_labels
    png = charts.misclassified(images, [labels[t] for t in rows.truth[chosen]],
                               [labels[p] for p in rows.predicted[chosen]], confidence[chosen])
    return png, (f"The {len(chosen)} mistakes (of {wrong.size:,}) the model was surest of, each with its true "
                 f"label, the predicted one and the model's confidence in it.")


def _training_curves(report: dict, notes: list[str]) -> tuple[bytes | None, str]:
    from stepml.reporting import charts

    training = report.get("training") or {}
    history = [h for h in training.get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if not history:
        engine = (report.get("model") or {}).get("engine", "")
        notes.append(f"No training curves: the {engine} engine recorded no per-epoch history.")
        return None, ""

    def column(name):
        values = [h.get(name) for h in history]
        if all(v is None for v in values):
            return None
        return np.array([np.nan if v is None else float(v) for v in values])

    regression = report["model"]["type"] == "REGRESSION"
    if regression:
        metric, val_metric = None, column("val_rmse")
    else:
        metric, val_metric = column("train_accuracy"), column("val_accuracy")
    best = (training.get("summary") or {}).get("best_epoch")
    png = charts.training_curves(np.array([float(h["epoch"]) for h in history]), column("loss"), column("val_loss"),
                                 metric, val_metric, metric_name="validation RMSE" if regression else "accuracy",
                                 best_epoch=best if isinstance(best, int) else None)
    caption = ("Training figures are averaged over each epoch's minibatches while the weights changed; "
               "validation figures are measured on held-out training rows after each epoch.")
    if column("val_loss") is None:
        caption = "Training figures, averaged over each epoch's minibatches (no validation rows were held out)."
    if isinstance(best, int):
        caption += f" The model kept is the one from epoch {best}."
    return png, caption
