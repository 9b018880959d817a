"""StartRun: an S3 upload under triggers/ -> a validated trigger -> one state machine execution.

A trigger that fails validation gets a readable `<key>.rejected` record next to it and
starts nothing. A duplicated S3 event finds its execution already there and starts nothing.
"""

import os

import boto3
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, s3_record_keys, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict:
    storage = Storage(os.environ["BUCKET_NAME"])
    sfn = boto3.client("stepfunctions")
    results = []
    for record in event.raw_event.get("Records", []):
        # The object's bucket/key/version on every line; the run id too once there is one.
        record_keys = s3_record_keys(record)
        logger.append_keys(**record_keys)
        result = steps.start_run(record, storage, sfn, os.environ["STATE_MACHINE_ARN"])
        if result.get("run_id"):
            logger.append_keys(run_id=result["run_id"])
            tracer.put_annotation(key="run_id", value=result["run_id"])
        logger.info("trigger handled", extra=result)
        logger.remove_keys([*record_keys, "run_id"])
        metrics.add_metric(name=f"Triggers{result['outcome'].title()}", unit=MetricUnit.Count, value=1)
        results.append(result)
    return {"results": results}
