"""What each Lambda step does, as plain functions of (state payload, storage).

The handlers in functions/<step>/app.py only parse the event, call one of these and return
the small dict it gives back. State payloads carry S3 keys and ids, never data.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import time
import uuid
from typing import Iterator

from stepml import __version__, datasource, evaluation, fanout, mnist, reuse, shards, trigger as triggers
from stepml import cost as costs
from stepml import reporting
from stepml.engines import COMPLETED, FAILED, get_engine
from stepml.errors import (DataError, EngineUnavailable, PayloadError, PollTimeout, PredictionFailed,
                           QualityGateFailed, TrainingFailed, TriggerRejected)
from stepml.runs import RunPaths, now, write_status
from stepml.storage import Storage, check_key
from stepml.tabular import datasource as tabular_datasource

# The Check* poll loops wait POLL_SECONDS, then 1.5x longer each time up to POLL_MAX_SECONDS,
# and give up after MAX_POLLS polls: 10, 15, 22, 33, 50, 75, 112, 168, 253, 300, 300 ... s,
# 120 polls = about 9.5 hours. One poll costs 8 history events (Wait and Check entered/exited,
# the task's scheduled/started/succeeded, the Choice is 2 more per loop turn - say 10), so both
# loops at their maximum use 2 x 120 x 10 = 2,400 of Step Functions' 25,000 events per execution.
MAX_POLLS = int(os.environ.get("STEPML_MAX_POLLS", "120"))
POLL_SECONDS = int(os.environ.get("STEPML_POLL_SECONDS", "10"))
POLL_MAX_SECONDS = int(os.environ.get("STEPML_POLL_MAX_SECONDS", "300"))
POLL_GROWTH = 1.5
MNIST_CACHE_PREFIX = "cache/mnist/"
# Kept back from the Train Lambda's remaining time: loading data, saving the model, records.
TRAINING_RESERVE_SECONDS = 60
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


@contextlib.contextmanager
def step_status(storage: Storage, run_id: str, step: str, started: float | None = None) -> Iterator[dict]:
    """Mark the step RUNNING, then DONE with its duration (from ``started``, a perf_counter
    reading, if the step's work began before this); the caller may add details."""
    write_status(storage, run_id, "RUNNING", step)
    details: dict = {}
    started = time.perf_counter() if started is None else started
    yield details
    write_status(storage, run_id, "RUNNING", step, done=True,
                 seconds=round(time.perf_counter() - started, 3), memory_mb=function_memory_mb(), **details)


def function_memory_mb() -> int | None:
    """The running Lambda's configured memory (Powertools keeps it from the context), for the
    run's cost; None outside a handler."""
    from stepml.observability import logger

    value = logger.get_current_keys().get("function_memory_size")
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else None


def run_id_of(event: dict) -> str:
    """The run id from a state payload, checked: it names the only prefix a step may write."""
    run_id = event.get("run_id") if isinstance(event, dict) else None
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise PayloadError(f"state payload needs a run_id of 1-80 [A-Za-z0-9_-] characters, got {run_id!r}")
    return run_id


def load_run_trigger(storage: Storage, run_id: str) -> dict:
    return storage.get_json(RunPaths(run_id).trigger)


# -- PrepareData ---------------------------------------------------------------------------
def prepare_data(event: dict, storage: Storage) -> dict:
    """Find every input and pin its version: the four MNIST files (in S3, or downloaded and
    cached), or a CSV dataset's schema, recipe and data objects (whose definitions are parsed
    here, so that a typo fails the run before any data is read)."""
    run_id = run_id_of(event)
    with step_status(storage, run_id, "PrepareData") as details:
        run_trigger = load_run_trigger(storage, run_id)
        dataset = run_trigger["dataset"]
        if dataset["kind"] == "csv":
            files = tabular_datasource.locate_inputs(storage, dataset, run_trigger["model"])
        elif dataset["source"] == "s3":
            files = _find_idx_objects(storage, dataset["s3_prefix"])
        else:
            files = _download_to_cache(storage, dataset.get("mirrors") or _mirrors_from_env())
        heads = {name: storage.head(key) for name, key in files.items()}
        data = {
            "files": files,
            "etags": {name: head["ETag"].strip('"') for name, head in heads.items()},
            # Later steps read exactly these versions, whatever is uploaded meanwhile.
            "versions": {name: head.get("VersionId") for name, head in heads.items()},
        }
        storage.put_json(RunPaths(run_id).manifest, _manifest(run_id, event, run_trigger, data))
        if dataset["kind"] == "csv":
            tabular_datasource.check_definitions(storage, files, data["versions"], run_trigger["model"])
            details["objects"] = len(files)
        else:
            details["source"] = dataset["source"]
    return data


def _find_idx_objects(storage: Storage, prefix: str) -> dict[str, str]:
    files, missing = {}, []
    for name in mnist.MNIST_FILES:
        for candidate in (f"{prefix}{name}.gz", f"{prefix}{name}"):
            if storage.exists(candidate):
                files[name] = candidate
                break
        else:
            missing.append(name)
    if missing:
        present = sorted(storage.list_keys(prefix, limit=10))
        raise DataError(
            f"s3://{storage.bucket}/{prefix} lacks {', '.join(missing)} (raw or .gz); "
            f"found: {', '.join(present) or 'nothing'}"
        )
    return files


def _download_to_cache(storage: Storage, mirrors: list[str] | None) -> dict[str, str]:
    files = {}
    for name in mnist.MNIST_FILES:
        key = MNIST_CACHE_PREFIX + name
        if not _cached_copy_is_intact(storage, key, name):
            kwargs = {"mirrors": mirrors} if mirrors else {}
            storage.put_bytes(key, mnist.download(name, **kwargs))  # verified by download()
        files[name] = key
    return files


def _cached_copy_is_intact(storage: Storage, key: str, name: str) -> bool:
    """The cache is shared by all runs: trust it only while its SHA-256 still matches."""
    if not storage.exists(key):
        return False
    try:
        mnist.verify_sha256(name, storage.get_bytes(key, max_bytes=mnist.MAX_BYTES))  # cached raw
    except (ValueError, DataError):
        return False
    return True


def _mirrors_from_env() -> list[str] | None:
    value = os.environ.get("STEPML_MNIST_MIRRORS", "").strip()
    return [m.strip() for m in value.split(",") if m.strip()] or None


# -- CreateDataSource ----------------------------------------------------------------------
def create_datasource(event: dict, storage: Storage) -> dict:
    """Validate the inputs and write the datasource, or reuse the one an earlier run built from
    the same inputs, definition and code (``stepml.reuse``; ``dataset.rebuild`` forces a build)."""
    run_id = run_id_of(event)
    paths = RunPaths(run_id)
    with step_status(storage, run_id, "CreateDataSource") as details:
        run_trigger = load_run_trigger(storage, run_id)
        dataset = run_trigger["dataset"]
        key = reuse.datasource_key(run_trigger, event["data"])
        found = None if dataset.get("rebuild") else reuse.find(storage, key)
        if found:
            # This run's own descriptor points at the arrays the earlier run wrote (read-only).
            descriptor = {**found["descriptor_document"], "reused_from": found["run_id"]}
            storage.put_json(paths.datasource + "datasource.json", descriptor)
            details["reused_from"] = found["run_id"]
        else:
            shard_rows = run_trigger.get("batch_prediction", {}).get("shard_rows")
            if dataset["kind"] == "csv":
                descriptor = tabular_datasource.create_csv_datasource(
                    storage, run_id, event["data"], dataset, run_trigger["model"], shard_rows)
            else:
                descriptor = datasource.create_image_datasource(
                    storage, run_id, event["data"]["files"], event["data"].get("versions", {}), shard_rows)
            reuse.remember(storage, key, run_id, paths.datasource + "datasource.json")
        details.update(train_rows=descriptor["train_rows"], test_rows=descriptor["test_rows"])
    return {
        "descriptor": paths.datasource + "datasource.json",
        "train_rows": descriptor["train_rows"],
        "test_rows": descriptor["test_rows"],
        "reused_from": descriptor.get("reused_from"),
    }


# -- Train / CheckTraining -----------------------------------------------------------------
def train(event: dict, storage: Storage, remaining_seconds: float | None = None,
          attempt: str | None = None) -> dict:
    """Start training; with the builtin engine, train here within the Lambda's remaining time.

    ``attempt`` (the Lambda request id) differs on every retry of the step, so a managed
    engine names its jobs uniquely and a retry never collides with its own earlier job.
    """
    run_id = run_id_of(event)
    run_trigger = load_run_trigger(storage, run_id)
    model = run_trigger["model"]
    with step_status(storage, run_id, "Train") as details:
        job = get_engine(model["engine"], storage).start_training({
            **_engine_job(run_id, run_trigger, event, attempt),
            "algorithm": model["algorithm"],
            "parameters": model["parameters"],
            "seed": model["seed"],
            "time_budget_s": training_budget(model.get("time_budget_seconds"), remaining_seconds),
        })
        details.update({k: job[k] for k in ("job_id", "status", "stop_reason") if k in job})
    return _poll_state(job, polls=0)


def training_budget(requested: float | None, remaining_seconds: float | None) -> float | None:
    """Seconds training may take: the trigger's budget, capped by what the Lambda has left
    after keeping TRAINING_RESERVE_SECONDS to save the model and write the records."""
    budgets = [b for b in (requested,) if b is not None]
    if remaining_seconds is not None:
        budgets.append(max(1.0, remaining_seconds - TRAINING_RESERVE_SECONDS))
    return min(budgets) if budgets else None


def check_training(event: dict, storage: Storage) -> dict:
    return _check_job(event, storage, "training", "describe_training", TrainingFailed)


# -- BatchPredict / CheckBatchPrediction ---------------------------------------------------
def batch_predict(event: dict, storage: Storage, attempt: str | None = None) -> dict:
    run_id = run_id_of(event)
    run_trigger = load_run_trigger(storage, run_id)
    with step_status(storage, run_id, "BatchPredict") as details:
        job = get_engine(run_trigger["model"]["engine"], storage).start_batch_prediction({
            **_engine_job(run_id, run_trigger, event, attempt),
            "model": event["training"]["model"],
        })
        details.update(job_id=job["job_id"], status=job["status"])
    if job["status"] == fanout.FAN_OUT:
        # The Map writes no status itself: say that the shards are being scored, so that a
        # failure there is recorded against PredictShards (Score closes the step).
        write_status(storage, run_id, "RUNNING", "PredictShards", shards=job["shard_count"],
                     max_concurrency=job["max_concurrency"])
    return _poll_state(job, polls=0)


def predict_shard(event: dict, storage: Storage) -> dict:
    """One item of the PredictShards Map: score one shard, write its part (``stepml.fanout``)."""
    return fanout.predict_shard(event, storage, run_id_of(event), memory_mb=function_memory_mb())


def _engine_job(run_id: str, run_trigger: dict, event: dict, attempt: str | None) -> dict:
    """What every engine call gets: the run, its datasource, the trigger and engine options."""
    model = run_trigger["model"]
    return {
        "run_id": run_id,
        "datasource": event["datasource"]["descriptor"],
        "model_type": model["type"],
        "options": model.get(model["engine"], {}),
        "attempt": re.sub(r"[^a-z0-9]", "", (attempt or uuid.uuid4().hex).lower())[:8],
        "trigger": run_trigger,
    }


def check_batch_prediction(event: dict, storage: Storage) -> dict:
    return _check_job(event, storage, "prediction", "describe_batch_prediction", PredictionFailed)


def _check_job(event: dict, storage: Storage, field: str, describe: str, failed: type[Exception]) -> dict:
    """One poll: ask the engine about the job in event[field]; a FAILED job fails the step."""
    run_id = run_id_of(event)
    engine = get_engine(load_run_trigger(storage, run_id)["model"]["engine"], storage)
    previous = event[field]
    job = getattr(engine, describe)({"run_id": run_id, **previous})
    if job["status"] == FAILED:
        raise failed(job.get("message", f"the engine reports the {field} job FAILED"))
    try:
        return _poll_state({**previous, **job}, polls=previous["polls"] + 1)
    except PollTimeout:
        # The run gives up on the job: a managed one must not run (and bill) on without it.
        stop = getattr(engine, describe.replace("describe_", "stop_"), None)
        if stop is not None:
            stop({"run_id": run_id, **previous, **job})
        raise


def _poll_state(job: dict, polls: int) -> dict:
    """What the Choice/Wait loop reads: the job, how often it was polled, and how long to wait."""
    if job["status"] != COMPLETED and polls >= MAX_POLLS:
        waited = sum(poll_wait_seconds(p) for p in range(polls))
        raise PollTimeout(f"job {job['job_id']} not finished after {polls} polls "
                          f"(about {waited / 3600:.1f} hours)")
    return {**job, "polls": polls, "wait_seconds": poll_wait_seconds(polls)}


def poll_wait_seconds(polls: int) -> int:
    """Seconds to wait before poll number ``polls + 1``: growing by POLL_GROWTH, capped."""
    return int(min(POLL_MAX_SECONDS, POLL_SECONDS * POLL_GROWTH ** min(polls, 64)))


# -- Score ---------------------------------------------------------------------------------
def score(event: dict, storage: Storage) -> dict:
    started = time.perf_counter()        # the merge below is Score's work too (and its bill)
    run_id = run_id_of(event)
    paths = RunPaths(run_id)
    run_trigger = load_run_trigger(storage, run_id)
    descriptor = storage.get_json(event["datasource"]["descriptor"])
    if event["prediction"]["status"] == fanout.FAN_OUT:
        event = {**event, "prediction": _merge_shards(storage, run_id, descriptor, event["prediction"])}
    with step_status(storage, run_id, "Score", started=started):
        model_type = run_trigger["model"]["type"]
        metrics = evaluation.evaluate(storage, descriptor, event["prediction"]["predictions"],
                                      missing_rows=event["prediction"].get("invalid_rows", 0))
        status = storage.get_json(paths.status)
        outputs = {"datasource": event["datasource"]["descriptor"], "model": event["training"]["model"],
                   "predictions": event["prediction"]["predictions"], "report": paths.report}
        for extra in ("amazon_ml_manifest", "amazon_ml_results"):
            if extra in event["prediction"]:
                outputs[extra] = event["prediction"][extra]
        failures = evaluation.gate_failures(run_trigger.get("quality_gate", {}), metrics)
        passed = not failures
        training = storage.get_json(paths.model + "training.json")
        produced = sum(1 for _ in storage.list_keys(paths.prefix))
        writes = len(status["steps"]) + 2        # every status.json update, and Score's own two
        cost = costs.estimate(
            status["steps"], polls=event["training"].get("polls", 0) + event["prediction"].get("polls", 0),
            s3_puts=produced + writes + 1, s3_gets=writes + 2 * produced,
            training=training, prediction=event["prediction"], engine=run_trigger["model"]["engine"],
            fan_out=event["prediction"].get("fan_out"))
        report = {
            "run_id": run_id,
            "status": "SUCCEEDED" if passed else "FAILED_QUALITY_GATE",
            "created_at": now(),
            "code_version": __version__,
            "dataset": {**run_trigger["dataset"], "train_rows": descriptor["train_rows"],
                        "test_rows": descriptor["test_rows"], "reused_from": descriptor.get("reused_from")},
            "model": run_trigger["model"],
            "training": training,
            "metrics": metrics,
            "quality_gate": {"thresholds": run_trigger.get("quality_gate", {}), "passed": passed,
                             "failures": failures},
            "engine_metrics": event["prediction"].get("service_metrics"),
            "batch_prediction": {k: event["prediction"][k] for k in PREDICTION_FACTS if k in event["prediction"]},
            "cost": cost,
            "seconds_per_step": {s["step"]: s["seconds"] for s in status["steps"] if "seconds" in s},
            # From the trigger's acceptance to this report: the run as its user waited for it.
            "wall_seconds": round((_dt.datetime.fromisoformat(now())
                                   - _dt.datetime.fromisoformat(status["started_at"])).total_seconds(), 3),
            "outputs": outputs,
        }
        # report.html and its charts (stepml.reporting); their keys join report["outputs"]
        outputs.update(reporting.write_report(storage, run_id, report, descriptor, event["prediction"]["predictions"]))
        storage.put_json(paths.report, report)
        storage.put_json(paths.manifest, _manifest(run_id, event, run_trigger, event["data"], outputs))
        if not passed:  # after the report is written: a failed gate still leaves its evidence
            raise QualityGateFailed("; ".join(failures))
    write_status(storage, run_id, "SUCCEEDED", "Score", report=paths.report)
    return {"report": paths.report, "model_type": model_type, **evaluation.headline(metrics, model_type)}


#: What the report says of batch prediction: rows scored, and for the fan-out its shards.
PREDICTION_FACTS = ("rows", "invalid_rows", "shards", "failed_shard_count", "failed_shards", "max_concurrency",
                    "tolerated_failure_percentage", "map_run")


def _merge_shards(storage: Storage, run_id: str, descriptor: dict, prediction: dict) -> dict:
    """Close the PredictShards step: its parts merged in input order (fails past the tolerated
    share of failed shards, recorded against PredictShards)."""
    records = [s for s in storage.get_json(RunPaths(run_id).status)["steps"] if s["step"] == "PredictShards"]
    scored_until = now()
    merged = fanout.merge(storage, run_id, descriptor, prediction)
    if any(r.get("done") for r in records):      # a retried Score: the step is closed already
        return {**prediction, **merged}
    seconds = None if not records else round(
        (_dt.datetime.fromisoformat(scored_until) - _dt.datetime.fromisoformat(records[-1]["at"])).total_seconds(), 3)
    write_status(storage, run_id, "RUNNING", "PredictShards", done=True, seconds=seconds,
                 shards=merged["shards"], failed_shards=merged["failed_shard_count"],
                 invalid_rows=merged["invalid_rows"], map_run=prediction.get("map_run", {}).get("MapRunArn"))
    return {**prediction, **merged}


def _manifest(run_id: str, event: dict, run_trigger: dict, data: dict, outputs: dict | None = None) -> dict:
    """Inputs with ETags and versions, parameters, code version; outputs once there are any."""
    return {
        "run_id": run_id,
        "code_version": __version__,
        "trigger": event.get("trigger", {}),
        "dataset": run_trigger["dataset"],
        "model": run_trigger["model"],
        "inputs": data,
        "outputs": outputs or {},
    }


# -- RecordFailure -------------------------------------------------------------------------
def record_failure(event: dict, storage: Storage) -> dict:
    """Write failure.json and mark the run FAILED; what was produced so far is listed."""
    run_id = run_id_of(event)
    paths = RunPaths(run_id)
    error = event.get("error", {})
    status = storage.get_json_or(paths.status, {})
    last = (status.get("steps") or [{"step": "StartRun", "done": True}])[-1]
    failed_step = last["step"] if not last.get("done") else f"after {last['step']}"
    failure = {
        "run_id": run_id,
        "failed_step": failed_step,
        "error": error.get("Error", "Unknown"),
        "cause": cause_message(error.get("Cause", "")),
        "at": now(),
        **_produced(storage, paths),
    }
    storage.put_json(paths.failure, failure)
    write_status(storage, run_id, "FAILED", failed_step, failure=paths.failure)
    return {"failure": paths.failure, "error": failure["error"]}


#: At most this many keys are listed in failure.json (a fan-out leaves a shard and a part per
#: 8 MiB of evaluation data: tens of thousands of keys at scale).
FAILURE_LISTED_KEYS = 1000


def _produced(storage: Storage, paths: RunPaths) -> dict:
    """The run's objects for failure.json: every key but the shards' and parts' data first (the
    datasource, model, error records...), up to FAILURE_LISTED_KEYS, and how many there are."""
    keys = sorted(k for k in storage.list_keys(paths.prefix) if k != paths.status)

    def bulk(key: str) -> bool:
        return f"/datasource/{shards.SHARDS_DIR}" in key or \
            (f"/predictions/{shards.PARTS_DIR}" in key and key.endswith(".npz"))

    first = sorted(keys, key=bulk)[:FAILURE_LISTED_KEYS]      # stable: the others keep their order
    return {"produced": sorted(first), "produced_count": len(keys)}


def cause_message(cause: str) -> str:
    """Lambda errors arrive as a JSON string with errorMessage; keep the message, drop the stack."""
    try:
        return json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        return cause


# -- StartRun ------------------------------------------------------------------------------
def start_run(record: dict, storage: Storage, sfn, state_machine_arn: str) -> dict:
    """One S3 event record -> a validated trigger and one execution (or a rejection record).

    The execution name is derived from bucket, key and version, so a duplicated S3 event
    finds its execution already there (ExecutionAlreadyExists) and starts nothing new.
    """
    try:
        bucket, key, version_id, version = triggers.object_from_s3_record(record)
        check_key(key)
    except ValueError as err:  # nothing sensible to write a rejection next to
        return {"outcome": "ignored", "reason": str(err)}
    if bucket != storage.bucket:
        return {"key": key, "outcome": "ignored", "reason": f"bucket {bucket!r} is not this stack's"}
    if not triggers.is_trigger_key(key):
        return {"key": key, "outcome": "ignored", "reason": "not a triggers/*.json object"}
    try:
        raw = storage.get_bytes(key, max_bytes=triggers.MAX_TRIGGER_BYTES, version_id=version_id)
        run_trigger = triggers.parse(raw)
        _check_engine_region(run_trigger["model"]["engine"], state_machine_arn.split(":")[3])
    except (TriggerRejected, DataError) as err:
        rejection = {"trigger": key, "version": version, "rejected_at": now(), "reason": str(err),
                     "help": "Fix the trigger and upload it again; see the README's trigger format."}
        storage.put_json(triggers.rejection_key(key), rejection)
        return {"key": key, "outcome": "rejected", "reason": str(err)}

    run_id = triggers.run_id_for(bucket, key, version, run_trigger.get("name"))
    paths = RunPaths(run_id)
    payload = {"run_id": run_id, "bucket": bucket,
               "trigger": {"key": key, "version": version}}
    execution_arn = state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + run_id
    first_delivery = not storage.exists(paths.trigger)
    if first_delivery:  # write-once: a duplicate event finds it there
        if storage.exists(triggers.rejection_key(key)):
            # An earlier version of this trigger was rejected; this one is fine: the old record
            # would only mislead (the bucket's versioning keeps it).
            storage.delete(triggers.rejection_key(key))
        storage.put_json(paths.trigger, run_trigger)
        write_status(storage, run_id, "RUNNING", "StartRun", done=True,
                     execution_arn=execution_arn, console_url=console_url(execution_arn), trigger=key)
    try:
        # Still called on a repeat delivery, in case the first one died before starting the
        # execution: with the same name and input, StartExecution is idempotent.
        sfn.start_execution(stateMachineArn=state_machine_arn, name=run_id, input=_json(payload))
    except sfn.exceptions.ExecutionAlreadyExists:
        first_delivery = False
    outcome = "started" if first_delivery else "duplicate"
    return {"key": key, "run_id": run_id, "outcome": outcome, "execution_arn": execution_arn}


def console_url(execution_arn: str) -> str:
    """The execution in the Step Functions console (graph, events, the Map Run's children)."""
    partition, region = execution_arn.split(":")[1:4:2]
    domain = {"aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}.get(
        partition, "console.aws.amazon.com")
    return f"https://{region}.{domain}/states/home?region={region}#/v2/executions/details/{execution_arn}"


def _check_engine_region(engine: str, region: str) -> None:
    """Amazon ML answers in two regions only: say so before a run starts, not after."""
    if engine == "amazonml":
        from stepml.engines.amazonml import check_region

        try:
            check_region(region)
        except EngineUnavailable as err:
            raise TriggerRejected(f"model/engine: {err}") from None


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))
