"""`stepml local serve` as a separate process, driven by the real AWS CLI (the `awscli`
package) and by the console commands over HTTP: upload data and a trigger, wait for the
execution to succeed, list it, read its history, fetch the report; then Ctrl-C stops it cleanly."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from stepml.local.serve import READY_LINE
from tests.integration.test_pipeline import trigger_body

BIN = Path(sys.executable).parent
RUN_TIMEOUT = 120
EOF = None  # what the reader queues when serve's stdout closes


class Served:
    """The serve process on a port of its own choosing (--port 0: no port picked here, then
    released, then maybe taken by someone else before serve binds it). Its stdout is read line
    by line in a thread, so every wait has a deadline; its stderr goes to a file, so it can
    never fill a pipe and block serve."""

    def __init__(self, tmp_path: Path, *args: str):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        self.env.update({  # dummy credentials; no config file of the user's is read
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        })
        self.env.pop("AWS_SESSION_TOKEN", None)
        self.env.pop("AWS_SECURITY_TOKEN", None)
        self.cwd = tmp_path
        self.endpoint: str | None = None
        self.port: int | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.process = subprocess.Popen(  # an exported endpoint is for the CLI; serve itself ignores it
            [str(BIN / "stepml"), "local", "serve", "--port", "0", *args],
            env={**self.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.printed: list[str] = []
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                self.lines.put(line.rstrip("\n"))
        finally:
            self.lines.put(EOF)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line (from here on) that holds ``text``; fails after ``timeout`` seconds,
        or as soon as serve's stdout ends without it."""
        deadline = time.monotonic() + timeout
        while not self._ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is EOF:
                self._ended = True
                break
            self.printed.append(line)
            if text in line:
                return line
        why = "serve's output ended" if self._ended else f"not within {timeout} s"
        raise AssertionError(f"no {text!r} ({why}; exit code {self.process.poll()}); printed: {self.printed}; "
                             f"stderr: {self.stderr()[-4000:]}")

    def wait_ready(self, timeout: float = 60) -> str:
        """Wait for the ready line and take the endpoint (and the port serve chose) from it."""
        line = self.wait_for(READY_LINE, timeout)
        self.endpoint = line[line.index(READY_LINE) + len(READY_LINE):].strip()
        self.port = urllib.parse.urlsplit(self.endpoint).port
        assert self.endpoint.startswith("http://127.0.0.1:") and self.port, line
        return self.endpoint

    def aws(self, *args: str, endpoint: str | None = None):
        done = subprocess.run([str(BIN / "aws"), *args, "--endpoint-url", endpoint or self.endpoint,
                               "--output", "json"], env=self.env, capture_output=True, text=True, timeout=60)
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
        self._reader.join(timeout=10)  # at the end of serve's stdout, now that serve is gone
        self._stderr.close()


def get_with_host(port: int, host: str) -> tuple[int, bytes]:
    """GET / from the server on 127.0.0.1:port, with this Host header (a browser sends the page's
    own name, even when its DNS has been rebound to 127.0.0.1)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


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
    served.wait_ready()
    served.wait_for("Ctrl-C stops the server", timeout=5)

    # a page whose DNS name was rebound to 127.0.0.1 still sends its own name: refused
    status, body = get_with_host(served.port, "evil.example")
    assert status == 403 and b"DNS rebinding" in body, body
    assert get_with_host(served.port, f"evil.example:{served.port}")[0] == 403
    assert get_with_host(served.port, f"localhost:{served.port}")[0] != 403

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
    listed = served.aws("s3", "ls", f"s3://{bucket}/data/mnist/", endpoint=f"http://localhost:{served.port}")
    assert set(synthetic_files) <= {line.split()[-1].removesuffix(".gz") for line in listed.splitlines()}
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
    errors = served.stderr()
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

    served = Served(tmp_path)
    try:
        served.wait_ready()
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=15) == 0
        served.wait_for("stopped", timeout=5)
        assert "Traceback" not in served.stderr()
    finally:
        served.stop()


def test_serve_in_process_gives_the_excepthook_back_after_abandoning_a_running_execution(monkeypatch):
    """serve() used to leave threading.excepthook muted for good once it had abandoned an
    execution; it quiets only the threads it leaves behind, and only while it runs."""
    from stepml.local import serve as serving

    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # put back whatever happens
    previous = threading.excepthook
    watched = threading.Event()

    def still_running(sfn, state_machine_arn, seen, endpoint):
        seen["abandoned-run"] = "RUNNING"
        watched.set()
        return []

    monkeypatch.setattr(serving, "watch_executions", still_running)
    monkeypatch.setattr(serving, "WATCH_SECONDS", 0.05)
    said: queue.Queue[str] = queue.Queue()
    stop, result = threading.Event(), {}
    thread = threading.Thread(target=lambda: result.update(code=serving.serve(port=0, say=said.put, stop=stop)),
                              daemon=True)
    thread.start()
    try:
        deadline, printed = time.monotonic() + 60, []
        while not any(READY_LINE in text for text in printed):
            assert thread.is_alive() and time.monotonic() < deadline, f"serve did not get ready: {printed}"
            with contextlib.suppress(queue.Empty):
                printed.append(said.get(timeout=0.5))
        ready = next(text for text in printed if READY_LINE in text).splitlines()[0]
        port = urllib.parse.urlsplit(ready[len(READY_LINE):].strip()).port
        assert get_with_host(port, "evil.example")[0] == 403
        assert get_with_host(port, f"127.0.0.1:{port}")[0] != 403
        assert watched.wait(10)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and result == {"code": 0}
    assert "stopped; abandoned the running executions abandoned-run" in list(said.queue)
    assert threading.excepthook is previous
