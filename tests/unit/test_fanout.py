"""Batch prediction's fan-out: shard sizes and names, what a worker may touch, and the merge that
turns parts (and failed shards) into one predictions file."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from moto import mock_aws

from stepml import fanout, predictions, shards
from stepml.errors import DataError, PayloadError, PredictionFailed
from stepml.local.moto_fixes import exceeds_tolerance, listed_item
from stepml.storage import Storage

BUCKET = "fan-out"
RUN = "r1"
DESCRIPTOR_KEY = f"runs/{RUN}/datasource/datasource.json"
PARTS = f"runs/{RUN}/predictions/parts/"


@pytest.fixture
def storage():
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield Storage(BUCKET)


def image_datasource(storage, rows=1000, shard_rows=300) -> dict:
    pixels = np.random.default_rng(0).integers(0, 256, size=(rows, 16), dtype=np.uint8)
    descriptor = {"kind": "mnist", "n_classes": 3, "test_rows": rows, "input_scale": 1 / 255,
                  "shards": shards.write_image_shards(storage, f"runs/{RUN}/datasource/shards/", pixels, shard_rows)}
    storage.put_json(DESCRIPTOR_KEY, descriptor)
    return descriptor


def write_part(storage, shard, n_classes=3, value=None) -> np.ndarray:
    rng = np.random.default_rng(shard.first_row)
    scores = rng.dirichlet(np.ones(n_classes), size=shard.rows).astype(np.float32) if value is None else value
    storage.put_bytes(shard.part_key(PARTS), shards.part_bytes(scores, 0.5, 1024))
    return scores


# -- shards ---------------------------------------------------------------------------------
def test_shards_hold_about_8_mib_but_small_data_still_spreads_over_four():
    assert shards.rows_per_shard(60_000_000, 784) == shards.SHARD_BYTES // 784          # 10,699 rows
    assert shards.rows_per_shard(10_000, 784) == 2_500                                    # 4 shards
    assert shards.rows_per_shard(50, 784) == shards.MIN_SHARD_ROWS
    assert shards.rows_per_shard(10_000_000, 2) == shards.MAX_SHARD_ROWS
    assert shards.rows_per_shard(10_000, 784, requested=1234) == 1234
    # whatever a trigger asks, a shard fits a worker: at most 32 MiB of input
    assert shards.rows_per_shard(60_000, 784, requested=1_000_000) == shards.MAX_SHARD_BYTES // 784


def test_a_shard_size_cut_to_the_byte_ceiling_is_said_in_the_descriptor(storage):
    pixels = np.zeros((300, 200_000), dtype=np.uint8)          # 200 KB rows: 167 fit in 32 MiB
    entry = shards.write_image_shards(storage, "runs/r1/datasource/shards/", pixels, requested=300)
    assert entry["rows_per_shard"] == 167 and entry["count"] == 2 and "cut to 167 rows" in entry["note"]


def test_a_shard_key_says_where_its_rows_are_and_nothing_else_parses(storage):
    shard = shards.parse_shard_key("runs/a/datasource/shards/shard-000000002500-000002500.npy")
    assert (shard.first_row, shard.rows, shard.part_key(PARTS)) == (
        2500, 2500, PARTS + "shard-000000002500-000002500.npz")
    for bad in ("runs/a/datasource/shards/../x.npy", "shard-1-2.npy", "shard-000000002500-000002500.csv"):
        with pytest.raises(PayloadError):
            shards.parse_shard_key(bad)


def test_image_shards_cover_the_rows_in_order(storage):
    descriptor = image_datasource(storage, rows=1000, shard_rows=300)
    listed = shards.list_shards(storage, descriptor)
    assert [(s.first_row, s.rows) for s in listed] == [(0, 300), (300, 300), (600, 300), (900, 100)]
    assert descriptor["shards"]["count"] == 4


def test_a_missing_shard_object_is_found_before_anything_is_merged(storage):
    descriptor = image_datasource(storage)
    storage.delete(f"runs/{RUN}/datasource/shards/shard-000000000300-000000300.npy")
    with pytest.raises(DataError, match="skip or repeat rows at row 300"):
        shards.list_shards(storage, descriptor)


# -- the worker -----------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"shard": "data/private/shard-000000000000-000000300.npy"}, "not under a datasource"),
    ({"model": "runs/other-run/model/model.npz"}, "must be this run's"),
    ({"parts": "runs/other-run/predictions/parts/"}, "must be this run's"),
    ({"parts": None}, "needs 'parts'"),
    ({"datasource": "runs/other-run/datasource/datasource.json"}, "must be this run's"),
])
def test_a_worker_reads_and_writes_only_where_its_run_allows(storage, change, message):
    item = {"run_id": RUN, "shard": f"runs/{RUN}/datasource/shards/shard-000000000000-000000300.npy",
            "datasource": DESCRIPTOR_KEY, "model": f"runs/{RUN}/model/model.npz", "parts": PARTS, **change}
    with pytest.raises(PayloadError, match=message):
        fanout.predict_shard(item, storage, RUN)


def test_a_failing_worker_leaves_a_record_of_why(storage):
    image_datasource(storage)
    item = {"run_id": RUN, "shard": f"runs/{RUN}/datasource/shards/shard-000000000000-000000300.npy",
            "datasource": DESCRIPTOR_KEY, "model": f"runs/{RUN}/model/model.npz", "parts": PARTS}
    with pytest.raises(DataError, match="model.npz does not exist"):
        fanout.predict_shard(item, storage, RUN)   # there is no model
    record = storage.get_json(PARTS + "shard-000000000000-000000300.error.json")
    assert record["rows"] == 300 and record["error"] == "DataError"


def test_a_worker_scores_only_shards_of_its_own_datasource(storage):
    image_datasource(storage)
    item = {"run_id": RUN, "shard": "runs/someone-else/datasource/shards/shard-000000000000-000000300.npy",
            "datasource": DESCRIPTOR_KEY, "model": f"runs/{RUN}/model/model.npz", "parts": PARTS}
    with pytest.raises(PayloadError, match="is not one of"):
        fanout.predict_shard(item, storage, RUN)


# -- the merge ------------------------------------------------------------------------------
def test_parts_merge_in_input_order_whatever_order_they_were_written(storage):
    descriptor = image_datasource(storage)
    listed = shards.list_shards(storage, descriptor)
    written = {s.first_row: write_part(storage, s) for s in reversed(listed)}
    merged = fanout.merge(storage, RUN, descriptor, {"parts": PARTS, "tolerated_failure_percentage": 0.0})

    rows, labels, scores = predictions.read_scored_rows(storage.get_bytes(merged["predictions"]), 3)
    assert rows.tolist() == list(range(1000)) and merged["invalid_rows"] == 0
    expected = np.concatenate([written[s.first_row] for s in listed])
    assert np.allclose(scores, expected, atol=1e-6)
    assert merged["fan_out"] == {"shards": 4, "worker_seconds": 2.0, "memory_mb": 1024}


def test_a_failed_shard_within_the_tolerance_becomes_invalid_rows(storage):
    descriptor = image_datasource(storage)
    listed = shards.list_shards(storage, descriptor)
    for s in listed[:2] + listed[3:]:
        write_part(storage, s)
    storage.put_json(PARTS + "shard-000000000600-000000300.error.json",
                     {"error": "ValueError", "message": "bad pixels"})
    merged = fanout.merge(storage, RUN, descriptor, {"parts": PARTS, "tolerated_failure_percentage": 25.0})

    assert merged["invalid_rows"] == 300 and merged["rows"] == 700 and merged["failed_shard_count"] == 1
    assert merged["failed_shards"] == [{"shard": listed[2].key, "first_row": 600, "rows": 300,
                                        "error": "ValueError", "message": "bad pixels"}]
    rows, _, _ = predictions.read_scored_rows(storage.get_bytes(merged["predictions"]), 3)
    assert rows.tolist() == list(range(600)) + list(range(900, 1000))


def test_failed_shards_beyond_the_tolerance_fail_the_merge_and_name_the_first(storage):
    descriptor = image_datasource(storage)
    listed = shards.list_shards(storage, descriptor)
    write_part(storage, listed[0])
    write_part(storage, listed[1])
    with pytest.raises(PredictionFailed, match=r"2 of 4 prediction shards failed \(50.0%; tolerated 25%\)"):
        fanout.merge(storage, RUN, descriptor, {"parts": PARTS, "tolerated_failure_percentage": 25.0})


def test_no_scored_shard_at_all_is_a_failure_even_at_full_tolerance(storage):
    descriptor = image_datasource(storage)
    with pytest.raises(PredictionFailed, match="4 of 4"):
        fanout.merge(storage, RUN, descriptor, {"parts": PARTS, "tolerated_failure_percentage": 100.0})


def test_a_part_with_the_wrong_row_count_or_nan_scores_is_refused(storage):
    descriptor = image_datasource(storage)
    listed = shards.list_shards(storage, descriptor)
    for s in listed:
        write_part(storage, s)
    write_part(storage, listed[1], value=np.full((300, 3), np.nan, dtype=np.float32))
    with pytest.raises(DataError, match="not finite"):
        fanout.merge(storage, RUN, descriptor, {"parts": PARTS})


def test_the_plan_takes_the_triggers_settings_under_the_stacks_ceiling(storage, monkeypatch):
    image_datasource(storage)
    monkeypatch.setenv(fanout.MAX_CONCURRENCY_ENV, "20")
    job = {"run_id": RUN, "datasource": DESCRIPTOR_KEY, "model": f"runs/{RUN}/model/model.npz",
           "trigger": {"batch_prediction": {"max_concurrency": 500, "tolerated_failure_percentage": 5}}}
    plan = fanout.plan(storage, job)
    assert plan["status"] == fanout.FAN_OUT and plan["shard_count"] == 4
    assert plan["max_concurrency"] == 20
    assert plan["tolerated_failure_percentage"] == 5.0 and isinstance(plan["tolerated_failure_percentage"], float)


# -- what the local stack fixes in moto -----------------------------------------------------
@pytest.mark.parametrize("failed, total, count, percentage, count_set, percentage_set, exceeded", [
    (0, 10, 0, 0.0, False, False, False),
    (1, 10, 0, 0.0, False, False, True),       # nothing set: the first failure fails the Map Run
    (1, 10, 0, 10.0, False, True, False),      # 10% of 10 tolerated
    (2, 10, 0, 10.0, False, True, True),
    (2, 10, 2, 0.0, True, False, False),
    (3, 10, 2, 50.0, True, True, True),        # either threshold set and exceeded fails it
])
def test_tolerated_failures_follow_the_aws_rule(failed, total, count, percentage, count_set, percentage_set,
                                                exceeded):
    assert exceeds_tolerance(failed, total, count, percentage, count_set, percentage_set) is exceeded


def test_a_listed_object_reaches_the_item_processor_as_aws_hands_it_over():
    import datetime

    obj = {"Key": "runs/r/datasource/shards/shard-000000000000-000000100.npy", "ETag": '"abc"', "Size": 7,
           "LastModified": datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc), "StorageClass": "STANDARD"}
    assert listed_item(obj) == {"Etag": '"abc"', "Key": obj["Key"], "LastModified": 1795910400, "Size": 7,
                                "StorageClass": "STANDARD"}


def test_failure_json_lists_what_matters_first_and_counts_the_rest(storage, monkeypatch):
    # A fan-out leaves a shard and a part per 8 MiB of data: failure.json keeps the error
    # records and the run's own objects, fills the rest of its list with shards and parts, and
    # says how many objects there are in all.
    from stepml import steps
    from stepml.runs import RunPaths

    monkeypatch.setattr(steps, "FAILURE_LISTED_KEYS", 12)
    paths = RunPaths("r1")
    shard_keys = [f"{paths.datasource}shards/shard-{i * 100:012d}-000000100.npy" for i in range(10)]
    part_keys = [f"{paths.predictions}parts/shard-{i * 100:012d}-000000100.npz" for i in range(8)]
    own = [paths.datasource + "datasource.json", paths.model + "model.npz",
           f"{paths.predictions}parts/shard-000000000800-000000100.error.json"]
    for key in shard_keys + part_keys + own:
        storage.put_bytes(key, b"x")
    storage.put_json(paths.status, {"run_id": "r1", "state": "RUNNING", "steps": [{"step": "PredictShards"}]})

    steps.record_failure({"run_id": "r1", "error": {"Error": "States.ExceedToleratedFailureThreshold"}}, storage)

    failure = storage.get_json(paths.failure)
    assert failure["produced_count"] == 21 and len(failure["produced"]) == 12
    assert set(own) <= set(failure["produced"])
    assert failure["produced"] == sorted(failure["produced"])
