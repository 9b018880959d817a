"""Errors a step raises on purpose.

Step Functions names a Lambda failure after the exception's class name (``errorType``), so
these names are part of the state machine's contract: the ASL retries only transient
errors and sends every one of these straight to RecordFailure.
"""


class StepMLError(Exception):
    """Base class: a problem with the user's input or data, never worth a retry."""


class TriggerRejected(StepMLError):
    """The trigger object is malformed or asks for something not allowed."""


class PayloadError(StepMLError):
    """A state payload is not what the state machine sends (e.g. a hand-edited test event)."""


class DataError(StepMLError):
    """An input data object is missing, malformed or fails validation."""


class TrainingFailed(StepMLError):
    """The engine reports that training failed."""


class PredictionFailed(StepMLError):
    """The engine reports that batch prediction failed."""


class PollTimeout(StepMLError):
    """A job did not finish within the bounded number of status polls."""


class QualityGateFailed(StepMLError):
    """The trained model scored below the trigger's quality gate."""


class EngineUnavailable(StepMLError):
    """The engine's service refuses this account or region (e.g. Amazon ML: no new customers,
    or a region where it never ran). Retrying cannot help."""


class EngineThrottled(Exception):
    """The engine's service throttled a request that starts a job. Transient: the state
    machine retries the step with backoff (it is deliberately not a StepMLError)."""


class TransientError(Exception):
    """S3 (or the network) failed in a way that may pass: SlowDown, a 5xx, a timeout or a lost
    connection. The state machine retries the step with backoff; after the last retry the run
    fails with this error and its message."""
