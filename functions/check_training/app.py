"""CheckTraining: one bounded poll of the training job's status."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("CheckTraining")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.check_training(event, Storage(os.environ["BUCKET_NAME"]))
    logger.info("training status", extra={"status": result["status"], "polls": result["polls"]})
    metrics.add_metric(name="JobPolls", unit=MetricUnit.Count, value=1)
    return result
