"""RecordFailure: write runs/<run-id>/failure.json and mark the run FAILED."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("RecordFailure")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.record_failure(event, Storage(os.environ["BUCKET_NAME"]))
    metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    logger.error("run failed", extra=result)
    return result
