"""Train: train the trigger's model with its engine (the builtin engine finishes here)."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("Train")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # The Lambda clock bounds training: it stops in time with the best model so far.
    remaining = context.get_remaining_time_in_millis() / 1000
    result = steps.train(event, Storage(os.environ["BUCKET_NAME"]), remaining_seconds=remaining,
                         attempt=context.aws_request_id)
    if "training_seconds" in result:
        metrics.add_metric(name="TrainingSeconds", unit=MetricUnit.Seconds, value=result["training_seconds"])
    return result
