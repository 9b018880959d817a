"""Score: evaluate the predictions, write report.json and apply the quality gate."""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import steps
from stepml.observability import MetricUnit, logger, metrics, step_handler, tracer
from stepml.storage import Storage


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@step_handler("Score")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = steps.score(event, Storage(os.environ["BUCKET_NAME"]))
    for field, (name, unit, scale) in HEADLINE_METRICS.items():
        if result.get(field) is not None:
            metrics.add_metric(name=name, unit=unit, value=scale * result[field])
    return result


# Score's headline figures (which ones depend on the model type) as CloudWatch metrics.
HEADLINE_METRICS = {
    "accuracy": ("Accuracy", MetricUnit.Percent, 100),
    "macro_f1": ("MacroF1", MetricUnit.Percent, 100),
    "auc": ("BinaryAUC", MetricUnit.Percent, 100),
    "f1": ("F1", MetricUnit.Percent, 100),
    "rmse": ("RegressionRMSE", MetricUnit.NoUnit, 1),  # in the target's own unit
    "r2": ("R2", MetricUnit.Percent, 100),
}
