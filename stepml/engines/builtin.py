"""The builtin engine: numpy models trained and applied inside the Lambda function itself."""

from __future__ import annotations

import io
import logging
import os
import time

import numpy as np

from stepml import datasource, models
from stepml.engines import COMPLETED, FAILED
from stepml.runs import RunPaths
from stepml.storage import Storage

log = logging.getLogger(__name__)
PREDICTION_BATCH = 4096


class BuiltinEngine:
    def __init__(self, storage: Storage):
        self.storage = storage

    # -- training --------------------------------------------------------------------------
    def start_training(self, job: dict) -> dict:
        """job: run_id, datasource (descriptor key), algorithm, parameters, seed."""
        paths = RunPaths(job["run_id"])
        descriptor = self.storage.get_json(job["datasource"])
        features, labels = datasource.read_features(self.storage, descriptor, "train")
        params = dict(job["parameters"])
        if "image_shape" in descriptor and job["algorithm"] == "mlp":
            params.setdefault("image_shape", descriptor["image_shape"])
        model = models.make_model(job["algorithm"], params, seed=job["seed"])

        def on_epoch(epoch: int, info: dict) -> None:
            log.info("epoch %d/%d: loss %.4f, train accuracy %.2f%%, %.1f s", epoch, info["epochs"],
                     info["loss"], 100 * info["train_accuracy"], info["seconds"])

        started = time.perf_counter()
        model.fit(features, labels, on_epoch=on_epoch)
        seconds = time.perf_counter() - started

        buffer = io.BytesIO()
        models.save_model(model, buffer, input_scale=descriptor["input_scale"],
                          extra={"blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count()})
        model_key = paths.model + "model.npz"
        self.storage.put_bytes(model_key, buffer.getvalue())
        training = {
            "job_id": f"{job['run_id']}-training",
            "status": COMPLETED,
            "algorithm": job["algorithm"],
            "parameters": model.get_params(),
            "seed": job["seed"],
            "rows": int(len(labels)),
            "training_seconds": round(seconds, 3),
            "history": model.history_,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count(),
            "model": model_key,
        }
        self.storage.put_json(paths.model + "training.json", training)
        return {"job_id": training["job_id"], "status": COMPLETED, "model": model_key,
                "training_seconds": training["training_seconds"]}

    def describe_training(self, job: dict) -> dict:
        training_key = RunPaths(job["run_id"]).model + "training.json"
        if not self.storage.exists(training_key):
            return {"job_id": job["job_id"], "status": FAILED, "message": "no training record found"}
        training = self.storage.get_json(training_key)
        return {"job_id": job["job_id"], "status": training["status"], "model": training["model"]}

    # -- batch prediction ------------------------------------------------------------------
    def start_batch_prediction(self, job: dict) -> dict:
        """job: run_id, datasource (descriptor key), model (key). Predicts the test split."""
        paths = RunPaths(job["run_id"])
        descriptor = self.storage.get_json(job["datasource"])
        model = models.load_model(io.BytesIO(self.storage.get_bytes(job["model"])))
        features, _ = datasource.read_features(self.storage, descriptor, "test")
        started = time.perf_counter()
        scores = model.predict_proba(features)
        seconds = time.perf_counter() - started
        key = paths.predictions + "predictions.csv"
        self.storage.put_bytes(key, predictions_csv(scores), "text/csv")
        return {"job_id": f"{job['run_id']}-prediction", "status": COMPLETED,
                "predictions": key, "rows": int(len(scores)), "prediction_seconds": round(seconds, 3)}

    def describe_batch_prediction(self, job: dict) -> dict:
        key = RunPaths(job["run_id"]).predictions + "predictions.csv"
        status = COMPLETED if self.storage.exists(key) else FAILED
        return {"job_id": job["job_id"], "status": status, "predictions": key}


def predictions_csv(scores: np.ndarray) -> bytes:
    """row,predicted_label,score_0..score_k-1 — one line per input row, in input order."""
    n_classes = scores.shape[1]
    header = "row,predicted_label," + ",".join(f"score_{c}" for c in range(n_classes))
    table = np.column_stack([np.arange(len(scores)), scores.argmax(axis=1), scores])
    out = io.StringIO()
    formats = ["%d", "%d"] + ["%.6f"] * n_classes
    np.savetxt(out, table, fmt=formats, delimiter=",", header=header, comments="")
    return out.getvalue().encode()


def read_predictions_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, class scores) from a predictions.csv."""
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)
    return table[:, 1].astype(np.int64), table[:, 2:].astype(np.float32)
