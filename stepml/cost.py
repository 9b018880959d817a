"""What a run cost, estimated from what it did: Lambda GB-seconds and requests, Step Functions
state transitions, S3 requests, and the managed engine's own billing figures.

All prices live in :data:`PRICES`: US East (N. Virginia) list prices, on-demand, without free
tiers, as published when this table was written (see ``PRICES_AS_OF``). They change; the
report names the table's date next to every estimate.
"""

from __future__ import annotations

PRICES_AS_OF = "2026-11"
PRICES = {
    # AWS Lambda, arm64 (Graviton): per GB-second of configured memory, per request.
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1_000_000,
    # AWS Step Functions, standard workflows: per state transition.
    "sfn_transition": 0.025 / 1_000,
    # Amazon S3 Standard requests.
    "s3_put": 0.005 / 1_000,          # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1_000,         # GET and all other requests
    # Amazon ML (closed to new customers): per compute hour, per batch prediction.
    "amazonml_compute_hour": 0.42,
    "amazonml_batch_prediction": 0.10 / 1_000,
}
#: SageMaker on-demand per instance-hour (training and batch transform are priced alike).
SAGEMAKER_INSTANCE_HOUR = {
    "ml.m5.large": 0.115, "ml.m5.xlarge": 0.23, "ml.m5.2xlarge": 0.461, "ml.m5.4xlarge": 0.922,
    "ml.c5.xlarge": 0.204, "ml.c5.2xlarge": 0.408, "ml.c5.4xlarge": 0.816,
    "ml.m4.xlarge": 0.24, "ml.c4.xlarge": 0.239,
}
#: A poll Lambda (CheckTraining / CheckBatchPrediction: 256 MB) records no duration of its own;
#: it is one or two S3 or describe calls, a few hundred milliseconds billed.
POLL_SECONDS_ESTIMATE = 0.3
POLL_MEMORY_MB = 256
#: States a successful run enters besides the poll loops: PrepareData, CreateDataSource, Train,
#: TrainingDone?, BatchPredict, PredictionDone?, Score, RunSucceeded; each loop turn adds 3, and
#: the fan-out its Map state and CHILD_TRANSITIONS per shard (a standard child execution each).
BASE_TRANSITIONS = 8
CHILD_TRANSITIONS = 2


def _line(item: str, quantity: float, unit: str, unit_price: float | None) -> dict:
    usd = None if unit_price is None else quantity * unit_price
    return {"item": item, "quantity": round(quantity, 6), "unit": unit, "unit_price_usd": unit_price,
            "usd": usd}


def estimate(steps: list[dict], *, polls: int, s3_puts: int, s3_gets: int,
             training: dict | None = None, prediction: dict | None = None, engine: str = "builtin",
             fan_out: dict | None = None) -> dict:
    """The run's cost, line by line. ``steps`` are status.json's step records (those with
    ``seconds`` and ``memory_mb`` are Lambda invocations that were measured); ``fan_out`` is
    the PredictShards Map's {"shards", "worker_seconds", "memory_mb"} when it ran."""
    measured = [s for s in steps if s.get("seconds") is not None and s.get("memory_mb")]
    gb_seconds = sum(s["seconds"] * s["memory_mb"] / 1024 for s in measured)
    gb_seconds += polls * POLL_SECONDS_ESTIMATE * POLL_MEMORY_MB / 1024
    requests = len(measured) + polls + 2          # + StartRun, and Score itself (still running)
    transitions = BASE_TRANSITIONS + 3 * polls
    if fan_out:
        gb_seconds += fan_out["worker_seconds"] * fan_out["memory_mb"] / 1024
        requests += fan_out["shards"]
        transitions += 1 + CHILD_TRANSITIONS * fan_out["shards"]
    lines = [
        _line("Lambda compute (arm64)", gb_seconds, "GB-second", PRICES["lambda_gb_second_arm64"]),
        _line("Lambda requests", requests, "request", PRICES["lambda_request"]),
        _line("Step Functions state transitions", transitions, "transition", PRICES["sfn_transition"]),
        _line("S3 PUT/LIST requests", s3_puts, "request", PRICES["s3_put"]),
        _line("S3 GET requests", s3_gets, "request", PRICES["s3_get"]),
    ]
    lines += engine_lines(engine, (training or {}).get("cost_facts") or {},
                          (prediction or {}).get("cost_facts") or {})
    known = [line["usd"] for line in lines if line["usd"] is not None]
    return {
        "currency": "USD",
        "total_usd": sum(known),
        "complete": all(line["usd"] is not None for line in lines),
        "lines": lines,
        "prices": f"us-east-1 on-demand list prices of {PRICES_AS_OF} (stepml/cost.py); no free tier",
    }


def engine_lines(engine: str, training: dict, prediction: dict) -> list[dict]:
    """The managed service's own bill, from the figures it reported."""
    if engine == "sagemaker":
        lines = []
        for what, facts in (("training", training), ("batch transform", prediction)):
            if facts.get("instance_seconds") is None:
                continue
            instance, count = facts.get("instance_type"), facts.get("instance_count", 1)
            lines.append(_line(f"SageMaker {what} ({count} x {instance})", facts["instance_seconds"] / 3600,
                               "instance-hour", SAGEMAKER_INSTANCE_HOUR.get(instance)))
        return lines
    if engine == "amazonml":
        compute_ms = (training.get("compute_time_ms") or 0) + (prediction.get("compute_time_ms") or 0)
        return [
            _line("Amazon ML compute", compute_ms / 3_600_000, "compute-hour", PRICES["amazonml_compute_hour"]),
            _line("Amazon ML batch predictions", prediction.get("total_record_count") or 0, "prediction",
                  PRICES["amazonml_batch_prediction"]),
        ]
    return []
