"""The builtin engine: numpy models trained and applied inside the Lambda function itself."""

from __future__ import annotations

import io
import logging
import os
import time

from stepml import datasource, fanout, models
from stepml.engines import COMPLETED, FAILED
from stepml.runs import RunPaths
from stepml.storage import Storage
from stepml.tabular import modeling
from stepml.tabular.datasource import load_table

log = logging.getLogger(__name__)


class BuiltinEngine:
    def __init__(self, storage: Storage):
        self.storage = storage

    # -- training --------------------------------------------------------------------------
    def start_training(self, job: dict) -> dict:
        """job: run_id, datasource (descriptor key), algorithm, parameters, seed, time_budget_s."""
        started = time.perf_counter()
        paths = RunPaths(job["run_id"])
        descriptor = self.storage.get_json(job["datasource"])
        algorithm = job["algorithm"]
        pipeline = None
        if descriptor["kind"] == "csv":
            model = modeling.make_model(descriptor, algorithm, job["parameters"], job["seed"])
            table = load_table(self.storage, descriptor, "training")
            features, labels, pipeline = modeling.training_data(descriptor, table, model)
            modeling.choose_learning_rate(model, job["parameters"], features)
            del table
        else:
            features, labels = datasource.read_features(self.storage, descriptor, "train")
            model = models.make_model(algorithm, {**job["parameters"], **data_shape_params(algorithm, descriptor)},
                                      seed=job["seed"])

        def on_epoch(epoch: int, info: dict) -> None:
            log.info("epoch %d/%d: %s, %.1f s", epoch, info["epochs"], epoch_figures(info), info["seconds"])

        budget = job.get("time_budget_s")
        if budget is not None:  # loading the data already spent part of it
            budget = max(1.0, budget - (time.perf_counter() - started))
        fit_started = time.perf_counter()
        model.fit(features, labels, on_epoch=on_epoch, time_budget_s=budget)
        seconds = time.perf_counter() - fit_started
        summary = model.training_summary()

        buffer = io.BytesIO()
        models.save_model(model, buffer, input_scale=descriptor.get("input_scale", 1.0),
                          extra={"blas_threads": blas_threads(), "model_type": descriptor.get("model_type", "MULTICLASS"),
                                 "class_labels": descriptor.get("class_labels")},
                          pipeline=None if pipeline is None else pipeline.to_json())
        model_key = paths.model + "model.npz"
        self.storage.put_bytes(model_key, buffer.getvalue())
        training = {
            "job_id": f"{job['run_id']}-training",
            "status": COMPLETED,
            "algorithm": algorithm,
            "parameters": model.get_params(),
            "features": None if pipeline is None else pipeline.summary(),
            "seed": job["seed"],
            "rows": int(len(labels)),
            "training_seconds": round(seconds, 3),
            "time_budget_s": None if budget is None else round(budget, 1),
            "summary": summary,
            "history": model.history_,
            "blas_threads": blas_threads(),
            "model": model_key,
        }
        self.storage.put_json(paths.model + "training.json", training)
        return {"job_id": training["job_id"], "status": COMPLETED, "model": model_key,
                "training_seconds": training["training_seconds"], "stop_reason": summary["stop_reason"]}

    def describe_training(self, job: dict) -> dict:
        training_key = RunPaths(job["run_id"]).model + "training.json"
        if not self.storage.exists(training_key):
            return {"job_id": job["job_id"], "status": FAILED, "message": "no training record found"}
        training = self.storage.get_json(training_key)
        return {"job_id": job["job_id"], "status": training["status"], "model": training["model"]}

    # -- batch prediction ------------------------------------------------------------------
    def start_batch_prediction(self, job: dict) -> dict:
        """job: run_id, datasource (descriptor key), model (key), trigger. Batch prediction fans
        out: the state machine's PredictShards Map scores the datasource's shards in parallel
        (``stepml.fanout``) and Score merges their parts."""
        return fanout.plan(self.storage, job)

    def describe_batch_prediction(self, job: dict) -> dict:
        key = RunPaths(job["run_id"]).predictions + "predictions.csv"
        status = COMPLETED if self.storage.exists(key) else FAILED
        return {"job_id": job["job_id"], "status": status, "predictions": key}


def epoch_figures(info: dict) -> str:
    """'loss 0.3, train accuracy 91.2%, validation accuracy 92.0%' (or RMSE, for regression)."""
    figures = [f"loss {info['loss']:.4f}"]
    if info.get("train_accuracy") is not None:
        figures.append(f"train accuracy {100 * info['train_accuracy']:.2f}%")
    if info.get("val_accuracy") is not None:
        figures.append(f"validation accuracy {100 * info['val_accuracy']:.2f}%")
    if info.get("val_rmse") is not None:
        figures.append(f"validation RMSE {info['val_rmse']:.4g}")
    return ", ".join(figures)


def blas_threads() -> int:
    """Threads BLAS may use: recorded with the model, since weights depend on it bit for bit."""
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count() or 1)


def data_shape_params(algorithm: str, descriptor: dict) -> dict:
    """What the datasource, not the trigger, decides: the classes and (for image models) the shape."""
    accepted = models.default_params(algorithm)
    params = {"n_classes": descriptor["n_classes"]}
    if "image_shape" in accepted and "image_shape" in descriptor:
        params["image_shape"] = descriptor["image_shape"]
    return params

