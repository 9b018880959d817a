"""``stepml local serve``: the local stack over HTTP, for the real AWS CLI and boto3.

The LocalStack (template.yaml on moto, handlers in-process) is started as usual, and moto's
own WSGI application — the one ``moto_server`` runs — is served from a thread of the same
process. Inside the stack's ``mock_aws`` both talk to the same moto backends, and the
in-process Lambda patch is a class patch, so an ``aws s3 cp`` of a trigger fires the bucket's
notification -> StartRun -> StartExecution -> the handlers, exactly as ``stepml local run`` does.

The stack also registers a CloudFormation stack (named after the local stack, "stepml-local")
whose outputs carry the bucket and state machine, as template.yaml's do on AWS, so that
``aws cloudformation describe-stacks`` and ``stepml runs --endpoint-url ...`` find them the
same way they find a deployed stack.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import shlex
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from stepml.console import LOCAL_STACK_NAME
from stepml.local.stack import LocalStack

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DATA_PREFIX = "data/mnist/"
WATCH_SECONDS = 1.0
READY_LINE = "stepml local serve: ready at "  # what scripts (and the test) wait for
SERVED_OUTPUTS = ("BucketName", "StateMachineArn", "StateMachineName")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
#: <bucket>.localhost, <bucket>.127.0.0.1: S3's virtual-host addressing against a local endpoint
_VIRTUAL_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?\.(localhost|127\.0\.0\.1)")


def host_name(header: str) -> str | None:
    """The name in a Host header ("name", "name:port", "[v6]", "[v6]:port"), lowercased;
    None when it is none of these."""
    value = header.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or not _is_ip(name):
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return name or None


def host_allowed(header: str, bound: tuple[str, ...] = ()) -> bool:
    """Whether a request's Host header names this machine's loopback (127.0.0.1, localhost,
    [::1], *.localhost, <bucket>.127.0.0.1) or the address the server is bound to, with any
    port. A web page that rebinds its own DNS name to 127.0.0.1 still sends that name, so it is
    refused. Bound to every interface (0.0.0.0, ::), any IP address is accepted, never a name."""
    name = host_name(header)
    if name is None:
        return False
    bound_names = {b.strip("[]").lower() for b in bound if b}
    if name in LOOPBACK_NAMES or name in bound_names or _VIRTUAL_HOST.fullmatch(name):
        return True
    return _is_ip(name) and any(_is_ip(b) and ipaddress.ip_address(b).is_unspecified for b in bound_names)


class HostAllowList:
    """WSGI middleware: requests whose Host header ``host_allowed`` refuses get 403 (DNS rebinding)."""

    def __init__(self, app, bound: tuple[str, ...] = ()):
        self.app = app
        self.bound = tuple(bound)

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_HOST", "")
        if host_allowed(header, self.bound):
            return self.app(environ, start_response)
        body = (f"403 Forbidden: stepml local serve answers requests for 127.0.0.1, localhost, [::1] or the "
                f"address it listens on, not for Host {header[:100]!r}: this keeps web pages from reaching "
                "the stack through DNS rebinding.\n").encode("utf-8", "backslashreplace")
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]


class LocalServer:
    """moto's WSGI app on host:port in a daemon thread; the socket is bound before start()
    returns, so a busy port fails at once with OSError."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, verbose: bool = False):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        if not verbose:  # werkzeug logs every request at INFO
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Bound here rather than by werkzeug, which answers a busy port with sys.exit(1).
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            listening = socket.create_server((host, port), family=family, backlog=128)
        except OSError as err:
            raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err} "
                          "(choose another --port, or --port 0 for any free one)") from err
        with listening:  # werkzeug serves a duplicate of it
            # moto's app behind a Host check: a web page must not reach it by DNS rebinding
            app = HostAllowList(DomainDispatcherApplication(create_backend_app), (host, listening.getsockname()[0]))
            self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler,
                                       fd=listening.fileno())
        self._thread = threading.Thread(target=self._server.serve_forever, name="stepml-serve", daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> "LocalServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call more than once."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def register_outputs(stack: LocalStack, stack_name: str = LOCAL_STACK_NAME) -> dict[str, str]:
    """A CloudFormation stack with template.yaml's outputs, as the local stack resolved them
    (those that name something the local stack has: the bucket and the state machine)."""
    outputs = {key: str(stack.resolved.outputs[key]) for key in SERVED_OUTPUTS if key in stack.resolved.outputs}
    template = {
        "Description": "stepml local stack (served by `stepml local serve`): outputs only",
        # moto needs one resource; it records this one and creates nothing
        "Resources": {"LocalStackMarker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "WaitConditionHandle ... not supported by moto": on purpose
        stack.client("cloudformation").create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    return outputs


def upload_mnist(stack: LocalStack, mnist_dir: Path, say: Callable[[str], None]) -> None:
    from stepml import mnist

    files = mnist.load_local_dir(mnist_dir)  # checks the SHA-256 before anything is uploaded
    s3 = stack.client("s3")
    for name in files:
        path = next(p for p in (mnist_dir / f"{name}.gz", mnist_dir / name) if p.is_file())
        s3.upload_file(str(path), stack.bucket, DATA_PREFIX + path.name)
    say(f"MNIST from {mnist_dir} (SHA-256 verified) uploaded to s3://{stack.bucket}/{DATA_PREFIX}")


def ready_text(endpoint: str, bucket: str, state_machine_arn: str, stack_name: str,
               mnist_in_bucket: bool) -> str:
    """What to paste: credentials, a trigger upload, the execution, its history, the results."""
    from stepml.cli import demo_trigger

    dataset = ({"kind": "mnist", "source": "s3", "s3_prefix": DATA_PREFIX} if mnist_in_bucket
               else {"kind": "mnist", "source": "download"})
    trigger = json.dumps(demo_trigger("fast", 0, dataset), separators=(",", ":"))
    e = f"--endpoint-url {endpoint}"
    execution = state_machine_arn.replace(":stateMachine:", ":execution:") + ":<run-id>"
    data_note = (f"# MNIST is in s3://{bucket}/{DATA_PREFIX} (source s3)" if mnist_in_bucket else
                 "# the trigger downloads MNIST (source download); offline, restart with --mnist-dir DIR")
    return "\n".join([
        f"{READY_LINE}{endpoint}",
        f"  bucket         {bucket}",
        f"  state machine  {state_machine_arn}",
        f"  stack          {stack_name} (aws cloudformation describe-stacks --stack-name {stack_name} {e})",
        "",
        "Any credentials work; in another shell:",
        "",
        "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1",
        data_note,
        f"echo {shlex.quote(trigger)} | aws s3 cp - s3://{bucket}/triggers/mnist-fast.json {e}",
        f"aws stepfunctions list-executions --state-machine-arn {state_machine_arn} {e}",
        f"aws stepfunctions get-execution-history --execution-arn {execution} {e}",
        f"aws s3 cp --recursive s3://{bucket}/runs/<run-id>/ ./<run-id>/ {e}",
        f"stepml runs {e}",
        f"stepml status <run-id> {e}",
        f"stepml history <run-id> {e}",
        f"stepml report <run-id> --open {e}",
        "",
        f"(or export AWS_ENDPOINT_URL={endpoint} and leave out --endpoint-url)",
        "Ctrl-C stops the server; everything in it is gone then.",
    ])


def watch_executions(sfn, state_machine_arn: str, seen: dict[str, str], endpoint: str) -> list[str]:
    """Lines for executions that started or ended since the last look (``seen``: name -> status)."""
    lines = []
    executions = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    for execution in sorted(executions, key=lambda e: e["startDate"]):
        name, status = execution["name"], execution["status"]
        before = seen.get(name)
        if before is None:
            lines.append(f"execution {name} started")
        if status != "RUNNING" and before != status:
            stopped = execution.get("stopDate") or execution["startDate"]
            seconds = (stopped - execution["startDate"]).total_seconds()
            lines.append(f"execution {name} {status} in {seconds:.1f} s: "
                         f"stepml status {name} --endpoint-url {endpoint}")
        seen[name] = status
    return lines


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, mnist_dir: Path | None = None,
          verbose: bool = False, say: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> int:
    """Serve until SIGINT or SIGTERM (or ``stop`` is set); 0 on a clean stop. A second signal
    while stopping ends the process at once (exit code 130)."""
    say = say or _say
    stop = stop or threading.Event()

    def on_signal(*_) -> None:
        if stop.is_set():
            os._exit(130)
        stop.set()

    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, on_signal)
    try:
        with leftover_threads_quieted() as quiet:
            return _serve(host, port, mnist_dir, verbose, say, stop, quiet)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def leftover_threads_quieted():
    """Yields quiet(): once called, an exception in a thread started inside the block (an
    abandoned execution's moto thread, which may fail once the mock is gone: no news) is not
    printed. Threads that were there before are reported as ever, and the previous
    threading.excepthook is back when the block ends."""
    previous = threading.excepthook
    existing = set(threading.enumerate())

    def hook(args) -> None:
        if args.thread is None or args.thread in existing:
            previous(args)

    def quiet() -> None:
        threading.excepthook = hook

    try:
        yield quiet
    finally:
        if threading.excepthook is hook:  # unless someone replaced it meanwhile
            threading.excepthook = previous


@contextlib.contextmanager
def without_endpoint_overrides():
    """Hide AWS_ENDPOINT_URL (and its per-service forms) while a local stack runs: its own boto3
    clients must reach moto's mock, not the endpoint a user exported for the AWS CLI."""
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]}
    try:
        yield
    finally:
        os.environ.update(saved)


def _serve(host, port, mnist_dir, verbose, say, stop, quiet) -> int:
    with without_endpoint_overrides():
        return _serve_stack(host, port, mnist_dir, verbose, say, stop, quiet)


def _serve_stack(host, port, mnist_dir, verbose, say, stop, quiet) -> int:
    from stepml.cli import _log_printer

    if not _is_loopback(host):
        say(f"warning: serving on {host}: anyone who can reach it can use this stack (no authentication)")
    server = LocalServer(host, port, verbose)  # bound first: a busy port fails before the stack starts
    try:
        with LocalStack(stack_name=LOCAL_STACK_NAME, on_log=_log_printer(True) if verbose else None) as stack:
            if mnist_dir:
                upload_mnist(stack, Path(mnist_dir), say)
            register_outputs(stack)
            server.start()
            sfn, seen = stack.client("stepfunctions"), {}
            say(ready_text(server.endpoint, stack.bucket, stack.state_machine_arn, LOCAL_STACK_NAME,
                           bool(mnist_dir)))
            try:
                while not stop.wait(WATCH_SECONDS):
                    try:
                        lines = watch_executions(sfn, stack.state_machine_arn, seen, server.endpoint)
                    except Exception as err:  # noqa: BLE001 - the progress lines are a courtesy; serving goes on
                        lines = [f"(could not list executions: {err})"]
                    for line in lines:
                        say(line)
            finally:
                server.stop()
            running = [name for name, status in seen.items() if status == "RUNNING"]
            if running:
                quiet()
    finally:
        server.stop()
    say("stopped" + (f"; abandoned the running executions {', '.join(running)}" if running else ""))
    return 0


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _say(text: str) -> None:
    # sys.__stdout__: the stack routes sys.stdout per thread while it runs
    print(text, file=sys.__stdout__, flush=True)


__all__ = ["READY_LINE", "HostAllowList", "LocalServer", "host_allowed", "leftover_threads_quieted", "ready_text",
           "register_outputs", "serve", "watch_executions", "without_endpoint_overrides"]
