"""BatchPredict: predict every evaluation row with the trained model."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.batch_predict(event, Storage(os.environ["BUCKET_NAME"]), attempt=context.aws_request_id)
    metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=result.get("rows", 0))
    return result
