"""The evaluation rows the report draws: each prediction beside its true target.

Truth is read the way :mod:`stepml.evaluation` reads it (the MNIST test labels, or the CSV
evaluation table's target coded into the model's classes); predictions through
:mod:`stepml.predictions`. The predictions file names the input row of each prediction, and
rows of a failed prediction shard may be missing, so the truth is indexed by that row column,
never assumed to be 0..n-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stepml import predictions
from stepml.errors import DataError
from stepml.storage import Storage


@dataclass(frozen=True)
class Evaluated:
    model_type: str
    rows: np.ndarray                 # the input row of each prediction (increasing)
    expected_rows: int               # rows in the evaluation data
    truth: np.ndarray                # class index (int64) or value (float64), per prediction
    predicted: np.ndarray            # class index (int64) or value (float64), per prediction
    scores: np.ndarray | None        # (n, k) class probabilities; None for REGRESSION
    class_labels: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_labels)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.truth

    def confidence(self) -> np.ndarray:
        """The score a classifier gave its answer: the positive class's score for BINARY (the
        number its threshold cuts), else the largest class probability."""
        if self.model_type == "BINARY":
            return self.scores[:, 1].astype(np.float64)
        return self.scores.max(axis=1).astype(np.float64)

    def confusion(self) -> np.ndarray:
        k = self.n_classes
        return np.bincount(self.truth * k + self.predicted, minlength=k * k).reshape(k, k)

    def per_class(self) -> dict[str, np.ndarray]:
        """Precision, recall, F1 and support per class (0 where undefined, as in stepml.metrics)."""
        cm = self.confusion().astype(np.float64)
        hits, support, called = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
        precision = np.divide(hits, called, out=np.zeros_like(hits), where=called > 0)
        recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
        return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}

    def roc(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(false positive rates, true positive rates, AUC) of a BINARY model over every distinct
        score threshold; None when the rows hold only one class (the curve is undefined)."""
        y = self.truth.astype(np.int64)
        positives = int(y.sum())
        negatives = y.size - positives
        if positives == 0 or negatives == 0:
            return None
        score = self.scores[:, 1].astype(np.float64)
        order = np.argsort(-score, kind="mergesort")
        score, y = score[order], y[order]
        last = np.r_[np.flatnonzero(np.diff(score)), y.size - 1]    # last row of each tied group
        true_positives = np.cumsum(y)[last]
        false_positives = last + 1 - true_positives
        tpr = np.r_[0.0, true_positives / positives]
        fpr = np.r_[0.0, false_positives / negatives]
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))  # ties count one half
        return fpr, tpr, auc


def load(storage: Storage, descriptor: dict, prediction_key: str, model_type: str,
         threshold: float = 0.5) -> Evaluated:
    """The predictions at ``prediction_key`` with their true targets. BINARY answers are the
    positive class where its score reaches ``threshold`` (as the metrics count them)."""
    if descriptor["kind"] != "csv":
        truth_all = storage.get_npy(descriptor["arrays"]["test_labels"]).astype(np.int64)
        labels = [str(c) for c in range(int(descriptor["n_classes"]))]
    else:
        from stepml.tabular.datasource import load_table, target_codes

        table = load_table(storage, descriptor, "evaluation")
        truth_all = target_codes(table, model_type, descriptor["class_labels"])
        del table
        labels = [str(label) for label in descriptor["class_labels"] or []]
    raw = storage.get_bytes(prediction_key)
    if model_type == "REGRESSION":
        rows, values = predictions.read_value_rows(raw)
        scores, predicted = None, values.astype(np.float64)
    else:
        rows, predicted, scores = predictions.read_scored_rows(raw, len(labels))
        if model_type == "BINARY":
            predicted = (scores[:, 1] >= threshold).astype(np.int64)
    if rows.size and rows[-1] >= truth_all.size:
        raise DataError(f"prediction for row {int(rows[-1])} but the evaluation data has {truth_all.size} rows")
    truth = truth_all[rows]
    truth = truth.astype(np.float64) if model_type == "REGRESSION" else truth.astype(np.int64)
    return Evaluated(model_type=model_type, rows=rows, expected_rows=int(truth_all.size), truth=truth,
                     predicted=predicted, scores=scores, class_labels=labels)
