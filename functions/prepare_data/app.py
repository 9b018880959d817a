"""PrepareData: locate the input files in S3, or download them and check their SHA-256."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("PrepareData")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.prepare_data(event, Storage(os.environ["BUCKET_NAME"]))
    logger.info("input files ready", extra={"files": result["files"]})
    metrics.add_metric(name="InputFiles", unit=MetricUnit.Count, value=len(result["files"]))
    return result
