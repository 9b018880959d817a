"""`stepml local serve` as a separate process, driven by the real AWS CLI (the `awscli`
package) and by the console commands over HTTP: upload data and a trigger, wait for the
execution to succeed, list it, read its history, fetch the report; then Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stepml.local.serve import READY_LINE
from tests.integration.test_pipeline import trigger_body

BIN = Path(sys.executable).parent
RUN_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """The serve process, with its stdout read line by line in a thread."""

    def __init__(self, tmp_path: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        self.env.update({  # dummy credentials; no config file of the user's is read
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        })
        self.env.pop("AWS_SESSION_TOKEN", None)
        self.env.pop("AWS_SECURITY_TOKEN", None)
        self.cwd = tmp_path
        self.port = free_port()
        self.process = subprocess.Popen(  # an exported endpoint is for the CLI; serve itself ignores it
            [str(BIN / "stepml"), "local", "serve", "--port", str(self.port)],
            env={**self.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.printed: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"serve exited: {self.process.stderr.read()}"
                continue
            self.printed.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout} s; printed: {self.printed}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def aws(self, *args: str):
        done = subprocess.run([str(BIN / "aws"), *args, "--endpoint-url", self.endpoint, "--output", "json"],
                              env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout

    def stepml(self, *args: str, exported: bool = False) -> str:
        """A console command, given --endpoint-url, or with the endpoint exported instead."""
        env, flag = ({**self.env, "AWS_ENDPOINT_URL": self.endpoint}, []) if exported else (
            self.env, ["--endpoint-url", self.endpoint])
        done = subprocess.run([str(BIN / "stepml"), *args, *flag], env=env, cwd=self.cwd,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"stepml {' '.join(args)}: {done.stderr}"
        return done.stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def served(tmp_path):
    if not (BIN / "aws").exists():
        pytest.fail(f"the AWS CLI is not in {BIN}: pip install -e '.[dev]' (it installs awscli)")
    server = Served(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_the_aws_cli_runs_a_pipeline_on_the_served_stack_and_ctrl_c_stops_it(served, synthetic_files, tmp_path):
    served.wait_for(READY_LINE, timeout=60)
    served.wait_for("Ctrl-C stops the server", timeout=5)
    assert f"{READY_LINE}{served.endpoint}" in served.printed

    # the stack's outputs, as on AWS
    stack = served.aws("cloudformation", "describe-stacks", "--stack-name", "stepml-local")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    bucket, machine = outputs["BucketName"], outputs["StateMachineArn"]
    assert f"  bucket         {bucket}" in served.printed

    data = tmp_path / "mnist"
    data.mkdir()
    for name, body in synthetic_files.items():
        (data / f"{name}.gz").write_bytes(body)
    served.aws("s3", "cp", "--recursive", str(data), f"s3://{bucket}/data/mnist/")
    trigger = tmp_path / "served-run.json"
    trigger.write_bytes(trigger_body())
    served.aws("s3", "cp", str(trigger), f"s3://{bucket}/triggers/")  # S3 -> StartRun -> StartExecution

    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        executions = served.aws("stepfunctions", "list-executions", "--state-machine-arn", machine)["executions"]
        if executions:
            (execution,) = executions
            status = served.aws("stepfunctions", "describe-execution",
                                "--execution-arn", execution["executionArn"])["status"]
            if status != "RUNNING":
                break
        assert time.monotonic() < deadline, "the execution did not finish in time"
        time.sleep(1)
    assert status == "SUCCEEDED"
    run_id = execution["name"]
    assert run_id.startswith("served-run-")
    served.wait_for(f"execution {run_id} SUCCEEDED", timeout=10)  # serve reports it too

    history = served.aws("stepfunctions", "get-execution-history", "--execution-arn", execution["executionArn"])
    kinds = [e["type"] for e in history["events"]]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded"

    served.aws("s3", "cp", "--recursive", f"s3://{bucket}/runs/{run_id}/report/", str(tmp_path / "fetched"))
    report = json.loads((tmp_path / "fetched/report.json").read_text())
    assert report["run_id"] == run_id and report["metrics"]["accuracy"] > 0.8

    # the console over the same endpoint
    runs = served.stepml("runs", exported=True)
    assert run_id in runs and "SUCCEEDED" in runs and "accuracy" in runs
    status_text = served.stepml("status", run_id)
    assert "Train" in status_text and "DONE" in status_text
    assert "ExecutionSucceeded" in served.stepml("history", run_id)
    report_text = served.stepml("report", run_id, "--out", str(tmp_path / "console"))
    assert (tmp_path / "console" / run_id / "report/report.json").is_file(), report_text

    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=15) == 0
    served.wait_for("stopped", timeout=5)
    errors = served.process.stderr.read()
    assert "Traceback" not in errors, errors
    with pytest.raises(OSError):  # the port is closed
        socket.create_connection(("127.0.0.1", served.port), timeout=1).close()


def test_sigterm_stops_it_too_and_a_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "AWS_CONFIG_FILE": str(tmp_path / "none")}
        done = subprocess.run([str(BIN / "stepml"), "local", "serve", "--port", str(port)], env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Address already in use" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    process = subprocess.Popen([str(BIN / "stepml"), "local", "serve", "--port", "0"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith(READY_LINE):
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
