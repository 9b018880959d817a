"""CreateDataSource: validate every row, write .npy arrays, statistics and a descriptor."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("CreateDataSource")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.create_datasource(event, Storage(os.environ["BUCKET_NAME"]))
    metrics.add_metric(name="TrainRows", unit=MetricUnit.Count, value=result["train_rows"])
    metrics.add_metric(name="TestRows", unit=MetricUnit.Count, value=result["test_rows"])
    return result
