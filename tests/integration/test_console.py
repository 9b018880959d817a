"""The console commands (`stepml runs | status | history | report`) against the local stack,
where real executions of the real ASL left real records. The stack's outputs are registered
as `stepml local serve` registers them, so the console finds them through describe_stacks."""

from __future__ import annotations

import json

import pytest

from stepml import console
from stepml.cli import main
from stepml.local.runner import run_trigger
from stepml.local.serve import register_outputs
from tests.integration.stacks import local_stack
from tests.integration.test_pipeline import trigger_body


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def served(synthetic_files, tmp_path_factory):
    """The local stack with one successful and one failed run, and its outputs registered
    as `stepml local serve` registers them."""
    out = tmp_path_factory.mktemp("runs")
    with local_stack(synthetic_files) as stack:
        ok = run_trigger(stack, trigger_body(), "console-ok.json", out, say=quiet)
        failed = run_trigger(stack, trigger_body(prefix="data/nothing-here/"), "console-bad.json", out, say=quiet)
        assert ok.status == "SUCCEEDED" and failed.status == "FAILED"
        register_outputs(stack)
        yield stack, ok, failed


@pytest.fixture
def target(served):
    return console.connect(stack_name="stepml-local")  # describe_stacks -> outputs, as on AWS


def test_connect_reads_the_bucket_and_state_machine_from_the_stack_outputs(served, target):
    stack = served[0]
    assert (target.bucket, target.state_machine_arn) == (stack.bucket, stack.state_machine_arn)
    assert target.execution_arn("run-1") == stack.state_machine_arn.replace(
        ":stateMachine:", ":execution:") + ":run-1"


def test_runs_lists_both_executions_newest_first_with_headline_and_failure(served, target):
    _, ok, failed = served
    runs = console.list_runs(target)
    by_name = {r["name"]: r for r in runs}
    assert [r["name"] for r in runs][:2] == [failed.run_id, ok.run_id]
    assert by_name[ok.run_id]["status"] == "SUCCEEDED"
    assert by_name[ok.run_id]["metrics"]["accuracy"] == ok.report["metrics"]["accuracy"]
    assert by_name[ok.run_id]["seconds"] > 0
    assert by_name[failed.run_id]["status"] == "FAILED"
    assert by_name[failed.run_id]["failure"]["error"] == "DataError"

    text = console.format_runs(runs)
    header, *lines = text.splitlines()
    assert header.split() == ["RUN", "STATUS", "STARTED", "DURATION", "EST.", "COST", "RESULT"]
    ok_line = next(line for line in lines if line.startswith(ok.run_id))
    assert "SUCCEEDED" in ok_line and f"accuracy {100 * ok.report['metrics']['accuracy']:.2f}%" in ok_line
    assert "DataError in PrepareData" in next(line for line in lines if line.startswith(failed.run_id))
    # aligned: every row's STATUS column starts where the header's does
    assert {line.index("SUCCEEDED" if "SUCCEEDED" in line else "FAILED") for line in lines} == {header.index("STATUS")}


def test_status_shows_each_step_with_duration_and_the_failure(served, target):
    _, ok, failed = served
    status = console.run_status(target, ok.run_id)
    steps = {row["step"]: row for row in status["steps"]}
    assert status["state"] == "SUCCEEDED"
    assert {"StartRun", "PrepareData", "CreateDataSource", "Train", "BatchPredict", "Score"} <= set(steps)
    assert all(row["status"] == "DONE" for row in steps.values())
    assert steps["Train"]["seconds"] > 0 and steps["Train"]["memory_mb"]
    assert "Train" in console.format_status(status)

    bad = console.run_status(target, failed.run_id)
    assert bad["state"] == "FAILED" and bad["failure"]["error"] == "DataError"
    assert {r["step"]: r["status"] for r in bad["steps"]}["PrepareData"] == "FAILED"
    assert "failed in PrepareData: DataError" in console.format_status(bad)

    with pytest.raises(console.NotFound):
        console.run_status(target, "no-such-run")


def test_history_is_the_event_table_with_steps_and_elapsed_time(served, target):
    _, ok, failed = served
    rows = console.history_rows(console.execution_history(target, ok.run_id))
    assert rows[0]["type"] == "ExecutionStarted" and rows[0]["elapsed_ms"] == 0
    assert "triggers/console-ok.json" in rows[0]["detail"]
    assert rows[-1]["type"] == "ExecutionSucceeded"
    assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(b["elapsed_ms"] >= a["elapsed_ms"] for a, b in zip(rows, rows[1:]))
    train_events = {r["type"] for r in rows if r["step"] == "Train"}
    assert {"TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionSucceeded", "TaskStateExited"} <= train_events

    failed_rows = console.history_rows(console.execution_history(target, failed.run_id))
    assert failed_rows[-1]["type"] == "ExecutionFailed" and "DataError" in failed_rows[-1]["detail"]
    with pytest.raises(console.NotFound):
        console.execution_history(target, "no-such-run")


def test_report_fetches_the_report_folder_and_opens_report_html(served, target, tmp_path):
    stack, ok, failed = served
    s3 = stack.client("s3")
    prefix = f"runs/{ok.run_id}/report/"
    # what the pipeline wrote (Score, through stepml.reporting): nothing here is planted by the test
    written = {o["Key"][len(prefix):] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)["Contents"]}
    assert {"report.json", "report.html", "confusion_matrix.png"} <= written, written
    assert ok.report["outputs"]["report_html"] == prefix + "report.html"

    fetched = console.fetch_report(target, ok.run_id, tmp_path, warn=pytest.fail)
    local = tmp_path / ok.run_id / "report"
    assert sorted(fetched["files"]) == sorted(str(local / name) for name in written) and not fetched["skipped"]
    assert json.loads((local / "report.json").read_text())["run_id"] == ok.run_id
    assert fetched["html"] == str(local / "report.html")
    page = (local / "report.html").read_bytes()
    assert page == s3.get_object(Bucket=stack.bucket, Key=prefix + "report.html")["Body"].read()
    assert page.lstrip().lower().startswith(b"<!doctype html") and ok.run_id.encode() in page
    opened = []
    assert console.open_report(fetched, opener=lambda url: opened.append(url) or True)
    assert opened == [(local / "report.html").resolve().as_uri()]
    assert f"open {local / 'report.html'}" in console.format_report(fetched)

    with pytest.raises(console.NotFound, match="DataError in PrepareData"):
        console.fetch_report(target, failed.run_id, tmp_path)


def test_the_cli_commands_against_the_local_stack(served, tmp_path, capsys):
    _, ok, failed = served
    assert main(["runs", "--stack-name", "stepml-local"]) == 0
    assert ok.run_id in capsys.readouterr().out
    assert main(["status", ok.run_id, "--stack-name", "stepml-local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "SUCCEEDED"
    assert main(["history", failed.run_id, "--stack-name", "stepml-local"]) == 0
    assert "ExecutionFailed" in capsys.readouterr().out
    assert main(["report", ok.run_id, "--stack-name", "stepml-local", "--out", str(tmp_path)]) == 0
    assert (tmp_path / ok.run_id / "report/report.json").is_file()
    capsys.readouterr()
    assert main(["report", failed.run_id, "--stack-name", "stepml-local", "--out", str(tmp_path)]) == 1
    assert "has no report" in capsys.readouterr().err
    assert main(["status", "no-such-run", "--stack-name", "stepml-local"]) == 1
