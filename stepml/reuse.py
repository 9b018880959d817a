"""Step reuse: a datasource is a pure function of its inputs' contents, its definition and the
code that builds it. When all three match a datasource already built in this bucket, the run
points at that one instead of parsing and validating everything again.

    cache/datasources/<key>.json   {"run_id", "descriptor", "created_at"}: who built it, where

The key hashes the code version, the datasource layout, the shard size, the dataset's definition (kind, object names for CSV, split,
invalid-row share), the model type and recipe (they shape a CSV datasource's target and
checks), and every input's ETag: change any byte of any input and the key changes. A trigger
with ``"rebuild": true`` in its dataset builds afresh (and becomes the one later runs reuse).
"""

from __future__ import annotations

import hashlib
import json

from stepml import __version__
from stepml.runs import now
from stepml.storage import Storage, WriteConflict

REUSE_PREFIX = "cache/datasources/"
#: Bumped whenever what a datasource holds changes (2: batch prediction's shards), so a
#: datasource from before is never reused by code that expects more.
DATASOURCE_LAYOUT = 2


def datasource_key(run_trigger: dict, data: dict) -> str:
    dataset, model = run_trigger["dataset"], run_trigger["model"]
    definition: dict = {
        "code_version": __version__,
        "layout": DATASOURCE_LAYOUT,
        "kind": dataset["kind"],
        "inputs": sorted(data.get("etags", {}).items()),
        "shard_rows": run_trigger.get("batch_prediction", {}).get("shard_rows"),
    }
    if dataset["kind"] == "csv":
        definition.update(
            files=sorted(data["files"].items()),     # result files are named after the objects
            dataset={k: v for k, v in dataset.items() if k != "rebuild"},
            model_type=model["type"],
            recipe=model.get("recipe"),
        )
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def find(storage: Storage, key: str) -> dict | None:
    """The datasource built earlier for ``key``, if it is all still there."""
    pointer = storage.get_json_or(REUSE_PREFIX + key + ".json", None)
    if not isinstance(pointer, dict) or not isinstance(pointer.get("descriptor"), str):
        return None
    try:
        descriptor = storage.get_json(pointer["descriptor"])
    except Exception:                      # deleted or unreadable: build afresh
        return None
    parts = list(descriptor.get("arrays", {}).values()) + list(descriptor.get("tables", {}).values())
    if not parts or not all(storage.exists(part) for part in parts):
        return None
    shards = descriptor.get("shards")
    if not shards or sum(1 for _ in storage.list_keys(shards["prefix"])) != shards["count"]:
        return None
    return {**pointer, "descriptor_document": descriptor}


def remember(storage: Storage, key: str, run_id: str, descriptor_key: str) -> None:
    """Offer this run's datasource to later runs (the first one built for a key stays)."""
    try:
        storage.put_json(REUSE_PREFIX + key + ".json",
                         {"run_id": run_id, "descriptor": descriptor_key, "created_at": now()},
                         if_none_match=True)
    except WriteConflict:
        pass
