"""RecordFailure: write runs/<run-id>/failure.json and mark the run FAILED."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.record_failure(event, Storage(os.environ["BUCKET_NAME"]))
    metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    logger.error("run failed", extra=result)
    return result
