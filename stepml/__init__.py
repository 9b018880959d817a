"""stepml: Amazon Machine Learning's job, open and serverless.

Upload a trigger object to S3; a Step Functions state machine chains Lambda functions
(prepare data -> create datasource -> train -> batch predict -> score) and writes the
datasource, model, predictions and an evaluation report back to S3.
"""

__version__ = "0.1.0"
