"""Powertools objects shared by every handler: structured logs, traces, EMF metrics.

Service name and metrics namespace come from the environment the template sets
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE).
"""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["logger", "tracer", "metrics", "MetricUnit"]
