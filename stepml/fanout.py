"""Batch prediction fanned out over shards (builtin engine).

    BatchPredict     plan(): FAN_OUT with the shards' prefix, the Map's concurrency and tolerance
    PredictShards    the Distributed Map: one PredictShard Lambda per shard -> predict_shard()
    Score            merge(): the parts in input order -> predictions.csv; failed shards' rows
                     are invalid rows, and past the tolerated share the run fails

A worker writes only its own part (``predictions/parts/<shard>.npz``, written once, whole), so
a retried or duplicated worker can only write the same scores again, and Score never reads a
half-written part. A worker that fails leaves ``<shard>.error.json`` saying why.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time

import numpy as np

from stepml import models, predictions, shards
from stepml.errors import DataError, PayloadError, PredictionFailed
from stepml.runs import RunPaths
from stepml.storage import Storage

log = logging.getLogger(__name__)

FAN_OUT = "FAN_OUT"
#: The stack's ceiling on concurrent PredictShard Lambdas (template parameter
#: MaxPredictConcurrency): a trigger may ask for less, never more.
MAX_CONCURRENCY_ENV = "STEPML_MAX_PREDICT_CONCURRENCY"
DEFAULT_MAX_CONCURRENCY = 100
REPORTED_FAILURES = 10


def plan(storage: Storage, job: dict) -> dict:
    """What the PredictShards Map needs (the state payload carries it, not the data)."""
    run_id = job["run_id"]
    paths = RunPaths(run_id)
    descriptor = storage.get_json(job["datasource"])
    if "shards" not in descriptor:     # reuse refuses such datasources: a guard, not a user error
        raise DataError(f"internal: {storage.uri(job['datasource'])} has no prediction shards; "
                        "dataset.rebuild builds the datasource again")
    settings = job["trigger"].get("batch_prediction", {})
    ceiling = int(os.environ.get(MAX_CONCURRENCY_ENV, DEFAULT_MAX_CONCURRENCY))
    result = {
        "job_id": f"{run_id}-prediction",
        "status": FAN_OUT,
        "model": job["model"],
        "shards": descriptor["shards"]["prefix"],
        "shard_count": descriptor["shards"]["count"],
        "parts": paths.predictions + shards.PARTS_DIR,
        "max_concurrency": max(1, min(int(settings.get("max_concurrency", 10)), ceiling)),
        # A float: ToleratedFailurePercentagePath must point at a number.
        "tolerated_failure_percentage": float(settings.get("tolerated_failure_percentage", 0)),
    }
    return result


# -- PredictShard --------------------------------------------------------------------------
_models: dict[tuple[str, str], object] = {}
_models_lock = threading.Lock()


def predict_shard(event: dict, storage: Storage, run_id: str, memory_mb: int | None = None) -> dict:
    """Score one shard and write its part. A warm Lambda keeps the model between shards."""
    shard, model_key, parts = _check_item(event, run_id)
    started = time.perf_counter()
    try:
        descriptor = storage.get_json(event["datasource"])
        if not shard.key.startswith(descriptor.get("shards", {}).get("prefix") or "\0"):
            raise PayloadError(f"shard {shard.key!r} is not one of {event['datasource']}'s shards")
        model = _load_model(storage, model_key)
        scores = _score(storage, descriptor, model, shard)
        key = shard.part_key(parts)
        storage.put_bytes(key, shards.part_bytes(scores, time.perf_counter() - started, memory_mb))
    except Exception as err:
        _record_failure(storage, shard, parts, err)
        raise
    return {"part": key, "rows": shard.rows, "seconds": round(time.perf_counter() - started, 3)}


def _check_item(event: dict, run_id: str) -> tuple[shards.Shard, str, str]:
    """Each key in the item stays where this step may read or write it."""
    paths = RunPaths(run_id)
    for field in ("shard", "model", "parts", "datasource"):
        if not isinstance(event.get(field), str):
            raise PayloadError(f"a PredictShard item needs {field!r} as a string")
    shard = shards.parse_shard_key(event["shard"])
    if not (shard.key.startswith("runs/") and f"/datasource/{shards.SHARDS_DIR}" in shard.key):
        raise PayloadError(f"shard {shard.key!r} is not under a datasource's {shards.SHARDS_DIR}")
    if (event["model"] != paths.model + "model.npz" or event["parts"] != paths.predictions + shards.PARTS_DIR
            or event["datasource"] != paths.datasource + "datasource.json"):
        raise PayloadError(f"model, parts and datasource must be this run's ({paths.prefix})")
    return shard, event["model"], event["parts"]


def _load_model(storage: Storage, key: str):
    head = storage.head(key)
    if head is None:
        raise DataError(f"the model {storage.uri(key)} does not exist")
    etag = head["ETag"]
    with _models_lock:
        if (key, etag) not in _models:
            _models.clear()
            _models[(key, etag)] = models.load_model(io.BytesIO(storage.get_bytes(key)))
        return _models[(key, etag)]


def _score(storage: Storage, descriptor: dict, model, shard: shards.Shard) -> np.ndarray:
    if descriptor["kind"] == "csv":
        from stepml.tabular import modeling
        from stepml.tabular.transforms import FeaturePipeline

        table = shards.read_table_shard(storage, shard)
        return modeling.predict(model, FeaturePipeline.from_json(model.pipeline_), table, descriptor["model_type"])
    pixels = shards.read_image_shard(storage, shard)
    features = pixels.astype(np.float32)
    features *= np.float32(descriptor["input_scale"])
    return model.predict_proba(features)


def _record_failure(storage: Storage, shard: shards.Shard, parts: str, err: Exception) -> None:
    """Best effort: Score reports why; the Map counts the failure whether or not this lands."""
    try:
        storage.put_json(f"{parts}{shard.stem}.error.json",
                         {"shard": shard.key, "rows": shard.rows, "error": type(err).__name__, "message": str(err)})
    except Exception:   # noqa: BLE001 - the original error is the one to raise
        log.warning("could not record the failure of %s", shard.key)


# -- Score: merge --------------------------------------------------------------------------
def merge(storage: Storage, run_id: str, descriptor: dict, prediction: dict) -> dict:
    """Parts -> predictions.csv in input order (and Amazon ML's layout for CSV datasources).

    Rows of a shard with no part are invalid rows. Past the tolerated share of failed shards
    (the Map on AWS fails first; this holds wherever the Map ran) the prediction fails.
    """
    paths = RunPaths(run_id)
    parts = prediction["parts"]
    present = set(storage.list_keys(parts))
    scored, failed = [], []
    for shard in shards.list_shards(storage, descriptor):
        key = shard.part_key(parts)
        (scored if key in present else failed).append(shard)
    _check_tolerance(storage, prediction, scored, failed)

    rows = np.concatenate([np.arange(s.first_row, s.first_row + s.rows) for s in scored])
    read = [shards.read_part(storage.get_bytes(s.part_key(parts)), s) for s in scored]
    scores = np.concatenate([part[0] for part in read])
    key = paths.predictions + "predictions.csv"
    if descriptor.get("model_type") == "REGRESSION":
        storage.put_bytes(key, predictions.values_to_csv(scores, rows), "text/csv")
    else:
        storage.put_bytes(key, predictions.to_csv(scores, rows), "text/csv")
    result = {
        "status": "COMPLETED",
        "predictions": key,
        "rows": int(len(rows)),
        "invalid_rows": int(sum(s.rows for s in failed)),
        "shards": len(scored) + len(failed),
        "failed_shards": [_failure(storage, s, parts) for s in failed[:REPORTED_FAILURES]],
        "failed_shard_count": len(failed),
        "fan_out": {"shards": len(scored) + len(failed), "worker_seconds": round(sum(p[1] for p in read), 3),
                    "memory_mb": max((p[2] for p in read), default=0)},
    }
    if descriptor["kind"] == "csv":
        from stepml.tabular.datasource import load_table

        table = load_table(storage, descriptor, "evaluation").select(rows)
        result.update(predictions.write_amazon_ml_layout(storage, run_id, descriptor, table, scores))
    return result


def _check_tolerance(storage: Storage, prediction: dict, scored: list, failed: list) -> None:
    total = len(scored) + len(failed)
    tolerated = float(prediction.get("tolerated_failure_percentage", 0))
    share = 100.0 * len(failed) / max(total, 1)
    if failed and (share > tolerated or not scored):
        first = _failure(storage, failed[0], prediction["parts"])
        raise PredictionFailed(
            f"{len(failed)} of {total} prediction shards failed ({share:.1f}%; tolerated {tolerated:g}%); "
            f"first: {first['shard']}: {first.get('message', 'no error record')}")


def _failure(storage: Storage, shard: shards.Shard, parts: str) -> dict:
    record = storage.get_json_or(f"{parts}{shard.stem}.error.json", None)
    found = {"shard": shard.key, "first_row": shard.first_row, "rows": shard.rows}
    if isinstance(record, dict):
        found.update(error=str(record.get("error")), message=str(record.get("message"))[:500])
    return found


__all__ = ["FAN_OUT", "plan", "predict_shard", "merge"]
