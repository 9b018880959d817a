"""LocalStack: template.yaml on moto — the bucket, the functions with their environment, the
S3 -> StartRun notification and the state machine from its ASL file — with the real handlers
invoked in-process and moto interpreting the real Amazon States Language.

``stepml.local.moto_fixes`` makes moto's Distributed Map list and tolerate as AWS does. One
more patch makes this work without Docker: moto's ``LambdaFunction._invoke_lambda`` (which
would start a container) calls our handler instead and returns ``(result_json, errored, logs)``
as moto expects. Wait states and Retry intervals are scaled by ``time_scale`` (0 = no waiting).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
import zipfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable
from unittest import mock

from stepml.local import moto_fixes
from stepml.local.template import ACCOUNT_ID, LocalFunction, ResolvedTemplate, resolve_template

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_ENV = {
    # X-Ray has no daemon here; Powertools would warn on every segment.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Fake credentials: the mock answers, and nothing can ever reach a real account.
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
}


class LocalContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    def __init__(self, fn: LocalFunction):
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{fn.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + fn.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _ThreadRoutedStream(io.TextIOBase):
    """stdout/stderr that sends what a Lambda invocation prints to that invocation's log.

    Handlers run in moto's execution threads; printing to the terminal from there would
    interleave with the CLI's own output. What they print becomes their CloudWatch log.
    """

    def __init__(self, fallback):
        self.fallback = fallback
        self.local = threading.local()

    def write(self, text: str) -> int:
        sink = getattr(self.local, "sink", None)
        return (sink or self.fallback).write(text)

    def flush(self) -> None:
        (getattr(self.local, "sink", None) or self.fallback).flush()

    @contextlib.contextmanager
    def capture(self, on_line: Callable[[str], None] | None = None):
        self.local.sink = buffer = _LineTee(on_line)
        try:
            yield buffer
        finally:
            self.local.sink = None


class _LineTee(io.StringIO):
    """Keeps everything written, and hands each complete line to a callback as it arrives."""

    def __init__(self, on_line: Callable[[str], None] | None):
        super().__init__()
        self.on_line = on_line
        self.pending = ""

    def write(self, text: str) -> int:
        if self.on_line:
            *lines, self.pending = (self.pending + text).split("\n")
            for line in lines:
                self.on_line(line)
        return super().write(text)


class LocalStack:
    """Use as a context manager; everything AWS happens inside the moto mock it starts."""

    def __init__(self, root: Path = PROJECT_ROOT, *, stack_name: str = "stepml-local",
                 region: str = "us-east-1", time_scale: float = 0.0,
                 parameters: dict | None = None, on_log: Callable[[str, str], None] | None = None):
        """on_log(function logical id, line) receives each line a handler prints, as it prints it."""
        self.root = Path(root)
        self.region = region
        self.time_scale = time_scale
        self.on_log = on_log
        self.resolved: ResolvedTemplate = resolve_template(self.root, stack_name, region, parameters)
        self._by_name = {fn.name: fn for fn in self.resolved.functions.values()}
        self._modules: dict[str, ModuleType] = {}
        self._import_lock = threading.Lock()
        self._exit = contextlib.ExitStack()

    # -- what callers use --------------------------------------------------------------------
    @property
    def bucket(self) -> str:
        return self.resolved.bucket_name

    @property
    def state_machine_arn(self) -> str:
        return self.resolved.state_machine.arn

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=self.region)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "LocalStack":
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    def _start(self) -> None:
        from moto import mock_aws
        from moto.awslambda.models import LambdaFunction

        self._exit.enter_context(mock.patch.dict(os.environ, {**LOCAL_ENV, **self._shared_environment()}))
        self._exit.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        stack = self

        def invoke_in_process(function_model, event=None):
            return stack._invoke(function_model.function_name, event)

        self._exit.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda", invoke_in_process))
        self._patch_s3_events()
        self._patch_waiting()
        moto_fixes.apply(self._exit)    # Distributed Map details moto does not do as AWS does
        self._quiet_moto()
        self._route_output()
        self._create_resources()

    def _shared_environment(self) -> dict[str, str]:
        """The union of all functions' variables: handlers share one process here.

        Two functions that set one variable to different values could not both be served
        faithfully, so that is refused rather than guessed.
        """
        merged: dict[str, str] = {}
        for fn in self.resolved.functions.values():
            for key, value in fn.environment.items():
                if merged.setdefault(key, value) != value:
                    raise ValueError(f"local stack: {key} differs between functions; "
                                     "in-process handlers need one value per variable")
        return merged

    def _patch_waiting(self) -> None:
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        scale = self.time_scale
        original_wait = WaitFunction._wait_interval

        def scaled_wait(function, env, wait_seconds):
            return original_wait(function, env, int(round(wait_seconds * scale)))

        scaled_time = SimpleNamespace(**{**vars(time), "sleep": lambda seconds: time.sleep(seconds * scale)})
        self._exit.enter_context(mock.patch.object(WaitFunction, "_wait_interval", scaled_wait))
        self._exit.enter_context(mock.patch.object(retrier_decl, "time", scaled_time))

    def _patch_s3_events(self) -> None:
        """S3 puts the object's versionId in events from a versioned bucket; moto leaves it out.

        Without it StartRun would name runs by ETag locally and by version on AWS.
        """
        from moto.s3 import notifications

        original = notifications._get_s3_event

        def with_version_id(event_name, bucket, key, notification_id):
            event = original(event_name, bucket, key, notification_id)
            if bucket.is_versioned:
                for record in event["Records"]:
                    record["s3"]["object"]["versionId"] = key.version_id
            return event

        self._exit.enter_context(mock.patch.object(notifications, "_get_s3_event", with_version_id))

    def _quiet_moto(self) -> None:
        """moto logs every failed state at ERROR with its internals; a failed run is reported
        by the runner and the failure record instead. on_log callers still see the handlers."""
        import logging

        moto_logger = logging.getLogger("moto")
        previous = moto_logger.level
        moto_logger.setLevel(logging.CRITICAL)
        self._exit.callback(moto_logger.setLevel, previous)

    def _route_output(self) -> None:
        self._stdout = _ThreadRoutedStream(sys.stdout)
        self._stderr = _ThreadRoutedStream(sys.stderr)
        self._exit.enter_context(mock.patch.object(sys, "stdout", self._stdout))
        self._exit.enter_context(mock.patch.object(sys, "stderr", self._stderr))

    def _create_resources(self) -> None:
        iam, s3, lam, sfn = (self.client(s) for s in ("iam", "s3", "lambda", "stepfunctions"))
        role_arn = iam.create_role(
            RoleName="stepml-local-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}]}),
        )["Role"]["Arn"]
        self._create_bucket(s3)
        placeholder = _placeholder_zip()
        for fn in self.resolved.functions.values():
            lam.create_function(
                FunctionName=fn.name, Runtime=fn.runtime, Role=role_arn, Handler=fn.handler,
                Code={"ZipFile": placeholder}, Timeout=fn.timeout_s, MemorySize=fn.memory_mb,
                Architectures=fn.architectures, Environment={"Variables": fn.environment},
            )
        machine = self.resolved.state_machine
        sfn.create_state_machine(name=machine.name, definition=machine.definition,
                                 roleArn=role_arn, type=machine.type)
        self._subscribe_s3_events(s3)

    def _create_bucket(self, s3) -> None:
        props = self.resolved.bucket_properties
        kwargs = {} if self.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.region}}
        s3.create_bucket(Bucket=self.bucket, **kwargs)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        if "BucketEncryption" in props:
            # CloudFormation says ServerSideEncryptionByDefault where the S3 API says Apply...
            rules = [{("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                      for k, v in rule.items()}
                     for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]]
            s3.put_bucket_encryption(Bucket=self.bucket,
                                     ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(Bucket=self.bucket,
                                       PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])

    def _subscribe_s3_events(self, s3) -> None:
        configs = []
        for fn in self.resolved.functions.values():
            for event in fn.s3_events:
                config: dict[str, Any] = {"LambdaFunctionArn": fn.arn, "Events": _as_list(event["Events"])}
                rules = event.get("Filter", {}).get("S3Key", {}).get("Rules")
                if rules:
                    config["Filter"] = {"Key": {"FilterRules": rules}}
                configs.append(config)
        if configs:
            s3.put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configs})

    # -- invoking handlers in-process ------------------------------------------------------
    def _handler(self, fn: LocalFunction) -> Callable:
        module_name, _, attribute = fn.handler.rpartition(".")
        with self._import_lock:
            if fn.name not in self._modules:
                path = fn.code_dir / f"{module_name.replace('.', '/')}.py"
                spec = importlib.util.spec_from_file_location(f"stepml_local_{fn.logical_id}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self._modules[fn.name] = module
        return getattr(self._modules[fn.name], attribute)

    def _invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        fn = self._by_name[function_name]
        if isinstance(event, (str, bytes)):
            event = json.loads(event or "{}")
        on_line = (lambda line: self.on_log(fn.logical_id, line)) if self.on_log else None
        with self._stdout.capture(on_line) as out, self._stderr.capture(on_line) as err:
            try:
                result = self._handler(fn)(event if event is not None else {}, LocalContext(fn))
                payload, errored = json.dumps(result), False
            except Exception as error:  # noqa: BLE001 - becomes the Lambda error payload, as in AWS
                payload, errored = json.dumps({
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_tb(error.__traceback__),
                }), True
        return payload, errored, out.getvalue() + err.getvalue()


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _placeholder_zip() -> bytes:
    """moto stores a code package; the handlers themselves are imported from functions/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "stepml local stack: code is loaded from functions/ in-process\n")
    return buffer.getvalue()


__all__ = ["LocalStack", "LocalContext", "ACCOUNT_ID"]
