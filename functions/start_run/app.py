"""StartRun: an S3 upload under triggers/ -> a validated trigger -> one state machine execution.

A trigger that fails validation gets a readable `<key>.rejected` record next to it and
starts nothing. A duplicated S3 event finds its execution already there and starts nothing.
"""

import os

import boto3
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, tracer
from stepml.storage import Storage


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict:
    storage = Storage(os.environ["BUCKET_NAME"])
    sfn = boto3.client("stepfunctions")
    results = []
    for record in event.raw_event.get("Records", []):
        result = steps.start_run(record, storage, sfn, os.environ["STATE_MACHINE_ARN"])
        logger.info("trigger handled", extra=result)
        metrics.add_metric(name=f"Triggers{result['outcome'].title()}", unit=MetricUnit.Count, value=1)
        results.append(result)
    return {"results": results}
