"""BatchPredict: plan the fan-out over the shards (builtin engine) or start a managed engine's
batch prediction job."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("BatchPredict")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.batch_predict(event, Storage(os.environ["BUCKET_NAME"]), attempt=context.aws_request_id)
    if "rows" in result:    # a managed engine's job; the builtin engine's fan-out counts per shard
        metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=result["rows"])
    return result
