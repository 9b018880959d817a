"""Score: evaluate the predictions, write report.json and apply the quality gate."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.score(event, Storage(os.environ["BUCKET_NAME"]))
    metrics.add_metric(name="Accuracy", unit=MetricUnit.Percent, value=100 * result["accuracy"])
    metrics.add_metric(name="MacroF1", unit=MetricUnit.Percent, value=100 * result["macro_f1"])
    return result
