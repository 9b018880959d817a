"""Powertools objects shared by every handler: structured logs, traces, EMF metrics.

Service name and metrics namespace come from the environment the template sets
(POWERTOOLS_SERVICE_NAME=stepml, POWERTOOLS_METRICS_NAMESPACE=StepML).

Every pipeline step handler stacks the same four decorators, outermost first:

    @logger.inject_lambda_context(clear_state=True)  # Lambda context keys; no key outlives its invocation
    @tracer.capture_lambda_handler                    # X-Ray subsegment "## lambda_handler"
    @metrics.log_metrics                              # one EMF blob per invocation, flushed at its end
    @step_handler("Train")                            # run_id on logs and trace; step, dataset and
                                                      # engine dimensions; StepSeconds

Logs of the core: the Powertools logger *is* the stdlib logger named after the service,
"stepml", the parent of every core module's ``logging.getLogger(__name__)``
("stepml.engines.builtin", "stepml.tabular.datasource", ...). Their records propagate to its
JSON handler and come out with the same keys (run_id included) and its level, and Powertools
keeps them away from the Lambda runtime's root handler (no duplicate plain-text line).
``copy_config_to_registered_loggers`` is not needed for them: it only reconfigures *other*
top-level loggers (third-party libraries), which we leave alone. This holds as long as the
service name is "stepml" (template Globals; tests/test_template.py pins it).
"""

from __future__ import annotations

import functools
import os
import re
import time
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

#: Metric dimension values when the run's trigger cannot be read (never a run id: bounded).
UNKNOWN = "unknown"


def step_handler(step: str) -> Callable:
    """Decorate a pipeline step's handler (innermost, under the Powertools decorators).

    Before the step: ``run_id`` and ``step`` join every log line of the invocation (the
    handler's, and the core's stdlib loggers'), and ``run_id`` annotates the X-Ray trace (so
    ``annotation.run_id = "..."`` finds a run's traces). After a successful step: its wall
    time as ``StepSeconds``, and the dimensions step, dataset and engine on every metric the
    invocation publishes.
    """

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            run_id = event.get("run_id") if isinstance(event, dict) else None
            logger.append_keys(step=step)
            if isinstance(run_id, str):  # an invalid one still helps to find the line; the step refuses it
                logger.append_keys(run_id=run_id)
                tracer.put_annotation(key="run_id", value=run_id)
            started = time.perf_counter()
            result = handler(event, context)
            metrics.add_metric(name="StepSeconds", unit=MetricUnit.Seconds,
                               value=round(time.perf_counter() - started, 3))
            metrics.add_dimension(name="step", value=step)
            for name, value in run_dimensions(run_id).items():
                metrics.add_dimension(name=name, value=value)
            return result

        return wrapper

    return decorate


def dimensions_of(run_trigger: dict) -> dict[str, str]:
    """The metric dimensions of a run: its dataset and its engine, both of bounded cardinality.

    dataset: ``mnist`` (one dataset, whether read from S3 or downloaded), or ``csv/<name>``
    where name is the last segment of the training data key without its extensions
    (``data/banking.csv`` and ``data/banking/`` give ``csv/banking``): as many values as CSV
    datasets in the bucket, not as many as triggers or runs (a trigger's ``name`` labels an
    experiment, and every run id is new, so neither is a dimension).
    engine: ``builtin``, ``sagemaker`` or ``amazonml``.
    """
    dataset = run_trigger.get("dataset", {})
    kind = str(dataset.get("kind") or UNKNOWN)
    name = kind
    if kind == "csv":
        data = str(dataset.get("training", {}).get("data", ""))
        stem = re.sub(r"(\.(csv|tsv|txt|gz|bz2|zip))+$", "", data.rstrip("/").rsplit("/", 1)[-1], flags=re.I)
        name = f"csv/{stem[:64] or 'data'}"
    return {"dataset": name, "engine": str(run_trigger.get("model", {}).get("engine") or UNKNOWN)}


# (bucket, run id) -> dimensions. A run's trigger.json is written once (StartRun), so a warm
# container reads it once per run: the Check* poll loops cost no extra request.
_DIMENSIONS: dict[tuple[str, str], dict[str, str]] = {}
MAX_CACHED_RUNS = 256


def run_dimensions(run_id: Any) -> dict[str, str]:
    """Dimensions of the run whose step just succeeded (so its trigger.json exists), read from
    runs/<run-id>/trigger.json; best effort: a metric is never worth failing a step."""
    from stepml.runs import RunPaths
    from stepml.storage import Storage

    bucket = os.environ.get("BUCKET_NAME", "")
    if not isinstance(run_id, str) or not bucket:
        return {"dataset": UNKNOWN, "engine": UNKNOWN}
    if (bucket, run_id) not in _DIMENSIONS:
        try:
            run_trigger = Storage(bucket).get_json(RunPaths(run_id).trigger)
        except Exception as err:  # noqa: BLE001 - observability must not break the step
            logger.warning("run trigger unreadable: metrics dimensions unknown", extra={"error": str(err)})
            return {"dataset": UNKNOWN, "engine": UNKNOWN}
        if len(_DIMENSIONS) >= MAX_CACHED_RUNS:  # a long-lived container: forget, then read again
            _DIMENSIONS.clear()
        _DIMENSIONS[(bucket, run_id)] = dimensions_of(run_trigger)
    return _DIMENSIONS[(bucket, run_id)]


def s3_record_keys(record: Any) -> dict[str, str]:
    """Log keys naming the object of one S3 event record (StartRun logs them until it knows
    the run id); empty for a record that is not an S3 object event."""
    from stepml.trigger import object_from_s3_record

    try:
        bucket, key, _, version = object_from_s3_record(record)
    except ValueError:
        return {}
    return {"bucket": bucket, "key": key, "version": version}


__all__ = ["logger", "tracer", "metrics", "MetricUnit", "step_handler", "dimensions_of", "run_dimensions",
           "s3_record_keys", "UNKNOWN"]
