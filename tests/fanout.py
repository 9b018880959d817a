"""Batch prediction's fan-out run in-process, shard by shard, for tests of what comes after it:
BatchPredict's plan, one PredictShard per shard (as the Distributed Map would call them), and
Score's merge."""

from __future__ import annotations

from stepml import fanout, shards
from stepml.engines.builtin import BuiltinEngine


def predict_all_shards(storage, run_id: str, datasource: str, model: str, trigger: dict | None = None,
                       fail: set[int] = frozenset()) -> dict:
    """The merged prediction; shards whose index is in ``fail`` are skipped as if they failed."""
    plan = BuiltinEngine(storage).start_batch_prediction(
        {"run_id": run_id, "datasource": datasource, "model": model, "trigger": trigger or {}})
    descriptor = storage.get_json(datasource)
    for index, shard in enumerate(shards.list_shards(storage, descriptor)):
        if index not in fail:
            fanout.predict_shard({"run_id": run_id, "shard": shard.key, "datasource": datasource,
                                  "model": model, "parts": plan["parts"]}, storage, run_id)
    return {**plan, **fanout.merge(storage, run_id, descriptor, plan)}
