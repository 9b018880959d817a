"""PredictShard: one item of the PredictShards Distributed Map - score one shard of the
evaluation rows and write its predictions part."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("PredictShard")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.predict_shard(event, Storage(os.environ["BUCKET_NAME"]))
    metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=result["rows"])
    return result
